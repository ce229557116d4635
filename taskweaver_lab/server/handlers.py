"""REST + websocket handlers: thin, authenticated; the work is in ``turns.py``.

Browser endpoints use Jupyter's identity (``@web.authenticated`` + ``@authorized``; the websocket
``@ws_authenticated`` + an authorizer check, like jupyter_server's own sockets). The kernel endpoints
(``kernel/...``) are for ``%%taskweaver`` and authenticate with the kernel's signature instead of the
server token (``kernel_auth.py``), scoped to that kernel's notebook.
``scripts/check_handler_auth.py`` fails CI when a method here lacks one of these.
"""
from __future__ import annotations

import functools
import json
import time
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import urlparse

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import allow_unauthenticated, authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web, websocket

from .. import kernel_auth
from ..config import TaskWeaverLab
from ..llm import UserChoices
from .gateway_kernel import GATEWAY_MAGIC, is_gateway
from .turns import TurnError, TurnManager, TurnRequest
from .user_settings import saved_overrides

AUTH_RESOURCE = "kernels"  # a turn runs code in a kernel: the same permission as running a cell
NAMESPACE = "taskweaver_lab"
LONG_POLL_MAX_S = 30.0
F = TypeVar("F", bound=Callable[..., Any])


def refusals(method: F) -> F:
    """A ``TurnError`` becomes its status with ``{"error": ...}``, never a traceback."""

    @functools.wraps(method)
    async def wrapper(self: "BaseHandler", *args: Any, **kwargs: Any) -> Any:
        return await _answer_refusals(self, lambda: ensure_async(method(self, *args, **kwargs)))

    return wrapper  # type: ignore[return-value]


async def _answer_refusals(handler: "BaseHandler", call: Callable[[], Awaitable[Any]]) -> Any:
    """The one error-to-HTTP mapping: a ``TurnError`` is its status and ``{"error": "<one sentence>"}``."""
    try:
        return await call()
    except TurnError as exc:
        handler.set_status(exc.status)
        handler.finish({"error": str(exc)})


class BaseHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def turns(self) -> TurnManager:
        manager = getattr(self.extensionapp, "turns", None)
        if manager is None:
            raise TurnError(503, getattr(self.extensionapp, "config_error", "")
                            or "The taskweaver_lab extension is still starting; retry in a moment.")
        return manager

    def body(self) -> dict[str, Any]:
        if len(self.request.body or b"") > MAX_BODY_BYTES:
            raise TurnError(413, f"The request body is over {MAX_BODY_BYTES // 1024 ** 2} MiB: put large data in a file "
                                 "in the notebook's folder and name it in the message.")
        try:
            data = json.loads(self.request.body or b"{}")
        except UnicodeDecodeError:
            raise TurnError(400, "The request body is not UTF-8 text.") from None
        except json.JSONDecodeError as exc:
            raise TurnError(400, f"The request body is not JSON: {exc}.") from None
        if not isinstance(data, dict):
            raise TurnError(400, "The request body must be a JSON object.")
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors are ``{"error": "<one sentence>"}``: the sidebar shows them as they are."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))


def message_field(data: dict[str, Any], config: TaskWeaverLab) -> str:
    """The user's message, refused at the door when over the limit (it would be recorded and sent to the LLM)."""
    message = text_field(data, "message")
    if len(message) > config.max_message_chars:
        raise TurnError(413, f"The message is {len(message):,} characters long; the limit is "
                             f"{config.max_message_chars:,} (TaskWeaverLab.max_message_chars). Put large data in a "
                             "file in the notebook's folder and name it in the message.")
    return message


def text_field(data: dict[str, Any], name: str, required: bool = True) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise TurnError(400, f"'{name}' must be a non-empty string.")
    return value


def approval_field(data: dict[str, Any], default: str) -> str:
    value = data.get("approval") or default
    if value not in ("auto", "approve"):
        raise TurnError(400, "'approval' must be 'auto' or 'approve'.")
    return value


MAX_CHOICE_CHARS = 200
MAX_BODY_BYTES = 2 * 1024 ** 2  # far above any message limit; refused before parsing


