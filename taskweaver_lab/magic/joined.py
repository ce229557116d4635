"""Joined mode: the turn runs in the Jupyter server, in the notebook's session shared with the sidebar.

Requests are signed with this kernel's own ZMQ key (``kernel_auth.sign_headers``): the kernel never
has the server token."""
from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import kernel_auth
from ..config import SERVER_URL_ENV
from ..steps import TaskWeaverLabError
from .options import Options
from .view import TurnView


class ServerUnreachable(Exception):
    pass


class ServerRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never via a proxy
POLL_SECONDS = 30.0
# Statuses meaning "this server cannot take magic turns" (old/absent extension, bad credential, down):
FALLBACK_STATUSES = (401, 403, 404, 405, 502, 503, 504)


class ServerLink:
    """Requests to ``{base}taskweaver_lab/kernel/...`` signed with this kernel's ZMQ key (HMAC-SHA256)."""

    def __init__(self, base_url: str, kernel_id: str, key: bytes) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.kernel_id, self.key = kernel_id, key

    @classmethod
    def from_kernel(cls, shell: Any) -> tuple["ServerLink | None", str]:
        """(link, "") when joined mode applies; (None, reason) when it should but cannot; (None, "") otherwise."""
        url = os.environ.get(SERVER_URL_ENV, "")
        if not url:
            return None, ""
        key = getattr(getattr(getattr(shell, "kernel", None), "session", None), "key", b"")
        kernel_id = _kernel_id()
        if not key or not kernel_id:
            return None, "cannot identify this kernel to the Jupyter server"
        return cls(url, kernel_id, key), ""

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return {**kernel_auth.sign_headers(self.key, self.kernel_id, method, path, body),
                "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        url = self.base_url + "taskweaver_lab/kernel/" + path
        if method == "POST":  # the server refuses a repeated signature (replay): two equal requests in a second differ
            body = {**(body or {}), "nonce": uuid.uuid4().hex}
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(url, data=data if method == "POST" else None, method=method,
                                         headers=self.headers(method, urlsplit(url).path, data))
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ServerRefused(exc.code, _error_message(exc)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServerUnreachable(str(getattr(exc, "reason", exc))) from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read() or b"{}").get("error") or f"HTTP {exc.code}")
    except ValueError:
        return f"HTTP {exc.code} {exc.reason}"


def _kernel_id() -> str:
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # not an ipykernel (plain IPython): no kernel identity
        return ""
    match = re.fullmatch(r"kernel-(.+)\.json", name)
    return match.group(1) if match else ""


def _cell_id(shell: Any) -> str | None:
    kernel = getattr(shell, "kernel", None)
    parent = kernel.get_parent() if kernel is not None and hasattr(kernel, "get_parent") else {}
    return ((parent or {}).get("metadata") or {}).get("cellId")


def run_joined(link: ServerLink, shell: Any, options: Options, view: TurnView) -> bool:
    """Run the turn in the server's session; False (after a one-line notice) to fall back in-process."""
    body: dict[str, Any] = {"message": options.request, "cell_id": _cell_id(shell), "new": options.new,
                            "plugins_only": options.plugins_only}
    if options.approval:
        body["approval"] = options.approval
    try:
        turn = link.call("POST", "turns", body)
    except (ServerUnreachable, ServerRefused) as exc:
        if isinstance(exc, ServerRefused) and exc.status not in FALLBACK_STATUSES:
            raise TaskWeaverLabError(exc.message) from None
        print(f"taskweaver: the Jupyter server did not take the turn ({exc}); running in this kernel instead.")
        return False
    view.refresh()
    try:
        _follow(link, str(turn["turn_id"]), view)
    finally:
        view.finish()
    if view.failure:
        raise TaskWeaverLabError(view.failure)
    return True


def _follow(link: ServerLink, turn_id: str, view: TurnView) -> None:
    after = 0
    try:
        while True:
            after, done = _poll(link, turn_id, view, after)
            if done:
                return
    except KeyboardInterrupt:
        _stop(link, turn_id, view, after)
        raise
    except ServerUnreachable:
        raise TaskWeaverLabError("Lost the connection to the Jupyter server during the turn; it may still be "
                                 "running: see the TaskWeaver panel.") from None


def _poll(link: ServerLink, turn_id: str, view: TurnView, after: int) -> tuple[int, bool]:
    try:
        page = link.call("GET", f"turns/{turn_id}/events?after={after}", timeout=POLL_SECONDS + 30)
    except ServerRefused as exc:
        raise TaskWeaverLabError(exc.message) from None
    events = page.get("events") or []
    for item in events:
        view.on_event(item["event"] if isinstance(item.get("event"), dict) else item)
    return after + len(events), bool(page.get("done"))


def _stop(link: ServerLink, turn_id: str, view: TurnView, after: int) -> None:
    """Post stop, then show the turn's last events; further Ctrl-Cs must not leave the turn running."""
    deadline = time.monotonic() + 15
    stopped = False
    while time.monotonic() < deadline:
        try:
            if not stopped:
                stopped = True   # once: the server's stop may interrupt this kernel (main shell) again
                link.call("POST", f"turns/{turn_id}/stop", {})
            after, done = _poll(link, turn_id, view, after)
            if done:
                return
        except KeyboardInterrupt:
            continue
        except (ServerUnreachable, TaskWeaverLabError, ServerRefused):
            return
