"""Sessions: history, persistence and the Python API (``TaskWeaverApp``, ARCHITECTURE A3).

A ``Session`` binds one notebook (its record) to one executor (its kernel) and runs rounds.
Whatever goes wrong in a round becomes an ``Answer`` with a clear message; the history and
the notebook keep everything that happened before.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from traitlets.config import Config

from . import tracing
from .agent import Agent, Decision, RoundContext
from .codegen import CodeGenerator
from .codegen_service import CodegenService
from .config import TaskWeaverLab, make_config
from .examples import Example, example_to_yaml, load_examples, select_examples
from .kernel import Executor, printed_result, start_kernel
from .llm import LLM, Cancelled, UserChoices
from .notebook import FileRecorder, RecordHistory, Recorder, cell_for, read_history, read_notebook
from .planner import Planner
from .plugins import PluginSpec, load_plugins, select_plugins, set_up_kernel
from .preview import DataLook
from .prompts import split_rounds
from .resume import KERNEL_RENEWED, record_notices, renew_kernel, replay
from .secrets import redact, scrubbed_env
from .steps import Answer, Draft, Execution, Notice, Step, TaskWeaverLabError, Usage, UserMessage, Verdict
from .tw_project import apply_project
from .verifier import DEFAULT_ALLOWED_MODULES, Policy, verify

Listener = Callable[[Step], None]
log = logging.getLogger("taskweaver_lab.session")


@dataclass(frozen=True)
class RoundOptions:
    """What one round alone uses; the session keeps none of it afterwards."""

    choices: UserChoices = field(default_factory=UserChoices)  # the user's model names / endpoint (sidebar settings)
    recorder: Recorder | None = None       # where this round's cells go (default: the session's own record)
    cancel: threading.Event | None = None  # the round's Stop flag, when the caller holds it (the server's turn)
    plugins_only: bool = False             # the verifier allows plugin calls only (the sidebar's switch)
    subshell: bool = False                 # agent code on the kernel's subshell (a waiting %%taskweaver cell)


KERNEL_REPLACED = ("The kernel was restarted (or replaced) since the last round: every variable, import and loaded "
                   "data from earlier rounds is gone. Re-create whatever this round needs.")


def rounds_as_example(history: Sequence[Step], role: str, rounds: Sequence[int] | None = None) -> str:
    """TaskWeaver example YAML of the given round numbers (default: the last round)."""
    grouped = split_rounds(history)
    if not grouped:
        raise TaskWeaverLabError("There is no finished round to save yet.")
    if rounds and not all(1 <= n <= len(grouped) for n in rounds):
        raise TaskWeaverLabError(f"There are {len(grouped)} round(s); pick round numbers from 1 to {len(grouped)}.")
    picked = [grouped[n - 1] for n in rounds] if rounds else grouped[-1:]
    return example_to_yaml(role, picked)  # type: ignore[arg-type]


class TaskWeaverApp:
    """Loads config, plugins and examples once; makes sessions."""

    def __init__(self, config: dict[str, Any] | None = None, traitlets_config: Config | None = None) -> None:
        self.config: TaskWeaverLab = make_config(config, base=traitlets_config)
        project_warnings = apply_project(self.config)  # app_dir: a TaskWeaver project's config, plugins, examples
        self.plugins, plugin_errors = load_plugins(self.config.plugin_dirs, self.config.load_builtin_plugins)
        self.examples, example_errors = load_examples(self.config.example_dirs)
        self.load_errors: list[str] = project_warnings + plugin_errors + example_errors

    def create_session(self, notebook: str | os.PathLike[str] | None = None, *, executor: Executor | None = None,
                       recorder: Recorder | None = None, new: bool = False,
                       carry_over: "Session | None" = None, on_event: Listener | None = None) -> "Session":
        """The one way to make a session: recorded in ``notebook`` (resuming its last session unless ``new``),
        on ``executor`` (default: a fresh kernel in the notebook's folder).

        ``carry_over``: continue that session's chat (id and history) on this executor instead of reading
        the record: the server after a kernel restart, the magic after its options changed.
        ``on_event``: setup's notices as they happen (resume progress, what the record reader skipped)."""
        path = Path(notebook).resolve() if notebook else None
        workspace = executor.workspace if executor is not None else str(path.parent if path else Path.cwd())
        # read (and validated) once, before any kernel starts: a file that is not a notebook is a clear error
        nb = read_notebook(path) if path is not None and carry_over is None else None
        record = RecordHistory() if nb is None or new else read_history(nb)
        if carry_over is not None:
            record = RecordHistory(carry_over.id, carry_over.history)
        own_record = recorder is None and path is not None and carry_over is None
        if own_record:
            recorder = FileRecorder(path, nb=nb)  # type: ignore[arg-type]
        replaying = executor is None and bool(record.steps)  # a fresh kernel: rebuild what the record relies on
        # an unfinished last round is marked in the file only by sessions on their own kernel (CLI, API): a server
        # session's notebook may be open in the browser, its chat shows the mark from the history
        mark_in_file = own_record and executor is None
        if executor is None:
            executor = start_kernel(workspace, list(self.config.scrub_env), self.config.summary_chars, self._redact,
                                    sandbox=self.config.sandbox)
            from .auto_install import enable_on_own_kernel  # opt-in auto_install (issue 15): CLI, API, in-process magic

            enable_on_own_kernel(executor, self.config)
        session = Session(self, executor, recorder, workspace, record.session_id or uuid.uuid4().hex[:12], record.steps)
        if isinstance(recorder, FileRecorder) and own_record:
            recorder.notify = session._record_notice  # a write problem reaches the round's listeners
        try:
            session.resume(record, path, nb if replaying else None, on_event, mark_in_file)
        except BaseException:
            session.close()
            raise
        return session

    def _redact(self, text: str) -> str:
        return redact(text, self.known_secrets)

    @property
    def known_secrets(self) -> list[str]:
        """The key plus every value of an env name we scrub (Jupyter tokens, other providers' keys)."""
        kept = scrubbed_env(os.environ, self.config.scrub_env)
        values = [self.config.api_key, self.config.codegen_api_key] + [v for k, v in os.environ.items() if k not in kept]
        return [v for v in values if len(v) >= 8]

    def plugins_text(self, query: str) -> str:
        chosen = select_plugins(self.plugins, query, self.config.max_plugins_in_prompt)
        return "\n".join(spec.prompt_text() for spec in chosen)

    def capabilities(self, query: str) -> str:
        chosen = select_plugins(self.plugins, query, self.config.max_plugins_in_prompt)
        return "\n".join("- " + spec.signature() for spec in chosen)

    def examples_for(self, role: str) -> Callable[[str], Sequence[Example]]:
        return lambda query: select_examples(self.examples, role, query, 1) if self.examples else []  # type: ignore[arg-type]


class Session:
    def __init__(self, app: TaskWeaverApp, executor: Executor, recorder: Recorder | None, workspace: str,
                 session_id: str, history: list[Step]) -> None:
        self.app, self.config, self.executor, self.recorder = app, app.config, executor, recorder
        if hasattr(executor, "output_limit"):  # what one output may put into the record and the chat
            executor.output_limit = self.config.max_output_chars
        self.workspace, self.id, self.history = workspace, session_id, history
        self.listeners: list[Listener] = []
        self.setup_notices: list[Notice] = []  # what setting up the kernel had to say (e.g. a replay problem)
        self.usage = Usage()
        self.llm = LLM(self.config)
        planner = Planner(self.llm, app.capabilities, app.examples_for("planner"))
        look = DataLook(workspace, self.config.data_preview_files, exclude=[self.config.llm_cassette])
        coder = CodeGenerator(self.llm, app.plugins_text, app.examples_for("code_generator"), look)
        if self.config.code_generator_backend == "codegen":  # same write() -> Draft, same loop
            coder = CodegenService(self.config, app.plugins_text, look, app._redact)  # type: ignore[assignment]
        self.agent = Agent(planner, coder, executor, self.config)
        self.tracer = tracing.attach(self)  # trace_dir / trace_otel; None when off
        self._cancel = threading.Event()  # the running round's Stop flag (each round brings or gets its own)
        self._lock = threading.Lock()
        self._kernel_replaced = False
        self._setup_listener: Listener | None = None
        self._round_listeners: list[Listener] | None = None  # while a round runs

    # --- kernel setup -------------------------------------------------------------------
    def resume(self, record: RecordHistory, path: Path | None, replay_nb: Any, on_event: Listener | None,
               mark_in_file: bool) -> None:
        """Set the kernel up; say what the record reader skipped; mark an unfinished last round interrupted in
        the record; re-run the record's cells on a fresh kernel (``replay_nb``)."""
        self._setup_listener = on_event
        if path is not None:
            record_notices(record, path, self._setup_notice)
        if mark_in_file and record.interrupted and record.steps[-1] is record.interrupted[-1]:
            cell = cell_for(record.interrupted[-1], self.id)
            self.recorder.add_cell(cell)  # type: ignore[union-attr]
        self.setup_kernel()
        if replay_nb is not None:
            replay(replay_nb, self.executor, self.policy(), self.config.resume_timeout, self.config.execution_timeout,
                   self._setup_notice, path.name if path else "the notebook")

    def setup_kernel(self, replay_notebook: Path | None = None) -> None:
        """Helper, guard and plugins into the kernel (once); optionally re-run a resumed notebook's cells."""
        for problem in set_up_kernel(self.executor, self.app.plugins, self.config.guard):
            self._setup_notice("warning", problem)  # a plugin that raised on import: said, and out of every prompt
        if replay_notebook is not None:
            replay(read_notebook(replay_notebook), self.executor, self.policy(), self.config.resume_timeout,
                   self.config.execution_timeout, self._setup_notice, replay_notebook.name)

    def kernel_replaced(self) -> None:
        """The history continues on a fresh kernel: the next round first tells the Planner (and the chat,
        and the notebook) that the earlier rounds' variables are gone."""
        self._kernel_replaced = bool(self.history)

    def _setup_notice(self, level: str, text: str) -> None:
        """Setup runs before a round listens: warnings are kept for the caller (``setup_notices``), and every
        notice goes to the ``on_event`` of ``create_session`` as it happens."""
        notice = Notice(level, text)  # type: ignore[arg-type]
        if level != "info":
            self.setup_notices.append(notice)
        if self._setup_listener is not None:
            self._setup_listener(notice)
        self._emit(notice)

    def _record_notice(self, text: str) -> None:
        """A problem writing the record: to the running round's listeners; outside a round (setup, close) to
        the log as well, since nobody may be listening any more."""
        listeners = self._round_listeners
        if listeners is None:
            listeners = self.listeners + ([self._setup_listener] if self._setup_listener else [])
        if listeners:
            self._emit(Notice("warning", text), listeners)
        if not listeners or self._round_listeners is None:
            log.warning("%s", text)

    def policy(self) -> Policy:
        specs: list[PluginSpec] = [p for p in self.app.plugins if p.enabled]
        return Policy(
            allowed_modules=tuple(self.config.allowed_modules) or DEFAULT_ALLOWED_MODULES,
            blocked_functions=tuple(self.config.blocked_functions),
            plugin_only=self.config.plugin_only or any(p.plugin_only for p in specs),
            plugin_names=tuple(p.name for p in specs), workspace=self.workspace,
        )

    # --- rounds ---------------------------------------------------------------------------
    def chat(self, message: str, on_event: Listener | None = None,
             approve: Callable[[Draft, Verdict], Decision] | None = None,
             options: RoundOptions | None = None) -> Answer:
        """One user round. Never raises for LLM/kernel trouble: the answer says what went wrong.

        ``options``: what this round alone uses (the sidebar's model choices, a recorder, a Stop flag...)."""
        if not message.strip():
            raise TaskWeaverLabError("The message is empty.")
        limit = self.config.max_message_chars
        if len(message) > limit:  # it would be in every later prompt of the session, past any context window
            raise TaskWeaverLabError(
                f"The message is {len(message):,} characters long; the limit is {limit:,} (TaskWeaverLab.max_message_chars). "
                "Put large data in a file in the notebook's folder and ask about it by name.")
        options = options or RoundOptions()
        with self._lock:  # one round at a time per session
            ctx = self._round_context(options, on_event, approve)
            user = UserMessage(message.strip(), ctx.number)
            try:
                self._kernel_check(ctx)
                return self.agent.run_round(self.history, user, ctx)
            except Cancelled:
                return self._fail(ctx, user, "Stopped. Nothing after the last finished step was run; ask again to continue.")
            except TaskWeaverLabError as exc:
                return self._fail(ctx, user, str(exc))
            finally:
                self._round_listeners = None

    def _kernel_check(self, ctx: RoundContext) -> None:
        """A kernel that died since the last round is replaced (API/CLI kernels); the Planner (and the chat, and
        the record) first hears that the earlier variables are gone."""
        if renew_kernel(self.executor):
            ctx.emit(Notice("warning", KERNEL_RENEWED))
            self.setup_kernel()
            self.kernel_replaced()
        # (the Planner hears it in the new round, right after the request: see _add)

    def _round_context(self, options: RoundOptions, on_event: Listener | None,
                       approve: Callable[[Draft, Verdict], Decision] | None) -> RoundContext:
        listeners = self.listeners + ([on_event] if on_event else [])
        self._round_listeners = listeners
        recorder = options.recorder if options.recorder is not None else self.recorder
        self._cancel = options.cancel or threading.Event()
        policy = self.policy()
        if options.plugins_only:  # enforced by the verifier for this round, not just asked for
            policy = dataclasses.replace(policy, plugin_only=True)
        return RoundContext(
            number=self.next_round(), add=lambda step: self._add(step, listeners, recorder),
            emit=lambda step: self._emit(step, listeners), max_calls=self.config.max_llm_calls_per_round,
            policy=policy, cancel=self._cancel, approve=approve, choices=options.choices, subshell=options.subshell)

    def _fail(self, ctx: RoundContext, user: UserMessage, text: str) -> Answer:
        if user not in self.history:  # failed before the round started
            ctx.add(user)
        computed = next((s for s in reversed(self.history) if isinstance(s, Execution) and s.ok and s.code
                         and s.round == user.round), None)
        if computed is not None:  # what the round did compute is still worth having (and it is grounded)
            text += f"\n\nWhat was computed before that (step {computed.step}):\n\n{printed_result(computed)}"
        answer = Answer(text, stop="TaskFailure", round=user.round)
        ctx.add(answer)
        return answer

    def next_round(self) -> int:
        return sum(isinstance(s, UserMessage) for s in self.history) + 1

    def stop(self) -> None:
        """Cancel the LLM stream and interrupt the kernel (the Stop button)."""
        self._cancel.set()
        self.executor.interrupt()

    def _add(self, step: Step, listeners: Sequence[Listener], recorder: Recorder | None) -> None:
        self.history.append(step)
        cell = cell_for(step, self.id)
        if cell is not None and recorder is not None:
            recorder.add_cell(cell)
        self._emit(step, listeners)
        if isinstance(step, UserMessage) and self._kernel_replaced:
            # the first thing of the new round (the Planner sees the current round in full, earlier ones summarized)
            self._kernel_replaced = False
            self._add(Execution(ok=True, code="", summary=KERNEL_REPLACED, step=0, round=step.round), listeners, recorder)

    def _emit(self, step: Step, listeners: Sequence[Listener] | None = None) -> None:
        if step.kind == "llm_call":
            self.usage = self.usage.add(step)  # type: ignore[arg-type]
        for listener in listeners if listeners is not None else self.listeners:
            listener(step)

    # --- examples and teardown --------------------------------------------------------------
    def save_example(self, path: str | os.PathLike[str], role: str = "planner", rounds: Sequence[int] | None = None) -> Path:
        """Save finished rounds (default: the last) as a TaskWeaver example YAML."""
        target = Path(path)
        target.write_text(rounds_as_example(self.history, role, rounds))
        return target

    def close(self) -> None:
        flush = getattr(self.recorder, "flush", None)
        try:
            if flush:
                flush()
        finally:
            self.executor.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
