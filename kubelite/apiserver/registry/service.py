"""Service strategy: ClusterIP, NodePort and health check node port allocation and release, in the
object's own commit. The health check node port (LoadBalancer + externalTrafficPolicy Local) comes
from the NodePort range and allocator, as in Kubernetes."""

from __future__ import annotations

import ipaddress
from typing import Any

from kubelite.api import errors
from kubelite.api import fielderrors as fe
from kubelite.api.errors import Cause
from kubelite.api.service import default_service_families, needs_health_check, validate_service_update
from kubelite.apiserver.allocators import RangeFullError
from kubelite.apiserver.registry.base import Strategy
from kubelite.store.interface import Op

Obj = dict[str, Any]


def _needs_cluster_ip(spec: Obj) -> bool:
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def _needs_node_ports(spec: Obj) -> bool:
    stype = spec.get("type", "ClusterIP")
    if stype == "NodePort":
        return True
    return stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def _owner(obj: Obj) -> str:
    md = obj["metadata"]
    return f"{md.get('namespace', '')}/{md['name']}"


class ServiceStrategy(Strategy):
    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"loadBalancer": {}}

    def validate_update(self, new: Obj, old: Obj) -> list[Cause]:
        return self.validate(new) + validate_service_update(old, new)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        nspec, ospec = new.setdefault("spec", {}), old.get("spec") or {}
        _keep_allocated_values(nspec, ospec)
        _drop_type_dependent_fields(nspec, ospec)
        super().prepare_for_update(new, old)

    async def allocate(self, obj: Obj) -> list[Op]:
        return await self._allocate(obj, None)

    async def reallocate(self, new: Obj, old: Obj) -> list[Op]:
        return await self._allocate(new, old)

    def release(self, obj: Obj) -> list[Op]:
        ops: list[Op] = []
        spec = obj.get("spec") or {}
        for ip in allocated_ips(spec):
            ops.append(self.ctx.cluster_ips.release_op(ip))
        for port in allocated_node_ports(spec):
            ops.append(self.ctx.node_ports.release_op(str(port)))
        return ops

    def after_commit(self, new: Obj | None, old: Obj | None) -> None:
        """Keep the allocators' hints in step with what was committed."""
        for spec, used in (((old or {}).get("spec") or {}, False), ((new or {}).get("spec") or {}, True)):
            for ip in allocated_ips(spec):
                (self.ctx.cluster_ips.mark_used if used else self.ctx.cluster_ips.mark_free)(ip)
            for port in allocated_node_ports(spec):
                (self.ctx.node_ports.mark_used if used else self.ctx.node_ports.mark_free)(str(port))

    def note_taken(self, key: str) -> None:
        for alloc in (self.ctx.cluster_ips, self.ctx.node_ports):
            if key.startswith(alloc.prefix):
                alloc.mark_used(key[len(alloc.prefix) :])

    async def _allocate(self, obj: Obj, old: Obj | None) -> list[Op]:
        spec = obj.setdefault("spec", {})
        ospec = (old or {}).get("spec") or {}
        ops = await self._allocate_cluster_ip(obj, spec, ospec)
        ops += await self._allocate_node_ports(obj, spec, ospec)
        default_service_families(obj)
        return ops

    async def _allocate_cluster_ip(self, obj: Obj, spec: Obj, ospec: Obj) -> list[Op]:
        ops: list[Op] = []
        old_ips = set(allocated_ips(ospec))
        new_ips: set[str] = set()
        if _needs_cluster_ip(spec):
            requested = spec.get("clusterIP") or ""
            if not requested:
                try:
                    requested = await self.ctx.cluster_ips.pick(set())
                except RangeFullError:
                    raise errors.internal("failed to allocate a serviceIP: range is full") from None
                spec["clusterIP"] = requested
                spec["clusterIPs"] = [requested]
            elif requested not in old_ips:
                self._check_ip_in_range(obj, requested)
            if requested not in old_ips:
                ops.append(self.ctx.cluster_ips.create_op(requested, _owner(obj)))
            new_ips.add(requested)
            spec.setdefault("clusterIPs", [requested])
        elif spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        elif spec.get("clusterIP") == "None":
            spec["clusterIPs"] = ["None"]
        ops += [self.ctx.cluster_ips.release_op(ip) for ip in old_ips - new_ips]
        return ops

    async def _allocate_node_ports(self, obj: Obj, spec: Obj, ospec: Obj) -> list[Op]:
        ops: list[Op] = []
        old_ports = set(allocated_node_ports(ospec))
        new_ports: set[int] = set()
        # (where the value goes, the path for errors): the ports' nodePorts, then the health check port
        wanted: list[tuple[Obj, str, str]] = []
        if _needs_node_ports(spec):
            wanted += [
                (p, "nodePort", f"spec.ports[{i}].nodePort") for i, p in enumerate(spec.get("ports") or [])
            ]
        if needs_health_check(spec):
            wanted.append((spec, "healthCheckNodePort", "spec.healthCheckNodePort"))
        for holder, key, path in wanted:
            if holder.get(key):
                ops += self._claim_node_port(obj, int(holder[key]), path, old_ports, new_ports)
        for holder, key, _path in wanted:
            if holder.get(key):
                continue
            try:
                value = await self.ctx.node_ports.pick({str(p) for p in new_ports})
            except RangeFullError:
                raise errors.internal(f"failed to allocate a {key}: range is full") from None
            holder[key] = int(value)
            new_ports.add(int(value))
            ops.append(self.ctx.node_ports.create_op(value, _owner(obj)))
        ops += [self.ctx.node_ports.release_op(str(np)) for np in old_ports - new_ports]
        return ops

    def _claim_node_port(
        self, obj: Obj, np: int, path: str, old_ports: set[int], new_ports: set[int]
    ) -> list[Op]:
        """A node port the client asked for: in range, not twice in this Service, reserved unless it
        already was (a clash with another Service surfaces at commit, see ``conflict_error``)."""
        name = obj["metadata"]["name"]
        if np in new_ports:
            raise errors.invalid("", "Service", name, [fe.duplicate(path, np)])
        new_ports.add(np)
        if np in old_ports:
            return []
        first, last = self.ctx.config.node_port_range
        if not first <= np <= last:
            why = f"provided port is not in the valid range. The range of valid ports is {first}-{last}"
            raise errors.invalid("", "Service", name, [fe.invalid(path, np, why)])
        return [self.ctx.node_ports.create_op(str(np), _owner(obj))]

    def _check_ip_in_range(self, obj: Obj, requested: str) -> None:
        cidr = ipaddress.ip_network(self.ctx.config.service_cidr)
        try:
            inside = ipaddress.ip_address(requested) in cidr
        except ValueError:
            inside = False
        if not inside:
            raise errors.invalid(
                "",
                "Service",
                obj["metadata"]["name"],
                [
                    fe.invalid(
                        "spec.clusterIPs",
                        [requested],
                        f"failed to allocate IP {requested}: provided IP is not in the valid range. "
                        f"The range of valid IPs is {cidr}",
                    )
                ],
            )

    def conflict_error(self, requested: Obj, key: str) -> errors.StatusError | None:
        """The 422 when an allocation key already existed at commit time for a value the client asked
        for (``requested`` is the object as sent, before allocation). None: the value was our own
        random pick, and the caller retries with another."""
        name = requested["metadata"]["name"]
        spec = requested.get("spec") or {}
        if key.startswith(self.ctx.cluster_ips.prefix):
            ip = key[len(self.ctx.cluster_ips.prefix) :]
            if spec.get("clusterIP") == ip or ip in (spec.get("clusterIPs") or []):
                return errors.invalid(
                    "",
                    "Service",
                    name,
                    [
                        fe.invalid(
                            "spec.clusterIPs",
                            [ip],
                            f"failed to allocate IP {ip}: provided IP is already allocated",
                        )
                    ],
                )
        if key.startswith(self.ctx.node_ports.prefix):
            port = int(key[len(self.ctx.node_ports.prefix) :])
            paths = [
                (f"spec.ports[{i}].nodePort", p.get("nodePort"))
                for i, p in enumerate(spec.get("ports") or [])
            ]
            paths.append(("spec.healthCheckNodePort", spec.get("healthCheckNodePort")))
            for path, value in paths:
                if value == port:
                    why = "provided port is already allocated"
                    return errors.invalid("", "Service", name, [fe.invalid(path, port, why)])
        return None