def choices_field(data: dict[str, Any], config: TaskWeaverLab) -> UserChoices:
    """The user's settings sent with a turn (``overrides``), checked against what the admin allows."""
    raw = data.get("overrides") or {}
    if not isinstance(raw, dict) or set(raw) - {"planner_model", "code_generator_model", "base_url"}:
        raise TurnError(400, "'overrides' may only hold planner_model, code_generator_model and base_url.")
    for name, value in raw.items():
        if not isinstance(value, str) or len(value) > MAX_CHOICE_CHARS or not value.isprintable():
            raise TurnError(400, f"Setting {name!r} must be a short printable string.")
    choices = UserChoices(**{name: value.strip() for name, value in raw.items()})
    for model in filter(None, (choices.planner_model, choices.code_generator_model)):
        if config.allowed_models and model not in config.allowed_models:
            raise TurnError(403, f"Model {model!r} is not offered on this server; pick one of "
                                 f"{', '.join(config.allowed_models)} in Settings > TaskWeaver (or clear the field).")
    if choices.base_url:
        if not config.allow_user_base_url:
            raise TurnError(403, "This server does not let users pick their own LLM endpoint: clear 'LLM base URL' "
                                 "in Settings > TaskWeaver.")
        url = urlparse(choices.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise TurnError(400, f"'LLM base URL' must be an http(s) URL like http://127.0.0.1:8013/v1, "
                                 f"got {choices.base_url!r}.")
    return choices


# --- the sidebar's endpoints ------------------------------------------------------------------
class StatusHandler(BaseHandler):
    @web.authenticated
    @authorized
    @refusals
    def get(self) -> None:
        self.finish(self.extensionapp.status())


class SessionsHandler(BaseHandler):
    auth_resource = "contents"  # the chat is rebuilt from the notebook's content

    @web.authenticated
    @authorized
    @refusals
    async def get(self) -> None:
        path = self.get_query_argument("path", "")
        if not path:
            raise TurnError(400, "Missing ?path=<notebook path>.")
        self.finish(await self.turns.snapshot(path))


class TurnsHandler(BaseHandler):
    @web.authenticated
    @authorized
    @refusals
    async def post(self) -> None:
        turns = self.turns  # degraded (a bad config) or still starting: refused here, before the config is read
        data, config = self.body(), self.extensionapp.config_section
        record = data.get("record") or "server"
        if record not in ("frontend", "server"):
            raise TurnError(400, "'record' must be 'frontend' or 'server'.")
        request = TurnRequest(path=text_field(data, "path"), kernel_id=text_field(data, "kernel_id"),
                              message=message_field(data, config),
                              approval=approval_field(data, config.approval), record=record,
                              choices=choices_field(data, config))
        turn = await turns.start(request)
        self.set_status(202)
        self.finish(turn.accepted())


class StopHandler(BaseHandler):
    @web.authenticated
    @authorized
    @refusals
    def post(self, turn_id: str) -> None:
        self.finish(self.turns.stop(turn_id))


class ApproveHandler(BaseHandler):
    @web.authenticated
    @authorized
    @refusals
    def post(self, turn_id: str) -> None:
        data = self.body()
        self.finish(self.turns.approve(turn_id, text_field(data, "action"), str(data.get("code") or "")))


class EventsSocket(ExtensionHandlerMixin, WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """``events?path=``: every event of every turn on that notebook (sidebar and magic)."""

    auth_resource = AUTH_RESOURCE
    path_arg = ""

    async def pre_get(self) -> None:
        allowed = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE))
        if not allowed:
            raise web.HTTPError(403)

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.pre_get()
        self.path_arg = self.get_query_argument("path", "")
        if not self.path_arg or getattr(self.extensionapp, "turns", None) is None:
            raise web.HTTPError(400, "Missing ?path=<notebook path> (or the extension is still starting).")
        result = super().get(*args, **kwargs)
        if result is not None:
            await result

    def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().open(*args, **kwargs)
        self.extensionapp.turns.subscribe(self.path_arg, self.send_envelope)

    def send_envelope(self, envelope: dict[str, Any]) -> None:
        self.write_message(json.dumps(envelope))

    def on_message(self, message: str | bytes) -> None:
        pass  # the socket only pushes; requests go through REST

    def on_close(self) -> None:
        turns = getattr(self.extensionapp, "turns", None)
        if turns is not None:
            turns.unsubscribe(self.path_arg, self.send_envelope)


# --- the kernel's endpoints (%%taskweaver) -----------------------------------------------------
def kernel_signed(method: F) -> F:
    """Authenticate by the kernel's HMAC signature; sets ``self.kernel_id`` and ``self.notebook_path``."""

    @functools.wraps(method)
    async def wrapper(self: "KernelHandler", *args: Any, **kwargs: Any) -> Any:
        async def authenticated() -> Any:
            await self.authenticate_kernel()
            return await ensure_async(method(self, *args, **kwargs))

        return await _answer_refusals(self, authenticated)

    wrapper.taskweaver_kernel_signed = True  # type: ignore[attr-defined]  # read by check_handler_auth.py
    return wrapper  # type: ignore[return-value]


