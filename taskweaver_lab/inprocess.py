"""An Executor over the running IPython shell itself: ``%%taskweaver`` with no Jupyter server.

Headless runs (``jupyter nbconvert --execute``, papermill, a plain ipykernel) have nobody who could
send an execute_request to this kernel while the magic's cell runs, so agent code runs in-process:
``shell.run_cell(code)`` nested inside the magic's own cell, sharing the user namespace.

What makes a nested cell behave like a separate one:
- outputs are captured in order as nbformat outputs (stdout/stderr writes, ``display()`` calls,
  the last expression's value, the error and its traceback) instead of going to the magic cell;
- the kernel helper (``kernel_helper.py``, installed as the same private module the server-side
  executor uses) is told the cell is agent code, and its ``report()`` gives the bounded summary;
- the runtime guard (``guard.py``, same private module) is switched on only around ``run_cell``
  with ``agent_context()``, so our own LLM client and rendering code are never guarded;
- a timeout interrupts the cell with ``_thread.interrupt_main`` (KeyboardInterrupt in the main thread).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
import threading
import time
import _thread
from typing import Any, Callable, Iterator, Sequence

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from nbformat.v4 import new_output

from .kernel_side import guard, kernel_helper
from .kernel import DEFAULT_OUTPUT_LIMIT, KernelState, finish_execution, install_in_kernel
from .output_cap import cap_outputs
from .plugins import PluginSpec
from .steps import Execution, TaskWeaverLabError

GUARD_MODULE = guard.MODULE_NAME
Output = dict[str, Any]


class _StreamCatcher(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr during an agent cell; consecutive writes merge later."""

    def __init__(self, name: str, outputs: list[Output]) -> None:
        super().__init__()
        self._name, self._outputs = name, outputs

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if text:
            self._outputs.append(new_output("stream", name=self._name, text=str(text)))
        return len(text)


class _DisplayCatcher(DisplayPublisher):
    """Stands in for the shell's display publisher: ``display()`` (and inline figures) land here."""

    def __init__(self, shell: Any, outputs: list[Output]) -> None:
        super().__init__(shell=shell)
        self._outputs = outputs
        self._by_id: dict[str, int] = {}
        self._clear_pending = False

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, source: Any = None, *,
                transient: dict[str, Any] | None = None, update: bool = False, **kwargs: Any) -> None:
        output = new_output("display_data", data=data, metadata=metadata or {})
        display_id = (transient or {}).get("display_id")
        if update and display_id in self._by_id:  # display handle .update(): replace in place
            self._outputs[self._by_id[display_id]] = output
            return
        if self._clear_pending:
            self._outputs.clear()
            self._by_id.clear()
            self._clear_pending = False
        if display_id:
            self._by_id[display_id] = len(self._outputs)
        self._outputs.append(output)

    def clear_output(self, wait: bool = False) -> None:
        if wait:
            self._clear_pending = True
        else:
            self._outputs.clear()
            self._by_id.clear()


@contextlib.contextmanager
def _captured(shell: Any, code: str, outputs: list[Output]) -> Iterator[None]:
    """Route everything a nested cell shows into ``outputs`` (in order), then restore the shell."""
    quiet = DisplayHook.semicolon_at_end_of_expression(code) if code.strip() else False

    def displayhook(value: Any) -> None:
        # the nested cell's last expression; the shell's hook would send it straight to the magic cell
        if value is None or quiet:
            return
        shell.displayhook.update_user_ns(value)   # _ and Out[n], as for any cell
        shell.displayhook.fill_exec_result(value)
        data, metadata = shell.display_formatter.format(value)
        outputs.append(new_output("execute_result", data=data, metadata=metadata,
                                  execution_count=shell.execution_count))

    def showtraceback(etype: type, evalue: BaseException, stb: list[str]) -> None:
        outputs.append(new_output("error", ename=etype.__name__, evalue=str(evalue), traceback=list(stb)))

    saved = (sys.stdout, sys.stderr, sys.displayhook, shell.display_pub, shell.__dict__.get("_showtraceback"))
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout, sys.stderr = _StreamCatcher("stdout", outputs), _StreamCatcher("stderr", outputs)
    sys.displayhook, shell.display_pub, shell._showtraceback = displayhook, _DisplayCatcher(shell, outputs), showtraceback
    try:
        yield
    finally:
        sys.stdout, sys.stderr, sys.displayhook, shell.display_pub = saved[:4]
        if saved[4] is None:
            del shell._showtraceback   # back to the class's method
        else:
            shell._showtraceback = saved[4]


