"""Turns on the server: one Session per notebook, one worker thread per turn, events fanned out.

Data flow: a request (sidebar or ``%%taskweaver``) -> ``TurnManager.start`` checks it and binds the
turn to the notebook path + kernel id captured *now* -> the notebook's ``Session`` (created on the
running kernel, reused by every later turn of that notebook, magic or sidebar) -> ``session.chat`` in a
worker thread -> each Step becomes an event envelope, handed to the server loop
(``call_soon_threadsafe``) where it is stored on the turn (long-poll) and written to every websocket
subscribed to that path.

Where agent code runs: sidebar turns run on the kernel's main shell, like a cell the user ran, because
only the main shell can be interrupted (SIGINT reaches the main thread only: a ``time.sleep`` on an
ipykernel subshell cannot be stopped). Magic turns must run on a subshell: the main shell is busy with
the ``%%taskweaver`` cell that waits for this very turn. Setup code always uses the subshell when the
kernel has one, so it never queues behind a long user cell.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..agent import Decision
from ..config import NO_ENDPOINT_HELP, SETTINGS_HINT, TaskWeaverLab
from ..llm import UserChoices
from ..notebook import Cell, Recorder, read_notebook, steps_from_notebook
from ..plugins import PluginSet, load_plugins, note_kernel_setup, set_up_kernel
from ..secrets import redact
from ..session import RoundOptions, Session, TaskWeaverApp
from ..steps import Draft, Notice, Step, TaskWeaverLabError, Usage, Verdict
from .rtc import AnchoredFileRecorder, RTCRecorder, plain
from .server_kernel import ServerKernel, ServerKernelExecutor, attach_executor
from ..auto_install import enable as enable_auto_install
from .gateway_kernel import is_gateway

log = logging.getLogger("taskweaver_lab.turns")
Envelope = dict[str, Any]
Subscriber = Callable[[Envelope], None]
KEEP_FINISHED_TURNS_S = 600.0
DELTA_INTERVAL_S = 0.05  # streamed text: at most one websocket message per role per 50 ms


class TurnError(Exception):
    """A refused request: HTTP status + one actionable sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TurnRequest:
    path: str                       # API path of the notebook, relative to the server root
    kernel_id: str
    message: str
    approval: str = "auto"          # "auto" | "approve"
    record: str = "server"          # the sidebar says "frontend" when the notebook is open in it
    origin: str = "sidebar"         # "sidebar" | "magic"
    after_cell_id: str | None = None  # magic: cells go directly below this cell
    new: bool = False               # magic --new: a fresh session for this notebook
    plugins_only: bool = False
    choices: UserChoices = UserChoices()  # the user's model names / endpoint (sidebar settings), this turn only


class ApprovalGate:
    """Approval mode: the worker thread waits here until ``POST turns/<id>/approve`` (or Stop)."""

    def __init__(self, publish: Callable[[dict[str, Any]], None]) -> None:
        self.publish = publish
        self._released = threading.Event()
        self._decision: Decision = ("skip", "")
        self.pending = False

    def wait(self, draft: Draft, verdict: Verdict) -> Decision:
        self._released.clear()
        self.pending = True
        self.publish({"kind": "approval", "draft": draft.to_json(), "verdict": verdict.to_json()})
        self._released.wait()
        self.pending = False
        return self._decision

    def decide(self, action: str, code: str = "") -> None:
        if action not in ("run", "skip", "edit"):
            raise TurnError(400, f"Unknown approval action {action!r}: use run, skip or edit.")
        if action == "edit" and not code.strip():
            raise TurnError(400, "An edit needs the edited code in 'code'.")
        if not self.pending:
            raise TurnError(409, "This turn is not waiting for an approval.")
        self._decision = (action, code)  # type: ignore[assignment]
        self._released.set()

    def cancel(self) -> None:
        self._decision = ("skip", "")
        self._released.set()


@dataclass
class Turn:
    id: str
    path: str
    kernel_id: str
    origin: str
    record: str = "file"
    session_id: str = ""
    events: list[Envelope] = field(default_factory=list)
    done: bool = False
    finished_at: float = 0.0
    gate: ApprovalGate | None = None
    session: Session | None = None
    cancel: threading.Event = field(default_factory=threading.Event)  # Stop; becomes the round's own flag
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    deltas: "DeltaBuffer" = field(default_factory=lambda: DeltaBuffer(lambda event: None))

    def accepted(self) -> dict[str, str]:
        return {"turn_id": self.id, "session_id": self.session_id, "record": self.record}


