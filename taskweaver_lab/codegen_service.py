"""The Codegen backend (``code_generator_backend = "codegen"``): an external code generation service
writes the code instead of the Code Generator LLM role.

It has ``codegen.CodeGenerator.write``'s signature and returns the same ``Draft``, so the agent's
loop is unchanged: the code is verified, guarded, approved and corrected exactly like the LLM's.

Protocol (the seed's ``CODEGEN_API_ENDPOINT`` / ``CODEGEN_API_KEY``):
``POST endpoint`` with ``Authorization: Bearer <key>`` and JSON
``{"task", "language": "python", "context", "error"?, "request_type"?: "error_resolution"}``;
the reply is JSON ``{"generated_code": str}``. A verifier rejection, a failed run or a reply without
code goes back as an ``error_resolution`` request carrying the error (and the failed code in the context).

The key is sent only in that header: never in the body, a message, a log line or the kernel.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Sequence

from .codegen import with_imports
from .config import TaskWeaverLab
from .llm import Cancelled, CallContext
from .steps import Draft, Plan, TaskWeaverLabError

log = logging.getLogger("taskweaver_lab.codegen_service")

# Hooks see one dict per service call: {"endpoint", "status", "latency_s", "request_type", "ok"} (no key, no body).
CallHook = Callable[[dict[str, Any]], None]
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9]*[ \t]*\n(.*?)\n?```\s*$", re.S)
_MAX_CONTEXT = 6000


class CodegenUnavailable(TaskWeaverLabError):
    """The service is unreachable, refuses the key or answers with something that is not code."""


class CodegenService:
    """A drop-in for ``codegen.CodeGenerator``: ``write(task, request, variables, feedback, attempt, ctx) -> Draft``."""

    def __init__(self, config: TaskWeaverLab, plugins_text: Callable[[str], str],
                 look: Callable[[str], str] = lambda query: "",
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.endpoint, self._key = config.codegen_api_endpoint, config.codegen_api_key
        self.timeout, self.retries = config.llm_timeout, config.llm_retries
        self.plugins_text, self.look, self.redact = plugins_text, look, redact
        self.hooks: list[CallHook] = []

    def write(self, task: Plan, request: str, variables: str, feedback: Sequence[tuple[Draft, str]],
              attempt: int, ctx: CallContext) -> Draft:
        if not self.endpoint:  # checked here, not at session start: a session never fails half-built
            raise CodegenUnavailable(
                "code_generator_backend is 'codegen' but no Codegen endpoint is set: set CODEGEN_API_ENDPOINT "
                "(and CODEGEN_API_KEY) or TaskWeaverLab.codegen_api_endpoint, or use code_generator_backend='llm'.")
        payload = self.payload(task, request, variables, feedback)
        reply = self._post(payload, ctx.cancel)
        code = _code_of(reply)
        if not code.strip():  # the loop sends a text reply back as a correction, like the LLM's
            return Draft(thought="The Codegen service returned no code.", code="", reply_type="text",
                         attempt=attempt, step=task.current_step, round=task.round)
        return Draft(thought="Code from the Codegen service.", code=with_imports(code), attempt=attempt,
                     step=task.current_step, round=task.round)

    def payload(self, task: Plan, request: str, variables: str, feedback: Sequence[tuple[Draft, str]]) -> dict[str, Any]:
        """The request body: the task, what the code may use (variables, plugins, the data's shape), the last error."""
        query = f"{request}\n{task.message}"
        parts = [f"User request: {request}", f"Plan step {task.current_step}: {task.message}"]
        for title, text in (("Variables in the kernel", variables), ("Plugins (functions already defined)",
                                                                      self.plugins_text(query)),
                            ("Data files", self.look(query))):
            if text.strip():
                parts.append(f"{title}:\n{text.strip()}")
        body: dict[str, Any] = {"task": task.message, "language": "python"}
        if feedback:
            draft, error = feedback[-1]
            if draft.code:
                parts.append(f"Code that failed:\n{draft.code}")
            body.update(error=self.redact(error), request_type="error_resolution")
        body["context"] = self.redact("\n\n".join(parts))[:_MAX_CONTEXT]
        return body

    def _post(self, payload: dict[str, Any], cancel: threading.Event) -> dict[str, Any]:
        """One logical call: retries on connection errors and 5xx, with backoff; Stop is honoured between tries."""
        tries = 0
        while True:
            if cancel.is_set():
                raise Cancelled()
            try:
                return self._request(payload)
            except _Retryable as exc:
                tries += 1
                if tries > self.retries:
                    raise CodegenUnavailable(str(exc)) from None
                if cancel.wait(min(8.0, 0.5 * 2 ** (tries - 1)) * (0.75 + random.random() / 2)):
                    raise Cancelled() from None

    def _request(self, payload: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
        record = {"endpoint": self.endpoint, "request_type": payload.get("request_type", "generation"), "ok": False}
        started = _now()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (configured URL)
                record["status"] = response.status
                body = response.read()
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
            self._report(record, started)
            raise self._http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout
            self._report(record, started)
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"Cannot reach the Codegen service at {self.endpoint}: {reason}. Is it running, and is "
                             "CODEGEN_API_ENDPOINT (TaskWeaverLab.codegen_api_endpoint) right?") from None
        record["ok"] = True
        self._report(record, started)
        return self._parse(body)

    def _http_error(self, exc: urllib.error.HTTPError) -> Exception:
        detail = _error_detail(exc)
        if exc.code in (401, 403):
            return CodegenUnavailable(f"The Codegen service rejected the key (HTTP {exc.code}). Check CODEGEN_API_KEY "
                                      "(TaskWeaverLab.codegen_api_key).")
        if exc.code == 404:
            return CodegenUnavailable(f"The Codegen service has no such endpoint (HTTP 404 at {self.endpoint}). Check "
                                      "CODEGEN_API_ENDPOINT (TaskWeaverLab.codegen_api_endpoint).")
        message = f"The Codegen service failed (HTTP {exc.code}){': ' + self.redact(detail) if detail else ''}."
        if exc.code == 429 or exc.code >= 500:
            return _Retryable(message + " Try again later, or switch to code_generator_backend='llm'.")
        return CodegenUnavailable(message + " Its request format may differ from the Codegen API this backend speaks.")

    def _parse(self, body: bytes) -> dict[str, Any]:
        try:
            reply = json.loads(body or b"null")
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("generated_code", ""), str):
            raise CodegenUnavailable(f"The Codegen service at {self.endpoint} did not answer with JSON "
                                     '{"generated_code": "..."}; is CODEGEN_API_ENDPOINT the code generation URL?')
        return reply

    def _report(self, record: dict[str, Any], started: float) -> None:
        record["latency_s"] = round(_now() - started, 4)
        log.info("codegen %s status=%s %.2fs", record["request_type"], record.get("status"), record["latency_s"])
        for hook in self.hooks:
            hook(dict(record))


class _Retryable(TaskWeaverLabError):
    pass


def _now() -> float:
    return time.monotonic()


def _code_of(reply: dict[str, Any]) -> str:
    """``generated_code`` without a Markdown fence around it (some services add one)."""
    code = str(reply.get("generated_code") or "")
    fenced = _FENCE.match(code)
    return (fenced.group(1) if fenced else code).strip("\n")


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()[:2000].decode("utf-8", "replace")
    except Exception:  # a body that cannot be read says nothing more
        return ""
    try:
        data = json.loads(raw)
    except ValueError:
        return " ".join(raw.split())[:200]
    if isinstance(data, dict):
        inner = data.get("error")
        text = inner.get("message") if isinstance(inner, dict) else inner or data.get("detail") or data.get("message")
        return " ".join(str(text or "").split())[:200]
    return ""
