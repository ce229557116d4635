"""How a ``%%taskweaver`` turn shows in the magic cell: live plan, progress, record cells, the answer."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

from IPython.display import display, publish_display_data

from ..steps import Plan

META = "taskweaver_lab"


def _plan_from_json(event: dict[str, Any]) -> Plan:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in event.items() if k != "kind"}
    return Plan(**fields)


class TurnView:
    """One turn in the magic cell's output: a live status line, progress lines, and either the record
    cells (in-process) or the live plan and answer (joined: the cells themselves go below the cell)."""

    def __init__(self, live_plan: bool) -> None:
        self.live_plan = live_plan
        self.started = time.monotonic()
        self.calls = 0
        self.state = "planning…"
        self.failure = ""
        self.answer: dict[str, Any] | None = None
        self._status: Any = None
        self._plan: Any = None

    def refresh(self, final: bool = False) -> None:
        text = f"**TaskWeaver** · {self.state} · {self.calls} LLM call{'s' if self.calls != 1 else ''}"
        if final:
            text += f" · {time.monotonic() - self.started:.1f} s"
        bundle = {"text/markdown": text, "text/plain": text.replace("**", "")}
        if self._status is None:
            self._status = display(bundle, raw=True, display_id=True)
        else:
            self._status.update(bundle, raw=True)

    def line(self, text: str) -> None:
        display({"text/markdown": text, "text/plain": text}, raw=True)

    def on_event(self, event: dict[str, Any]) -> None:
        """A step's JSON (``Step.to_json()``) or one of the server's extra event kinds."""
        handler: Callable[[dict[str, Any]], None] | None = getattr(self, "_on_" + str(event.get("kind")), None)
        if handler is not None:
            handler(event)

    def _on_llm_call(self, event: dict[str, Any]) -> None:
        self.calls += 1
        self.refresh()

    def _on_plan(self, event: dict[str, Any]) -> None:
        if event.get("send_to") != "CodeInterpreter":
            return
        self.state = f"step {event.get('current_step', 1)}: writing code…"
        self.refresh()
        if self.live_plan:
            from ..notebook import plan_markdown

            text = plan_markdown(_plan_from_json(event))
            if self._plan is None:
                self._plan = display({"text/markdown": text, "text/plain": text}, raw=True, display_id=True)
            else:
                self._plan.update({"text/markdown": text, "text/plain": text}, raw=True)

    def _on_draft(self, event: dict[str, Any]) -> None:
        self.state = f"step {event.get('step', 1)}: checking attempt {event.get('attempt', 1)}…"
        self.refresh()

    def _on_verdict(self, event: dict[str, Any]) -> None:
        if not event.get("ok"):
            first = (event.get("violations") or [{}])[0]
            self.line(f"*Attempt {event.get('attempt', 1)} rejected by the verifier:* {first.get('message', '')}")

    def _on_execution(self, event: dict[str, Any]) -> None:
        self.state = "back to the Planner…"
        self.refresh()
        if self.live_plan and event.get("code"):
            mark = "✔" if event.get("ok") else "✖"
            detail = f" — `{event['error'][:200]}`" if event.get("error") else ""
            self.line(f"{mark} step {event.get('step', 1)}, attempt {event.get('attempt', 1)} ran in "
                      f"{event.get('duration_s', 0):.1f} s (cell below){detail}")

    def _on_notice(self, event: dict[str, Any]) -> None:
        if event.get("level") in ("warning", "error"):
            self.line(f"*{event['level']}:* {event.get('text', '')}")

    def _on_answer(self, event: dict[str, Any]) -> None:
        self.answer = event
        if event.get("stop") == "TaskFailure":
            self.failure = event.get("text", "") or "the round failed."
        elif self.live_plan:
            prefix = "**TaskWeaver asks:** " if event.get("is_question") else "**TaskWeaver:** "
            self.line(prefix + event.get("text", ""))

    def _on_turn(self, event: dict[str, Any]) -> None:
        if event.get("state") == "failed" and not self.failure:
            self.failure = event.get("error") or "the turn failed in the server."

    def _on_approval(self, event: dict[str, Any]) -> None:
        # Decided in the chat panel (Run/Skip/Edit): input() here is unreliable while the server runs
        # code on a subshell (ipykernel shares the stdin flag between subshells).
        self.state = "waiting for your approval in the TaskWeaver panel…"
        self.refresh()
        draft = event.get("draft") or {}
        self.line(f"*Proposed code (step {draft.get('step')}, attempt {draft.get('attempt')}), "
                  f"waiting for Run/Skip in the TaskWeaver panel:*\n```python\n{draft.get('code', '')}\n```")

    def show_cell(self, cell: dict[str, Any]) -> None:
        """In-process record: the cell, visibly, with its full JSON in the output metadata."""
        meta = cell.get("metadata", {}).get(META, {})
        if meta.get("kind") == "answer" and (meta.get("data") or {}).get("stop") == "TaskFailure":
            return  # the cell ends with this text as its one error line
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        record = {META: {"cell": {**cell, "outputs": []} if cell["cell_type"] == "code" else cell}}
        if cell["cell_type"] != "code":
            publish_display_data({"text/markdown": source, "text/plain": source}, metadata=record)
            return
        head = f"*step {meta.get('step')}, attempt {meta.get('attempt')}*"
        publish_display_data({"text/markdown": f"{head}\n```python\n{source}\n```", "text/plain": source},
                             metadata=record)
        for output in cell.get("outputs", []):
            _republish(output)

    def finish(self) -> None:
        self.state = "failed" if self.failure else "asked you a question" if (self.answer or {}).get("is_question") else "done"
        self.refresh(final=True)


def _republish(output: dict[str, Any]) -> None:
    """One captured output of an agent cell, shown again in the magic cell."""
    kind = output["output_type"]
    if kind == "stream":
        stream = sys.stderr if output.get("name") == "stderr" else sys.stdout
        stream.write(output["text"])
        stream.flush()
    elif kind in ("display_data", "execute_result"):
        publish_display_data(dict(output["data"]), metadata=dict(output.get("metadata", {})))
    elif kind == "error":
        sys.stderr.write("\n".join(output.get("traceback", [])) + "\n")
        sys.stderr.flush()
