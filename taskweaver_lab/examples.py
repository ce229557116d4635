"""TaskWeaver example YAMLs: load (unchanged format), select per request, write from our steps.

A TaskWeaver example is ``{enabled, rounds: [{user_query, state, post_list: [{message, send_from,
send_to, attachment_list: [{type, content}]}]}]}``. An example that involves the ``User`` is a
planner example; one that is only Planner <-> CodeInterpreter is a code generator example.

Turns (``ExampleTurn.role``):
- ``user``: the user's words;
- ``planner``: in planner examples the Planner's reply as compact JSON with TaskWeaver's field names
  (``plan_reasoning``?, ``init_plan``?, ``plan``, ``current_plan_step``, ``send_to``, ``message``,
  ``stop``); in code generator examples the plain-text instruction the Code Generator received;
- ``code``: the Code Generator's reply: ``text`` is the code (or the text when ``reply_type`` is
  ``"text"``), ``thought`` its explanation;
- ``result``: the execution result text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from .plugins import lexical_rank
from .steps import Answer, Draft, Execution, Plan, Step, UserMessage, Verdict

ExampleRole = Literal["planner", "code_generator"]
TurnRole = Literal["user", "planner", "code", "result"]
# Old TaskWeaver code examples name the reply by attachment type instead of reply_type/reply_content.
_LEGACY_REPLY_TYPES = {"python": "python", "text": "text", "sample": "text"}


@dataclass(frozen=True)
class ExampleTurn:
    role: TurnRole
    text: str
    thought: str = ""  # code turns only
    reply_type: Literal["python", "text"] = "python"  # code turns only


@dataclass(frozen=True)
class Example:
    role: ExampleRole
    turns: tuple[ExampleTurn, ...]
    source_path: str
    keywords: str  # the words ranking matches against (user queries, messages, code)


class _ExampleError(ValueError):
    """A problem in one example file: ``field`` says where."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}': {problem}")


def load_examples(dirs: Sequence[str]) -> tuple[list[Example], list[str]]:
    """Load every ``*.yaml``/``*.yml`` under ``dirs`` (recursively). Returns (examples, errors); disabled ones are skipped."""
    examples: list[Example] = []
    errors: list[str] = []
    for folder in dirs:
        root = Path(folder).expanduser()
        if not root.is_dir():
            errors.append(f"{root}: example directory not found")
            continue
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()):
            try:
                example = load_example(path)
            except _ExampleError as exc:
                errors.append(f"{path}: {exc}")
                continue
            if example is not None:
                examples.append(example)
    return examples, errors


