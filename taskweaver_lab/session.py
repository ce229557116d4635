"""Sessions: history, persistence and the Python API (``TaskWeaverApp``, ARCHITECTURE A3).

A ``Session`` binds one notebook (its record) to one executor (its kernel) and runs rounds.
Whatever goes wrong in a round becomes an ``Answer`` with a clear message; the history and
the notebook keep everything that happened before.
"""
from __future__ import annotations

import dataclasses
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
from .notebook import FileRecorder, Recorder, cell_for, read_notebook, steps_from_notebook
from .planner import Planner
from .plugins import PluginSpec, load_plugins, select_plugins
from .preview import DataLook
from .prompts import split_rounds
from .secrets import redact, scrubbed_env
from .steps import Answer, Draft, Execution, Notice, Step, TaskWeaverLabError, Usage, UserMessage, Verdict
from .tw_project import apply_project
from .verifier import DEFAULT_ALLOWED_MODULES, Policy, verify

Listener = Callable[[Step], None]


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
                       carry_over: "Session | None" = None) -> "Session":
        """The one way to make a session: recorded in ``notebook`` (resuming its last session unless ``new``),
        on ``executor`` (default: a fresh kernel in the notebook's folder).

        ``carry_over``: continue that session's chat (id and history) on this executor instead of reading
        the record: the server after a kernel restart, the magic after its options changed."""
        path = Path(notebook).resolve() if notebook else None
        workspace = executor.workspace if executor is not None else str(path.parent if path else Path.cwd())
        if carry_over is not None:
            session_id, history = carry_over.id, carry_over.history
        else:
            session_id, history = (None, []) if new or path is None else steps_from_notebook(read_notebook(path))
        if recorder is None and path is not None and carry_over is None:
            recorder = FileRecorder(path)
        replay = executor is None and bool(history)  # a fresh kernel: rebuild the variables the record relies on
        if executor is None:
            executor = start_kernel(workspace, list(self.config.scrub_env), self.config.summary_chars, self._redact,
                                    sandbox=self.config.sandbox)
        session = Session(self, executor, recorder, workspace, session_id or uuid.uuid4().hex[:12], history)
        try:
            session.setup_kernel(replay_notebook=path if replay else None)
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

    # --- kernel setup -------------------------------------------------------------------
    def setup_kernel(self, replay_notebook: Path | None = None) -> None:
        """Helper, guard and plugins into the kernel (once); optionally re-run a resumed notebook's cells."""
        self.executor.setup(self.app.plugins, self.config.guard)
        if replay_notebook is not None:
            self._replay(replay_notebook)

    def kernel_replaced(self) -> None:
        """The history continues on a fresh kernel: the next round first tells the Planner (and the chat,
        and the notebook) that the earlier rounds' variables are gone."""
        self._kernel_replaced = bool(self.history)

    def _replay(self, path: Path) -> None:
        """Re-run the record's code cells in a fresh kernel. The user's own cells run as they are (like Run
        All); generated cells are verified again first: the file may have been edited since they were made."""
        for cell in read_notebook(path).cells:
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            agent = "taskweaver_lab" in cell.metadata
            source = self._reverified(cell) if agent else cell.source
            if source is None:
                continue
            result = self.executor.execute(source, agent=agent, timeout=self.config.execution_timeout)
            if not result.ok:
                self._setup_notice(f"Re-running a recorded cell failed: {result.error}")

    def _setup_notice(self, text: str) -> None:
        """Setup runs before anyone listens (create_session): keep what it has to say for the caller."""
        notice = Notice("warning", text)
        self.setup_notices.append(notice)
        self._emit(notice)

    def _reverified(self, cell: Any) -> str | None:
        verdict = verify(cell.source, self.policy())
        if verdict.ok:
            return verdict.checked_source or cell.source
        where = cell.metadata["taskweaver_lab"]
        self._setup_notice(f"Not re-running the generated cell of round {where.get('round')}, step {where.get('step')}: "
                           f"it no longer passes verification ({verdict.feedback()}). Was it edited after it was generated?")
        return None

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
        options = options or RoundOptions()
        with self._lock:  # one round at a time per session
            ctx = self._round_context(options, on_event, approve)
            user = UserMessage(message.strip(), ctx.number)
            if self._kernel_replaced:  # closes the previous round, before the new request
                self._kernel_replaced = False
                ctx.add(Execution(ok=True, code="", summary=KERNEL_REPLACED, step=0, round=user.round - 1))
            try:
                return self.agent.run_round(self.history, user, ctx)
            except Cancelled:
                return self._fail(ctx, user, "Stopped. Nothing after the last finished step was run; ask again to continue.")
            except TaskWeaverLabError as exc:
                return self._fail(ctx, user, str(exc))

    def _round_context(self, options: RoundOptions, on_event: Listener | None,
                       approve: Callable[[Draft, Verdict], Decision] | None) -> RoundContext:
        listeners = self.listeners + ([on_event] if on_event else [])
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
