"""A real loopback HTTP server speaking the OpenAI chat-completions protocol with scripted replies.

Shipped for tests (ours and plugin authors'). Replies are queued per model name, so a test
configures ``planner_model="planner"`` and ``code_generator_model="coder"`` and scripts each role:

    with ScriptedLLMServer({"planner": [plan_json, ...], "coder": [markdown, ...]}) as server:
        config = {"base_url": server.base_url, "planner_model": "planner", "code_generator_model": "coder"}

A reply is a string (the content) or a dict: ``{"content": str, "status": int, "delay": float,
"chunk_chars": int, "chunk_delay": float, "headers": {name: value}, "fault": str}`` (``status`` >= 400
answers an error instead, in the flavor's error shape, with ``code`` if given; ``headers`` are added to the response, e.g.
``{"Retry-After": "2"}`` with a 429). ``fault`` makes the endpoint misbehave:

- ``"bad_sse"``: a streamed event that is not JSON, after the text ``partial`` (default "Partial answer: ");
- ``"bad_body"``: HTTP 200 with an HTML page instead of JSON or an event stream (a proxy's error page);
- ``"error_event"``: after ``partial``, the provider's error event (``content`` is its message);
- ``"cut"``: after ``partial``, the connection is closed in the middle of the (chunked) stream;
- ``"drip"``: headers, then a keep-alive comment every ``chunk_delay`` seconds, never a token.

``flavor`` picks the shape of the endpoint: ``"openai"`` (``/v1``, ``Authorization: Bearer``),
``"azure"`` (``/openai/deployments/{deployment}/chat/completions?api-version=...``, an ``api-key``
header; the deployment is the queue's name), or an OpenAI-compatible server's error bodies:
``"vllm"``, ``"llamacpp"``, ``"lmstudio"``, ``"ollama"``. ``formats`` are the ``response_format`` types it
accepts (others get its 400), ``context_chars`` a context limit (longer prompts get its context-length
error), ``api_key`` the key it demands (else its 401). ``server.requests`` logs every request body,
``server.authorizations`` the key header each came with, ``server.paths`` each request's path and query,
``server.headers`` its headers (names in lower case), ``server.hangups`` how many streams the client closed
before their end (Stop, a deadline).
Command line: ``python -m taskweaver_lab.testing serve --script FILE --port N``.
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
from urllib.parse import parse_qs, urlsplit

Script = dict[str, list[Any]]
FLAVORS = ("openai", "azure", "vllm", "llamacpp", "lmstudio", "ollama")
CONTEXT_MESSAGES = {
    "openai": "This model's maximum context length is {limit} tokens. However, your messages resulted in {used} tokens. "
              "Please reduce the length of the messages.",
    "vllm": "This model's maximum context length is {limit} tokens. However, you requested {used} tokens ({used} in the "
            "messages, 0 in the completion). Please reduce the length of the messages or completion.",
    "llamacpp": "the request exceeds the available context size, try increasing it",
    "lmstudio": "Trying to keep the first {used} tokens when context the overflows. However, the model is loaded with "
                "context length of only {limit} tokens, which is not enough.",
    "ollama": "prompt too long; exceeded max context length by {over} tokens",
}


class ScriptedLLMServer:
    def __init__(self, script: Script | None = None, port: int = 0, reject_json_schema: bool = False, *,
                 flavor: str = "openai", formats: tuple[str, ...] = ("json_schema", "json_object"),
                 context_chars: int = 0, api_key: str = "") -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, not {flavor!r}")
        self.queues: dict[str, deque[Any]] = {k: deque(v) for k, v in (script or {}).items()}
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.hangups = 0  # streams the client closed before their end (Stop, a deadline)
        self.flavor, self.context_chars, self.api_key = flavor, context_chars, api_key
        self.formats = tuple(f for f in formats if not (reject_json_schema and f == "json_schema"))
        self.closing = threading.Event()  # set on stop: ends delays and drips at once
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-llm", daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (for ``flavor="azure"``, ``root_url`` is the Azure endpoint)."""
        return self.root_url + "/v1"

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

    def record(self, body: dict[str, Any], path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.authorizations.append(headers.get("api-key" if self.flavor == "azure" else "authorization", ""))
            self.paths.append(path)
            self.headers.append(headers)

    def start(self) -> "ScriptedLLMServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ScriptedLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the shape of the endpoint ---------------------------------------------------------
    def route(self, path: str) -> str | None:
        """The model (Azure: the deployment) a chat-completions path names, "" for any, None if no such path."""
        parts = urlsplit(path)
        if self.flavor == "azure":
            segments = parts.path.strip("/").split("/")
            ok = (len(segments) == 5 and segments[:2] == ["openai", "deployments"] and segments[3:] == ["chat", "completions"]
                  and parse_qs(parts.query).get("api-version"))
            return segments[2] if ok else None
        return "" if parts.path.rstrip("/") == "/v1/chat/completions" else None

    def key_of(self, headers: Any) -> str:
        if self.flavor == "azure":
            return headers.get("api-key", "")
        return headers.get("Authorization", "").removeprefix("Bearer ")

    def refusal(self, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]] | None:
        """The error this endpoint answers before any script: a wrong key, an unsupported format, a too long prompt."""
        if self.api_key and key != self.api_key:
            return 401, error_body(self.flavor, 401, "Incorrect API key provided.", "invalid_api_key")
        fmt = (body.get("response_format") or {}).get("type")
        if fmt and fmt != "text" and fmt not in self.formats:
            return 400, error_body(self.flavor, 400, f"response_format {fmt} is not supported", "invalid_request_error")
        size = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        if self.context_chars and size > self.context_chars:
            limit, used = self.context_chars // 4, size // 4
            text = CONTEXT_MESSAGES.get(self.flavor, CONTEXT_MESSAGES["openai"]).format(limit=limit, used=used, over=used - limit)
            code = "exceed_context_size_error" if self.flavor == "llamacpp" else "context_length_exceeded"
            return 400, error_body(self.flavor, 400, text, code)
        return None


