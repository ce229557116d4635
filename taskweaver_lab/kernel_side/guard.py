"""Kernel-side runtime guard: a PEP 578 audit hook active only while agent code runs.

STDLIB ONLY: the executor runs ``shipped_source()`` (guard_rules.py, then this file) inside the user's
kernel as the private module ``_taskweaver_lab_guard`` and calls ``install(workspace=...)`` once.

It sees what code *does* (open, sockets, processes, native code, unpickling) whatever the spelling.
On for: execute_requests whose metadata says ``{"taskweaver_lab": {"agent": true}}`` (IPython
``pre_execute``/``post_execute``, which also fire for silent requests), threads they start, IPython callbacks
they register, ``agent_context()``, every ``user_expressions`` evaluation (the helper's report touches agent
objects), asyncio handles and tasks agent code creates, and the kernel's IOPub and heartbeat threads.
Tampering seen after an agent cell keeps it on for every cell (fail closed). Defence in depth against
mistakes and injected data, not an isolation boundary (``__closure__`` reaches it): the sandbox kernel is.
"""
from __future__ import annotations

import builtins
import contextlib
import contextvars
import importlib
import sys
import tempfile
import threading
import _posixsubprocess
import _thread
from typing import Any, Callable, Iterator

if __package__:   # imported from the package; shipped, guard_rules.py's source ran first in this module
    _rules = importlib.import_module(__package__ + ".guard_rules")
    (ALLOWED_COMMANDS, _HELPER_MODULE, _Paths, _Policy, _default_read_roots, _library_write_roots,
     _protected_dirs) = (_rules.ALLOWED_COMMANDS, _rules._HELPER_MODULE, _rules._Paths,
                         _rules._Policy, _rules._default_read_roots, _rules._library_write_roots, _rules._protected_dirs)

MODULE_NAME = "_taskweaver_lab_guard"
_MARK = "_taskweaver_lab_guard_installed"   # attribute on ``sys``: one hook per process

class _Controller:
    """Which threads are guarded right now; the only writer of that state."""

    def __init__(self, policy: _Policy, private_tmp: str) -> None:
        self.policy = policy
        self.get_ident = _thread.get_ident
        self.stack: list[tuple[int, bool, object]] = []   # (thread ident, agent?, token)
        self.guarded: frozenset[int] = frozenset()
        self.agent_idents: frozenset[int] = frozenset()
        self.agent_threads: set[int] = set()   # threads started by agent code, while they run
        self.machinery: set[int] = set()       # IOPub, heartbeat: guarded unless a user request runs there
        self.armed = [False]         # the hook's fast path reads only this
        self.locked_ident: int | None = None   # set when tampering was seen: that thread stays guarded
        self.blocks: list[str] = []
        self.tmp, self.saved_tmp = private_tmp, None   # agent code's tempfile folder (private, writable)
        # True in the context of agent code; asyncio handles and tasks copy it, so what agent code schedules
        # onto an event loop (the kernel's main loop after the cell, other threads' loops) stays guarded
        self.context = contextvars.ContextVar("taskweaver_lab_agent", default=False)
        self.ever_agent = False

    def _refresh(self) -> None:
        agent = {ident for ident, is_agent, _ in self.stack if is_agent}
        if self.locked_ident is not None:
            agent.add(self.locked_ident)
        user = {ident for ident, is_agent, _ in self.stack if not is_agent}
        if bool(agent) != bool(self.agent_idents):   # libraries' temp files go to the private folder meanwhile
            self.saved_tmp, tempfile.tempdir = (tempfile.tempdir, self.tmp) if agent else (None, self.saved_tmp)
        self.agent_idents = frozenset(agent)
        self.guarded = frozenset(agent | (self.machinery - user))
        self.ever_agent = self.ever_agent or bool(agent)
        self.armed[0] = bool(self.guarded or self.agent_threads or self.ever_agent)

    def enter(self, agent: bool) -> object:
        token = object()
        self.stack.append((self.get_ident(), agent, token))
        self._refresh()
        return token

    def exit(self, token: object) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][2] is token:
                del self.stack[index]
                break
        self._refresh()

    def exit_last(self) -> bool:
        """Pop the innermost cell entry of this thread; True if it was an agent cell."""
        ident = self.get_ident()
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == ident:
                agent = self.stack[index][1]
                del self.stack[index]
                self._refresh()
                return agent
        return False

    def is_guarded(self, ident: int) -> bool:
        return ident in self.guarded or ident in self.agent_threads or self.context.get()

    def is_agent(self, ident: int) -> bool:
        return ident in self.agent_idents or ident in self.agent_threads

    def wrap_thread_start(self, start: Callable[..., int]) -> Callable[..., int]:
        """A ``_thread.start_new_thread`` that marks threads started by agent code as guarded, and the
        IOPub and heartbeat threads as machinery.

        Python 3.11 raises no audit event for thread creation, so the starter itself is wrapped."""
        controller = self

        def start_new_thread(function: Callable[..., Any], args: tuple = (), kwargs: dict | None = None) -> int:
            agent = controller.is_agent(controller.get_ident())
            machinery = _is_machinery(function)
            if not (agent or machinery):
                return start(function, args, kwargs or {})

            def guarded_thread(*a: Any, **k: Any) -> Any:
                ident = controller.get_ident()
                (controller.agent_threads if agent else controller.machinery).add(ident)
                controller.context.set(agent)
                controller._refresh()
                try:
                    return function(*a, **k)
                finally:
                    controller.agent_threads.discard(ident)
                    controller.machinery.discard(ident)
                    controller._refresh()

            return start(guarded_thread, args, kwargs or {})

        return start_new_thread

    def wrap_fork_exec(self, fork_exec: Callable[..., int]) -> Callable[..., int]:
        controller = self

        def guarded_fork_exec(*args: Any) -> int:
            if controller.is_guarded(controller.get_ident()):
                try:
                    controller.policy.on_fork_exec(args)
                except PermissionError as exc:
                    controller.blocks.append(str(exc))
                    raise
            return fork_exec(*args)

        return guarded_fork_exec

    def make_hook(self) -> Callable[[str, tuple], None]:
        armed, get_ident, is_guarded, decide, blocks = (
            self.armed, self.get_ident, self.is_guarded, self.policy.decide, self.blocks)

        def taskweaver_lab_audit_hook(event: str, args: tuple) -> None:
            if not armed[0]:
                return                     # fast path: no agent code anywhere in the process
            if not is_guarded(get_ident()):
                return
            try:
                decide(event, args)
            except PermissionError as exc:
                blocks.append(str(exc))
                raise

        return taskweaver_lab_audit_hook


