"""The kernel the product starts itself (CLI, Python API): IPC transport, and replaced when it dies.

IPC (unix sockets in a private folder) instead of TCP: nothing else on the machine can reach the kernel's
channels, and ipykernel has no reason to warn that it runs "over TCP without encryption". The socket
folder is absolute and next to the connection file, so the kernel's working directory does not matter.

A kernel that dies (killed, out of memory) or is restarted under a running cell is noticed at once: its
process is gone, or another process answers (``KernelLost``). The session then calls ``renew()`` before
the next round: a dead kernel is restarted, a restarted one adopted, and the Planner told the variables
are gone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable

from .kernel import KERNEL_DIED, KERNEL_RESTARTED, KernelExecutor, KernelState
from .steps import TaskWeaverLabError

OWN_KERNEL_DIED = ("The kernel died while running the code (out of memory, or killed), so its variables are gone. Ask "
                   "again: the next round starts a new kernel.")


def ipc_kernel_manager(kernel_name: str) -> Any:
    """A KernelManager on IPC transport whose sockets live in a private folder (removed at shutdown)."""
    from jupyter_client.manager import KernelManager

    runtime = tempfile.mkdtemp(prefix="twl-k-")  # 0700; short: a unix socket path has at most 107 bytes

    class IPCKernelManager(KernelManager):
        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(runtime, ignore_errors=True)

    return IPCKernelManager(kernel_name=kernel_name, transport="ipc", ip=os.path.join(runtime, "ipc"),
                            connection_file=os.path.join(runtime, "kernel.json"))


def start_own_kernel(workspace: str, env: dict[str, str], summary_chars: int, redact: Callable[[str], str],
                     kernel_name: str = "python3", sandbox: str = "none") -> "OwnKernelExecutor":
    if sandbox == "landlock":
        from .sandbox import sandboxed_kernel_manager

        manager = sandboxed_kernel_manager(workspace, ())
        kernel_name = "sandboxed python3"
    else:
        manager = ipc_kernel_manager(kernel_name)
    try:
        manager.start_kernel(cwd=workspace, env=env)
        client = _ready_client(manager)
    except Exception as exc:
        manager.shutdown_kernel(now=True) if manager.has_kernel else None
        raise TaskWeaverLabError(f"Could not start a {kernel_name} kernel in {workspace}: {exc}") from exc
    return OwnKernelExecutor(manager, client, workspace, summary_chars, redact)


def _ready_client(manager: Any) -> Any:
    client = manager.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
    except BaseException:
        client.stop_channels()
        raise
    return client


class OwnKernelExecutor(KernelExecutor):
    """A ``KernelExecutor`` that owns its kernel's manager: knows its process, restarts it when it dies."""

    died_message = OWN_KERNEL_DIED

    def __init__(self, manager: Any, client: Any, workspace: str, summary_chars: int,
                 redact: Callable[[str], str]) -> None:
        super().__init__(client, workspace, manager.interrupt_kernel, self._alive, summary_chars, redact,
                         on_close=lambda: manager.shutdown_kernel(now=True))
        self.manager = manager
        self.pid = self._process()

    def _process(self) -> int | None:
        return getattr(getattr(self.manager, "provisioner", None), "pid", None)

    def _alive(self) -> bool:
        """Our kernel process still runs (a restart by anyone else is another process: ours is gone)."""
        return bool(self.manager.is_alive()) and self._process() == self.pid

    def lost_message(self) -> str:
        return KERNEL_RESTARTED if self.manager.is_alive() else self.died_message

    def renew(self) -> bool:
        """Before a round: a kernel that died is restarted, one restarted by someone else adopted, with a new
        client and a blank namespace (the caller sets it up again). True when the kernel was replaced."""
        if self._alive():
            return False
        try:
            if not self.manager.is_alive():
                self.manager.restart_kernel(now=True)
            client = _ready_client(self.manager)
        except Exception as exc:
            raise TaskWeaverLabError(f"The kernel had died and a new one could not be started ({exc}). Start a new "
                                     "session.") from exc
        old, self.client = self.client, client
        old.stop_channels()
        self.pid, self.state, self.subshell_id = self._process(), KernelState(), None
        return True


__all__ = ["KERNEL_DIED", "OwnKernelExecutor", "start_own_kernel", "ipc_kernel_manager"]
