"""The agent's pod network: the node's CNI configuration list and the CNI runner that applies it.

The configuration is the one a kubeadm + bridge cluster would write to ``/etc/cni/net.d``, for this
node's ``podCIDR``::

    bridge (cni0, gateway .1, default route in the pod, no masquerade: pod IPs stay visible
            across nodes) + host-local IPAM (the node's /24) → loopback → portmap (hostPort)

``--cni kubelite`` (default) runs kubelite's own plugins inside the agent (no process per plugin);
``--cni reference`` executes the reference plugins of the OS package containernetworking-plugins
with the same list. The list is also written to ``DATA_DIR/cni/10-kubelite.conflist`` so a user can
read it or run it by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.agent.sandbox import Sandbox
from kubelite.cni.config import NetworkConfigList, RuntimeConf
from kubelite.cni.invoke import CniRunner, ExecCni, InProcessCni, ResultCache
from kubelite.cni.types import PortMapping
from kubelite.host.ip import IpRunner

__all__ = ["CniPodNetwork", "node_conflist"]

Obj = dict[str, Any]
NETWORK_NAME = "kubelite"


def node_conflist(pod_cidr: str, data_dir: Path, *, bridge: str = "cni0", mtu: int = 0) -> Obj:
    bridge_conf: Obj = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "isDefaultGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": pod_cidr}]],
            "dataDir": str(data_dir / "cni" / "networks"),
        },
    }
    if mtu:
        bridge_conf["mtu"] = mtu
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            bridge_conf,
            {"type": "loopback"},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


@dataclass(slots=True)
class CniPodNetwork:
    runner: CniRunner
    conflist: NetworkConfigList
    ip: IpRunner
    mode: str

    @classmethod
    def create(
        cls, *, mode: str, pod_cidr: str, data_dir: Path, ip: IpRunner, cni_bin_dir: str
    ) -> CniPodNetwork:
        doc = node_conflist(pod_cidr, data_dir)
        conf_dir = data_dir / "cni"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "10-kubelite.conflist").write_text(json.dumps(doc, indent=2) + "\n")
        cache = ResultCache(conf_dir / "results")
        runner: CniRunner
        if mode == "reference":
            runner = ExecCni([cni_bin_dir], cache=cache)
        elif mode == "kubelite":
            runner = InProcessCni(cache=cache, cni_path=[cni_bin_dir])
        else:
            raise ValueError(f"--cni {mode!r}: choose kubelite or reference")
        return cls(runner, NetworkConfigList.from_json(doc), ip, mode)

    async def prepare(self) -> None:
        """Nothing to do ahead of the first pod: the bridge plugin creates cni0 on first ADD."""

    def _runtime(self, sandbox: Sandbox, pod: Obj, port_mappings: Sequence[Obj]) -> RuntimeConf:
        assert sandbox.netns_path is not None
        meta = pod.get("metadata") or {}
        args = (
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", sandbox.namespace),
            ("K8S_POD_NAME", sandbox.name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox.container_id),
            ("K8S_POD_UID", str(meta.get("uid") or sandbox.uid)),
        )
        mappings = tuple(
            PortMapping(
                host_port=int(m["hostPort"]),
                container_port=int(m["containerPort"]),
                protocol=str(m.get("protocol", "tcp")),
                host_ip=str(m.get("hostIP", "")),
            )
            for m in port_mappings
        )
        return RuntimeConf(
            container_id=sandbox.container_id,
            netns=sandbox.netns_path,
            ifname="eth0",
            args=args,
            port_mappings=mappings,
        )

    async def setup(self, sandbox: Sandbox, pod: Obj, port_mappings: Sequence[Obj]) -> str:
        result = await self.runner.add(self.conflist, self._runtime(sandbox, pod, port_mappings))
        ips = result.container_ips()
        if not ips:
            raise RuntimeError("the CNI plugins returned no IP address for the pod")
        return str(ips[0].address.ip)

    async def teardown(self, sandbox: Sandbox, pod: Obj, port_mappings: Sequence[Obj]) -> None:
        await self.runner.delete(self.conflist, self._runtime(sandbox, pod, port_mappings))
