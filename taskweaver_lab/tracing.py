"""Tracing: a per-session JSONL trace (``TaskWeaverLab.trace_dir``) and, optionally, OpenTelemetry spans.

One JSON object per line in ``<trace_dir>/<session id>.jsonl``, each with ``ts``, ``session``, ``round`` and
``event``:

- ``llm_call``: role, model, prompt/completion/cached tokens, retries, latency_s, ``prompt_sha256`` (a hash of
  the messages, so equal prompts can be matched up; never the prompt text), ok, error (the exception's class only);
- ``codegen_call``: a call to the Codegen service backend: status, latency_s, request_type, ok;
- ``verification``: ok, attempt, violations as ``{rule, line}``;
- ``execution``: ok, step, attempt, duration_s, execution_count, interrupted, verified, error_name, ``code_sha256``;
- ``answer``: stop, is_question, ungrounded figure count.

Nothing of a prompt, a reply, a data value or a key is written. With ``trace_otel`` and the ``opentelemetry``
packages installed, the same events become spans (one ``taskweaver_lab.round`` span per round, its children one per
event) on the globally configured tracer provider; without the packages that part is skipped (a log line says so).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .steps import Answer, Execution, Step, UserMessage, Verdict

log = logging.getLogger("taskweaver_lab.tracing")


def prompt_hash(messages: Any) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _otel_tracer() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        log.warning("trace_otel is on but the opentelemetry packages are not installed: no spans are exported "
                    "(pip install opentelemetry-sdk and configure an exporter)")
        return None
    return trace.get_tracer("taskweaver_lab")


class Tracer:
    """Writes one session's trace; ``attach`` hooks it into a session (its LLM, its listeners, its coder)."""

    def __init__(self, path: Path | None, session_id: str, otel: bool = False) -> None:
        self.path, self.session_id = path, session_id
        self.round = 0
        self._lock = threading.Lock()
        self._otel = _otel_tracer() if otel else None
        self._round_span: Any = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    # --- records -------------------------------------------------------------------------
    def write(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "session": self.session_id,
                  "round": self.round, "event": event, **fields}
        if self.path is not None:
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, default=str) + "\n")
        self._span(event, fields)

    def on_step(self, step: Step) -> None:
        """The session listener: verification, execution and the answer (LLM calls come from ``traced``)."""
        if isinstance(step, UserMessage):
            self.round = step.round
            self._start_round()
        elif isinstance(step, Verdict):
            self.write("verification", ok=step.ok, attempt=step.attempt,
                       violations=[{"rule": v.rule, "line": v.line} for v in step.violations])
        elif isinstance(step, Execution):
            self.write("execution", ok=step.ok, step=step.step, attempt=step.attempt, duration_s=step.duration_s,
                       execution_count=step.execution_count, interrupted=step.interrupted, verified=step.verified,
                       error_name=_error_name(step.error) if not step.ok else "",
                       code_sha256=hashlib.sha256(step.code.encode()).hexdigest() if step.code else "")
        elif isinstance(step, Answer):
            self.write("answer", stop=step.stop, is_question=step.is_question, ungrounded=len(step.ungrounded))
            self._end_round(step.stop)

    def traced(self, complete: Callable[..., Any]) -> Callable[..., Any]:
        """``LLM.complete`` with a trace record of each call (hash, tokens, latency), successful or not."""
        def complete_traced(role: str, messages: Any, schema: Any = None, ctx: Any = None) -> Any:
            digest, started = prompt_hash(messages), time.monotonic()
            try:
                reply = complete(role, messages, schema, ctx)
            except BaseException as exc:
                self.write("llm_call", role=role, ok=False, error=type(exc).__name__, prompt_sha256=digest,
                           latency_s=round(time.monotonic() - started, 4))
                raise
            call = reply.call
            self.write("llm_call", role=role, model=call.model, ok=True, prompt_tokens=call.prompt_tokens,
                       completion_tokens=call.completion_tokens, cached_tokens=call.cached_tokens,
                       retries=call.retries, latency_s=round(call.latency_s, 4), prompt_sha256=digest)
            return reply
        return complete_traced

    def on_codegen_call(self, record: dict[str, Any]) -> None:
        self.write("codegen_call", **{k: v for k, v in record.items() if k != "endpoint"})

    # --- OpenTelemetry ---------------------------------------------------------------------
    def _start_round(self) -> None:
        if self._otel is not None:
            self._end_round("Replaced")
            self._round_span = self._otel.start_span("taskweaver_lab.round", attributes={
                "taskweaver_lab.session": self.session_id, "taskweaver_lab.round": self.round})

    def _end_round(self, stop: str) -> None:
        if self._round_span is not None:
            self._round_span.set_attribute("taskweaver_lab.stop", stop)
            self._round_span.end()
            self._round_span = None

    def _span(self, event: str, fields: dict[str, Any]) -> None:
        if self._otel is None:
            return
        from opentelemetry import trace

        context = trace.set_span_in_context(self._round_span) if self._round_span is not None else None
        attributes = {f"taskweaver_lab.{k}": v for k, v in fields.items() if isinstance(v, (str, bool, int, float))}
        attributes.update({"taskweaver_lab.session": self.session_id, "taskweaver_lab.round": self.round})
        seconds = float(fields.get("latency_s") or fields.get("duration_s") or 0.0)
        end = time.time_ns()
        span = self._otel.start_span(f"taskweaver_lab.{event}", context=context, attributes=attributes,
                                     start_time=end - int(seconds * 1e9))
        if fields.get("ok") is False:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end(end_time=end)


def _error_name(error: str) -> str:
    head = error.strip().split(":", 1)[0].split()
    return head[0][:80] if head else ""


def attach(session: Any) -> Tracer | None:
    """Trace ``session`` when ``trace_dir`` or ``trace_otel`` is set; None (nothing hooked) otherwise."""
    config = session.config
    if not config.trace_dir and not config.trace_otel:
        return None
    path = Path(config.trace_dir).expanduser() / f"{session.id}.jsonl" if config.trace_dir else None
    tracer = Tracer(path, session.id, config.trace_otel)
    session.llm.complete = tracer.traced(session.llm.complete)
    session.listeners.append(tracer.on_step)
    hooks = getattr(session.agent.coder, "hooks", None)
    if isinstance(hooks, list):  # the Codegen service backend reports its calls
        hooks.append(tracer.on_codegen_call)
    return tracer
