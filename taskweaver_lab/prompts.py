"""Prompt assembly. Templates are data (``prompts/*.md``).

Cache-stable by construction: every role's messages start with its static template,
then session-stable parts (plugins, examples), then the conversation. Nothing volatile
(timestamps, ids) goes in, so a provider's prompt cache hits on the prefix.
Data shown to the LLM is wrapped in ``<data>`` blocks (spotlighting) and bounded.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from .steps import Draft, Execution, Plan, Step, UserMessage

Messages = list[dict[str, str]]
TEMPLATES = Path(__file__).parent / "prompts"
# Older rounds shrink to "question -> answer" so long sessions stay cheap.
FULL_ROUNDS = 3


@lru_cache(maxsize=None)
def template(name: str) -> str:
    return (TEMPLATES / f"{name}.md").read_text().strip()


def data_block(text: str) -> str:
    """Mark untrusted text as data (prompt-injection defence); neutralize a forged closing tag."""
    return "<data>\n" + text.replace("</data>", "<\\/data>") + "\n</data>"


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
    """Static template, then this request's functions, then its examples (in cache-friendly order)."""
    system = template(role) + (f"\n\n{functions_intro}\n{functions}" if functions else "")
    label = "Example conversation:\n" if role == "planner" else "Example:\n"
    return [{"role": "system", "content": system}] + [
        {"role": "system", "content": label + render_example(example)} for example in examples]


def planner_messages(history: Sequence[Step], capabilities: str, examples: Sequence[Any] = ()) -> Messages:
    messages = _system_messages("planner", "The CodeInterpreter can also call these functions:", capabilities, examples)
    rounds = split_rounds(history)
    for index, steps in enumerate(rounds):
        compact = index < len(rounds) - FULL_ROUNDS
        messages.extend(_round_messages(steps, compact))
    return messages


def split_rounds(history: Sequence[Step]) -> list[list[Step]]:
    """Group steps by round; a round that ended with a question continues in the next round's list."""
    rounds: list[list[Step]] = []
    for step in history:
        if isinstance(step, UserMessage) or not rounds:
            rounds.append([])
        rounds[-1].append(step)
    return rounds


def _round_messages(steps: Sequence[Step], compact: bool) -> Messages:
    out: Messages = []
    plan: Plan | None = None
    for step in steps:
        if isinstance(step, UserMessage):
            out.append({"role": "user", "content": f"User: {step.text}"})
        elif isinstance(step, Plan):
            plan = step
            if not (compact and step.send_to != "User"):
                out.append({"role": "assistant", "content": plan_json(step)})
        elif isinstance(step, Execution) and not compact:
            out.append({"role": "user", "content": execution_report(step, plan)})
    return out


def code_messages(task: Plan, request: str, variables: str, plugins_text: str,
                  feedback: Sequence[tuple[Draft, str]] = (), examples: Sequence[Any] = (),
                  data_preview: str = "") -> Messages:
    """Messages for one Code Generator attempt; ``feedback`` holds earlier drafts and what went wrong.

    ``data_preview`` (preview.py: the columns of the data files, already a <data> block) goes right before the
    request: after the static system prompt, so the cacheable prefix does not change with the files."""
    messages = _system_messages("code_generator", "These functions are already defined in the kernel "
                                "(call them, never import them):", plugins_text, examples)
    # Variable descriptions carry column names read from files: data, like the preview.
    kernel = f"Kernel variables:\n{data_block(variables)}" if variables else "Kernel variables: none yet"
    preview = f"{data_preview}\n" if data_preview else ""
    # The task last, then what to reply: small models otherwise answer the request in prose.
    context = (f"{kernel}\n{preview}User request (context): {request}\nTask for your code: {task.message}\n"
               "Reply with one short sentence and one ```python block that computes the task and prints the results.")
    messages.append({"role": "user", "content": context})
    for draft, problem in feedback:
        if draft.reply_type == "text":  # no code to correct: our own instruction. The prose itself is left out:
            messages.append({"role": "user", "content": problem})  # shown it, small models repeat it verbatim
            continue
        messages.append({"role": "assistant", "content": f"```python\n{draft.code}\n```"})
        messages.append({"role": "user", "content": f"That code did not work:\n{data_block(problem)}\n"
                                                    "Reply with the whole corrected code."})
    return messages


def corrective_message(error: str, form: str) -> dict[str, str]:
    """The one re-ask after a malformed reply; quotes the parse error."""
    return {"role": "user", "content": f"Your reply could not be used: {error}. Reply again with {form} only."}


def render_example(example: Any) -> str:
    """An ``examples.Example`` as compact turns: 'User: ...', 'Planner: {...}', 'Code: ...', 'Result: ...'."""
    names = {"user": "User", "planner": "Planner", "code": "Code", "result": "Result"}
    return "\n".join(f"{names.get(t.role, t.role)}: {t.text}" for t in example.turns)
