"""The Executor: runs verified code in a real Jupyter kernel and turns what happened into an ``Execution``.

Outputs become nbformat outputs (``nbformat.v4.output_from_msg``) for the notebook; the LLM sees only
a bounded ``summary`` built from them plus the kernel helper's report (see ``kernel_helper.py``).
"""
from __future__ import annotations

import ast
import json
import os
import queue
import re
import threading
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from nbformat.v4 import output_from_msg

from .kernel_side import guard, kernel_helper
from .output_cap import OutputCollector
from .plugins import PluginSpec, kernel_bootstrap_code
from .secrets import scrubbed_env
from .steps import Execution, TaskWeaverLabError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HELPER_EXPR = f"__import__('sys').modules['{kernel_helper.MODULE_NAME}'].report(%d)"
# After a Stop or a timeout: how long the kernel gets to end the cell before the turn gives up on it
# (a blocking C call ignores the interrupt; the code may go on running in the kernel).
STOP_GRACE_S = 15.0
# The execute_reply follows the idle status within milliseconds; after a Stop it may never come (an
# interrupt that hit ipykernel after the cell), so we wait less for it.
REPLY_WAIT_S, REPLY_WAIT_AFTER_STOP_S = 30.0, 3.0
DEFAULT_OUTPUT_LIMIT = 100_000  # TaskWeaverLab.max_output_chars (the session sets the configured value)
KERNEL_DIED = ("The kernel died while running the code (out of memory, or killed), so its variables are gone. Restart "
               "the kernel and ask again.")
KERNEL_RESTARTED = ("The kernel was restarted while the code ran, so the variables of earlier rounds are gone. Ask "
                    "again: the next round runs on the new kernel.")


class KernelLost(TaskWeaverLabError):
    """The kernel died or was restarted under a running cell."""


@dataclass
class KernelState:
    """What a session knows about its kernel's namespace, shared by every executor kind.

    Updated from the kernel helper's report after each agent cell (a failed report keeps what was known:
    it is not an empty namespace) and read by the verifier's namespace rule and the Code Generator."""

    user_names: frozenset[str] = frozenset()      # the user's own variables: agent code must not rebind them
    variables: str = ""                           # "name: description; ..." for the prompt
    setup_messages: list[str] = field(default_factory=list)  # what kernel setup printed (a plugin that failed...)

    def remember(self, report: dict[str, Any], redact: Callable[[str], str] = lambda text: text) -> None:
        """Take in a kernel report; the variables line goes to prompts, so known secret values are redacted
        (a key held in a variable, say) as in every output the session sees."""
        if report:
            self.user_names = frozenset(report.get("user_names", ()))
            self.variables = redact("; ".join(f"{n}: {d}" for n, d in report.get("variables", {}).items()))


class Executor(Protocol):
    """Runs code in one kernel. Long-lived; per-run choices come as arguments of ``execute``."""

    state: KernelState
    workspace: str
    redact: Callable[[str], str]   # keys and tokens out of every output the session sees
    output_limit: int              # characters of one output kept (TaskWeaverLab.max_output_chars)

    def setup(self, plugins: Sequence[PluginSpec], use_guard: bool) -> None:
        """The kernel helper, the guard and the plugins, once per kernel (each piece is idempotent)."""

    def execute(self, code: str, *, agent: bool = True, timeout: float | None = None, subshell: bool = False,
                cancel: threading.Event | None = None) -> Execution:
        """Run ``code``; ``subshell`` routes it to the kernel's subshell; a set ``cancel`` refuses to start."""

    def interrupt(self) -> None: ...
    def close(self) -> None: ...


def printed_result(execution: Execution) -> str:
    """What a cell showed a person (printed text and results, no internal tags): a stalled round's answer."""
    texts: list[str] = []
    for output in execution.outputs:
        if output.get("output_type") == "stream":
            texts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            data = output.get("data", {})
            texts.append("[a figure]" if "image/png" in data else data.get("text/plain", ""))
    shown = "\n".join(t.strip("\n") for t in texts if t.strip())
    return _head_tail(shown, 2000) if shown else "(the last step printed nothing)"


def private_module_code(module_name: str, source: str, call: str) -> str:
    """Code that loads ``source`` as a private module inside the kernel and runs ``call`` on it."""
    return (
        "def _twl_boot():\n"
        "    import sys, types\n"
        f"    m = sys.modules.get({module_name!r})\n"
        "    if m is None:\n"
        f"        m = types.ModuleType({module_name!r})\n"
        f"        exec(compile({source!r}, {('<' + module_name + '>')!r}, 'exec'), m.__dict__)\n"
        f"        sys.modules[{module_name!r}] = m\n"
        f"    m.{call}\n"
        "_twl_boot()\n"
        "del _twl_boot\n"
    )


