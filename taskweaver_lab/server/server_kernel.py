"""The notebook's running kernel, seen from the server: a dedicated client, interrupt, liveness.

The server's kernel manager is asyncio code on the server loop; turns run in worker threads. So
Stop is fire and forget (a plain thread asks the kernel, or the loop signals it: Stop must never wait
on the loop it runs on), and liveness checks, made from worker threads only, wait for the loop's answer.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_core.utils import ensure_async

from ..kernel import KERNEL_RESTARTED, KernelExecutor
from ..kernel_side import kernel_helper
from ..steps import Execution, TaskWeaverLabError
from .gateway_kernel import GatewayBlockingClient, is_gateway

log = logging.getLogger("taskweaver_lab.kernel")

# Stop, run inside the kernel: the helper interrupts our agent cell only while its own code runs
# (kernel_helper.stop). A subshell's thread gets KeyboardInterrupt (effective at the next Python
# bytecode: a pure-Python loop stops, a blocking C call such as time.sleep finishes first); the main
# thread gets SIGINT, which also ends a blocking call.
# A kernel JupyterLab just started answers in about a second, but takes over 10 s on a loaded machine (measured:
# load 16 on 2 CPUs, benchmarks/scale.py --server): the first turn waits this long for it.
CONNECT_TIMEOUT_S = 30.0
_SET_UP = "print('known' if {module!r} in __import__('sys').modules else 'fresh')"
_STOP = "print(getattr(__import__('sys').modules.get({module!r}), 'stop', lambda m: 'no helper')({msg_id!r}))"


class ServerKernel:
    """One running kernel of the server's kernel manager, by id."""

    def __init__(self, kernel_manager: Any, kernel_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.kernel_manager, self.kernel_id, self.loop = kernel_manager, kernel_id, loop
        self.subshell_id: str | None = None
        self.process_key = self._current_process()

    @classmethod
    def find(cls, kernel_manager: Any, kernel_id: str, loop: asyncio.AbstractEventLoop) -> "ServerKernel":
        if not kernel_id or kernel_id not in kernel_manager:
            raise LookupError(f"Kernel {kernel_id or '(none)'} is not running on this server. Start or select the "
                              "notebook's kernel, then send the message again.")
        return cls(kernel_manager, kernel_id, loop)

    @property
    def manager(self) -> Any:
        return self.kernel_manager.get_kernel(self.kernel_id)

    def _current_process(self) -> tuple[int, int | None]:
        # A restart keeps the kernel id but starts a new process (new provisioner): the session must
        # set the kernel up again, and code that ran in the old process is gone with it.
        provisioner = getattr(self.manager, "provisioner", None)
        return id(provisioner), getattr(provisioner, "pid", None)

    @property
    def key(self) -> bytes:
        return bytes(self.manager.session.key or b"")

    def same_process(self, other: "ServerKernel") -> bool:
        return other.kernel_id == self.kernel_id and other.process_key == self.process_key

    def client(self, timeout: float = CONNECT_TIMEOUT_S) -> BlockingKernelClient:
        """A dedicated blocking client whose iopub is subscribed before it is used."""
        if is_gateway(self.kernel_manager):  # no connection file here: the gateway's websocket (gateway_kernel.py)
            client: Any = GatewayBlockingClient(self.kernel_manager, self.kernel_id, timeout)
        else:
            client = BlockingKernelClient()
            # session=False: only then does the info carry the signing key (session=True carries a Session object instead)
            client.load_connection_info(self.manager.get_connection_info(session=False))
            client.start_channels()
        try:
            wait_for_iopub(client, timeout)
        except TaskWeaverLabError:
            client.stop_channels()
            raise
        return client

    def interrupt(self) -> None:
        future = asyncio.run_coroutine_threadsafe(ensure_async(self.kernel_manager.interrupt_kernel(self.kernel_id)), self.loop)
        future.add_done_callback(lambda f: f.exception() and log.warning("interrupting %s failed: %s", self.kernel_id, f.exception()))

    def is_alive(self) -> bool:
        """(worker threads only) False once the kernel is gone or its process died."""
        if self.kernel_id not in self.kernel_manager or self._current_process() != self.process_key:
            return False  # gone, or restarted (e.g. the server's auto-restart after a crash)
        future = asyncio.run_coroutine_threadsafe(ensure_async(self.manager.is_alive()), self.loop)
        try:
            return bool(future.result(timeout=10))
        except Exception:
            return True  # a slow loop is not a dead kernel

    def stop_agent(self, msg_id: str) -> bool:
        """(a worker thread) Interrupt our agent cell ``msg_id`` if it still runs, from a throwaway subshell
        (the main shell may be busy: a %%taskweaver cell waiting for this very turn). False when that failed."""
        try:
            client = self.client(timeout=10.0)  # Stop must not wait long for a kernel that does not answer
        except TaskWeaverLabError as exc:
            log.warning("could not stop %s in kernel %s: %s", msg_id, self.kernel_id, exc)
            return False
        stopper = ServerKernelExecutor(self, client, ".", 0, lambda text: text)
        try:
            subshell = stopper.use_subshell()
            stopper.bootstrap(_STOP.format(module=kernel_helper.MODULE_NAME, msg_id=msg_id), "the stop")
            log.debug("stop of %s in kernel %s: %s", msg_id, self.kernel_id, stopper.state.setup_messages)
            stopper._control_request("delete_subshell_request", 3, {"subshell_id": subshell})
            return True
        except TaskWeaverLabError as exc:
            log.warning("could not stop %s in kernel %s: %s", msg_id, self.kernel_id, exc)
            return False
        finally:
            client.stop_channels()


def wait_for_iopub(client: BlockingKernelClient, timeout: float = 10.0) -> None:
    """Avoid ZMQ's slow joiner: until iopub is subscribed, the first execution's messages are lost.

    Asks on the control channel (answered even while the main shell runs a long user cell) until
    iopub delivers something.
    """
    deadline, wait = time.monotonic() + timeout, 0.2
    while time.monotonic() < deadline:
        client.control_channel.send(client.session.msg("kernel_info_request", {}))
        try:
            client.get_iopub_msg(timeout=wait)
            return
        except queue.Empty:
            wait = min(1.0, wait * 1.5)  # a slow kernel gets fewer requests to catch up on
    raise TaskWeaverLabError(f"The kernel does not answer (no message from it in {timeout:.0f} s). Is it still running? "
                             "Restart it if it is stuck, then send the message again.")


class ServerKernelExecutor(KernelExecutor):
    """The executor on a server kernel: Stop interrupts only while our code runs.

    Interrupting otherwise would hit whatever the user is running in the same kernel.
    """

    def __init__(self, kernel: ServerKernel, client: BlockingKernelClient, workspace: str, summary_chars: int,
                 redact: Any) -> None:
        super().__init__(client, workspace, kernel.interrupt, kernel.is_alive, summary_chars, redact)
        self.kernel = kernel
        self.running = False
        self.fresh_kernel = True  # no session ran in this kernel process before ours (attach_executor checks)

    def execute(self, code: str, *, agent: bool = True, timeout: float | None = None, subshell: bool = False,
                cancel: threading.Event | None = None) -> Execution:
        self.running = True  # before looking at cancel: a Stop either sees us running or we see its cancel
        try:
            if agent and cancel is not None and cancel.is_set():
                return Execution(ok=False, code=code, summary="Stopped before running.",
                                 error="KeyboardInterrupt: stopped", interrupted=True)
            return super().execute(code, agent=agent, timeout=timeout, subshell=subshell, cancel=cancel)
        finally:
            self.running = False

    def _restarting(self) -> bool:
        """(worker thread) The server is restarting this kernel, or already runs a new process under its id."""
        kernel = self.kernel
        if kernel.kernel_id not in kernel.kernel_manager:
            return False  # shut down: gone, not restarted
        return bool(getattr(kernel.manager, "shutting_down", False)) or kernel._current_process() != kernel.process_key

    def lost_message(self) -> str:
        return KERNEL_RESTARTED if self._restarting() else self.died_message

    def _lost_while_waiting(self) -> str:
        """A restart under our cell is noticed at once: the server interrupts the kernel first, so the cell ends
        (error, idle), then the old process exits before its execute_reply is sent."""
        return self.lost_message() if self._restarting() or not self._is_alive() else ""

    def kernel_was_set_up(self) -> bool:
        """(worker thread, before setup) Whether this kernel process already has our helper: False for a kernel
        that never served a session (a server restart, a kernel restarted while the server was away)."""
        before = len(self.state.setup_messages)
        self.bootstrap(_SET_UP.format(module=kernel_helper.MODULE_NAME), "the kernel check")
        printed = self.state.setup_messages[before:]
        del self.state.setup_messages[before:]
        return "known" in printed

    def interrupt(self) -> None:
        if not self.running:
            return  # between steps: the round's cancel flag keeps the next step from starting
        self._interrupted.set()
        msg_id = self.agent_msg_id
        if msg_id is None:
            return  # our cell already ended: an interrupt now would hit the kernel's bookkeeping or a user's cell
        if self.kernel.subshell_id is None:  # ipykernel < 7: no second channel to ask from, signal the kernel
            self._interrupt()
            return
        # a plain thread: Stop comes from the server loop, a timeout from the turn's worker thread
        threading.Thread(target=self._stop, args=(msg_id,), name="taskweaver-stop", daemon=True).start()

    def _stop(self, msg_id: str) -> None:
        """Stop through a throwaway subshell; when the kernel gives none (e.g. busy with our cell), the kernel
        manager's SIGINT, but only while that same cell of ours is still the one running."""
        if not self.kernel.stop_agent(msg_id) and self.running and self.agent_msg_id == msg_id:
            log.info("stopping %s in kernel %s with the kernel manager's interrupt", msg_id, self.kernel.kernel_id)
            self._interrupt()

def attach_executor(kernel: ServerKernel, workspace: str, app: Any) -> ServerKernelExecutor:
    """(worker thread) An executor on the running kernel; setup code will use a subshell when there is one."""
    try:
        client = kernel.client()
    except Exception as exc:
        log.exception("connecting to kernel %s failed", kernel.kernel_id)
        raise TaskWeaverLabError(f"Cannot connect to kernel {kernel.kernel_id}: {exc}") from exc
    executor = ServerKernelExecutor(kernel, client, workspace, app.config.summary_chars, app._redact)
    try:
        kernel.subshell_id = executor.use_subshell()
    except TaskWeaverLabError:
        kernel.subshell_id = None  # ipykernel < 7: sidebar turns still work, the magic runs in-process
    executor.fresh_kernel = not executor.kernel_was_set_up()
    return executor
