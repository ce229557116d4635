"""The vocabulary: one small frozen dataclass per arrow of the data flow.

user message -> Planner -> Plan -> Code Generator -> Draft -> Verifier -> Verdict
-> Executor -> Execution -> notebook record -> Planner ... -> Answer

The same objects render prompts, travel to the sidebar as JSON (``to_json``) and
become notebook cells (``notebook.py``). Nothing here does I/O.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Role = Literal["planner", "code_generator"]
StopReason = Literal[
    "InProcess", "Completed", "Clarification", "AdditionalInformation", "SecurityRisks", "TaskFailure"
]
STOP_REASONS: tuple[str, ...] = get_args(StopReason)
# A Planner reply with one of these stops ends the round with a question to the user.
QUESTION_STOPS = ("Clarification", "AdditionalInformation")


class TaskWeaverLabError(Exception):
    """An error whose message is meant for the user as is: short and actionable."""


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Step:
    """Base: every step knows its wire name and its JSON projection."""

    kind = "step"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **_jsonable(self)}


@dataclass(frozen=True)
class UserMessage(Step):
    kind = "user"
    text: str
    round: int


@dataclass(frozen=True)
class Plan(Step):
    """One Planner reply (ARCHITECTURE A1), normalized."""

    kind = "plan"
    message: str
    send_to: Literal["CodeInterpreter", "User"]
    plan: tuple[str, ...] = ()
    init_plan: tuple[str, ...] = ()
    current_step: int = 1
    stop: StopReason = "InProcess"
    reasoning: str = ""
    round: int = 0

    @property
    def is_question(self) -> bool:
        return self.send_to == "User" and self.stop in QUESTION_STOPS


@dataclass(frozen=True)
class Draft(Step):
    """One Code Generator reply: code to run, or a text reply (no code)."""

    kind = "draft"
    thought: str
    code: str
    reply_type: Literal["python", "text"] = "python"
    attempt: int = 1
    step: int = 1
    round: int = 0


@dataclass(frozen=True)
class Violation:
    rule: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Verdict(Step):
    kind = "verdict"
    ok: bool
    violations: tuple[Violation, ...] = ()
    # The exact source that will run (after IPython transforms), for the record.
    checked_source: str = ""
    attempt: int = 1

    def feedback(self) -> str:
        return "\n".join(str(v) for v in self.violations)


@dataclass(frozen=True)
class Execution(Step):
    """What running a verified draft produced.

    ``outputs`` are nbformat output dicts (for the notebook and the sidebar);
    ``summary`` is the bounded text the LLM sees.
    """

    kind = "execution"
    ok: bool
    code: str
    outputs: tuple[dict[str, Any], ...] = ()
    summary: str = ""
    error: str = ""
    artifacts: tuple[str, ...] = ()
    execution_count: int | None = None
    duration_s: float = 0.0
    attempt: int = 1
    step: int = 1
    round: int = 0
    interrupted: bool = False
    verified: bool = True


@dataclass(frozen=True)
class FigureSource:
    """Where a figure of an answer came from: the generated cell (round, step, attempt) that printed it,
    or the user's own message (``grounding.py``)."""

    figure: str
    origin: Literal["cell", "user"]
    round: int = 0
    step: int = 0
    attempt: int = 0
    execution_count: int | None = None


@dataclass(frozen=True)
class Answer(Step):
    """The round's last word to the user: a final answer or a question.

    ``sources``: each figure of the text and the cell that computed it; ``ungrounded``: figures no code of
    the round printed (marked "not computed" in the text)."""

    kind = "answer"
    text: str
    is_question: bool = False
    stop: StopReason = "Completed"
    round: int = 0
    sources: tuple[FigureSource, ...] = ()
    ungrounded: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class LLMCall(Step):
    """Usage of one chat-completion request."""

    kind = "llm_call"
    role: Role
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cached_tokens: int = 0
    retries: int = 0


@dataclass(frozen=True)
class TextDelta(Step):
    """A streamed piece of an LLM reply (for live display only; never recorded)."""

    kind = "delta"
    role: Role
    text: str


@dataclass(frozen=True)
class Notice(Step):
    """Progress or a problem the user should see (retry, guard block, cap hit...)."""

    kind = "notice"
    level: Literal["info", "warning", "error"]
    text: str


@dataclass(frozen=True)
class Usage:
    """Totals over LLM calls; ``add`` returns a new value (frozen like the rest)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    by_role: dict[str, int] = field(default_factory=dict)

    def add(self, call: LLMCall) -> "Usage":
        by_role = dict(self.by_role)
        by_role[call.role] = by_role.get(call.role, 0) + 1
        return Usage(
            self.calls + 1,
            self.prompt_tokens + call.prompt_tokens,
            self.completion_tokens + call.completion_tokens,
            self.latency_s + call.latency_s,
            by_role,
        )

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "latency_s": round(self.latency_s, 3), "by_role": dict(self.by_role)}
