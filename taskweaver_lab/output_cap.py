"""Bounded outputs: what one cell shows goes into the record and onto the wire capped, with a note of what was cut.

A cell printing 50 MB must not become a 50 MB notebook, half a gigabyte of memory and 50 MB pushed to every
open chat. Like Jupyter's own output limits, each output keeps at most ``limit`` characters: a stream keeps its
start and its end (collected as it arrives, so the middle is never held in memory), a long text value is cut
the same way, and an image or other data over ``DATA_FACTOR`` times the limit is replaced by a note. A cell
with more than ``MAX_OUTPUTS`` separate outputs keeps the first ones and says how many were left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

Output = dict[str, Any]
DATA_FACTOR = 10
MAX_OUTPUTS = 200
SETTING = "TaskWeaverLab.max_output_chars"


def cut_note(cut: int, limit: int) -> str:
    return (f"\n\n... [{cut:,} characters of this output were cut here: the record keeps the first and last "
            f"{limit:,} in all ({SETTING})] ...\n\n")


@dataclass
class _Stream:
    """One stream output (stdout or stderr) as it arrives: whole while short, then its head and a rolling tail."""

    name: str
    text: str = ""
    tail: str = ""
    total: int = 0
    cut: bool = False

    def write(self, text: str, limit: int, redact: Callable[[str], str]) -> None:
        self.total += len(text)
        if not self.cut:
            self.text += text
            if len(self.text) > 2 * limit:  # keep the head; keys cut at the edge were redacted while whole
                whole = redact(self.text)
                self.text, self.tail, self.cut = whole[: limit * 2 // 3], whole[-(limit // 3):], True
            return
        window = redact(self.tail + text)  # a key split across two messages is whole in the window
        self.tail = window[-(limit // 3):]

    def output(self, limit: int) -> Output:
        if not self.cut:
            return {"output_type": "stream", "name": self.name, "text": self.text}
        kept = len(self.text) + len(self.tail)
        return {"output_type": "stream", "name": self.name,
                "text": self.text + cut_note(max(self.total - kept, 0), limit) + self.tail}


class OutputCollector:
    """The outputs of one execution, merged and capped as they arrive."""

    def __init__(self, limit: int, redact: Callable[[str], str] = lambda text: text) -> None:
        self.limit, self.redact = max(limit, 300), redact
        self._items: list[Output | _Stream] = []
        self.dropped = 0

    def add(self, output: Output) -> None:
        last = self._items[-1] if self._items else None
        if output["output_type"] == "stream":
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            if isinstance(last, _Stream) and last.name == output.get("name"):
                return last.write(text, self.limit, self.redact)
            if len(self._items) < MAX_OUTPUTS:
                stream = _Stream(output.get("name", "stdout"))
                self._items.append(stream)
                return stream.write(text, self.limit, self.redact)
        elif len(self._items) < MAX_OUTPUTS:
            return self._items.append(cap_data(output, self.limit))
        self.dropped += 1

    def clear(self) -> None:
        self._items, self.dropped = [], 0

    def outputs(self) -> list[Output]:
        result = [item.output(self.limit) if isinstance(item, _Stream) else item for item in self._items]
        if self.dropped:
            result.append({"output_type": "stream", "name": "stderr",
                           "text": f"[{self.dropped:,} more outputs of this cell were left out of the record: it keeps "
                                   f"the first {MAX_OUTPUTS}]\n"})
        return result


def cap_outputs(outputs: Iterable[Output], limit: int, redact: Callable[[str], str] = lambda text: text) -> list[Output]:
    """``outputs`` (already collected, e.g. in-process) capped like a collector caps them as they arrive."""
    collector = OutputCollector(limit, redact)
    for output in outputs:
        collector.add(output)
    return collector.outputs()


def cap_data(output: Output, limit: int) -> Output:
    """A display/result/error output with each oversized value cut (text) or replaced by a note (other data)."""
    data = output.get("data")
    if not isinstance(data, dict) or all(_size(v) <= limit for v in data.values()):
        return output
    capped: dict[str, Any] = {}
    notes: list[str] = []
    for mime, value in data.items():
        size = _size(value)
        if mime.startswith("text/") or mime.endswith("json"):
            if size > limit:
                text = value if isinstance(value, str) else "".join(value) if isinstance(value, list) else str(value)
                value = text[: limit * 2 // 3] + cut_note(size - limit, limit) + text[-(limit // 3):]
            capped[mime] = value
        elif size <= limit * DATA_FACTOR:
            capped[mime] = value
        else:
            notes.append(f"[{mime} output of {size:,} characters left out of the record: over "
                         f"{limit * DATA_FACTOR:,} ({DATA_FACTOR} x {SETTING})]")
    if notes:
        shown = capped.get("text/plain", "")
        capped["text/plain"] = "\n".join(([shown] if isinstance(shown, str) and shown else []) + notes)
    return {**output, "data": capped}


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(v) for v in value if isinstance(v, str))
    return len(str(value))