def error_body(flavor: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """An error as each kind of server writes it."""
    if flavor == "azure":
        if status == 401:
            return {"statusCode": 401, "message": "Access denied due to invalid subscription key or wrong API endpoint."}
        return {"error": {"code": code or str(status), "message": message}}
    if flavor == "vllm":
        return {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": status}
    if flavor == "llamacpp":
        return {"error": {"code": status, "message": message, "type": code or "server_error"}}
    if flavor == "lmstudio":
        return {"error": message}
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    """One request to the scripted endpoint (``_handler_for`` binds it to its server)."""

    state: ScriptedLLMServer  # the scripted server this handler answers for

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        models = [{"id": m, "object": "model"} for m in self.state.queues]
        self._json(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        key = self.state.key_of(self.headers)
        self.state.record(body, self.path, {name.lower(): value for name, value in self.headers.items()})
        model = self.state.route(self.path)
        if model is None:
            return self._json(404, error_body(self.state.flavor, 404, "Resource not found", "404"))
        refused = self.state.refusal(body, key)
        if refused:
            return self._json(*refused)
        if self.state.flavor == "azure" and model not in self.state.queues:
            return self._json(404, {"error": {"code": "DeploymentNotFound", "message": (
                "The API deployment for this resource does not exist. If you created the deployment within the "
                "last 5 minutes, please wait a moment and try again.")}})
        reply = self.state.next_reply(model or body.get("model", ""))
        self._answer(body, reply if isinstance(reply, dict) else {"content": reply})

    def _answer(self, body: dict[str, Any], reply: dict[str, Any]) -> None:
        if self.state.closing.wait(float(reply.get("delay", 0))):
            self.close_connection = True  # the server stops: hang up on a client still waiting
            return
        extra = dict(reply.get("headers") or {})
        if int(reply.get("status", 200)) >= 400:
            status = int(reply["status"])
            message = reply.get("content", "error")
            return self._json(status, error_body(self.state.flavor, status, message, reply.get("code")), extra)
        if reply.get("fault") == "bad_body":
            return self._raw(200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>", extra)
        usage = _usage(body, reply["content"])
        if body.get("stream"):
            return self._stream(body, reply, usage, extra)
        self._json(200, _completion(body, reply["content"], usage), extra)

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._raw(status, "application/json", json.dumps(payload).encode(), headers)

    def _raw(self, status: int, content_type: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, body: dict[str, Any], reply: dict[str, Any], usage: dict[str, int],
                headers: dict[str, str]) -> None:
        fault = reply.get("fault")
        self.chunked = fault == "cut"  # a cut only shows as one in a body with framing
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding" if self.chunked else "Connection", "chunked" if self.chunked else "close")
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        self.close_connection = True
        try:
            if fault == "drip":
                return self._drip(float(reply.get("chunk_delay") or 0.2))
            self._pieces(body, reply)
            if fault:
                return self._fault(fault, reply)
            self._event(_chunk(body, {}, finish="stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                self._event({**_chunk(body, {}), "choices": [], "usage": usage})
            self._write(b"data: [DONE]\n\n")
            if self.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client hung up (Stop, a deadline)
            with self.state._lock:
                self.state.hangups += 1

    def _pieces(self, body: dict[str, Any], reply: dict[str, Any]) -> None:
        text, size = reply["content"], int(reply.get("chunk_chars", 16))
        if reply.get("fault") in ("bad_sse", "error_event", "cut"):
            text = reply.get("partial", "Partial answer: ")  # what the listener saw before the fault
        for i in range(0, len(text), size):
            self._event(_chunk(body, {"content": text[i:i + size]}))
            if reply.get("chunk_delay") and self.state.closing.wait(float(reply["chunk_delay"])):
                return

    def _fault(self, fault: str, reply: dict[str, Any]) -> None:
        if fault == "bad_sse":
            self._write(b"data: {\"choices\": [{\"delta\": <not json>\n\n")
        elif fault == "error_event":
            self._event({"error": {"message": reply.get("content", "overloaded"), "type": "server_error"}})
        # "cut": return without the end of the stream; the server closes the connection

    def _drip(self, every: float) -> None:
        while not self.state.closing.wait(every):
            self._write(b": keep-alive\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self._write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write(self, data: bytes) -> None:
        if getattr(self, "chunked", False):
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()


def _handler_for(server: ScriptedLLMServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"state": server})


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