def _node_ports_by_port(spec: Obj) -> dict[tuple[Any, Any], Any]:
    return {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in spec.get("ports") or []}


def _keep_allocated_values(nspec: Obj, ospec: Obj) -> None:
    """A PUT that leaves out allocated values keeps them, as long as the type still uses them
    (Kubernetes does this since 1.20, so `kubectl replace` of a manifest works)."""
    both_ip = _needs_cluster_ip(nspec) and _needs_cluster_ip(ospec)
    if both_ip and not nspec.get("clusterIP") and ospec.get("clusterIP"):
        nspec["clusterIP"] = ospec["clusterIP"]
        nspec["clusterIPs"] = list(ospec.get("clusterIPs") or [ospec["clusterIP"]])
    both_hc = needs_health_check(nspec) and needs_health_check(ospec)
    if both_hc and not nspec.get("healthCheckNodePort") and ospec.get("healthCheckNodePort"):
        nspec["healthCheckNodePort"] = ospec["healthCheckNodePort"]
    if _needs_node_ports(nspec) and _needs_node_ports(ospec):
        previous = _node_ports_by_port(ospec)
        for p in nspec.get("ports") or []:
            if isinstance(p, dict) and not p.get("nodePort"):
                prev = previous.get((p.get("port"), p.get("protocol", "TCP")))
                if prev:
                    p["nodePort"] = prev


