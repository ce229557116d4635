"""The Planner: reply parsing (ARCHITECTURE A1, tolerant) and one planning call."""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from . import grounding, stall
from .llm import LLM, CallContext
from .prompts import planner_messages
from .replies import ReplyParseError, ask_within_context, extract_json_object
from .steps import STOP_REASONS, Plan, Step, UserMessage


PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "init_plan": {"type": "array", "items": {"type": "string"}},
        "plan": {"type": "array", "items": {"type": "string"}},
        "current_plan_step": {"type": "integer"},
        "send_to": {"type": "string", "enum": ["CodeInterpreter", "User"]},
        "message": {"type": "string"},
        "stop": {"type": "string", "enum": list(STOP_REASONS)},
    },
    "required": ["init_plan", "plan", "current_plan_step", "send_to", "message", "stop"],
}


def _as_steps(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    if isinstance(value, str):
        lines = (re.sub(r"^\s*(\d+[.)]|[-*])\s*", "", line).strip() for line in value.splitlines())
        return tuple(line for line in lines if line)
    return ()


def _step_number(value: Any, plan: Sequence[str]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, value)
    text = str(value or "").strip()
    match = re.match(r"\D*?(\d+)", text)
    if match:
        return max(1, int(match.group(1)))
    for index, step in enumerate(plan, 1):
        if text and (text in step or step in text):
            return index
    return 1


def _send_to(value: Any) -> str:
    name = re.sub(r"[\s_-]", "", str(value or "")).lower()
    if name in ("codeinterpreter", "coder", "codegenerator"):
        return "CodeInterpreter"
    if name == "user":
        return "User"
    raise ReplyParseError(f'"send_to" must be "CodeInterpreter" or "User", got {value!r}')


def parse_plan(text: str, round_number: int = 0) -> Plan:
    """Normalize any A1 Planner reply form into a ``Plan``."""
    data = extract_json_object(text)
    message = data.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ReplyParseError('the reply has no "message" string')
    send_to = _send_to(data.get("send_to"))
    plan = _as_steps(data.get("plan")) or _as_steps(data.get("init_plan")) or (message.strip(),)
    stop = str(data.get("stop") or "")
    if stop not in STOP_REASONS:
        stop = "InProcess" if send_to == "CodeInterpreter" else "Completed"
    return Plan(
        message=message.strip(), send_to=send_to, plan=plan, init_plan=_as_steps(data.get("init_plan")) or plan,
        current_step=_step_number(data.get("current_plan_step"), plan), stop=stop,  # type: ignore[arg-type]
        reasoning=str(data.get("plan_reasoning") or ""), round=round_number,
    )


class Planner:
    def __init__(self, llm: LLM, capabilities: Callable[[str], str], examples: Callable[[str], Sequence[Any]]) -> None:
        # Plugin signatures and examples are chosen per request (only relevant ones reach the prompt).
        self.llm, self.capabilities, self.examples = llm, capabilities, examples

    def next(self, history: Sequence[Step], round_number: int, ctx: CallContext) -> Plan:
        """One Planner decision (ReAct: it sees every execution report in ``history``).

        A reply that would go round in circles (``stall.problem``) gets one corrective re-ask."""
        query = next((s.text for s in reversed(history) if isinstance(s, UserMessage)), "")
        capabilities, examples = self.capabilities(query), self.examples(query)
        nudged: list[bool] = []

        def parse(text: str) -> Plan:
            plan = parse_plan(text, round_number)
            problem = "" if nudged else stall.problem(plan, history) or _ungrounded(plan, history)
            if problem:  # once per decision: a second such reply is taken as meant
                nudged.append(True)
                raise ReplyParseError(problem)
            return plan

        return ask_within_context(self.llm, "planner", lambda short: planner_messages(history, capabilities, examples, short),
                                  parse, "one JSON object", ctx, PLAN_SCHEMA)


def _ungrounded(plan: Plan, history: Sequence[Step]) -> str:
    """A final answer stating figures no code of the round printed, or dropping the output format the user
    asked for, gets one re-ask (grounding.py)."""
    if plan.send_to != "User" or plan.is_question:
        return ""
    problems = (grounding.problem(plan.message, history, plan.round),
                grounding.format_problem(plan.message, history, plan.round))
    return " ".join(p for p in problems if p)
