"""A real loopback HTTP server speaking the OpenAI chat-completions protocol with scripted replies.

Shipped for tests (ours and plugin authors'). Replies are queued per model name, so a test
configures ``planner_model="planner"`` and ``code_generator_model="coder"`` and scripts each role:

    with ScriptedLLMServer({"planner": [plan_json, ...], "coder": [markdown, ...]}) as server:
        config = {"base_url": server.base_url, "planner_model": "planner", "code_generator_model": "coder"}

A reply is a string (the content) or a dict: ``{"content": str, "status": int, "delay": float,
"chunk_chars": int}`` (``status`` >= 400 answers an error instead). ``server.requests`` logs every
request body for assertions, ``server.authorizations`` the Authorization header each came with
(what key the client sent). Command line: ``python -m taskweaver_lab.testing serve --script FILE --port N``.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Script = dict[str, list[Any]]


class ScriptedLLMServer:
    def __init__(self, script: Script | None = None, port: int = 0, reject_json_schema: bool = False) -> None:
        self.queues: dict[str, deque[Any]] = {k: deque(v) for k, v in (script or {}).items()}
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.reject_json_schema = reject_json_schema
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-llm", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def add(self, model: str, *replies: Any) -> None:
        with self._lock:
            self.queues.setdefault(model, deque()).extend(replies)

    def calls(self, model: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if model is None or r.get("model") == model]

    def next_reply(self, model: str) -> Any:
        with self._lock:
            queue = self.queues.get(model)
            if not queue:
                return {"status": 500, "content": f"scripted server: no reply left for model {model!r}"}
            return queue.popleft()

    def start(self) -> "ScriptedLLMServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ScriptedLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(server: ScriptedLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            models = [{"id": m, "object": "model"} for m in server.queues]
            self._json(200, {"object": "list", "data": models})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with server._lock:
                server.requests.append(body)
                server.authorizations.append(self.headers.get("Authorization", ""))
            fmt = (body.get("response_format") or {}).get("type")
            if server.reject_json_schema and fmt == "json_schema":
                return self._json(400, {"error": {"message": "response_format json_schema is not supported"}})
            reply = server.next_reply(body.get("model", ""))
            reply = reply if isinstance(reply, dict) else {"content": reply}
            time.sleep(float(reply.get("delay", 0)))
            if int(reply.get("status", 200)) >= 400:
                return self._json(int(reply["status"]), {"error": {"message": reply.get("content", "error")}})
            usage = _usage(body, reply["content"])
            if body.get("stream"):
                return self._stream(body, reply, usage)
            self._json(200, _completion(body, reply["content"], usage))

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, body: dict[str, Any], reply: dict[str, Any], usage: dict[str, int]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            text, size = reply["content"], int(reply.get("chunk_chars", 16))
            for i in range(0, len(text), size):
                self._event(_chunk(body, {"content": text[i:i + size]}))
                if reply.get("chunk_delay"):
                    time.sleep(float(reply["chunk_delay"]))
            final = _chunk(body, {}, finish="stop")
            self._event(final)
            if (body.get("stream_options") or {}).get("include_usage"):
                self._event({**_chunk(body, {}), "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, payload: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

    return Handler


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(4 + len(str(m.get("content", ""))) // 4 for m in body.get("messages", [])) + 3
    return {"prompt_tokens": prompt, "completion_tokens": max(1, len(text) // 4),
            "total_tokens": prompt + max(1, len(text) // 4)}


def _completion(body: dict[str, Any], text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", ""), "usage": usage,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    }


def _chunk(body: dict[str, Any], delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()),
        "model": body.get("model", ""), "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def plan_reply(message: str, send_to: str = "CodeInterpreter", stop: str = "InProcess",
               plan: list[str] | None = None, step: int = 1, init_plan: list[str] | None = None) -> str:
    """A Planner reply in ARCHITECTURE A1's JSON form, for scripts."""
    plan = plan or [message]
    return json.dumps({"init_plan": init_plan or plan, "plan": plan, "current_plan_step": step,
                       "send_to": send_to, "message": message, "stop": stop})


def code_reply(code: str, thought: str = "Here is the code.") -> str:
    """A Code Generator reply in the Markdown form (prose + one python block)."""
    return f"{thought}\n```python\n{code.strip()}\n```"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m taskweaver_lab.testing")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="serve a scripted OpenAI-compatible endpoint on loopback")
    serve.add_argument("--script", required=True, help='JSON file: {"model name": [reply, ...], ...}')
    serve.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = ScriptedLLMServer(json.loads(Path(args.script).read_text()), port=args.port).start()
    print(f"BASE_URL={server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