def helper_bootstrap(workspace: str, plugin_names: tuple[str, ...]) -> str:
    source = Path(kernel_helper.__file__).read_text()
    return private_module_code(kernel_helper.MODULE_NAME, source, f"install({workspace!r}, {list(plugin_names)!r})")


def install_in_kernel(bootstrap: Callable[[str, str], None], workspace: str, plugins: Sequence[PluginSpec],
                      use_guard: bool) -> None:
    """Helper, guard and plugins through an executor's ``bootstrap(code, what)`` (each piece is idempotent)."""
    names = tuple(p.name for p in plugins if p.enabled)
    bootstrap(helper_bootstrap(workspace, names), "the taskweaver_lab helper")
    if use_guard:
        source = guard.shipped_source()   # guard_rules.py + guard.py, one private module
        bootstrap(private_module_code(guard.MODULE_NAME, source, f"install({workspace!r})"), "the guard")
    if names:
        bootstrap(kernel_bootstrap_code(plugins, workspace), "the plugins")


def merge_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if last and out["output_type"] == "stream" and last["output_type"] == "stream" and last["name"] == out["name"]:
            last["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def _head_tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-limit // 3:]
    return f"{head}\n...[{len(text) - len(head) - len(tail)} chars cut]...\n{tail}"


def error_text(output: dict[str, Any]) -> str:
    """The frame in the generated cell plus the exception: what a coder needs, not library internals."""
    frames = [_ANSI.sub("", line) for line in output.get("traceback", [])]
    own = [f for f in frames if f.lstrip().startswith(("Cell In", "File <"))][:1]
    last = f"{output['ename']}: {output['evalue']}"
    return "\n".join(_head_tail(f, 600) for f in own + [last])


def summarize(outputs: list[dict[str, Any]], report: dict[str, Any], limit: int) -> str:
    """The bounded text the LLM sees; its size does not grow with the data."""
    parts: list[str] = []
    streams = "".join(o["text"] for o in outputs if o["output_type"] == "stream")
    if streams.strip():
        parts.append("[output]\n" + _head_tail(streams.rstrip(), limit // 2))
    result = report.get("result") or "".join(  # without history (subshells) the result is not in Out
        o["data"].get("text/plain", "") for o in outputs if o["output_type"] == "execute_result")
    if result:
        parts.append("[result]\n" + _head_tail(result, limit // 2))
    figures = sum(1 for o in outputs if o["output_type"] == "display_data" and "image/png" in o.get("data", {}))
    if figures:
        parts.append(f"[{figures} figure(s) displayed]")
    for o in outputs:
        if o["output_type"] == "error":
            parts.append("[error]\n" + _head_tail(error_text(o), limit // 2))
    if report.get("changed"):
        variables = report.get("variables", {})
        parts.append("[variables set] " + "; ".join(f"{n}: {variables.get(n, '?')}" for n in report["changed"]))
    if report.get("artifacts"):
        parts.append("[files written] " + ", ".join(report["artifacts"]))
    return _head_tail("\n".join(parts) or "(no output)", limit)


def redact_output(output: dict[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    if output["output_type"] == "stream":
        output["text"] = redact(output["text"])
    elif output["output_type"] == "error":
        output["evalue"] = redact(output["evalue"])
        output["traceback"] = [redact(line) for line in output["traceback"]]
    elif "text/plain" in output.get("data", {}):
        output["data"]["text/plain"] = redact(output["data"]["text/plain"])
    return output


def finish_execution(code: str, outputs: list[dict[str, Any]], report: dict[str, Any], *, redact: Callable[[str], str],
                     summary_chars: int, started: float, timed_out: bool, timeout: float | None, interrupted: bool,
                     reply_ok: bool = True, execution_count: int | None = None) -> Execution:
    """What every executor does once the code ran: redact the outputs and build the bounded summary the
    LLM sees. (The caller remembers the namespace from ``report``: ``KernelState.remember``.)"""
    outputs = [redact_output(o, redact) for o in merge_streams(outputs)]
    summary = summarize(outputs, report, summary_chars)
    if timed_out:
        summary += f"\n[interrupted: the cell ran longer than {timeout:.0f} s]"
    error = next((f"{o['ename']}: {o['evalue']}" for o in outputs if o["output_type"] == "error"), "")
    return Execution(
        ok=reply_ok and not error, code=code, outputs=tuple(outputs), summary=redact(summary),
        error=redact(error), artifacts=tuple(report.get("artifacts", ())), execution_count=execution_count,
        duration_s=time.monotonic() - started, interrupted=timed_out or interrupted,
    )


class KernelExecutor:
    """Executes on one kernel through a dedicated blocking client (one execution at a time)."""

    output_limit = DEFAULT_OUTPUT_LIMIT
    died_message = KERNEL_DIED

    def __init__(self, client: Any, workspace: str, interrupt: Callable[[], None],
                 is_alive: Callable[[], bool] = lambda: True, summary_chars: int = 1500,
                 redact: Callable[[str], str] = lambda text: text, on_close: Callable[[], None] | None = None) -> None:
        self.client, self.workspace, self._interrupt, self._is_alive = client, workspace, interrupt, is_alive
        self.summary_chars, self.redact, self._on_close = summary_chars, redact, on_close
        self.state = KernelState()
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        self.subshell_id: str | None = None    # the kernel's subshell, once created (setup code always runs there)
        self.agent_msg_id: str | None = None  # the agent execute_request being collected (what Stop aims at)

    def use_subshell(self) -> str:
        """Run agent code on an ipykernel (>= 7) subshell: it runs while the main shell is busy
        (e.g. blocked in a ``%%taskweaver`` cell waiting for this very turn), sharing the namespace.

        Only the control channel is used (the shell may be blocked). A request that arrives before
        the kernel's start() built its subshell manager fails inside the kernel without a reply
        (ipykernel 7 start-up race), so a request without a reply is sent again."""
        for _ in range(4):
            reply = self._control_request("create_subshell_request", timeout=3)
            if reply is not None:
                if reply.get("status") == "ok":
                    self.subshell_id = reply["subshell_id"]
                    return self.subshell_id
                break
        raise TaskWeaverLabError("This kernel does not support subshells (needs ipykernel >= 7).")

    def _control_request(self, kind: str, timeout: float, content: dict[str, Any] | None = None) -> dict[str, Any] | None:
        msg = self.client.session.msg(kind, content or {})
        self.client.control_channel.send(msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = self.client.get_control_msg(timeout=0.5)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return reply["content"]
        return None

    def setup(self, plugins: Sequence[PluginSpec], use_guard: bool) -> None:
        install_in_kernel(self.bootstrap, self.workspace, plugins, use_guard)

    def bootstrap(self, code: str, what: str) -> None:
        """Run setup code silently once (helper, guard, plugins); a failure is a clear error.

        On the subshell when there is one, so setup never queues behind a long user cell."""
        reply, outputs, _ = self._run(code, agent=False, timeout=60, silent=True, subshell=True)
        errors = [o for o in outputs if o["output_type"] == "error"]
        if reply.get("status") != "ok" or errors:
            detail = errors[0]["evalue"] if errors else reply.get("evalue", "unknown error")
            raise TaskWeaverLabError(f"Could not set up {what} in the kernel: {detail}")
        printed = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream").strip()
        # e.g. a plugin that failed to load inside the kernel: the session reports it and goes on
        self.state.setup_messages.extend(printed.splitlines())

    def execute(self, code: str, *, agent: bool = True, timeout: float | None = None, subshell: bool = False,
                cancel: threading.Event | None = None) -> Execution:
        started = time.monotonic()
        self._interrupted.clear()
        expressions = {"twl": HELPER_EXPR % self.summary_chars} if agent else {}
        reply, outputs, timed_out = self._run(code, agent, timeout, user_expressions=expressions, subshell=subshell)
        report = self._read_report(reply)
        if agent and not report and not timed_out:
            # ipykernel evaluates user_expressions only after a successful cell: ask again with an
            # empty silent request, or the namespace rule would forget the user's names after an error.
            report = self._read_report(self._run("", False, 30, True, expressions, subshell=subshell)[0])
        self.state.remember(report, self.redact)
        return finish_execution(code, outputs, report, redact=self.redact, summary_chars=self.summary_chars,
                                started=started, timed_out=timed_out, timeout=timeout,
                                interrupted=self._interrupted.is_set(), reply_ok=reply.get("status") == "ok",
                                execution_count=reply.get("execution_count"))

    def interrupt(self) -> None:
        self._interrupted.set()
        self._interrupt()

    def lost_message(self) -> str:
        """What the user hears when the kernel is gone under a running cell."""
        return self.died_message

    def close(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            if self._on_close:
                self._on_close()

    @staticmethod
    def _read_report(reply: dict[str, Any]) -> dict[str, Any]:
        value = (reply.get("user_expressions") or {}).get("twl") or {}
        if value.get("status") != "ok":
            return {}
        try:
            return json.loads(ast.literal_eval(value["data"]["text/plain"]))  # the repr of a JSON str
        except (ValueError, SyntaxError, KeyError):
            return {}

    def _run(self, code: str, agent: bool, timeout: float | None, silent: bool = False,
             user_expressions: dict[str, str] | None = None,
             subshell: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        subshell_id = self.subshell_id if subshell else None
        with self._lock:
            # A subshell must not write IPython history: its line numbers collide with the main shell's
            # running cell (the waiting %%taskweaver cell) and IPython then moves to a new history session.
            content = {"code": code, "silent": silent, "store_history": not silent and not subshell_id,
                       "allow_stdin": False,
                       "user_expressions": user_expressions or {}, "stop_on_error": True}
            msg = self.client.session.msg("execute_request", content, metadata={"taskweaver_lab": {"agent": agent}})
            msg_id = msg["header"]["msg_id"]
            if subshell_id:
                msg["header"]["subshell_id"] = subshell_id
            self.agent_msg_id = msg_id if agent else None
            self.client.shell_channel.send(msg)
            try:
                outputs, timed_out = self._collect(msg_id, timeout)
            finally:
                self.agent_msg_id = None
            return self._shell_reply(msg_id), outputs, timed_out

    def _collect(self, msg_id: str, timeout: float | None) -> tuple[list[dict[str, Any]], bool]:
        outputs = OutputCollector(self.output_limit, self.redact)  # capped as it arrives: never 50 MB in memory
        deadline = time.monotonic() + timeout if timeout else None
        timed_out = False
        stopped_at: float | None = None
        running = False
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=0.25)
            except queue.Empty:
                if not self._is_alive():
                    raise KernelLost(self.lost_message())
                if deadline and time.monotonic() > deadline and not timed_out:
                    timed_out = True  # interrupt once, then wait for the kernel to report the KeyboardInterrupt
                    self.interrupt()
                if self._interrupted.is_set():
                    stopped_at = stopped_at or time.monotonic()
                    if time.monotonic() - stopped_at > STOP_GRACE_S:
                        raise TaskWeaverLabError(
                            f"The step's code did not stop within {STOP_GRACE_S:.0f} s (a blocking call ignores the "
                            "interrupt); it may still be running in the kernel. Interrupt or restart the kernel if it "
                            "does not finish, then ask again.")
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"].get("execution_state") == "starting" and running:
                raise KernelLost(KERNEL_RESTARTED)  # a new kernel process says hello: our cell is gone with the old one
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # the user's own cells share this kernel's iopub
            running = True  # (a "starting" before our request ran is a kernel that just started, e.g. a new notebook's)
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                return outputs.outputs(), timed_out
            if kind in ("stream", "display_data", "execute_result", "error"):
                outputs.add(output_from_msg(msg))
            elif kind == "clear_output":
                outputs.clear()

    def _lost_while_waiting(self) -> str:
        """Why the reply will never come (the kernel is gone or restarting), checked while waiting; "" to wait on."""
        return ""

    def _shell_reply(self, msg_id: str) -> dict[str, Any]:
        stopped = self._interrupted.is_set()
        deadline = time.monotonic() + (REPLY_WAIT_AFTER_STOP_S if stopped else REPLY_WAIT_S)
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_shell_msg(timeout=0.5)
            except queue.Empty:
                lost = self._lost_while_waiting()
                if lost:
                    raise KernelLost(lost)
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]
        if stopped:  # the cell ended (idle) but the interrupt cost its reply: report it as stopped
            return {"status": "error", "ename": "KeyboardInterrupt", "evalue": "stopped"}
        raise TaskWeaverLabError("The kernel did not answer the execute request. Is it still running?")

def start_kernel(workspace: str, scrub_patterns: list[str], summary_chars: int = 1500,
                 redact: Callable[[str], str] = lambda text: text, kernel_name: str = "python3",
                 sandbox: str = "none") -> KernelExecutor:
    """A fresh kernel whose working directory is ``workspace`` (CLI, Python API), over IPC transport; a kernel
    that dies is replaced before the next round (``own_kernel.py``).

    ``sandbox="landlock"``: the kernel runs under Landlock + seccomp (``sandbox.py``);
    raises ``TaskWeaverLabError`` when this machine cannot do that."""
    from .own_kernel import start_own_kernel

    return start_own_kernel(workspace, scrubbed_env(os.environ, scrub_patterns), summary_chars, redact, kernel_name,
                            sandbox)