_CLUSTER_IP_FIELDS = (
    "clusterIP",
    "clusterIPs",
    "ipFamilies",
    "ipFamilyPolicy",
    "internalTrafficPolicy",
    "sessionAffinity",
    "sessionAffinityConfig",
)


def _drop_type_dependent_fields(nspec: Obj, ospec: Obj) -> None:
    """Fields the new type does not use are cleared when the client left them as they were
    (the type-change conformance tests rely on this, e.g. NodePort -> ExternalName)."""
    if nspec.get("type") == "ExternalName":
        for key in _CLUSTER_IP_FIELDS:
            if key in nspec and nspec.get(key) == ospec.get(key):
                del nspec[key]
    if not _needs_node_ports(nspec):
        previous = _node_ports_by_port(ospec)
        for p in nspec.get("ports") or []:
            port_key = (p.get("port"), p.get("protocol", "TCP"))
            if isinstance(p, dict) and p.get("nodePort") and p.get("nodePort") == previous.get(port_key):
                del p["nodePort"]
    hc_unchanged = nspec.get("healthCheckNodePort") == ospec.get("healthCheckNodePort")
    if not needs_health_check(nspec) and needs_health_check(ospec) and hc_unchanged:
        nspec.pop("healthCheckNodePort", None)
    external = nspec.get("type") in ("NodePort", "LoadBalancer")
    if not external and nspec.get("externalTrafficPolicy") == ospec.get("externalTrafficPolicy"):
        nspec.pop("externalTrafficPolicy", None)


def allocated_ips(spec: Obj) -> list[str]:
    if not _needs_cluster_ip(spec):
        return []
    return [
        ip
        for ip in (spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
        if ip and ip != "None"
    ]


def allocated_node_ports(spec: Obj) -> list[int]:
    """Node ports this Service holds: its ports' nodePorts and its health check node port."""
    ports = [int(p["nodePort"]) for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")]
    if needs_health_check(spec) and spec.get("healthCheckNodePort"):
        ports.append(int(spec["healthCheckNodePort"]))
    return ports
