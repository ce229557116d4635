"""Server-side recorders: the live shared notebook (RTC) and a file recorder that inserts below a cell.

With ``jupyter_server_ydoc`` loaded, cells go into the room's live document (``copy=False``: a copy's
edits never reach the browser), so every collaborator sees them ~60 ms later and autosave writes the
file. pycrdt documents belong to the server's event loop, so the turn's worker thread hands each
insertion to the loop and waits for it (cells stay in order, errors surface in the turn).

A magic turn anchors its cells below the ``%%taskweaver`` cell: each new cell goes after the previous
one (found by id, so edits around it are harmless); without an anchor cells are appended.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import nbformat

from ..notebook import Cell, FileRecorder

INSERT_TIMEOUT_S = 30.0


def index_after(cell_ids: Iterable[str | None], anchor: str | None) -> int | None:
    """Position just below the cell ``anchor``; None means append (no anchor, or it was deleted)."""
    if anchor is None:
        return None
    for index, cell_id in enumerate(cell_ids):
        if cell_id == anchor:
            return index + 1
    return None


def plain(cell: Cell) -> dict[str, Any]:
    """A JSON-only copy (nbformat nodes -> dicts) for pycrdt and the wire."""
    return json.loads(json.dumps(cell))


class AnchoredFileRecorder(FileRecorder):
    """The server's file recorder (re-reads, rewrites atomically, never brings back a deleted file): every
    cell written when it is made, inserted below a cell when there is an anchor."""

    def __init__(self, path: str | Path, after_cell_id: str | None = None, nb: Any = None,
                 notify: Callable[[str], None] | None = None) -> None:
        super().__init__(path, notify)
        self.anchor = after_cell_id
        if nb is not None:  # seeded from the live document when the file vanished under RTC
            self.nb = nbformat.from_dict(nb)

    def add_cell(self, cell: Cell) -> None:
        if self.anchor is None:
            # every cell is written at once: a server that dies mid-round leaves the request and the plan
            # in the file (the file recorder of the CLI batches them with the next step)
            super().add_cell(cell)
            return self.flush()
        node = nbformat.from_dict(plain(cell))

        def place(nb: Any) -> None:  # below the anchor, in the file as another writer may have left it
            index = index_after((c.get("id") for c in nb.cells), self.anchor)
            nb.cells.insert(len(nb.cells) if index is None else index, node)

        self.update(place)  # under the cross-process lock (record_io.py)
        self.anchor = node.get("id", self.anchor)


class NotebookGone(Exception):
    def __init__(self, content: dict[str, Any] | None) -> None:
        super().__init__("the notebook file was deleted")
        self.content = content


class RTCRecorder:
    """Inserts cells into the live shared notebook of ``api_path``."""

    def __init__(self, ydoc_ext: Any, api_path: str, os_path: str, loop: asyncio.AbstractEventLoop,
                 after_cell_id: str | None = None, notify: Callable[[str], None] = lambda text: None) -> None:
        self.ydoc_ext, self.api_path, self.os_path, self.loop = ydoc_ext, api_path, Path(os_path), loop
        self.anchor, self.notify = after_cell_id, notify
        self.fallback: AnchoredFileRecorder | None = None

    def add_cell(self, cell: Cell) -> None:
        if self.fallback is not None:
            return self.fallback.add_cell(cell)
        future = asyncio.run_coroutine_threadsafe(self._insert(plain(cell)), self.loop)
        try:
            future.result(timeout=INSERT_TIMEOUT_S)
        except NotebookGone as gone:
            # Deleted mid-turn: keep going and write the file again with everything recorded so far.
            self.fallback = AnchoredFileRecorder(self.os_path, self.anchor, gone.content)
            self.fallback.add_cell(cell)
            self.notify(f"{self.api_path} was deleted during the turn; it was written again with this session's cells.")

    async def document(self, create: bool = True) -> Any:
        return await self.ydoc_ext.get_document(path=self.api_path, content_type="notebook", file_format="json",
                                                copy=False, create=create)

    async def _insert(self, cell: dict[str, Any]) -> None:
        if not self.os_path.exists():
            doc = await self.document(create=False)
            raise NotebookGone(doc.get() if doc is not None else None)
        doc = await self.document()
        if doc is None:
            raise RuntimeError(f"Cannot open the shared document of {self.api_path}.")
        index = index_after((_cell_id(c) for c in doc.ycells), self.anchor)
        doc.ycells.insert(len(doc.ycells) if index is None else index, doc.create_ycell(cell))
        if self.anchor is not None:
            self.anchor = cell.get("id", self.anchor)


def _cell_id(ycell: Any) -> str | None:
    try:
        return str(ycell["id"])
    except KeyError:
        return None
