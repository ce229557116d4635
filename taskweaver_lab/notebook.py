"""The notebook record (ARCHITECTURE A5): steps become cells; cells become history again.

Code cells carry ``metadata.taskweaver_lab = {session, round, step, verified, attempt, summary}``;
markdown cells carry ``{session, round, kind, data}`` where ``data`` is the Step's JSON, so the
chat and the agent's history rebuild from the notebook alone. Reading is tolerant: a cell whose
metadata was edited into something else is skipped and named; a round the record leaves unfinished
(no answer: the session was killed or the server restarted mid-round) is closed as interrupted.
The file itself (reading, locking, incremental writes) is ``record_io.py``.
"""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union, get_args, get_origin, get_type_hints

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from .record_io import (META, CallbackRecorder, Cell, FileRecorder, read_notebook, record_lock,  # noqa: F401 (re-exported)
                        write_notebook_atomically)
from .steps import Answer, Execution, FigureSource, Plan, Step, UserMessage

INTERRUPTED = ("This round was interrupted before it finished (the session ended or the server restarted while it "
               "ran). Ask again to continue.")


class Recorder(Protocol):
    def add_cell(self, cell: Cell) -> None: ...


def plan_markdown(plan: Plan) -> str:
    total = len(plan.plan)
    # A small Planner may count past its plan (a retry, a stall): the record never says "step 2 of 1".
    lines = [f"**Plan** · step {plan.current_step} of {total}" if plan.current_step <= total
             else f"**Plan** · all {total} step{'s' if total != 1 else ''} done, more work asked for"]
    for number, text in enumerate(plan.plan, 1):
        mark = "✔" if number < plan.current_step else ("▶" if number == plan.current_step else "○")
        lines.append(f"{number}. {mark} {text}")
    return "\n".join(lines) + f"\n\n> {plan.message}"


def cell_for(step: Step, session_id: str) -> Cell | None:
    """The notebook cell recording ``step``, or None when the step is not recorded as a cell."""
    base = {"session": session_id, "round": getattr(step, "round", 0)}
    if isinstance(step, UserMessage):
        text = "**You:** " + step.text
    elif isinstance(step, Plan) and step.send_to == "CodeInterpreter":
        text = plan_markdown(step)
    elif isinstance(step, Answer):
        text = ("**TaskWeaver asks:** " if step.is_question else "**TaskWeaver:** ") + step.text
    elif isinstance(step, Execution) and not step.code:  # rejected, skipped or answered without code
        text = "**CodeInterpreter** (nothing was run):\n\n```text\n" + step.summary + "\n```"
    elif isinstance(step, Execution) and step.code:
        meta = {**base, "step": step.step, "verified": step.verified, "attempt": step.attempt,
                "ok": step.ok, "summary": step.summary, "artifacts": list(step.artifacts)}
        if step.interrupted:  # a resume does not run it again
            meta["interrupted"] = True
        cell = new_code_cell(step.code, execution_count=step.execution_count, outputs=[nbformat.from_dict(o) for o in step.outputs])
        cell.metadata[META] = meta
        return cell
    else:
        return None
    cell = new_markdown_cell(text)
    cell.metadata[META] = {**base, "kind": step.kind, "data": step.to_json()}
    return cell


@dataclass
class RecordHistory:
    """What a notebook's record says: the last session's id and history, and what could not be read."""

    session_id: str | None = None
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # "cell 4: ...", one per skipped cell
    interrupted: list[Answer] = field(default_factory=list)  # answers added to close unfinished rounds


