"""A real ipykernel with the guard installed, plus canaries that prove nothing leaked.

Cells go over the wire exactly as the executor sends them: an ``execute_request`` whose metadata
carries ``{"taskweaver_lab": {"agent": true}}`` for agent code, none for the user's own cells.
"""
from __future__ import annotations

import os
import queue
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from taskweaver_lab.kernel_side import guard
from taskweaver_lab.config import DEFAULT_SCRUB_ENV
from taskweaver_lab.secrets import scrubbed_env

BLOCK_MARK = "taskweaver_lab guard blocked"
CANARY_KEY = "sk-canary-0d9f8e7c6b5a4d3c2b1a0f9e8d7c6b5a"   # planted as OPENAI_API_KEY in the "server" env
CANARY_FILE_TEXT = "CANARY-FILE-4b1f0c2e"


@dataclass
class CellResult:
    text: str = ""             # stdout/stderr/results, joined
    error: str = ""            # "EName: value" when the cell raised
    timed_out: bool = False

    @property
    def blocked(self) -> bool:
        return BLOCK_MARK in self.text or BLOCK_MARK in self.error


@dataclass
class Canaries:
    """A workspace, a secret file outside it, and a listening loopback socket."""

    root: Path
    workspace: Path = field(init=False)
    outside: Path = field(init=False)
    secret: Path = field(init=False)
    connections: "queue.Queue[bytes]" = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.workspace, self.outside = self.root / "ws", self.root / "outside"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.outside.mkdir(parents=True, exist_ok=True)
        self.secret = self.outside / "secret.txt"
        self.secret.write_text(CANARY_FILE_TEXT)
        (self.outside / "x.py").write_text(f"print({CANARY_FILE_TEXT!r})\n")
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.settimeout(1)
            try:
                self.connections.put(conn.recv(1024) or b"<connected>")
            except OSError:
                self.connections.put(b"<connected>")
            conn.close()

    def fill(self, code: str) -> str:
        return (code.replace("@SECRET@", str(self.secret)).replace("@OUTSIDE@", str(self.outside))
                .replace("@PORT@", str(self.port)))

    def leaks(self, results: list[CellResult]) -> list[str]:
        """Everything a canary saw: secrets in outputs, files written/removed outside, socket contacts."""
        found = []
        for r in results:
            for needle in (CANARY_KEY, CANARY_FILE_TEXT):
                if needle in r.text or needle in r.error:
                    found.append(f"output contains {needle[:12]}...: {r.text[:200]!r}")
        if not self.secret.exists() or self.secret.read_text() != CANARY_FILE_TEXT:
            found.append("secret file outside the workspace was changed or removed")
        extra = sorted(p.name for p in self.outside.iterdir()) if self.outside.exists() else ["<outside removed>"]
        if extra != ["secret.txt", "x.py"]:
            found.append(f"files outside the workspace changed: {extra}")
        if Path("/tmp/pwned_twl.png").exists():
            found.append("/tmp/pwned_twl.png was written")
        if not self.connections.empty():
            found.append(f"loopback canary socket was reached: {self.connections.get()!r}")
        return found

    def close(self) -> None:
        self.listener.close()


def kernel_env() -> dict[str, str]:
    """The server's env with a planted key, scrubbed as the real kernel start does."""
    server_env = {**os.environ, "OPENAI_API_KEY": CANARY_KEY, "TASKWEAVER_LAB_TOKEN": CANARY_KEY}
    return scrubbed_env(server_env, DEFAULT_SCRUB_ENV)


class AgentKernel:
    """One real python3 kernel; ``run(code, agent=...)`` sends an execute_request and collects output."""

    def __init__(self, workspace: Path, env: dict[str, str] | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(workspace), env=env if env is not None else kernel_env())
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def install_guard(self, workspace: Path) -> CellResult:
        source = guard.shipped_source()
        boot = (
            "import types as _t, sys as _s\n"
            f"_m = _t.ModuleType({guard.MODULE_NAME!r})\n"
            f"exec(compile({source!r}, '<taskweaver_lab guard>', 'exec'), _m.__dict__)\n"
            f"_s.modules[_m.__name__] = _m\n_m.install(workspace={str(workspace)!r})\ndel _m, _t, _s\n"
        )
        return self.run(boot, agent=False)

    def run(self, code: str, agent: bool, timeout: float = 30.0) -> CellResult:
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": False}
        metadata: dict[str, Any] = {"taskweaver_lab": {"agent": True}} if agent else {}
        msg = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(msg)
        return self._collect(msg["header"]["msg_id"], timeout)

    def _collect(self, msg_id: str, timeout: float) -> CellResult:
        result, parts = CellResult(), []
        while True:
            try:
                reply = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                result.timed_out = True
                self.manager.interrupt_kernel()
                timeout = 10.0
                continue
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            if fold_iopub(reply, parts, result):
                break
        self.shell_reply(msg_id, timeout)
        result.text = "".join(parts)
        return result

    def shell_reply(self, msg_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The reply to ``msg_id`` (a late kernel_info reply from wait_for_ready may come first)."""
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def fold_iopub(reply: dict[str, Any], parts: list[str], result: Any) -> bool:
    """Add one iopub message of our request to ``parts`` / ``result.error``; True once the kernel is idle."""
    kind, content = reply["msg_type"], reply["content"]
    if kind == "stream":
        parts.append(content["text"])
    elif kind in ("execute_result", "display_data"):
        parts.append(content["data"].get("text/plain", ""))
    elif kind == "error":
        result.error = f"{content['ename']}: {content['evalue']}"
    return kind == "status" and content["execution_state"] == "idle"
