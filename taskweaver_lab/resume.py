"""Resuming a session: the record read back (with what could not be read said once), the kernel rebuilt
by re-running the record's cells within a time budget, and a dead kernel replaced before a round.

Used by ``session.py``; everything here talks to the user through ``Notice`` steps (``notice(level, text)``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .notebook import META, RecordHistory, read_history
from .steps import TaskWeaverLabError
from .verifier import Policy, verify

Notify = Callable[[str, str], None]   # (level, text)

KERNEL_RENEWED = ("The kernel stopped since the last round (it died or was restarted), so its variables are gone: this "
                  "round runs on a new kernel and re-creates what it needs.")


def record_notices(record: RecordHistory, path: Path, notify: Notify) -> None:
    """What the reader of ``path`` had to skip or close, said once each."""
    if record.problems:
        first = record.problems[0]
        more = f" (and {len(record.problems) - 1} more)" if len(record.problems) > 1 else ""
        notify("warning", f"{path.name}: skipped {len(record.problems)} cell(s) whose TaskWeaver metadata is not what "
                          f"TaskWeaver wrote ({first}{more}); the rest of the record was resumed. Was it edited by hand?")
    if record.interrupted and record.steps and record.steps[-1] is record.interrupted[-1]:
        notify("warning", f"{path.name}: round {record.interrupted[-1].round} never finished (the session ended while it "
                          "ran); it is marked interrupted.")


def failed_or_interrupted(cell: Any) -> bool:
    """A cell whose recorded run failed or was stopped: re-running it would only fail or run away again."""
    meta = cell.get("metadata", {}).get(META)
    if isinstance(meta, dict) and (meta.get("ok") is False or meta.get("interrupted")):
        return True
    return any(isinstance(o, dict) and o.get("output_type") == "error" for o in cell.get("outputs", []))


def replay(nb: Any, executor: Any, policy: Policy, budget_s: float, cell_timeout: float, notify: Notify,
           name: str = "the notebook") -> None:
    """Re-run the record's code cells in a fresh kernel, in order, within ``budget_s`` seconds in all.

    The user's own cells run as they are (like Run All); generated cells are verified again first (the file
    may have been edited since). Cells that failed or were interrupted are not re-run; a cell that fails,
    times out or kills the kernel ends the replay (what follows it would depend on it)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and _source(c).strip()]
    todo = [c for c in cells if not failed_or_interrupted(c)]
    skipped = len(cells) - len(todo)
    if not cells:
        return
    notify("info", f"Resuming {name}: re-running {len(todo)} recorded code cell(s) to rebuild the kernel's variables "
                   f"(at most {budget_s:.0f} s in all, TaskWeaverLab.resume_timeout)"
                   + (f"; {skipped} that failed or were interrupted are not re-run." if skipped else "."))
    deadline = time.monotonic() + budget_s
    for number, cell in enumerate(todo, 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return notify("warning", _not_rerun(number, len(todo), f"the {budget_s:.0f} s for re-running the record "
                                                                   "(TaskWeaverLab.resume_timeout) were used up"))
        source = _reverified(cell, policy, notify)
        if source is None:
            continue
        notify("info", f"Re-running cell {number} of {len(todo)}.")
        try:
            result = executor.execute(source, agent=META in cell.metadata, timeout=min(cell_timeout, remaining))
        except TaskWeaverLabError as exc:
            return notify("warning", _not_rerun(number, len(todo), f"re-running cell {number} failed: {exc}"))
        if result.interrupted:
            return notify("warning", _not_rerun(number, len(todo), f"cell {number} ran past its time limit and was "
                                                                   "interrupted"))
        if not result.ok:
            notify("warning", f"Re-running a recorded cell failed: {result.error}")
    notify("info", f"Resumed {name}: {len(todo)} cell(s) re-run.")


def _not_rerun(number: int, total: int, why: str) -> str:
    return (f"Stopped re-running the record at cell {number} of {total}: {why}. The variables made by cells {number} "
            f"to {total} are missing; ask for them again if you need them.")


def _reverified(cell: Any, policy: Policy, notify: Notify) -> str | None:
    if META not in cell.metadata:
        return _source(cell)
    verdict = verify(_source(cell), policy)
    if verdict.ok:
        return verdict.checked_source or _source(cell)
    where = cell.metadata[META] if isinstance(cell.metadata[META], dict) else {}
    notify("warning", f"Not re-running the generated cell of round {where.get('round')}, step {where.get('step')}: it "
                      f"no longer passes verification ({verdict.feedback()}). Was it edited after it was generated?")
    return None


def renew_kernel(executor: Any) -> bool:
    """Replace the executor's kernel when it died (API/CLI kernels we started); True when it was replaced."""
    renew = getattr(executor, "renew", None)
    return bool(renew()) if renew is not None else False


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


__all__ = ["KERNEL_RENEWED", "read_history", "record_notices", "replay", "renew_kernel", "failed_or_interrupted"]