class InProcessExecutor:
    """The Executor protocol (``kernel.Executor``) over ``get_ipython().run_cell``."""

    def __init__(self, shell: Any, workspace: str, summary_chars: int = 1500,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.shell, self.workspace, self.summary_chars, self.redact = shell, workspace, summary_chars, redact
        self.output_limit = DEFAULT_OUTPUT_LIMIT  # characters of one output kept (the session sets the config's)
        self.state = KernelState()
        self._lock = threading.Lock()
        self._running = False
        self._interrupted = threading.Event()
        self.use_guard = False

    # --- setup: the same kernel-side pieces the server-side executor installs --------------------
    def bootstrap(self, code: str, what: str) -> None:
        """Run trusted setup code once, outside the user namespace; a failure is a clear error."""
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(code, f"<taskweaver_lab {what}>", "exec"), {"__name__": "_taskweaver_lab_setup"})
        except Exception as exc:
            raise TaskWeaverLabError(f"Could not set up {what} in this kernel: {type(exc).__name__}: {exc}") from exc
        self.state.setup_messages.extend(printed.getvalue().strip().splitlines())

    def setup(self, plugins: Sequence[PluginSpec], use_guard: bool) -> None:
        """Helper, guard and plugins, once per kernel (each piece is idempotent)."""
        self.use_guard = use_guard   # installed once per process; armed only in agent_context()
        install_in_kernel(self.bootstrap, self.workspace, plugins, use_guard)

    # --- the protocol --------------------------------------------------------------------------
    def execute(self, code: str, *, agent: bool = True, timeout: float | None = None, subshell: bool = False,
                cancel: threading.Event | None = None) -> Execution:
        """``subshell`` means nothing here (there is only this shell)."""
        started = time.monotonic()
        outputs: list[Output] = []
        with self._lock:
            self._interrupted.clear()
            timed_out = self._run(code, agent, timeout, outputs)
        report = self._report() if agent else {}
        self.state.remember(report, self.redact)
        outputs = cap_outputs(outputs, self.output_limit, self.redact)
        execution = finish_execution(code, outputs, report, redact=self.redact, summary_chars=self.summary_chars,
                                     started=started, timed_out=timed_out, timeout=timeout,
                                     interrupted=self._interrupted.is_set())
        stopped = execution.error.startswith("KeyboardInterrupt")
        if stopped and not timed_out and cancel is not None:
            cancel.set()  # Ctrl-C (or Stop) inside agent code ends the round, not just the cell
        return dataclasses.replace(execution, interrupted=True) if stopped else execution

    def interrupt(self) -> None:
        """KeyboardInterrupt in the main thread, but only while agent code runs (never in our own code)."""
        self._interrupted.set()
        if self._running:
            _thread.interrupt_main()

    def close(self) -> None:
        """Nothing to release: the kernel is the user's and outlives the session."""

    # --- internals -----------------------------------------------------------------------------
    def _run(self, code: str, agent: bool, timeout: float | None, outputs: list[Output]) -> bool:
        fired = threading.Event()

        def on_timeout() -> None:
            fired.set()
            self.interrupt()

        timer = threading.Timer(timeout, on_timeout) if timeout else None
        helper = sys.modules.get(kernel_helper.MODULE_NAME)
        self.shell.user_ns.get("Out", {}).pop(self.shell.execution_count, None)  # no stale result in report()
        with _captured(self.shell, code, outputs):
            if helper is not None:
                helper._state["force_agent"] = agent
            if timer:
                timer.start()
            try:
                with self._guarded(agent):
                    self._running = True
                    try:
                        self.shell.run_cell(code, store_history=False, silent=False)
                    finally:
                        self._running = False
            finally:
                if timer:
                    timer.cancel()
                if helper is not None:
                    helper._state["force_agent"] = False
        return fired.is_set()

    def _guarded(self, agent: bool) -> contextlib.AbstractContextManager[None]:
        module = sys.modules.get(GUARD_MODULE)
        if not agent or not self.use_guard or module is None:
            return contextlib.nullcontext()
        return module.agent_context()

    def _report(self) -> dict[str, Any]:
        helper = sys.modules.get(kernel_helper.MODULE_NAME)
        if helper is None:
            return {}
        try:
            return json.loads(helper.report(self.summary_chars))
        except Exception:  # a broken report must not lose the execution itself
            return {}

