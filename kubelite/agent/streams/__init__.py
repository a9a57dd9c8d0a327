"""Streaming between kubectl and containers: the kubelet's side of logs, exec, attach and port-forward.

Layout (each module's docstring states its contract):

    interface.py      StreamBackend / ExecSession (what the agent's runtime provides), StreamError,
                      LogOptions, TerminalSize, ByteConn
    spdy.py           SPDY/3.1 frames, header compression and sessions (pure framing + an asyncio session)
    remotecommand.py  exec/attach over SPDY (v2-v4) and WebSocket (channel.k8s.io v1-v5)
    portforward.py    port-forward over SPDY, SPDY tunnelled in a WebSocket, and WebSocket channels
    process.py        spawn_session: a command as an ExecSession (pipes or a PTY)
    server.py         kubelet_app: the HTTP routes, authentication, and taking over upgraded connections

The API server's half (finding the node, relaying the upgrade) is kubelite/apiserver/nodeproxy.py; it
uses ``is_websocket`` and ``upgrade_connection`` from here.
"""

from kubelite.agent.streams.interface import (
    ByteConn,
    ExecSession,
    LogOptions,
    StreamBackend,
    StreamError,
    TerminalSize,
)
from kubelite.agent.streams.process import spawn_session
from kubelite.agent.streams.server import UpgradedConnection, is_websocket, kubelet_app, upgrade_connection

__all__ = [
    "ByteConn",
    "ExecSession",
    "LogOptions",
    "StreamBackend",
    "StreamError",
    "TerminalSize",
    "UpgradedConnection",
    "is_websocket",
    "kubelet_app",
    "spawn_session",
    "upgrade_connection",
]