@dataclass
class NotebookSession:
    session: Session
    kernel: ServerKernel
    executor: ServerKernelExecutor
    plugins: Any = None                                   # the plugin set its kernel was set up with
    notices: list[str] = field(default_factory=list)      # said at the start of its next turn (plugin problems)


def require_endpoint(config: TaskWeaverLab, choices: UserChoices) -> None:
    """412 with the first-run help when neither the server nor the user's own settings name an LLM endpoint."""
    if not (config.endpoint_configured or choices.base_url):
        raise TurnError(412, NO_ENDPOINT_HELP + (SETTINGS_HINT if config.allow_user_base_url else ""))


class TurnManager:
    """The registry of per-notebook sessions and running turns (lives on the server loop)."""

    def __init__(self, app: TaskWeaverApp, serverapp: Any, loop: asyncio.AbstractEventLoop,
                 ydoc: Callable[[], Any | None] = lambda: None, admit: Callable[[ServerKernel], None] | None = None) -> None:
        self.app, self.serverapp, self.loop, self.ydoc = app, serverapp, loop, ydoc
        self.admit = admit or (lambda kernel: None)  # (worker thread) raises TurnError to refuse a kernel: sandbox=landlock
        self.sessions: dict[str, NotebookSession] = {}
        self.turns: dict[str, Turn] = {}
        self.active: dict[str, str] = {}            # path -> id of its running turn
        self.subscribers: dict[str, set[Subscriber]] = {}
        self._plugins_lock = threading.Lock()
        self.on_finished: Callable[[Turn, TurnRequest, dict[str, Any]], None] | None = None  # (worker) usage log

    # --- requests -------------------------------------------------------------------------
    async def start(self, request: TurnRequest) -> Turn:
        self._check_request(request)
        os_path = self.os_path(request.path)
        try:
            kernel = ServerKernel.find(self.serverapp.kernel_manager, request.kernel_id, self.loop)
        except LookupError as exc:
            raise TurnError(404, str(exc)) from None
        self._prune()
        turn = Turn(uuid.uuid4().hex[:12], request.path, request.kernel_id, request.origin)
        turn.deltas = DeltaBuffer(lambda event: self.loop.call_soon_threadsafe(self._publish, turn, event))
        self.active[request.path] = turn.id  # reserved before any await: a second turn gets 409
        self.turns[turn.id] = turn
        try:
            # run_in_executor, not to_thread: a copied context would hand jupyter_client's blocking
            # calls the server's (running) loop
            entry = await self.loop.run_in_executor(None, self._session_for, request, os_path, kernel)
        except BaseException as exc:
            self._finish(turn)
            raise TurnError(409, str(exc)) if isinstance(exc, TaskWeaverLabError) else exc
        turn.session, turn.session_id = entry.session, entry.session.id
        recorder = self._recorder(turn, request, os_path)
        if request.approval == "approve":
            turn.gate = ApprovalGate(lambda event: self._publish_threadsafe(turn, event))
        threading.Thread(target=self._run, args=(turn, entry, recorder, request), name=f"taskweaver-turn-{turn.id}",
                         daemon=True).start()
        return turn

    def _check_request(self, request: TurnRequest) -> None:
        if not request.message.strip():
            raise TurnError(400, "The message is empty.")
        require_endpoint(self.app.config, request.choices)
        running = self.active.get(request.path)
        if running is not None:
            raise TurnError(409, f"A turn is already running on {request.path} (turn {running}): wait for it or stop it.")

    def os_path(self, api_path: str, must_exist: bool = True) -> str:
        """The file behind an API path; unknown paths are a 404 with the path named."""
        manager = self.serverapp.contents_manager
        clean = api_path.strip("/")
        if not clean.endswith(".ipynb"):
            raise TurnError(400, f"{api_path!r} is not a notebook path (expected a .ipynb path relative to the server root).")
        try:
            os_path = manager._get_os_path(clean) if hasattr(manager, "_get_os_path") else str(Path(manager.root_dir) / clean)
        except Exception:
            raise TurnError(404, f"Notebook {api_path} is outside the server's root directory.") from None
        if must_exist and not Path(os_path).is_file():
            raise TurnError(404, f"Notebook {api_path} does not exist (was it renamed or deleted?). Reopen it and retry.")
        return os_path

    def stop(self, turn_id: str) -> dict[str, Any]:
        turn = self._turn(turn_id)
        if turn.done:
            return {"turn_id": turn_id, "stopped": False}
        turn.cancel.set()  # a Stop before the worker starts is applied when it does
        if turn.session is None:
            return {"turn_id": turn_id, "stopped": True}
        if turn.gate is not None:
            turn.gate.cancel()
        turn.session.executor.interrupt()  # only if our code runs; the cancel flag ends the LLM stream
        return {"turn_id": turn_id, "stopped": True}

    def approve(self, turn_id: str, action: str, code: str = "") -> dict[str, Any]:
        turn = self._turn(turn_id)
        if turn.gate is None or turn.done:
            raise TurnError(409, "This turn is not waiting for an approval.")
        turn.gate.decide(action, code)
        return {"turn_id": turn_id, "action": action}

    def _turn(self, turn_id: str) -> Turn:
        turn = self.turns.get(turn_id)
        if turn is None:
            raise TurnError(404, f"Unknown turn {turn_id} (finished turns are forgotten after {KEEP_FINISHED_TURNS_S:.0f} s).")
        return turn

    # --- sessions and recorders -------------------------------------------------------------
    def _session_for(self, request: TurnRequest, os_path: str, kernel: ServerKernel) -> NotebookSession:
        """(worker thread) The notebook's session on this kernel: reused, re-attached or created."""
        self.admit(kernel)
        self._refresh_plugins()
        entry = self.sessions.get(request.path)
        if entry is None or not entry.kernel.same_process(kernel) or request.new:
            entry = self._new_session(request, os_path, kernel, entry)
        elif entry.plugins is not self.app.plugins:  # the plugin files changed since its kernel loaded them
            entry.notices += set_up_kernel(entry.executor, self.app.plugins, self.app.config.guard)
            entry.plugins = self.app.plugins
        if request.origin == "magic" and entry.kernel.subshell_id is None:
            raise TaskWeaverLabError("This kernel has no subshells (needs ipykernel >= 7), so %%taskweaver cannot "
                                     "join the server session without deadlocking; it runs in-process instead.")
        return entry

    def _new_session(self, request: TurnRequest, os_path: str, kernel: ServerKernel,
                     entry: NotebookSession | None) -> NotebookSession:
        executor = attach_executor(kernel, str(Path(os_path).parent), self.app)
        remote = is_gateway(kernel.kernel_manager)  # auto_install (opt-in) cannot reach a gateway's kernels: it says so
        argv = [] if remote else list(getattr(kernel.manager.kernel_spec, "argv", None) or [])
        enable_auto_install(executor, self.app.config, argv)
        carry_over = entry.session if entry is not None and not request.new else None
        if entry is not None:
            entry.session.close()
        # recorder=None: each turn brings its own (RTC, the sidebar, the file), see _recorder
        session = self.app.create_session(notebook=os_path, executor=executor, recorder=None, new=request.new,
                                          carry_over=carry_over)
        # another kernel (a restart), or a chat resumed from the record on a kernel that never ran it (the
        # server restarted): the chat goes on, its variables are gone, and the next round says so first
        if carry_over is not None or (executor.fresh_kernel and not request.new):
            session.kernel_replaced()
        failed = note_kernel_setup(self.app.plugins, executor.state.setup_messages)  # out of the prompts from now on
        self.sessions[request.path] = NotebookSession(session, kernel, executor, self.app.plugins,
                                                      list(self.app.load_errors) + failed)
        return self.sessions[request.path]

    def _refresh_plugins(self) -> None:
        """(worker thread) Load the plugins again when their files changed (the index follows the new set)."""
        with self._plugins_lock:
            current = self.app.plugins
            if not isinstance(current, PluginSet) or not current.changed():
                return
            plugins, errors = load_plugins(self.app.config.plugin_dirs, self.app.config.load_builtin_plugins)
            folders = tuple(str(Path(f).expanduser()) for f in current.folders)
            self.app.load_errors = errors + [e for e in self.app.load_errors if not e.startswith(folders)]
            self.app.plugins = plugins
            log.info("taskweaver_lab: plugin files changed; %d plugins loaded again", len(plugins))

    def _recorder(self, turn: Turn, request: TurnRequest, os_path: str) -> Recorder:
        """RTC when the shared document exists; the sidebar when it has the notebook open; else the file."""
        ydoc = self.ydoc()
        notify = lambda text: self._publish_threadsafe(turn, Notice("warning", text).to_json())  # noqa: E731
        magic_has_viewer = request.origin == "magic" and bool(self.subscribers.get(request.path))
        if ydoc is not None:
            turn.record = "rtc"
            inner: Recorder | None = RTCRecorder(ydoc, request.path.strip("/"), os_path, self.loop, request.after_cell_id, notify)
        elif request.record == "frontend" or magic_has_viewer:
            turn.record, inner = "frontend", None
        else:
            turn.record = "file"
            inner = AnchoredFileRecorder(os_path, request.after_cell_id, notify=notify)
        return EventRecorder(inner, lambda event: self._publish_threadsafe(turn, event), request.after_cell_id)

    # --- the worker -----------------------------------------------------------------------
    def _run(self, turn: Turn, entry: NotebookSession, recorder: Recorder, request: TurnRequest) -> None:
        session, usage = entry.session, [Usage()]
        publish = lambda event: self._publish_threadsafe(turn, event)  # noqa: E731

        def on_event(step: Step) -> None:
            if step.kind == "llm_call":
                usage[0] = usage[0].add(step)  # type: ignore[arg-type]
            publish(step.to_json())

        state, error = "finished", ""
        publish({"kind": "turn", "state": "started", "origin": turn.origin, "record": turn.record})
        for text in entry.notices:  # plugins that are not offered, once per session (the magic shows them too)
            publish(Notice("warning", f"Not loaded: {text}").to_json())
        entry.notices = []
        try:
            if turn.cancel.is_set():
                raise TaskWeaverLabError("Stopped before the turn started.")
            options = RoundOptions(choices=request.choices, recorder=recorder, cancel=turn.cancel,
                                   plugins_only=request.plugins_only, subshell=request.origin == "magic")
            session.chat(request.message, on_event=on_event, approve=turn.gate.wait if turn.gate else None,
                         options=options)
        except TaskWeaverLabError as exc:
            state, error = "failed", str(exc)
        except Exception as exc:  # a bug of ours: say so in one line, keep the traceback in the server log
            log.exception("taskweaver_lab turn %s failed", turn.id)
            state, error = "failed", redact(f"Internal error: {type(exc).__name__}: {exc}", [self.app.config.api_key])
        finally:
            # one callback: the notebook is free for the next turn before anyone hears "finished"
            turn.deltas.flush()
            last = {"kind": "turn", "state": state, **({"error": error} if error else {}), "usage": usage[0].to_json()}
            if self.on_finished is not None:
                self.on_finished(turn, request, last)
            self.loop.call_soon_threadsafe(self._finish, turn, last)

    # --- events -----------------------------------------------------------------------------
    def _publish_threadsafe(self, turn: Turn, event: dict[str, Any]) -> None:
        """(the turn's worker thread) Streamed text is coalesced (``DeltaBuffer``); any other event sends it first."""
        if event.get("kind") == "delta":
            return turn.deltas.add(event)
        turn.deltas.flush()
        self.loop.call_soon_threadsafe(self._publish, turn, event)

    def _publish(self, turn: Turn, event: dict[str, Any]) -> None:
        envelope = {"turn_id": turn.id, "session_id": turn.session_id, "path": turn.path, "event": event}
        turn.events.append(envelope)
        self._wake(turn)
        for subscriber in list(self.subscribers.get(turn.path, ())):
            try:
                subscriber(envelope)
            except Exception:  # a closed socket must not break the other subscribers
                log.debug("dropping a subscriber of %s", turn.path, exc_info=True)
                self.subscribers.get(turn.path, set()).discard(subscriber)

    def _finish(self, turn: Turn, last: dict[str, Any] | None = None) -> None:
        """The turn ends: its notebook is free first, then its last event goes out (a turn posted on that
        event is accepted), then long-polls see it done."""
        if self.active.get(turn.path) == turn.id:
            del self.active[turn.path]
        if last is not None:
            self._publish(turn, last)
        turn.done, turn.finished_at = True, time.monotonic()
        self._wake(turn)

    @staticmethod
    def _wake(turn: Turn) -> None:
        for waiter in turn.waiters:
            if not waiter.done():
                waiter.set_result(None)
        turn.waiters.clear()

    async def events_after(self, turn_id: str, after: int, timeout: float) -> dict[str, Any]:
        """Long-poll: the turn's events after index ``after`` (``{"events", "done", "next"}``)."""
        turn = self._turn(turn_id)
        if len(turn.events) <= after and not turn.done:
            waiter: asyncio.Future[None] = self.loop.create_future()
            turn.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                pass
        events = turn.events[after:]
        return {"events": events, "done": turn.done and after + len(events) >= len(turn.events),
                "next": after + len(events)}

    def subscribe(self, path: str, subscriber: Subscriber) -> None:
        self.subscribers.setdefault(path, set()).add(subscriber)

    def unsubscribe(self, path: str, subscriber: Subscriber) -> None:
        self.subscribers.get(path, set()).discard(subscriber)

    # --- snapshots ----------------------------------------------------------------------------
    async def snapshot(self, path: str) -> dict[str, Any]:
        """The chat of ``path``: the live session's history, else rebuilt from the notebook record."""
        entry = self.sessions.get(path)
        if entry is not None:
            session_id, history = entry.session.id, list(entry.session.history)
        else:
            session_id, history = steps_from_notebook(await self._notebook(path))
        running = self.active.get(path)
        return {"session_id": session_id or "", "path": path, "events": [s.to_json() for s in history],
                "busy": running is not None, "turn_id": running}

    async def _notebook(self, path: str) -> Any:
        """The live shared document when a room has it (the file lags ~1 s behind), else the file."""
        os_path = self.os_path(path)
        ydoc = self.ydoc()
        if ydoc is not None:
            try:
                doc = await ydoc.get_document(path=path.strip("/"), content_type="notebook", file_format="json",
                                              copy=True, create=False)
                if doc is not None:
                    return doc.get()
            except Exception:  # the file is the record anyway
                log.debug("reading the shared document of %s failed", path, exc_info=True)
        return await self.loop.run_in_executor(None, read_notebook, Path(os_path))

    def _prune(self) -> None:
        now = time.monotonic()
        for turn_id, turn in list(self.turns.items()):
            if turn.done and now - turn.finished_at > KEEP_FINISHED_TURNS_S:
                del self.turns[turn_id]

    def close(self) -> None:
        for turn_id in list(self.active.values()):
            try:
                self.stop(turn_id)
            except TurnError:
                pass
        for entry in self.sessions.values():
            entry.session.close()  # stops our channels only: the user's kernel keeps running
        self.sessions.clear()


