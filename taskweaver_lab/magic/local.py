"""In-process mode: the agent core runs inside this kernel, the kernel itself is the executor
(nbconvert, papermill, plain IPython, or ``--local``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..steps import Draft, Step, TaskWeaverLabError, Verdict
from .options import Options
from .view import TurnView


class OutputRecorder:
    """Headless record of one round: its cells go into the magic cell's output (the round's view)."""

    def __init__(self, view: TurnView) -> None:
        self.view = view

    def add_cell(self, cell: dict[str, Any]) -> None:
        self.view.show_cell(cell)


_LOCAL: dict[str, Any] = {}   # this kernel's in-process session: {"key", "session", "executor"}


def _local_session(shell: Any, options: Options, view: TurnView) -> Any:
    """The kernel's session; a new one for ``--new``; settings changed on the line keep the history."""
    from ..inprocess import InProcessExecutor
    from ..plugins import note_kernel_setup
    from ..secrets import redact
    from ..session import TaskWeaverApp

    key = json.dumps(options.overrides, sort_keys=True, default=str)
    current = _LOCAL.get("session")
    if current is not None and not options.new and _LOCAL.get("key") == key:
        return current
    app = TaskWeaverApp(config=options.overrides)
    executor = _LOCAL.get("executor") or InProcessExecutor(shell, str(Path.cwd()))
    executor.summary_chars = app.config.summary_chars
    executor.redact = lambda text: redact(text, [s for s in (app.config.api_key,) if s])
    keep = current is not None and not options.new
    session = app.create_session(executor=executor, new=options.new, carry_over=current if keep else None)
    note_kernel_setup(app.plugins, executor.state.setup_messages)  # a plugin that raised on import: out of prompts
    for problem in app.load_errors + executor.state.setup_messages:
        view.line(f"*warning:* {problem}")
    executor.state.setup_messages.clear()
    _LOCAL.update(key=key, session=session, executor=executor)
    return session


def _console_approve(view: TurnView) -> Callable[[Draft, Verdict], tuple[str, str]]:
    def approve(draft: Draft, verdict: Verdict) -> tuple[str, str]:
        note = "" if verdict.ok else f"\n\n*Not verified:* {verdict.feedback()}"
        view.line(f"*Proposed code (step {draft.step}, attempt {draft.attempt}):*\n```python\n{draft.code}\n```{note}")
        try:
            reply = input("Run this code? [y]es / [s]kip: ")
        except Exception as exc:  # ipykernel's StdinNotImplementedError: nbconvert, papermill
            raise TaskWeaverLabError("--approve needs a frontend that answers input() prompts; "
                                     "use --auto for headless runs.") from exc
        return ("run" if reply.strip().lower() in ("", "y", "yes") else "skip", draft.code)

    return approve


def run_local(shell: Any, options: Options, view: TurnView) -> None:
    from ..session import RoundOptions

    session = _local_session(shell, options, view)
    approval = options.approval or session.config.approval

    def on_event(step: Step) -> None:
        if step.kind != "delta":
            view.on_event(step.to_json())

    view.refresh()
    try:  # Ctrl-C inside agent code sets the round's cancel flag (InProcessExecutor): it ends the round
        answer = session.chat(options.request, on_event=on_event,
                              approve=_console_approve(view) if approval == "approve" else None,
                              options=RoundOptions(recorder=OutputRecorder(view)))
    finally:
        view.finish()
    if view.failure:
        raise TaskWeaverLabError(view.failure)
    code = [s.code for s in session.history if getattr(s, "kind", "") == "execution"
            and getattr(s, "round", None) == answer.round and s.ok and s.code]
    if options.insert and code:
        shell.set_next_input(f"# %%taskweaver, session {session.id}, round {answer.round}\n" + "\n\n".join(code))