def _is_machinery(function: Any) -> bool:
    """True for ``Thread._bootstrap`` of the kernel's IOPub and heartbeat threads, which run no user code: what is
    handed to them (``sys.stdout.pub_thread.schedule(f)``) meets the guard. Callables scheduled onto the event
    loops of the other kernel threads (control, shell channel, subshells) carry the agent's context instead."""
    thread = getattr(function, "__self__", None)
    return isinstance(thread, threading.Thread) and thread.name in ("IOPub", "Heartbeat")


_agent_enter: Callable[[], object] | None = None
_agent_exit: Callable[[object], None] | None = None


def install(workspace: str, extra_read_roots: list[str] | None = None) -> None:
    """Install the audit hook once per process and hook it to IPython's cell events if present."""
    global _agent_enter, _agent_exit
    if getattr(sys, _MARK, False):
        return
    private_tmp = tempfile.mkdtemp(prefix="twl-agent-tmp-")
    paths = _Paths(workspace, _default_read_roots() + list(extra_read_roots or []),
                   _library_write_roots() + [private_tmp], _protected_dirs())
    controller = _Controller(_Policy(paths, sys._getframe), private_tmp)
    controller.machinery.update(t.ident for t in threading.enumerate() if t.ident and _is_machinery(t.run))
    sys.addaudithook(controller.make_hook())
    starter = controller.wrap_thread_start(_thread.start_new_thread)
    threading._start_new_thread = _thread.start_new_thread = _thread.start_new = starter  # type: ignore[attr-defined]
    _posixsubprocess.fork_exec = controller.wrap_fork_exec(_posixsubprocess.fork_exec)
    setattr(sys, _MARK, True)

    def enter() -> object:   # plain closures: no bound method leads back to the controller
        return controller.enter(True), controller.context.set(True)

    def leave(token: Any) -> None:
        controller.exit(token[0])
        controller.context.reset(token[1])

    _agent_enter, _agent_exit = enter, leave
    _connect_ipython(controller)
    controller._refresh()


@contextlib.contextmanager
def agent_context() -> Iterator[None]:
    """Guard active inside (in-process agent execution, the kernel helper's report)."""
    if _agent_enter is None or _agent_exit is None:
        raise RuntimeError("taskweaver_lab guard: call install(workspace) first")
    token = _agent_enter()
    try:
        yield
    finally:
        _agent_exit(token)


