"""Prompt assembly. Templates are data (``prompts/*.md``).

Cache-stable by construction: every role's messages start with its static template; then what stays
the same for the session (the Planner's summaries of finished rounds, append-only); then the
per-request choice (functions, examples); then what changes from call to call, last. Nothing volatile
(timestamps, ids) goes in, so a provider's prompt cache hits on the prefix, and the Planner's prompt
stays bounded however long the session. Data shown to the LLM is wrapped in ``<data>`` blocks
(spotlighting) and bounded.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from .grounding import field_names
from .steps import Answer, Draft, Execution, Plan, Step, UserMessage

Messages = list[dict[str, str]]
TEMPLATES = Path(__file__).parent / "prompts"


@lru_cache(maxsize=None)
def template(name: str) -> str:
    return (TEMPLATES / f"{name}.md").read_text().strip()


_CLOSING_TAG = re.compile(r"<\s*/\s*data\s*>", re.I)


def data_block(text: str) -> str:
    """Mark untrusted text as data (prompt-injection defence); neutralize a forged closing tag."""
    # Any spelling of the closing tag (</DATA>, </ data >) would end the block early: all are neutralized.
    return "<data>\n" + _CLOSING_TAG.sub(lambda m: m.group(0).replace("/", "\\/"), text) + "\n</data>"


def plan_json(plan: Plan) -> str:
    """The compact JSON form of a plan, as the Planner is asked to write it."""
    return json.dumps({
        "init_plan": list(plan.init_plan), "plan": list(plan.plan), "current_plan_step": plan.current_step,
        "send_to": plan.send_to, "message": plan.message, "stop": plan.stop,
    }, ensure_ascii=False)


def execution_report(execution: Execution, plan: Plan | None = None) -> str:
    """The CodeInterpreter's report; after the plan's last step it says so (small models otherwise run it again)."""
    status = "ok" if execution.ok else ("interrupted" if execution.interrupted else "failed")
    where = f"step {execution.step}"
    if plan is not None:
        last = execution.ok and execution.step >= len(plan.plan)
        where += f" of {len(plan.plan)}" + ("; that was the last step" if last else "")
    return f"CodeInterpreter ({where}, {status}):\n{data_block(execution.summary)}"


def _system_messages(role: str, functions_intro: str, functions: str, examples: Sequence[Any]) -> Messages:
    """This request's functions and examples (the per-request choice), as system messages."""
    label = "Example conversation:\n" if role == "planner" else "Example:\n"
    chosen = [{"role": "system", "content": f"{functions_intro}\n{functions}"}] if functions else []
    return chosen + [{"role": "system", "content": label + render_example(example)} for example in examples]


def planner_messages(history: Sequence[Step], capabilities: str, examples: Sequence[Any] = (),
                     short: bool = False) -> Messages:
    """Static template, then one short summary per finished round (append-only, bounded), then this request's
    functions and examples, then the current round in full.

    That order keeps the prompt's prefix identical from call to call (a provider's prompt cache hits on it)
    and its size bounded however long the session: a finished round is summarized once and never rewritten;
    the oldest summaries go in chunks (the notebook keeps them all).

    ``short`` (after the endpoint said the prompt is too long): no summaries, no examples, and of the current
    round only the last two execution reports in full."""
    rounds = split_rounds(history)
    finished, current = rounds[:-1], rounds[-1] if rounds else []
    messages = [{"role": "system", "content": template("planner")}]
    dropped = len(finished) if short else len(finished) - _kept_summaries(len(finished))
    if dropped:
        messages.append({"role": "user", "content": f"({dropped} earlier rounds are in the notebook, not shown here.)"})
    messages.extend({"role": "user", "content": round_summary(steps)} for steps in finished[dropped:])
    messages.extend(_system_messages("planner", "The CodeInterpreter can also call these functions:", capabilities,
                                     () if short else examples))
    messages.extend(_round_messages(current, keep_reports=2 if short else None))
    return messages


# The Planner sees at most MAX_SUMMARIES finished rounds; beyond that the oldest DROP_CHUNK go at once, so the
# prompt prefix changes once every DROP_CHUNK rounds, not every round.
MAX_SUMMARIES, DROP_CHUNK = 12, 6


def _kept_summaries(finished: int) -> int:
    if finished <= MAX_SUMMARIES:
        return finished
    return MAX_SUMMARIES - DROP_CHUNK + (finished - MAX_SUMMARIES - 1) % DROP_CHUNK + 1


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def round_summary(steps: Sequence[Step]) -> str:
    """One finished round in a few hundred characters: what the user asked, what was answered, the variables
    its code set (later rounds reuse them). The answer and code output are data, so they are marked as such."""
    asked = " / ".join(_clip(s.text, 160) for s in steps if isinstance(s, UserMessage))
    answer = next((s for s in reversed(steps) if isinstance(s, Answer)), None)
    names = [name for s in steps if isinstance(s, Execution) and s.ok for name in _variables_set(s.summary)]
    parts = [f"Earlier round {getattr(steps[0], 'round', '?')}. User: {asked}",
             "Answer: " + data_block(_clip(answer.text, 240)) if answer else "Answer: (none, the round did not finish)"]
    if names:
        parts.append("Variables it set: " + data_block(_clip(", ".join(dict.fromkeys(names)), 120)))
    return "\n".join(parts)


