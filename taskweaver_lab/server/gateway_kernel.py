"""Kernels run by a kernel gateway (``jupyter server --gateway-url=...``, issue 15 item 1).

Such a kernel has no connection file on this machine: it is reached only through the gateway's
``/api/kernels/<id>/channels`` websocket. ``GatewayBlockingClient`` is the small part of
jupyter_client's ``BlockingKernelClient`` the executor uses (``session.msg``, ``<channel>.send``,
``get_<channel>_msg(timeout)``, ``stop_channels``) over that websocket, so turns, Stop and the record
work unchanged. What cannot work remotely says so in one sentence (``GATEWAY_*`` below).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from typing import Any

log = logging.getLogger("taskweaver_lab.kernel")

GATEWAY_SANDBOX = ("TaskWeaverLab.sandbox=landlock cannot apply to kernels run by a kernel gateway (--gateway-url): "
                   "the gateway starts them on its own machine; sandbox them there (e.g. Enterprise Gateway's kernel "
                   "images) and set sandbox='none' here, or run the server without --gateway-url.")
GATEWAY_MAGIC = ("%%taskweaver cannot join the server's session from a kernel run by a kernel gateway (the server "
                 "does not hold such a kernel's connection key): use the TaskWeaver sidebar on this notebook instead.")


def is_gateway(kernel_manager: Any) -> bool:
    """Whether the server's kernels are run by a kernel gateway."""
    return type(kernel_manager).__module__.startswith("jupyter_server.gateway")


class _Channel:
    """``client.<name>_channel``: ``send`` tags the message with its channel for the websocket."""

    def __init__(self, client: "GatewayBlockingClient", name: str) -> None:
        self.client, self.name = client, name
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()

    def send(self, msg: dict[str, Any]) -> None:
        self.client.send({**msg, "channel": self.name})


class GatewayBlockingClient:
    """A blocking kernel client over the gateway's channels websocket (one router thread fills the queues)."""

    def __init__(self, kernel_manager: Any, kernel_id: str, timeout: float) -> None:
        import websocket
        from jupyter_client.session import Session
        from jupyter_server.gateway.gateway_client import GatewayClient
        from jupyter_server.utils import url_escape, url_path_join

        gateway = GatewayClient.instance()
        url = url_path_join(gateway.ws_url or "", gateway.kernels_endpoint, url_escape(kernel_id), "channels")
        headers = dict(json.loads(gateway.headers or "{}"))
        if gateway.auth_token:
            headers.setdefault(gateway.auth_header_key, f"{gateway.auth_scheme} {gateway.auth_token}".strip())
        self.session = Session(key=uuid.uuid4().bytes)  # unused: messages travel as JSON, the gateway signs them
        self._lock = threading.Lock()
        self._channels = {name: _Channel(self, name) for name in ("shell", "iopub", "stdin", "control", "hb")}
        self.shell_channel, self.iopub_channel = self._channels["shell"], self._channels["iopub"]
        self.control_channel, self.stdin_channel = self._channels["control"], self._channels["stdin"]
        self._socket = websocket.create_connection(url, timeout=timeout, enable_multithread=True,
                                                   header=[f"{k}: {v}" for k, v in headers.items()])
        self._socket.settimeout(None)
        self._closed = False
        threading.Thread(target=self._route, name=f"taskweaver-gateway-{kernel_id[:8]}", daemon=True).start()

    def send(self, msg: dict[str, Any]) -> None:
        text = json.dumps(msg, default=lambda value: value.isoformat() if hasattr(value, "isoformat") else str(value))
        with self._lock:
            self._socket.send(text)

    def _route(self) -> None:
        try:
            while not self._closed:
                raw = self._socket.recv()
                if not raw:
                    break
                msg = json.loads(raw)
                channel = self._channels.get(msg.pop("channel", ""), None)
                if channel is not None:
                    channel.messages.put(msg)
        except Exception as exc:  # closed by stop_channels, or the gateway went away
            if not self._closed:
                log.warning("the kernel gateway's channels socket closed: %s", exc)

    def _get(self, name: str, timeout: float | None) -> dict[str, Any]:
        return self._channels[name].messages.get(timeout=timeout)  # raises queue.Empty like jupyter_client

    def get_shell_msg(self, timeout: float | None = None) -> dict[str, Any]:
        return self._get("shell", timeout)

    def get_iopub_msg(self, timeout: float | None = None) -> dict[str, Any]:
        return self._get("iopub", timeout)

    def get_control_msg(self, timeout: float | None = None) -> dict[str, Any]:
        return self._get("control", timeout)

    def start_channels(self) -> None:
        """Started by the constructor (the websocket is all channels at once)."""

    def stop_channels(self) -> None:
        self._closed = True
        try:
            self._socket.close()
        except Exception:
            pass
