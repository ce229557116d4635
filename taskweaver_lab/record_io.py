"""The record's file: read and validated once, then cells appended and written atomically under a lock.

Writing is incremental: each cell is serialized once, when it is added, and the file is assembled from
those pieces (the same bytes ``nbformat.write`` produces), written to a temporary file in the same folder
and renamed over the notebook. Nothing is deep-copied or validated again per cell.

Faults end in one clear message and never in a lost step: a read-only notebook is not replaced, a write
error (read-only folder, disk full) leaves no temporary file behind and keeps the unwritten cells for the
next write, and two writers on one notebook take turns (``record_lock``: ``flock`` on the folder, which
works across processes) and each builds on the other's cells.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import nbformat
from nbformat.v4 import new_notebook
from nbformat.v4.nbjson import BytesEncoder
from nbformat.v4.rwbase import split_lines

from .steps import TaskWeaverLabError

META = "taskweaver_lab"
Cell = dict[str, Any]
log = logging.getLogger("taskweaver_lab.notebook")
LOCK_WAIT_S = 60.0
_JSON = {"cls": BytesEncoder, "indent": 1, "sort_keys": True, "separators": (",", ": "), "ensure_ascii": False}


def new_record() -> Any:
    return new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def read_notebook(path: Path) -> Any:
    """The notebook at ``path`` (a new one if missing or empty), validated once; a file that is not a
    notebook is a ``TaskWeaverLabError`` naming the file and what is wrong with it (never replaced)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return new_record()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise TaskWeaverLabError(f"Cannot read the notebook {path}: {reason}. Fix it or pick another notebook.") from exc
    if not text.strip():
        return new_record()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskWeaverLabError(
            f"The notebook {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}), so it can be "
            "neither resumed nor recorded in; it was left as it is. Repair it (or move it away to start a new "
            "record), then run again.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise TaskWeaverLabError(f"The file {path} is not a Jupyter notebook (it has no list of 'cells'); it was left as "
                                 "it is. Pick a .ipynb notebook, or a new file name.")
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat's own complaint, whatever its type
        raise TaskWeaverLabError(f"The notebook {path} cannot be read as a notebook ({type(exc).__name__}: {exc}); it "
                                 "was left as it is. Repair it in Jupyter or pick another notebook.") from exc