def read_history(nb: Any) -> RecordHistory:
    """The last session's history rebuilt from cell metadata; cells of other tools are ignored, cells whose
    metadata is not what we wrote are skipped (and named in ``problems``)."""
    record = RecordHistory()
    for index, cell in enumerate(nb.get("cells", []), 1):
        meta = cell.get("metadata", {}).get(META) if isinstance(cell, dict) else None
        if meta is None:
            continue
        try:
            if not isinstance(meta, dict):
                raise ValueError(f"metadata.{META} is {_kind(meta)}, not an object")
            session = meta.get("session")
            if not isinstance(session, str):
                raise ValueError(f"'session' is {_kind(session)}, not a session id")
            step = _step_from_cell(cell, meta)
        except (ValueError, TypeError) as exc:
            record.problems.append(f"cell {index}: {exc}")
            continue
        if session != record.session_id:
            record.session_id, record.steps, record.interrupted = session, [], []
        if step is not None:
            _append(record, step)
    _close_round(record)
    return record


def _append(record: RecordHistory, step: Step) -> None:
    history = record.steps
    if isinstance(step, UserMessage):
        _close_round(record)
    if isinstance(step, Answer):  # the Planner's reply behind the answer, so the Planner sees it again
        last_plan = next((s for s in reversed(history) if isinstance(s, Plan)), None)
        history.append(Plan(step.text, "User", last_plan.plan if last_plan else (), stop=step.stop, round=step.round))
    history.append(step)


def _close_round(record: RecordHistory) -> None:
    """A round with a request and no answer did not finish: close it as interrupted (never resumed as running)."""
    history = record.steps
    user = next((s for s in reversed(history) if isinstance(s, (UserMessage, Answer))), None)
    if isinstance(user, UserMessage):
        answer = Answer(INTERRUPTED, stop="TaskFailure", round=user.round)
        last_plan = next((s for s in reversed(history) if isinstance(s, Plan)), None)
        history.append(Plan(answer.text, "User", last_plan.plan if last_plan else (), stop="TaskFailure", round=user.round))
        history.append(answer)
        record.interrupted.append(answer)


def steps_from_notebook(nb: Any) -> tuple[str | None, list[Step]]:
    """(last session id, its history) rebuilt from cell metadata (see ``read_history``)."""
    record = read_history(nb)
    return record.session_id, record.steps


def _step_from_cell(cell: Any, meta: dict[str, Any]) -> Step | None:
    if cell.get("cell_type") == "code":
        data = {"ok": meta.get("ok", True), "code": _source(cell), "summary": meta.get("summary", ""),
                "artifacts": meta.get("artifacts", ()), "step": meta.get("step", 1), "attempt": meta.get("attempt", 1),
                "round": meta.get("round", 0), "verified": meta.get("verified", True),
                "interrupted": meta.get("interrupted", False), "execution_count": cell.get("execution_count"),
                "outputs": cell.get("outputs", ())}
        return _build(Execution, data)
    cls = {"user": UserMessage, "plan": Plan, "answer": Answer, "execution": Execution}.get(meta.get("kind"))  # type: ignore[arg-type]
    if cls is None:
        return None
    data = meta.get("data")
    if not isinstance(data, dict):
        raise ValueError(f"metadata.{META}.data is {_kind(data)}, not an object")
    return _build(cls, {k: v for k, v in data.items() if k != "kind"})


def _build(cls: type, data: dict[str, Any]) -> Any:
    """``cls(**data)`` when every value has the field's type (lists become tuples); else ValueError naming it."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"'{f.name}' is missing")
            continue
        values[f.name] = _typed(data[f.name], hints[f.name], f.name)
    return cls(**values)  # keys we do not know (a newer version's) are left out


def _typed(value: Any, hint: Any, name: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(_typed(v, args[0], name) for v in value)
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return _typed(value, arg, name)
            except ValueError:
                continue
    elif dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)  # type: ignore[arg-type]
    elif _fits(value, hint, origin, args):
        return value
    raise ValueError(f"'{name}' is {_kind(value)}, which is not a valid {name}")


def _fits(value: Any, hint: Any, origin: Any, args: tuple[Any, ...]) -> bool:
    if hint is Any:
        return True
    if origin is Literal:
        return value in args
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)


def _kind(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:40] + '...' if len(shown) > 40 else shown}"


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source
