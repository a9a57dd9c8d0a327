"""Node-to-node pod routes, flannel-style: host-gw routes or a VXLAN overlay.

Layout (pure modules first; only the appliers run processes, through :mod:`kubelite.host.ip` runners):

- ``model``    pure: :class:`NodeRoute` (a Node as the overlay sees it; :func:`node_route_from` builds
               it from a Node object), the VTEP MAC and annotations, and the desired kernel state per
               mode (:func:`desired_host_gw`, :func:`desired_vxlan`).
- ``diff``     pure: parse ``ip -j`` / ``bridge -j`` output, and desired vs observed -> batch lines
               (:func:`plan_changes`); defines which entries this package owns.
- ``applier``  :class:`StateSync`: converges one node, remembering what it applied so an unchanged
               sync starts no process; :class:`OverlayError`.
- ``hostgw``, ``vxlan``  the two modes; ``manager``: the :class:`Overlay` protocol and
               :func:`make_overlay`, the one place a mode is chosen.

See README.md for the exact kernel state per remote node and the measured throughput.
"""

from kubelite.overlay.applier import BridgeRunner, OverlayError, StateSync, real_bridge
from kubelite.overlay.diff import Plan, plan_changes
from kubelite.overlay.hostgw import HostGwOverlay
from kubelite.overlay.manager import Overlay, OverlayKind, make_overlay
from kubelite.overlay.model import (
    DEFAULT_VXLAN_DEVICE,
    PUBLIC_IP_ANNOTATION,
    ROUTE_PROTOCOL,
    VTEP_MAC_ANNOTATION,
    VXLAN_PORT,
    VXLAN_VNI,
    Desired,
    FdbEntry,
    KernelState,
    Neighbour,
    NodeRoute,
    Route,
    Skipped,
    VxlanDevice,
    annotations_for,
    desired_host_gw,
    desired_vxlan,
    node_route_from,
    vtep_annotations,
    vtep_mac_for,
    vxlan_device,
)
from kubelite.overlay.vxlan import VxlanOverlay

__all__ = [
    "DEFAULT_VXLAN_DEVICE",
    "PUBLIC_IP_ANNOTATION",
    "ROUTE_PROTOCOL",
    "VTEP_MAC_ANNOTATION",
    "VXLAN_PORT",
    "VXLAN_VNI",
    "BridgeRunner",
    "Desired",
    "FdbEntry",
    "HostGwOverlay",
    "KernelState",
    "Neighbour",
    "NodeRoute",
    "Overlay",
    "OverlayError",
    "OverlayKind",
    "Plan",
    "Route",
    "Skipped",
    "StateSync",
    "VxlanDevice",
    "VxlanOverlay",
    "annotations_for",
    "desired_host_gw",
    "desired_vxlan",
    "make_overlay",
    "node_route_from",
    "plan_changes",
    "real_bridge",
    "vtep_annotations",
    "vtep_mac_for",
    "vxlan_device",
]