@contextlib.contextmanager
def record_lock(path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """An exclusive cross-process lock for writing the record at ``path`` (``flock`` on its folder, so no
    lock file is left around; released when the descriptor closes, even if the process dies)."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TaskWeaverLabError(
                        f"Another program has been writing {path.name} for over {wait_s:.0f} s, so this step could "
                        "not be recorded yet; it is kept and written with the next step.") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def cell_text(cell: Any) -> str:
    """One cell as it appears inside the ``cells`` list of an nbformat file (indented, lines split)."""
    node = nbformat.from_dict({"cells": [copy.deepcopy(cell)]})
    split_lines(node)
    node.cells[0].get("metadata", {}).pop("trusted", None)
    return "\n".join("  " + line for line in json.dumps(node.cells[0], **_JSON).splitlines())  # type: ignore[arg-type]


def document_text(cell_texts: list[str], nb: Any) -> str:
    """The whole file from already serialized cells: the bytes ``nbformat.write`` would write."""
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k not in ("orig_nbformat", "orig_nbformat_minor", "signature")}
    meta_lines = json.dumps(metadata, **_JSON).splitlines()  # type: ignore[arg-type]
    cells = "[\n" + ",\n".join(cell_texts) + "\n ]" if cell_texts else "[]"
    return ('{\n "cells": ' + cells + ',\n "metadata": ' + "\n".join([meta_lines[0]] + [" " + l for l in meta_lines[1:]])
            + f',\n "nbformat": 4,\n "nbformat_minor": {int(nb.get("nbformat_minor", 5))}\n}}\n')


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_text_atomically(text: str, path: Path, mode: int | None = None) -> None:
    """Temporary file in the same folder + rename, with ``mode`` (default: the file's own, else what a new file
    gets); the temporary file never outlives a failure."""
    if mode is None:
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    tmp = path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_notebook_atomically(nb: Any, path: Path) -> None:
    """Write a whole notebook (temporary file + rename, the file's mode kept): a crash never leaves half a notebook."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(document_text([cell_text(c) for c in nb.cells], nb), path)


def read_only(path: Path) -> bool:
    """A notebook its owner marked read-only (no write bit), or one this process may not write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return not mode & 0o222 or not os.access(path, os.W_OK)


class FileRecorder:
    """Headless record: the .ipynb is written after every code cell and answer, so no finished step is ever
    lost (a user or plan cell is written together with the step that follows it).

    A notebook deleted while we record is not written again: whoever deleted it meant it, and a file
    brought back with only part of a round would pass for the record. A read-only notebook is not replaced,
    and a write that fails keeps its cells for the next write. ``notify`` says each of these once; the
    session's history (the chat) keeps every step.
    """

    def __init__(self, path: str | os.PathLike[str], notify: Callable[[str], None] | None = None, *,
                 nb: Any = None) -> None:
        """``nb``: the notebook as the caller just read it from ``path`` (read once, not twice)."""
        self.path = Path(path)
        self.notify = notify or (lambda text: log.warning("%s", text))
        # the file as we last read or wrote it, taken before reading: a write in between means "read it again"
        # (``nb`` read by the caller at some earlier moment: the first write reads the file again, under the lock)
        self._stamp: tuple[int, int, int] | None = self._file_stamp() if nb is None else (-1, -1, -1)
        self.nb = nb if nb is not None else read_notebook(self.path)
        self._seen = self.path.exists()  # a file we saw (or wrote) that is gone now was deleted
        self.deleted = False
        self._pending: list[Any] = []      # cells not on disk yet (kept across failed writes)
        self._texts: dict[int, tuple[Any, str]] = {}  # id(cell) -> (cell, its serialized text)
        self._problem = ""                 # the write problem already reported ("" once writes succeed)

    def add_cell(self, cell: Cell) -> None:
        self._pending.append(nbformat.from_dict(cell))
        if cell["cell_type"] == "code" or cell["metadata"].get(META, {}).get("kind") == "answer":
            self.flush()

    def flush(self) -> None:
        if not self._pending or self.gone():
            self._pending = [] if self.deleted else self._pending
            return
        if self._save(lambda: list(self.nb.cells) + self._pending):
            self.nb.cells.extend(self._pending)
            self._pending = []

    def write(self) -> None:
        """Write ``self.nb`` as it is (a subclass that read the file and placed cells itself)."""
        self._save(lambda: list(self.nb.cells), take_in_changes=False)

    def update(self, change: Callable[[Any], None]) -> None:
        """Under the lock: take in the file as another writer left it, ``change(self.nb)`` (e.g. insert a cell
        below an anchor), write. The read-change-write of a writer that places cells itself, safe against
        a second writer (a CLI on the notebook a server session records in)."""
        if self.gone():
            return

        def changed() -> list[Any]:
            change(self.nb)
            return list(self.nb.cells)

        self._save(changed)

    def gone(self) -> bool:
        """True once the notebook was deleted under us (said once through ``notify``)."""
        if not self.deleted and self._seen and not self.path.exists():
            self.deleted = True
            self.notify(f"{self.path.name} was deleted during the turn, so the rest of this round is not recorded in "
                        "it (the file was not written again). The chat keeps the whole round.")
        return self.deleted

    # --- internals -----------------------------------------------------------------------
    def _save(self, cells: Callable[[], list[Any]], take_in_changes: bool = True) -> bool:
        """Write under the lock (after taking in another writer's cells); a failure is reported once."""
        if read_only(self.path):
            return self._failed(f"{self.path} is read-only, so it was not changed and this round is not recorded in "
                                f"it (the chat keeps it). Make it writable (chmod u+w '{self.path}') and the next step "
                                "writes every unrecorded cell, or use another notebook.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with record_lock(self.path):
                if take_in_changes:
                    self._take_in_changes()
                texts = [self._text(c) for c in cells()]
                write_text_atomically(document_text(texts, self.nb), self.path)
                self._stamp = self._file_stamp()
        except OSError as exc:
            return self._failed(f"Could not write the record {self.path} ({exc.strerror or exc}), so this round is not "
                                "saved in it yet (the chat keeps it, and the next step tries again). "
                                + _ADVICE.get(exc.errno or 0, "Check the folder's permissions and free space."))
        except TaskWeaverLabError as exc:
            return self._failed(str(exc))
        if self._problem:
            self.notify(f"{self.path.name} is written again: every cell held back is in it now.")
        self._seen, self._problem = True, ""
        alive = {id(c) for c in list(self.nb.cells) + self._pending}
        self._texts = {k: v for k, v in self._texts.items() if k in alive}
        return True

    def _failed(self, text: str) -> bool:
        if text != self._problem:
            self.notify(text)
        self._problem = text
        return False

    def _text(self, cell: Any) -> str:
        cached = self._texts.get(id(cell))
        if cached is None or cached[0] is not cell:
            cached = self._texts[id(cell)] = (cell, cell_text(cell))
        return cached[1]

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _take_in_changes(self) -> None:
        """Someone else wrote the file since we last did (another writer, the user): build on their version."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        try:
            self.nb = read_notebook(self.path)
        except TaskWeaverLabError as exc:  # not a notebook any more: ours is all we have
            log.warning("%s", exc)
        self._stamp = stamp


_ADVICE = {
    errno.ENOSPC: "Free some disk space.",
    errno.EDQUOT: "Free some space (the disk quota is used up).",
    errno.EROFS: "The folder is on a read-only file system: record in a notebook elsewhere.",
    errno.EACCES: "Make the folder writable, or record in a notebook elsewhere.",
    errno.EPERM: "Make the folder writable, or record in a notebook elsewhere.",
}


class CallbackRecorder:
    """Hands each cell to a callback (the sidebar inserts it into the open notebook)."""

    def __init__(self, on_cell: Callable[[Cell], None]) -> None:
        self.on_cell = on_cell

    def add_cell(self, cell: Cell) -> None:
        self.on_cell(cell)
