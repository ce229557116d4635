"""One LLM request in a worker thread, watched from the caller's: Stop and the total deadline act at once.

The HTTP client blocks while it waits for the first byte and while a server drips keep-alive comments, so
the caller never blocks on it: a worker thread makes the request and hands each item (a stream chunk, or
the whole completion) over a queue. The caller checks Stop and the deadline between items and while it
waits, reports how long it has waited for the first item, and on leaving shuts the response's socket, so
the worker's read ends and the server sees the client go (a drip ends too).
"""
from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
POLL_S = 0.1  # how often the caller looks at Stop and the clock while nothing arrives
_ITEM, _END, _ERROR = "item", "end", "error"


class Cancelled(Exception):
    """The user pressed Stop."""


class DeadlineExceeded(Exception):
    """The request took longer in all than its deadline allows."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete reply after {seconds:.0f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class Watch:
    """What the caller watches while the worker waits on the endpoint."""

    cancel: threading.Event
    deadline: float = 0.0                              # time.monotonic() value to give up at; 0: none
    progress_every_s: float = 0.0                      # 0: no progress reports
    on_waiting: Callable[[float], None] | None = None  # seconds waited so far for the first item


def relay(open_items: Callable[[], Iterable[T]], watch: Watch) -> Iterator[T]:
    """The items ``open_items()`` yields, made and read in a worker thread; raises what the worker raised,
    ``Cancelled`` on Stop and ``DeadlineExceeded`` at the deadline, without waiting for the worker."""
    channel: queue.Queue[tuple[str, Any]] = queue.Queue()
    opened: list[Any] = []
    left = threading.Event()
    worker = threading.Thread(target=_work, args=(open_items, channel, opened, left), name="llm-request", daemon=True)
    worker.start()
    finished = False
    try:
        yield from _drain(channel, watch)
        finished = True
    finally:
        left.set()
        for items in list(opened) if not finished else ():  # left early: the worker may still be reading
            hang_up(items)


def _work(open_items: Callable[[], Iterable[Any]], channel: "queue.Queue[tuple[str, Any]]", opened: list[Any],
          left: threading.Event) -> None:
    try:
        items = open_items()
        opened.append(items)
        if left.is_set():  # the caller left while the request was being made
            return _close(items)
        for item in items:
            channel.put((_ITEM, item))
            if left.is_set():
                return _close(items)
        channel.put((_END, None))
    except BaseException as exc:  # handed to the caller, which decides; nothing is lost in this thread
        channel.put((_ERROR, exc))


def _drain(channel: "queue.Queue[tuple[str, Any]]", watch: Watch) -> Iterator[Any]:
    started = time.monotonic()
    next_report = started + watch.progress_every_s
    waiting = True
    while True:
        try:
            kind, value = channel.get(timeout=POLL_S)
        except queue.Empty:
            kind, value = "", None
        now = time.monotonic()
        if watch.cancel.is_set():
            raise Cancelled()
        if watch.deadline and now >= watch.deadline:
            raise DeadlineExceeded(now - started)
        if kind == _END:
            return
        if kind == _ERROR:
            raise value
        if kind == _ITEM:
            waiting = False
            yield value
        elif waiting and watch.on_waiting is not None and watch.progress_every_s > 0 and now >= next_report:
            watch.on_waiting(now - started)
            next_report = now + watch.progress_every_s


def hang_up(items: Any) -> None:
    """Shut the socket under a streamed response (safe from any thread): the reading thread wakes with an
    end of stream and closes the response itself; the server sees the client leave."""
    response = getattr(items, "response", None)
    extensions = getattr(response, "extensions", None) or {}
    stream = extensions.get("network_stream") if isinstance(extensions, dict) else None
    get_extra_info = getattr(stream, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def _close(items: Any) -> None:
    hang_up(items)
    close = getattr(items, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a broken response may complain; it is closed either way
            pass