def load_example(path: Path) -> Example | None:
    """One example file; None when ``enabled`` is false. Raises _ExampleError naming the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _ExampleError("(file)", f"cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise _ExampleError("(file)", "not valid YAML: " + " ".join(str(exc).split())) from None
    if not isinstance(data, dict):
        raise _ExampleError("(top level)", "expected a mapping with 'enabled' and 'rounds'")
    if data.get("enabled", True) is False:
        return None
    rounds = data.get("rounds")
    if not isinstance(rounds, list) or not rounds:
        raise _ExampleError("rounds", "missing or not a non-empty list")
    posts = [(f"rounds[{r}].post_list[{p}]", post) for r, rnd in enumerate(rounds) for p, post in enumerate(_post_list(r, rnd))]
    checked = [_checked_post(where, post) for where, post in posts]
    is_planner = any("User" in (post["send_from"], post["send_to"]) for post in checked)
    turns = [turn for post in checked for turn in (_planner_turns(post) if is_planner else _code_turns(post))]
    queries = [str(rnd.get("user_query") or "") for rnd in rounds if isinstance(rnd, dict)]
    codes = [t.text for t in turns if t.role == "code"]
    keywords = " ".join(queries + [post["message"] for post in checked] + codes)
    return Example("planner" if is_planner else "code_generator", tuple(turns), str(path), keywords)


def _post_list(index: int, rnd: Any) -> list[Any]:
    if not isinstance(rnd, dict):
        raise _ExampleError(f"rounds[{index}]", "must be a mapping with user_query and post_list")
    posts = rnd.get("post_list")
    if not isinstance(posts, list) or not posts:
        raise _ExampleError(f"rounds[{index}].post_list", "missing or not a non-empty list")
    return posts


def _checked_post(where: str, post: Any) -> dict[str, Any]:
    """Validate one post; returns it with ``attachments`` as a list of (type, content) pairs."""
    if not isinstance(post, dict):
        raise _ExampleError(where, "must be a mapping with message, send_from, send_to")
    for key in ("message", "send_from", "send_to"):
        if not isinstance(post.get(key), str):
            raise _ExampleError(f"{where}.{key}", "missing or not a string")
    attachments = []
    for index, item in enumerate(post.get("attachment_list") or []):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or "content" not in item:
            raise _ExampleError(f"{where}.attachment_list[{index}]", "needs 'type' (string) and 'content'")
        attachments.append((item["type"], "" if item["content"] is None else str(item["content"])))
    return {**post, "attachments": attachments}


def _planner_turns(post: dict[str, Any]) -> list[ExampleTurn]:
    if post["send_from"] == "User":
        return [ExampleTurn("user", post["message"])]
    if post["send_from"] != "Planner":
        return [ExampleTurn("result", post["message"])]
    fields = dict(post["attachments"])  # TaskWeaver repeats no type within one planner post
    reply: dict[str, Any] = {}
    for key in ("plan_reasoning", "init_plan", "plan", "current_plan_step"):
        if key in fields:
            reply[key] = fields[key]
    reply["send_to"] = post["send_to"]
    reply["message"] = post["message"]
    reply["stop"] = fields.get("stop") or ("InProcess" if post["send_to"] != "User" else "Completed")
    return [ExampleTurn("planner", json.dumps(reply, ensure_ascii=False, separators=(",", ":")))]


def _code_turns(post: dict[str, Any]) -> list[ExampleTurn]:
    if post["send_from"] == "Planner":
        return [ExampleTurn("planner", post["message"])]
    thoughts, reply_type, content, status, result = [], "text", None, "", ""
    for kind, value in post["attachments"]:
        if kind == "thought":
            thoughts.append(value.replace("{ROLE_NAME}", "CodeInterpreter"))
        elif kind == "reply_type":
            reply_type = "python" if value.strip() == "python" else "text"
        elif kind == "reply_content":
            content = value
        elif kind in _LEGACY_REPLY_TYPES:
            reply_type, content = _LEGACY_REPLY_TYPES[kind], value
        elif kind == "execution_status":
            status = value.strip()
        elif kind == "execution_result":
            result = value
    turns = [ExampleTurn("code", post["message"] if content is None else content, " ".join(thoughts), reply_type)]
    if reply_type == "python" and status.upper() not in ("", "NONE"):
        turns.append(ExampleTurn("result", result))
    return turns


def select_examples(examples: Sequence[Example], role: ExampleRole, query: str, limit: int = 1) -> list[Example]:
    """The ``limit`` examples of ``role`` that best match ``query`` (ties: load order).

    Always returns up to ``limit`` even with no word in common: an example also teaches the format.
    """
    candidates = [e for e in examples if e.role == role]
    ranked = lexical_rank([e.keywords for e in candidates], query)
    return [candidates[index] for index, _ in ranked[:limit]]


# --- Writing an example from a finished round ------------------------------------------------

def example_to_yaml(role: ExampleRole, rounds: Sequence[Sequence[Step]]) -> str:
    """TaskWeaver example YAML from our steps; ``rounds`` is one list of Steps per user round."""
    build = _planner_posts if role == "planner" else _code_posts
    out_rounds = []
    for steps in rounds:
        user = next((s.text for s in steps if isinstance(s, UserMessage)), "")
        out_rounds.append({"user_query": user, "state": "finished", "post_list": build(user, steps)})
    if not any(r["post_list"] for r in out_rounds):
        raise ValueError(f"example_to_yaml: the rounds hold nothing a {role} example can show")
    return yaml.dump({"enabled": True, "rounds": out_rounds}, Dumper=_BlockDumper, sort_keys=False,
                     allow_unicode=True, width=1000)


def _post(message: str, send_from: str, send_to: str, attachments: list[tuple[str, str]]) -> dict[str, Any]:
    return {"message": message, "send_from": send_from, "send_to": send_to,
            "attachment_list": [{"type": t, "content": c} for t, c in attachments]}


def _planner_posts(user: str, steps: Sequence[Step]) -> list[dict[str, Any]]:
    posts = [_post(user, "User", "Planner", [])] if user else []
    pending: Execution | None = None  # the planner sees only the last attempt of a step
    for step in steps:
        if isinstance(step, Execution):
            pending = step
            continue
        if pending is not None and isinstance(step, (Plan, Answer)):
            posts.append(_post(_result_text(pending), "CodeInterpreter", "Planner", []))
            pending = None
        if isinstance(step, Plan):
            posts.append(_post(step.message, "Planner", step.send_to, _plan_attachments(step)))
        elif isinstance(step, Answer) and not _already_said(posts, step.text):
            posts.append(_post(step.text, "Planner", "User", [("stop", step.stop)]))
    if pending is not None:
        posts.append(_post(_result_text(pending), "CodeInterpreter", "Planner", []))
    return posts


def _already_said(posts: list[dict[str, Any]], text: str) -> bool:
    last = posts[-1] if posts else {}
    return last.get("send_from") == "Planner" and last.get("send_to") == "User" and last.get("message") == text


def _plan_attachments(plan: Plan) -> list[tuple[str, str]]:
    attachments = [("plan_reasoning", plan.reasoning)] if plan.reasoning else []
    if plan.init_plan:
        attachments.append(("init_plan", _numbered(plan.init_plan)))
    if plan.plan:
        attachments.append(("plan", _numbered(plan.plan)))
    current = plan.current_step
    step_text = _numbered(plan.plan).splitlines()[current - 1] if 0 < current <= len(plan.plan) else str(current)
    return attachments + [("current_plan_step", step_text), ("stop", plan.stop)]


def _numbered(items: Sequence[str]) -> str:
    lines = []
    for number, item in enumerate(items, 1):
        item = item.strip()
        lines.append(item if item[:1].isdigit() else f"{number}. {item}")
    return "\n".join(lines)


def _result_text(execution: Execution) -> str:
    return "\n".join(part for part in (execution.summary, execution.error) if part) or (
        "The code ran with no output." if execution.ok else "The code failed.")


def _code_posts(user: str, steps: Sequence[Step]) -> list[dict[str, Any]]:
    posts: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None  # the CodeInterpreter post of the latest draft
    for step in steps:
        if isinstance(step, Execution) and step.code and _reply_content(current) != step.code:
            # a history or record holds the code that ran, not its draft (drafts are only streamed)
            if not posts:
                posts.append(_post(user, "Planner", "CodeInterpreter", []))
            current = _post(step.code, "CodeInterpreter", "Planner", [("reply_type", "python"), ("reply_content", step.code)])
            posts.append(current)
        if isinstance(step, Plan) and step.send_to == "CodeInterpreter":
            posts.append(_post(step.message, "Planner", "CodeInterpreter", []))
        elif isinstance(step, Draft):
            if not posts:  # no plan recorded: the user's words were the instruction
                posts.append(_post(user, "Planner", "CodeInterpreter", []))
            current = _post(step.thought or step.code, "CodeInterpreter", "Planner", [
                ("thought", step.thought), ("reply_type", step.reply_type),
                ("reply_content", step.code if step.reply_type == "python" else step.thought or step.code)])
            posts.append(current)
        elif isinstance(step, Verdict) and current is not None and not step.ok:
            current["attachment_list"] += [{"type": "verification", "content": "INCORRECT"},
                                           {"type": "code_error", "content": step.feedback()}]
        elif isinstance(step, Execution) and current is not None:
            current["message"] = _result_text(step)
            current["attachment_list"] += [{"type": "execution_status", "content": "SUCCESS" if step.ok else "FAILURE"},
                                           {"type": "execution_result", "content": _result_text(step)}]
    return posts


def _reply_content(post: dict[str, Any] | None) -> str:
    return next((a["content"] for a in (post or {}).get("attachment_list", []) if a["type"] == "reply_content"), "")


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, like TaskWeaver's hand-written examples."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_BlockDumper.add_representer(str, _represent_str)