def _variables_set(summary: str) -> list[str]:
    """Variable names from an execution summary's "[variables set] a: ...; b: ..." line (kernel.py)."""
    line = next((ln for ln in summary.splitlines() if ln.startswith("[variables set] ")), "")
    return [part.split(":")[0].strip() for part in line[len("[variables set] "):].split("; ") if ":" in part]


def split_rounds(history: Sequence[Step]) -> list[list[Step]]:
    """Group steps by round; a round that ended with a question continues in the next round's list."""
    rounds: list[list[Step]] = []
    for step in history:
        if isinstance(step, UserMessage) and not _asked_back(rounds):
            rounds.append([])
        elif not rounds:
            rounds.append([])
        rounds[-1].append(step)
    return rounds


def _asked_back(rounds: list[list[Step]]) -> bool:
    """Did the last round end with a question to the user (so the next message answers it)?"""
    last = rounds[-1][-1] if rounds and rounds[-1] else None
    return isinstance(last, Answer) and last.is_question


def _round_messages(steps: Sequence[Step], keep_reports: int | None = None) -> Messages:
    """The current round in full; with ``keep_reports``, only that many of the latest execution reports."""
    out: Messages = []
    plan: Plan | None = None
    runs = [s for s in steps if isinstance(s, Execution)]
    left_out = set(map(id, runs[:-keep_reports])) if keep_reports else set()
    for step in steps:
        if id(step) in left_out:
            out.append({"role": "user", "content": f"CodeInterpreter (step {step.step}): report left out to save space."})
            continue
        if isinstance(step, UserMessage):
            out.append({"role": "user", "content": f"User: {step.text}"})
        elif isinstance(step, Plan):
            plan = step
            out.append({"role": "assistant", "content": plan_json(step)})
        elif isinstance(step, Execution):
            out.append({"role": "user", "content": execution_report(step, plan)})
    return out


def code_messages(task: Plan, request: str, variables: str, plugins_text: str,
                  feedback: Sequence[tuple[Draft, str]] = (), examples: Sequence[Any] = (),
                  data_preview: str = "", short: bool = False) -> Messages:
    """Messages for one Code Generator attempt; ``feedback`` holds earlier drafts and what went wrong.

    Order, for the prompt cache: the static template; the functions and examples chosen for the request; the
    data preview (``preview.py``, already a <data> block) and the request, the same for every step of a round;
    then what changes from step to step (the kernel's variables, the task) and the attempts so far. The preview
    comes first of the request's part: the same files give the same preview from one request to the next.
    ``short`` (after the endpoint said the prompt is too long): no examples, only the last attempt."""
    if short:
        examples, feedback, variables = (), feedback[-1:], _clip_list(variables, VARIABLES_CHARS // 3)
    messages = [{"role": "system", "content": template("code_generator")}]
    messages += _system_messages("code_generator", "These functions are already defined in the kernel "
                                 "(call them, never import them):", plugins_text, examples)
    # Variable descriptions carry column names read from files: data, like the preview.
    kernel = f"Kernel variables:\n{data_block(_clip_list(variables, VARIABLES_CHARS))}" if variables else "Kernel variables: none yet"
    preview = f"{data_preview}\n" if data_preview else ""
    # The task last, then what to reply: small models otherwise answer the request in prose.
    context = (f"{preview}User request (context): {request}\n{kernel}\nTask for your code: {task.message}\n"
               "Reply with one short sentence and one ```python block that computes the task and prints the results."
               + _fields_line(request))
    messages.append({"role": "user", "content": context})
    for draft, problem in feedback:
        if draft.reply_type == "text":  # no code to correct: our own instruction. The prose itself is left out:
            messages.append({"role": "user", "content": problem})  # shown it, small models repeat it verbatim
            continue
        messages.append({"role": "assistant", "content": f"```python\n{draft.code}\n```"})
        messages.append({"role": "user", "content": f"That code did not work:\n{data_block(problem)}\n"
                                                    "Reply with the whole corrected code."})
    return messages


# The kernel lists the variables the last cell changed first: the ones a next step needs survive the cut.
VARIABLES_CHARS = 500


def _clip_list(listing: str, limit: int) -> str:
    """``listing`` ("a: ...; b: ...") cut at an item boundary to about ``limit`` characters."""
    if len(listing) <= limit:
        return listing
    kept = listing[:limit].rsplit("; ", 1)[0]
    return f"{kept}; ... ({listing.count('; ') - kept.count('; ')} more)"


def _fields_line(request: str) -> str:
    """Name the ``@name[value]`` fields the user asked for: small models print prose instead unless told which."""
    names = field_names(request)
    if not names:
        return ""
    return ("\nWhen your code computes a result the User request asks for, print it on its own line as "
            + " ".join(f"@{name}[value]" for name in names) + ".")


def corrective_message(error: str, form: str) -> dict[str, str]:
    """The one re-ask after a malformed reply; quotes the parse error."""
    return {"role": "user", "content": f"Your reply could not be used: {error}. Reply again with {form} only."}


def render_example(example: Any) -> str:
    """An ``examples.Example`` as compact turns: 'User: ...', 'Planner: {...}', 'Code: ...', 'Result: ...'."""
    names = {"user": "User", "planner": "Planner", "code": "Code", "result": "Result"}
    return "\n".join(f"{names.get(t.role, t.role)}: {t.text}" for t in example.turns)
