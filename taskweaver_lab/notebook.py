"""The notebook record (ARCHITECTURE A5): steps become cells; cells become history again.

Code cells carry ``metadata.taskweaver_lab = {session, round, step, verified, attempt, summary}``;
markdown cells carry ``{session, round, kind, data}`` where ``data`` is the Step's JSON, so the
chat and the agent's history rebuild from the notebook alone.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, nbjson

from .steps import Answer, Execution, FigureSource, Plan, Step, UserMessage

META = "taskweaver_lab"
Cell = dict[str, Any]
log = logging.getLogger("taskweaver_lab.notebook")


class Recorder(Protocol):
    def add_cell(self, cell: Cell) -> None: ...


def plan_markdown(plan: Plan) -> str:
    lines = [f"**Plan** · step {plan.current_step} of {len(plan.plan)}"]
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
        cell = new_code_cell(step.code, execution_count=step.execution_count, outputs=[nbformat.from_dict(o) for o in step.outputs])
        cell.metadata[META] = meta
        return cell
    else:
        return None
    cell = new_markdown_cell(text)
    cell.metadata[META] = {**base, "kind": step.kind, "data": step.to_json()}
    return cell


def steps_from_notebook(nb: Any) -> tuple[str | None, list[Step]]:
    """(last session id, its history) rebuilt from cell metadata; cells of other tools are ignored."""
    session_id: str | None = None
    history: list[Step] = []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get(META)
        if not meta:
            continue
        if meta.get("session") != session_id:
            session_id, history = meta.get("session"), []
        step = _step_from_cell(cell, meta)
        if isinstance(step, Answer):  # the Planner's reply behind the answer, so the Planner sees it again
            last_plan = next((s for s in reversed(history) if isinstance(s, Plan)), None)
            history.append(Plan(step.text, "User", last_plan.plan if last_plan else (), stop=step.stop, round=step.round))
        if step is not None:
            history.append(step)
    return session_id, history


def _step_from_cell(cell: Any, meta: dict[str, Any]) -> Step | None:
    kind, data = meta.get("kind"), dict(meta.get("data") or {})
    data.pop("kind", None)
    if cell.get("cell_type") == "code":
        return Execution(ok=meta.get("ok", True), code=_source(cell), summary=meta.get("summary", ""),
                         artifacts=tuple(meta.get("artifacts", ())), step=meta.get("step", 1),
                         attempt=meta.get("attempt", 1), round=meta.get("round", 0), verified=meta.get("verified", True),
                         execution_count=cell.get("execution_count"), outputs=tuple(cell.get("outputs", ())))
    if kind == "user":
        return UserMessage(**data)
    if kind == "plan":
        return Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    if kind == "answer":
        sources = tuple(FigureSource(**s) for s in data.pop("sources", ()) if isinstance(s, dict))
        return Answer(**{**data, "sources": sources, "ungrounded": tuple(data.get("ungrounded", ()))})
    if kind == "execution":
        return Execution(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    return None


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def read_notebook(path: Path) -> Any:
    """The notebook at ``path`` (a new one if missing); a file being written is retried, not trusted empty."""
    if not path.exists():
        return new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    return nbformat.read(path, as_version=4)


def write_notebook_atomically(nb: Any, path: Path) -> None:
    """Write via a temporary file + rename so a crash never leaves half a notebook."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(nbjson.writes(nb))  # cells come from nbformat's constructors; tests validate the result
    os.replace(tmp, path)


class FileRecorder:
    """Headless record: the .ipynb is rewritten after every code cell and answer, so no finished step
    is ever lost (a user or plan cell is written together with the step that follows it: one file
    write per step instead of three, which matters on slow disks).

    A notebook deleted while we record is not written again: whoever deleted it meant it, and a file
    brought back with only part of a round would pass for the record. ``notify`` says so once; the
    session's history (the chat) keeps every step.
    """

    def __init__(self, path: str | os.PathLike[str], notify: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.notify = notify or (lambda text: log.warning("%s", text))
        self.nb = read_notebook(self.path)
        self._seen = self.path.exists()  # a file we saw (or wrote) that is gone now was deleted
        self.deleted = False
        self._written: int | None = None  # mtime of our last write
        self._pending: list[Any] = []

    def add_cell(self, cell: Cell) -> None:
        self._pending.append(nbformat.from_dict(cell))
        if cell["cell_type"] == "code" or cell["metadata"].get(META, {}).get("kind") == "answer":
            self.flush()

    def flush(self) -> None:
        if not self._pending or self.gone():
            self._pending = []
            return
        if self.path.exists() and self.path.stat().st_mtime_ns != self._written:
            try:  # someone else edited the file between steps: build on their version
                self.nb = nbformat.read(self.path, as_version=4)
            except (json.JSONDecodeError, nbformat.reader.NotJSONError):
                pass  # mid-write by another writer: keep ours
        self.nb.cells.extend(self._pending)
        self._pending = []
        self.write()

    def gone(self) -> bool:
        """True once the notebook was deleted under us (said once through ``notify``)."""
        if not self.deleted and self._seen and not self.path.exists():
            self.deleted = True
            self.notify(f"{self.path.name} was deleted during the turn, so the rest of this round is not recorded in "
                        "it (the file was not written again). The chat keeps the whole round.")
        return self.deleted

    def write(self) -> None:
        write_notebook_atomically(self.nb, self.path)
        self._seen, self._written = True, self.path.stat().st_mtime_ns


class CallbackRecorder:
    """Hands each cell to a callback (the sidebar inserts it into the open notebook)."""

    def __init__(self, on_cell: Callable[[Cell], None]) -> None:
        self.on_cell = on_cell

    def add_cell(self, cell: Cell) -> None:
        self.on_cell(cell)