class KernelHandler(BaseHandler):
    kernel_id = ""
    notebook_path = ""
    _seen: dict[tuple[str, str], float] = {}  # (kernel, signature) -> when: a replayed POST is refused

    def check_xsrf_cookie(self) -> None:
        """No cookie carries authority here (only the kernel's signature does), so XSRF cannot apply."""

    async def authenticate_kernel(self) -> None:
        kernel_id = self.request.headers.get(kernel_auth.KERNEL_HEADER, "")
        manager = self.serverapp.kernel_manager
        if is_gateway(manager):  # a gateway's kernel: its key is not known here, no signature can be checked
            raise TurnError(409, GATEWAY_MAGIC)
        if not kernel_id or kernel_id not in manager:
            raise TurnError(403, "Unknown kernel: this endpoint is for %%taskweaver in a kernel of this server.")
        key = bytes(manager.get_kernel(kernel_id).session.key or b"")
        paths = (self.request.path, self.request.uri or self.request.path)
        try:
            kernel_auth.verify(self.request.headers, key, self.request.method or "", paths, self.request.body or b"")
        except kernel_auth.SignatureError as exc:
            raise TurnError(403, str(exc)) from None
        self._refuse_replay(kernel_id)
        self.kernel_id, self.notebook_path = kernel_id, await self._notebook_of(kernel_id)

    def _refuse_replay(self, kernel_id: str) -> None:
        if self.request.method != "POST":
            return  # reads are idempotent; a long-poll may repeat within a second
        now = time.monotonic()
        for seen, when in list(self._seen.items()):
            if now - when > 2 * kernel_auth.MAX_SKEW_S:
                del self._seen[seen]
        signature = (kernel_id, self.request.headers.get(kernel_auth.SIGNATURE_HEADER, ""))
        if signature in self._seen:
            raise TurnError(403, "This signed request was already used (replay refused).")
        self._seen[signature] = now

    async def _notebook_of(self, kernel_id: str) -> str:
        sessions = await ensure_async(self.serverapp.session_manager.list_sessions())
        paths = [s["path"] for s in sessions if (s.get("kernel") or {}).get("id") == kernel_id]
        notebooks = [p for p in paths if p.endswith(".ipynb")]
        if not notebooks:
            raise TurnError(403, "This kernel is not attached to a notebook session on this server.")
        return notebooks[0]

    def owned_turn(self, turn_id: str) -> str:
        """A kernel may only see and stop the turns of its own notebook."""
        turn = self.turns.turns.get(turn_id)
        if turn is None or turn.path != self.notebook_path:
            raise TurnError(404, f"Unknown turn {turn_id} for this notebook.")
        return turn_id


class KernelTurnsHandler(KernelHandler):
    @allow_unauthenticated
    @kernel_signed
    async def post(self) -> None:
        turns = self.turns
        data = self.body()
        cell_id = data.get("cell_id")
        request = TurnRequest(path=self.notebook_path, kernel_id=self.kernel_id,
                              message=message_field(data, self.extensionapp.config_section),
                              approval=approval_field(data, self.extensionapp.config_section.approval),
                              origin="magic", after_cell_id=cell_id if isinstance(cell_id, str) and cell_id else None,
                              new=bool(data.get("new")), plugins_only=bool(data.get("plugins_only")),
                              # the kernel never sees Settings > TaskWeaver: the saved file, under the admin's limits
                              choices=choices_field({"overrides": saved_overrides()}, self.extensionapp.config_section))
        turn = await turns.start(request)
        self.set_status(202)
        self.finish({**turn.accepted(), "path": self.notebook_path})


class KernelEventsHandler(KernelHandler):
    @allow_unauthenticated
    @kernel_signed
    async def get(self, turn_id: str) -> None:
        try:
            after = max(0, int(self.get_query_argument("after", "0")))
            timeout = min(LONG_POLL_MAX_S, max(0.0, float(self.get_query_argument("timeout", "20"))))
        except ValueError:
            raise TurnError(400, "'after' must be an integer and 'timeout' a number of seconds.") from None
        self.finish(await self.turns.events_after(self.owned_turn(turn_id), after, timeout))


class KernelStopHandler(KernelHandler):
    @allow_unauthenticated
    @kernel_signed
    def post(self, turn_id: str) -> None:
        self.finish(self.turns.stop(self.owned_turn(turn_id)))


class KernelApproveHandler(KernelHandler):
    @allow_unauthenticated
    @kernel_signed
    def post(self, turn_id: str) -> None:
        data = self.body()
        turn_id = self.owned_turn(turn_id)
        self.finish(self.turns.approve(turn_id, text_field(data, "action"), str(data.get("code") or "")))


TURN_ID = r"(?P<turn_id>[0-9a-f]{6,32})"


def routes() -> list[tuple[str, type]]:
    """URL patterns relative to the server's base_url."""
    from .connection import ConnectionHandler  # it builds on BaseHandler
    from .save_example import SaveExampleHandler  # it builds on BaseHandler

    return [
        (f"{NAMESPACE}/connection", ConnectionHandler),
        (f"{NAMESPACE}/examples", SaveExampleHandler),
        (f"{NAMESPACE}/status", StatusHandler),
        (f"{NAMESPACE}/sessions", SessionsHandler),
        (f"{NAMESPACE}/turns", TurnsHandler),
        (f"{NAMESPACE}/turns/{TURN_ID}/stop", StopHandler),
        (f"{NAMESPACE}/turns/{TURN_ID}/approve", ApproveHandler),
        (f"{NAMESPACE}/events", EventsSocket),
        (f"{NAMESPACE}/kernel/turns", KernelTurnsHandler),
        (f"{NAMESPACE}/kernel/turns/{TURN_ID}/events", KernelEventsHandler),
        (f"{NAMESPACE}/kernel/turns/{TURN_ID}/stop", KernelStopHandler),
        (f"{NAMESPACE}/kernel/turns/{TURN_ID}/approve", KernelApproveHandler),
    ]
