"""LLM access: the only module that imports ``openai``.

One ``LLM`` per session. It streams, retries with backoff on 429/5xx/timeouts,
accounts usage per role, degrades ``response_format`` gracefully
(json_schema -> json_object -> text) and can record/replay replies (cassette).
Keys are never logged or put into error messages.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import openai

from .config import TaskWeaverLab
from .steps import LLMCall, Role, TaskWeaverLabError

log = logging.getLogger("taskweaver_lab.llm")

Messages = list[dict[str, str]]
FORMAT_LADDER = ("json_schema", "json_object", "text")


class Cancelled(Exception):
    """The user pressed Stop."""


@dataclass(frozen=True)
class Reply:
    text: str
    call: LLMCall


def _estimate_tokens(messages: Messages) -> int:
    # Fallback when the endpoint reports no usage: ~4 characters per token.
    return sum(4 + len(m.get("content", "")) // 4 for m in messages) + 3


class Cassette:
    """Record/replay of replies keyed by a normalized prompt (reproducible notebooks)."""

    def __init__(self, path: str, mode: str) -> None:
        self.path, self.mode = Path(path), mode
        self.entries: dict[str, str] = {}
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text() or "{}")
        elif mode == "replay":
            raise TaskWeaverLabError(f"LLM cassette {path} does not exist; record it first (llm_cassette_mode=record).")

    @staticmethod
    def key(role: str, messages: Messages) -> str:
        normalized = [(m["role"], re.sub(r"\s+", " ", m["content"]).strip()) for m in messages]
        return hashlib.sha256(json.dumps([role, normalized]).encode()).hexdigest()[:32]

    def lookup(self, role: str, messages: Messages) -> str:
        key = self.key(role, messages)
        if key not in self.entries:
            raise TaskWeaverLabError(
                f"The LLM cassette {self.path} has no reply for this {role} prompt (the notebook or data changed?). "
                "Re-record it with llm_cassette_mode=record."
            )
        return self.entries[key]

    def store(self, role: str, messages: Messages, text: str) -> None:
        self.entries[self.key(role, messages)] = text
        self.path.write_text(json.dumps(self.entries, indent=1, sort_keys=True))


@dataclass(frozen=True)
class UserChoices:
    """A user's per-turn choices from the sidebar's settings; an empty field uses the server's config.

    ``base_url`` is an endpoint the *user* picked (their own local model, say): the server's ``api_key``
    is never sent there, or any user could read the shared key by pointing the server at a listener."""
    planner_model: str = ""
    code_generator_model: str = ""
    base_url: str = ""

    def model(self, role: str) -> str:
        return {"planner": self.planner_model, "code_generator": self.code_generator_model}.get(role, "")


@dataclass
class _Endpoint:
    """One OpenAI-compatible endpoint and what we learned about it (kept per endpoint, not per session)."""
    client: openai.OpenAI
    format: str               # where it stands on FORMAT_LADDER
    stream_usage: bool = True  # some servers reject stream_options


class CallContext(Protocol):
    """What one LLM call needs from the round it belongs to (``agent.RoundContext`` is the real one)."""

    cancel: threading.Event     # Stop
    choices: UserChoices        # the user's model names / endpoint for this round

    def before_call(self) -> None: ...               # raises to refuse the call (Stop, the round's call cap)
    def after_call(self, reply: Reply) -> None: ...  # counts the call, reports its usage
    def delta(self, role: Role) -> Callable[[str], None] | None: ...  # where streamed text goes


@dataclass
class OneCall:
    """A call outside any round (tools, tests): no budget, the server's choices unless given."""

    cancel: threading.Event = field(default_factory=threading.Event)
    choices: UserChoices = field(default_factory=UserChoices)
    on_delta: Callable[[str], None] | None = None

    def before_call(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def after_call(self, reply: Reply) -> None:
        pass

    def delta(self, role: Role) -> Callable[[str], None] | None:
        return self.on_delta


class LLM:
    """Chat completions per role, with the role's configured model name (A2).

    Long-lived (one per session) and stateless per round: everything a round decides (Stop, budget,
    the user's choices) arrives with each call in its ``CallContext``."""

    def __init__(self, config: TaskWeaverLab) -> None:
        self.config = config
        self._endpoints: dict[str, _Endpoint] = {}
        self.cassette = Cassette(config.llm_cassette, config.llm_cassette_mode) if config.llm_cassette_mode != "off" else None

    def model_for(self, role: str, choices: UserChoices) -> str:
        return choices.model(role) or self.config.model_for(role)

    def base_url(self, choices: UserChoices) -> str:
        """The endpoint of this call: the user's choice, else the server's."""
        return choices.base_url or self.config.base_url

    def _endpoint(self, choices: UserChoices) -> _Endpoint:
        url = self.base_url(choices)
        if url not in self._endpoints:
            users_own = bool(choices.base_url) and url.rstrip("/") != self.config.base_url.rstrip("/")
            if not users_own:
                self.config.check_endpoint()
            key = "not-needed" if users_own else (self.config.api_key or "not-needed")
            client = openai.OpenAI(base_url=url or None, api_key=key, timeout=self.config.llm_timeout, max_retries=0)
            start = "json_schema" if self.config.response_format == "auto" else self.config.response_format
            self._endpoints[url] = _Endpoint(client, start)
        return self._endpoints[url]

    def complete(self, role: Role, messages: Messages, schema: dict[str, Any] | None = None,
                 ctx: CallContext | None = None) -> Reply:
        """One logical call (retries included). ``schema`` asks for JSON where supported."""
        ctx = ctx or OneCall()
        ctx.before_call()
        model = self.model_for(role, ctx.choices)
        if self.cassette and self.config.llm_cassette_mode == "replay":
            text = self.cassette.lookup(role, messages)
            reply = Reply(text, LLMCall(role, model, _estimate_tokens(messages), len(text) // 4, 0.0))
        else:
            reply = self._call(role, model, messages, schema, ctx)
        ctx.after_call(reply)
        return reply

    def _call(self, role: Role, model: str, messages: Messages, schema: dict[str, Any] | None,
              ctx: CallContext) -> Reply:
        started, retries = time.monotonic(), 0
        while True:
            try:
                text, usage = self._request(model, messages, schema, ctx, ctx.delta(role))
                break
            except openai.BadRequestError as exc:
                if schema is None or not self._degrade_format(exc, ctx.choices):
                    raise TaskWeaverLabError(f"The LLM endpoint refused the request ({model}): {_reason(exc)}") from exc
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                retries += 1
                if retries > self.config.llm_retries:
                    raise TaskWeaverLabError(_unreachable_message(self.base_url(ctx.choices), model, exc)) from exc
                self._backoff(retries, ctx.cancel)
            except openai.APIStatusError as exc:
                raise TaskWeaverLabError(_status_message(exc, model)) from exc
        if self.cassette:
            self.cassette.store(role, messages, text)
        prompt_tokens, completion_tokens, cached = usage or (_estimate_tokens(messages), len(text) // 4, 0)
        call = LLMCall(role, model, prompt_tokens, completion_tokens, time.monotonic() - started, cached, retries)
        log.info("llm %s model=%s prompt=%d completion=%d %.2fs", role, model, prompt_tokens, completion_tokens, call.latency_s)
        return Reply(text, call)

    def _request(self, model: str, messages: Messages, schema: dict[str, Any] | None, ctx: CallContext,
                 on_delta: Callable[[str], None] | None) -> tuple[str, tuple[int, int, int] | None]:
        endpoint = self._endpoint(ctx.choices)
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": self.config.temperature}
        if schema is not None and endpoint.format != "text":
            kwargs["response_format"] = _response_format(endpoint.format, schema)
        if not self.config.stream:
            resp = endpoint.client.chat.completions.create(**kwargs)
            text = resp.choices[0].message.content or ""
            if on_delta:
                on_delta(text)
            return text, _usage(resp.usage)
        if endpoint.stream_usage:
            kwargs["stream_options"] = {"include_usage": True}
        try:
            stream = endpoint.client.chat.completions.create(stream=True, **kwargs)
        except openai.BadRequestError as exc:
            if "stream_options" not in str(exc) or not endpoint.stream_usage:
                raise
            endpoint.stream_usage = False
            return self._request(model, messages, schema, ctx, on_delta)
        return _read_stream(stream, on_delta, ctx.cancel)

    def _degrade_format(self, exc: Exception, choices: UserChoices) -> bool:
        """Step down the response_format ladder after a 400; False when nothing is left to try."""
        endpoint = self._endpoint(choices)
        if self.config.response_format != "auto" or endpoint.format == "text":
            return False
        endpoint.format = FORMAT_LADDER[FORMAT_LADDER.index(endpoint.format) + 1]
        log.info("endpoint refused the response_format (%s); falling back to %s", _reason(exc), endpoint.format)
        return True

    @staticmethod
    def _backoff(attempt: int, cancel: threading.Event | None) -> None:
        delay = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
        if cancel is not None and cancel.wait(delay):
            raise Cancelled()
        if cancel is None:
            time.sleep(delay)


def _read_stream(stream: Any, on_delta: Callable[[str], None] | None,
                 cancel: threading.Event | None) -> tuple[str, tuple[int, int, int] | None]:
    parts: list[str] = []
    usage = None
    try:
        for chunk in stream:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if getattr(chunk, "usage", None):
                usage = _usage(chunk.usage)
            for choice in chunk.choices or ():
                piece = getattr(choice.delta, "content", None)
                if piece:
                    parts.append(piece)
                    if on_delta:
                        on_delta(piece)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    return "".join(parts), usage


def _response_format(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    return {"type": "json_object"}


def _usage(usage: Any) -> tuple[int, int, int] | None:
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", 0) or 0 if details else 0
    return usage.prompt_tokens or 0, usage.completion_tokens or 0, cached


def _reason(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else body.get("message")
        if msg:
            return str(msg)[:300]
    return str(exc)[:300]


def _unreachable_message(base_url: str, model: str, exc: Exception) -> str:
    where = base_url or "the default OpenAI endpoint"
    return (f"Cannot get a reply from the LLM endpoint {where} (model {model}) after retries: "
            f"{type(exc).__name__}: {_reason(exc)}. Is the server running, and is base_url right?")


def _status_message(exc: openai.APIStatusError, model: str) -> str:
    if exc.status_code in (401, 403):
        return f"The LLM endpoint rejected the API key (HTTP {exc.status_code}). Check OPENAI_API_KEY / TaskWeaverLab.api_key."
    if exc.status_code == 404:
        return f"The LLM endpoint does not know model {model!r} (HTTP 404). Check TaskWeaverLab.model / planner_model / code_generator_model."
    return f"The LLM endpoint failed (HTTP {exc.status_code}, model {model}): {_reason(exc)}"