def _connect_ipython(controller: _Controller) -> None:
    ipython = sys.modules.get("IPython")  # the kernel's own; kernel-side code imports only the stdlib
    shell = ipython.get_ipython() if ipython is not None else None
    kernel = getattr(shell, "kernel", None)
    if shell is None or kernel is None:
        return   # plain IPython / no kernel: only agent_context() switches the guard on
    get_parent, getframe, stderr = kernel.get_parent, sys._getframe, sys.stderr   # captured: later patches don't count
    callbacks, mine = shell.events.callbacks, {}
    tampered = _tamper_check(shell, kernel, mine)
    known: set[int] = set()   # ids of the callbacks registered when the agent cell started
    contexts: list[tuple[int, Any]] = []   # (thread, token of the context flag set by pre)

    def is_agent_request() -> bool:
        metadata = (get_parent() or {}).get("metadata") or {}
        marker = metadata.get("taskweaver_lab") or {}
        return isinstance(marker, dict) and marker.get("agent") is True

    def pre() -> None:
        agent = is_agent_request() or controller.locked_ident is not None
        if agent:
            known.clear()
            known.update(id(cb) for cbs in callbacks.values() for cb in cbs)
        controller.enter(agent)
        contexts.append((controller.get_ident(), controller.context.set(agent)))   # a user cell: not by inheritance

    def post() -> None:
        code = getframe(2).f_code   # 0 post, 1 EventManager.trigger, 2 its caller
        if not (code.co_name in ("do_execute", "run_cell") and code.co_filename.endswith(
                ("ipykernel/ipkernel.py", "IPython/core/interactiveshell.py"))):
            controller.locked_ident = controller.get_ident()   # called by anything but IPython: refuse, stay on
            controller._refresh()
            return
        agent_cell = controller.is_agent(controller.get_ident())
        if agent_cell:                      # checked while still guarded: agent objects touched here stay boxed
            for cbs in callbacks.values():  # callbacks the cell registered run guarded (e.g. matplotlib's flush)
                cbs[:] = [cb if id(cb) in known or cb is pre or cb is post else _guarded_callable(cb, controller)
                          for cb in cbs]
            if tampered():
                controller.locked_ident = controller.get_ident()
                print("taskweaver_lab guard: tampering detected; the guard now stays on for every cell of this "
                      "kernel. Restart the kernel to reset it.", file=stderr)
        controller.exit_last()
        ident = controller.get_ident()
        for index in range(len(contexts) - 1, -1, -1):
            if contexts[index][0] == ident:
                try:
                    controller.context.reset(contexts.pop(index)[1])
                except ValueError:   # another context than pre's: end the flag here
                    controller.context.set(False)
                break
        if agent_cell and controller.blocks:
            print(f"taskweaver_lab guard blocked {len(controller.blocks)} operation(s) in this agent cell:\n  "
                  + "\n  ".join(controller.blocks[:5]), file=stderr)
        if not controller.stack:
            controller.blocks.clear()

    mine.update(pre=pre, post=post, expressions=_wrap_kernel(controller, shell, kernel))
    shell.events.register("pre_execute", pre)
    shell.events.register("post_execute", post)


def _wrap_kernel(controller: _Controller, shell: Any, kernel: Any) -> Callable[[dict], dict]:
    """Every ``user_expressions`` evaluation runs guarded."""
    evaluate = shell.user_expressions

    def guarded_expressions(expressions: dict) -> dict:
        token, seen = controller.enter(True), len(controller.blocks)
        try:
            return evaluate(expressions)
        finally:
            controller.exit(token)
            del controller.blocks[seen:]   # reported in the evaluated text itself

    shell.user_expressions = guarded_expressions
    return guarded_expressions


def _tamper_check(shell: Any, kernel: Any, mine: dict) -> Callable[[], bool]:
    """True once anything our callbacks and the report's path rely on was changed."""
    original, events, callbacks = type(kernel).get_parent, shell.events, shell.events.callbacks
    modules, importer = sys.modules, builtins.__import__
    trusted = {name: modules.get(name) for name in (MODULE_NAME, _HELPER_MODULE, "sys", "builtins")}
    report = getattr(trusted[_HELPER_MODULE], "report", None)

    def tampered() -> bool:
        return (type(kernel).get_parent is not original or "get_parent" in vars(kernel) or "set_parent" in vars(kernel)
                or shell.events is not events or events.callbacks is not callbacks
                or not any(cb is mine["pre"] for cb in callbacks.get("pre_execute", ()))
                or not any(cb is mine["post"] for cb in callbacks.get("post_execute", ()))
                or vars(shell).get("user_expressions") is not mine["expressions"]
                or sys.modules is not modules or builtins.__import__ is not importer
                or any(m is not None and modules.get(n) is not m for n, m in trusted.items())
                or (report is not None and vars(trusted[_HELPER_MODULE]).get("report") is not report))

    return tampered


def _guarded_callable(function: Callable[..., Any], controller: _Controller) -> Callable[..., Any]:
    def guarded_callback(*args: Any, **kwargs: Any) -> Any:
        token = controller.enter(True)
        try:
            return function(*args, **kwargs)
        finally:
            controller.exit(token)

    guarded_callback.__wrapped__ = function   # type: ignore[attr-defined]  (IPython's unregister finds it)
    return guarded_callback


def shipped_source() -> str:
    """guard_rules.py then this file, as the source of one module (what the executor runs in the kernel)."""
    from pathlib import Path

    here = Path(__file__).parent
    own = (here / "guard.py").read_text().replace("from __future__ import annotations\n", "", 1)
    return (here / "guard_rules.py").read_text() + "\n" + own
