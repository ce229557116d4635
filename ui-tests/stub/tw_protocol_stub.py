"""A protocol-only stand-in for taskweaver_lab's handlers, to exercise the sidebar without an LLM.

Used only by `TW_UI_STUB=1 npx playwright test --project stub` (never in the product). It replays a
fixed turn (plan, streamed text, draft, verdict, execution with a PNG, a `cell` event with insert=true,
answer, usage) over the documented protocol.
"""
import asyncio
import base64
import json
import uuid
import zlib
import struct

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web, websocket

SOCKETS: dict[str, set] = {}
HISTORY: dict[str, list] = {}


def _png() -> str:
    width, height = 40, 20
    row = b"\x00" + bytes(c for x in range(width) for c in ((x * 6) % 256, 120, 200))
    rows = row * height
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    raw += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


def _events(message: str) -> list:
    plan = {"kind": "plan", "message": "Plot the values.", "send_to": "CodeInterpreter",
            "plan": ["Plot the values", "Report the peak"], "init_plan": ["Plot the values", "Report the peak"],
            "current_step": 1, "stop": "InProcess", "reasoning": "", "round": 1}
    code = "import matplotlib.pyplot as plt\nplt.plot([3, 1, 4, 1, 5, 9])\nplt.show()"
    image = {"output_type": "display_data", "data": {"image/png": _png(), "text/plain": "<Figure>"}, "metadata": {}}
    cell = {"cell_type": "code", "source": code, "execution_count": 1, "outputs": [image],
            "metadata": {"taskweaver_lab": {"session": "stub", "round": 1, "step": 1, "verified": True, "attempt": 1}}}
    return [
        {"kind": "turn", "state": "started"},
        {"kind": "user", "text": message, "round": 1},
        *[{"kind": "delta", "role": "planner", "text": piece} for piece in ["{\"plan\": ", "[\"Plot", " the values\"]}"]],
        {"kind": "llm_call", "role": "planner", "model": "stub", "prompt_tokens": 500, "completion_tokens": 40,
         "latency_s": 0.4, "cached_tokens": 0, "retries": 0},
        plan,
        {"kind": "draft", "thought": "A line plot.", "code": code, "reply_type": "python", "attempt": 1, "step": 1, "round": 1},
        {"kind": "verdict", "ok": True, "violations": [], "checked_source": code, "attempt": 1},
        {"kind": "execution", "ok": True, "code": code, "outputs": [image], "summary": "", "error": "",
         "artifacts": ["plot.png"], "execution_count": 1, "duration_s": 0.3, "attempt": 1, "step": 1, "round": 1,
         "interrupted": False},
        {"kind": "cell", "cell": cell, "insert": True},
        {**plan, "current_step": 2},
        {"kind": "answer", "text": "The peak is **9**.", "is_question": False, "stop": "Completed", "round": 1},
        {"kind": "turn", "state": "finished",
         "usage": {"calls": 3, "prompt_tokens": 1500, "completion_tokens": 120, "latency_s": 1.2}},
    ]


class StatusHandler(APIHandler):
    @web.authenticated
    def get(self):
        self.finish(json.dumps({"configured": True, "help": "", "rtc": False, "approval": "auto",
                                "models": {"planner": "stub", "code_generator": "stub"}}))


class SessionsHandler(APIHandler):
    @web.authenticated
    def get(self):
        path = self.get_argument("path")
        events = [e for e in HISTORY.get(path, []) if e["kind"] in ("user", "plan", "execution", "answer")]
        self.finish(json.dumps({"session_id": "stub", "path": path, "events": events, "busy": False}))


class TurnsHandler(APIHandler):
    @web.authenticated
    async def post(self):
        body = json.loads(self.request.body)
        turn_id = uuid.uuid4().hex
        asyncio.ensure_future(_replay(body["path"], turn_id, body["message"]))
        self.finish(json.dumps({"turn_id": turn_id, "session_id": "stub", "record": "frontend"}))


class StopHandler(APIHandler):
    @web.authenticated
    def post(self, turn_id):
        self.finish("{}")


class EventsHandler(websocket.WebSocketHandler, JupyterHandler):
    async def get(self, *args, **kwargs):
        if self.current_user is None:
            raise web.HTTPError(403)
        return await super().get(*args, **kwargs)

    def open(self):
        self.path_ = self.get_argument("path")
        SOCKETS.setdefault(self.path_, set()).add(self)

    def on_close(self):
        SOCKETS.get(self.path_, set()).discard(self)


async def _replay(path, turn_id, message):
    for event in _events(message):
        await asyncio.sleep(0.3)
        HISTORY.setdefault(path, []).append(event)
        for socket in list(SOCKETS.get(path, ())):
            socket.write_message(json.dumps({"turn_id": turn_id, "session_id": "stub", "path": path, "event": event}))


def _jupyter_server_extension_points():
    return [{"module": "tw_protocol_stub"}]


def _load_jupyter_server_extension(serverapp):
    base = url_path_join(serverapp.web_app.settings["base_url"], "taskweaver_lab")
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, "status"), StatusHandler),
        (url_path_join(base, "sessions"), SessionsHandler),
        (url_path_join(base, "turns"), TurnsHandler),
        (url_path_join(base, r"turns/([^/]+)/stop"), StopHandler),
        (url_path_join(base, "events"), EventsHandler),
    ])