class DeltaBuffer:
    """Streamed text (``delta`` events) coalesced: one event per role per ``interval`` seconds at most, so a
    fast stream is one websocket message per ~50 ms instead of one per token (every other event flushes it)."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], interval: float = DELTA_INTERVAL_S) -> None:
        self.emit, self.interval = emit, interval
        self.pending: dict[str, Any] | None = None
        self.since = 0.0

    def add(self, event: dict[str, Any]) -> None:
        if self.pending is not None and self.pending.get("role") == event.get("role"):
            self.pending["text"] += event.get("text", "")
        else:
            self.flush()
            self.pending, self.since = dict(event), time.monotonic()
        if time.monotonic() - self.since >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self.emit(pending)


class EventRecorder:
    """Records through ``inner`` (RTC / file) and announces each cell as a ``cell`` event.

    Without ``inner`` the sidebar must insert the cell (``insert: true``); with an anchor (a magic turn)
    the event says where: ``after_cell_id``.
    """

    def __init__(self, inner: Recorder | None, emit: Callable[[dict[str, Any]], None], anchor: str | None) -> None:
        self.inner, self.emit, self.anchor = inner, emit, anchor

    def add_cell(self, cell: Cell) -> None:
        if self.inner is not None:
            self.inner.add_cell(cell)
        data = plain(cell)
        event: dict[str, Any] = {"kind": "cell", "cell": data, "insert": self.inner is None}
        if self.anchor is not None:
            event["after_cell_id"] = self.anchor
            self.anchor = data.get("id", self.anchor)
        self.emit(event)
