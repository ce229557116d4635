"""LLM access: the only module that imports ``openai``.

One ``LLM`` per session. It streams (each request in a worker thread, ``llm_relay.py``, so Stop and the
total deadline act at once), retries with backoff on 5xx, cut streams and timeouts, honours 429's
Retry-After, accounts usage per role, finds the ``response_format`` each endpoint takes (json_schema ->
json_object -> text, remembered per endpoint once a rung works) and can record/replay replies (cassette).
Whatever the endpoint does wrong becomes one ``TaskWeaverLabError`` sentence saying what it did
(``llm_errors.py``). OpenAI, Azure OpenAI and any OpenAI-compatible server. Keys are never logged or
put into error messages.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import openai

from . import llm_errors as errors
from .config import TaskWeaverLab
from .llm_errors import ContextTooLong, Garbled, Unsendable
from .llm_relay import Cancelled, DeadlineExceeded, Watch, relay
from .steps import LLMCall, Notice, Role, Step, TaskWeaverLabError

log = logging.getLogger("taskweaver_lab.llm")

Messages = list[dict[str, str]]
FORMAT_LADDER = ("json_schema", "json_object", "text")

__all__ = ["LLM", "CallContext", "OneCall", "Reply", "UserChoices", "Cancelled", "ContextTooLong", "test_connection"]


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
    """One endpoint and what we learned about it (kept per endpoint, for the LLM's life)."""
    client: openai.OpenAI
    format: str                # the highest FORMAT_LADDER rung known to work (or not yet refused)
    where: str                 # how messages name it
    azure: bool = False
    stream_usage: bool = True  # some servers reject stream_options


class CallContext(Protocol):
    """What one LLM call needs from the round it belongs to (``agent.RoundContext`` is the real one)."""

    cancel: threading.Event     # Stop
    choices: UserChoices        # the user's model names / endpoint for this round

    def before_call(self) -> None: ...               # raises to refuse the call (Stop, the round's call cap)
    def after_call(self, reply: Reply) -> None: ...  # counts the call, reports its usage
    def delta(self, role: Role) -> Callable[[str], None] | None: ...  # where streamed text goes
    def emit(self, step: Step) -> None: ...          # a Notice for the listeners (waiting, retrying)


@dataclass
class OneCall:
    """A call outside any round (tools, tests): no budget, the server's choices unless given."""

    cancel: threading.Event = field(default_factory=threading.Event)
    choices: UserChoices = field(default_factory=UserChoices)
    on_delta: Callable[[str], None] | None = None
    on_step: Callable[[Step], None] | None = None

    def before_call(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def after_call(self, reply: Reply) -> None:
        pass

    def delta(self, role: Role) -> Callable[[str], None] | None:
        return self.on_delta

    def emit(self, step: Step) -> None:
        if self.on_step is not None:
            self.on_step(step)


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
        """The endpoint of this call: the user's choice, else the server's (Azure's when configured)."""
        return choices.base_url or self.config.azure_endpoint or self.config.base_url

    def response_format(self, choices: UserChoices) -> str:
        """The response_format this endpoint takes, as far as we know: json_schema, json_object or text."""
        return self._endpoint(choices).format

    def _endpoint(self, choices: UserChoices) -> _Endpoint:
        url = self.base_url(choices)
        if url not in self._endpoints:
            try:
                self._endpoints[url] = self._connect(url, choices)
            except TaskWeaverLabError:
                raise
            except Exception as exc:  # the client refuses the URL itself
                raise TaskWeaverLabError(errors.unsendable(url, self.config.model, f"{type(exc).__name__}: {exc}")) from None
        return self._endpoints[url]

    def _connect(self, url: str, choices: UserChoices) -> _Endpoint:
        server_url = self.config.azure_endpoint or self.config.base_url
        users_own = bool(choices.base_url) and url.rstrip("/") != server_url.rstrip("/")
        start = "json_schema" if self.config.response_format == "auto" else self.config.response_format
        where = url or "the default OpenAI endpoint"
        # Silence is bounded by the deadline, not by llm_timeout alone: a local model may read a long prompt for
        # minutes before its first byte (the relay reports the wait, and Stop ends it).
        timeout = openai.Timeout(max(self.config.llm_timeout, self.config.llm_deadline),
                                 connect=min(self.config.llm_timeout, 30.0))
        options: dict[str, Any] = {"timeout": timeout, "max_retries": 0}
        if not users_own and self.config.azure_endpoint:
            key = self.config.api_key or os.environ.get("AZURE_OPENAI_API_KEY", "")
            if not key:
                raise TaskWeaverLabError("Azure OpenAI needs an API key: set AZURE_OPENAI_API_KEY or TaskWeaverLab.api_key.")
            client = openai.AzureOpenAI(azure_endpoint=url, api_version=self.config.azure_api_version, api_key=key, **options)
            return _Endpoint(client, start, where, azure=True)
        if not users_own:
            self.config.check_endpoint()
        key = "not-needed" if users_own else (self.config.api_key or "not-needed")
        return _Endpoint(openai.OpenAI(base_url=url or None, api_key=key, **options), start, where)

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
        endpoint = self._endpoint(ctx.choices)
        tries = _Tries(self.config, endpoint, model, ctx)
        fmt = endpoint.format if schema is not None else "text"
        while True:
            reading = _Reading(ctx.delta(role))
            try:
                self._request(endpoint, model, messages, (fmt, schema), ctx, reading, tries.deadline)
                break
            except openai.APIStatusError as exc:
                fmt = self._on_status(exc, fmt, schema, tries, reading)
            except (openai.APIConnectionError, openai.APIError) as exc:  # refused, cut, timed out, error event
                tries.transient(exc, reading, mid_reply=not isinstance(exc, openai.APIConnectionError))
            except (json.JSONDecodeError, Garbled) as exc:
                what = f"sent {'a streamed event' if self.config.stream else 'a body'} that is not JSON " \
                    f"({errors.describe(exc.doc)!r})" if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise TaskWeaverLabError(errors.garbled(endpoint.where, model, what)) from None
            except Unsendable as exc:
                raise TaskWeaverLabError(errors.unsendable(endpoint.where, model, str(exc))) from None
            except DeadlineExceeded:
                raise TaskWeaverLabError(errors.deadline(endpoint.where, model, self.config.llm_deadline)) from None
        if schema is not None and fmt != endpoint.format:  # a lower rung worked: remember it for this endpoint
            log.info("%s takes response_format %s, not %s", endpoint.where, fmt, endpoint.format)
            endpoint.format = fmt
        return self._reply(role, model, messages, reading, tries)

    def _reply(self, role: Role, model: str, messages: Messages, reading: "_Reading", tries: "_Tries") -> Reply:
        text = "".join(reading.parts)
        if self.cassette:
            self.cassette.store(role, messages, text)
        prompt_tokens, completion_tokens, cached = reading.usage or (_estimate_tokens(messages), len(text) // 4, 0)
        call = LLMCall(role, model, prompt_tokens, completion_tokens, time.monotonic() - tries.started, cached, tries.retries)
        log.info("llm %s model=%s prompt=%d completion=%d %.2fs", role, model, prompt_tokens, completion_tokens, call.latency_s)
        return Reply(text, call)

    def _on_status(self, exc: openai.APIStatusError, fmt: str, schema: dict[str, Any] | None, tries: "_Tries",
                   reading: "_Reading") -> str:
        """An HTTP error: wait and retry (429, 5xx), try a lower response_format (400), or say what it means."""
        where, model = tries.endpoint.where, tries.model
        if errors.is_context_too_long(exc):  # never a reason to drop json_schema, nor to retry
            raise ContextTooLong(errors.too_long(where, model, exc)) from None
        if exc.status_code == 429:
            tries.rate_limited(exc)
            return fmt
        if exc.status_code >= 500:
            tries.transient(exc, reading)
            return fmt
        if exc.status_code in (400, 422) and errors.is_content_filter(exc):
            raise TaskWeaverLabError(errors.filtered(where, model, exc)) from None
        if exc.status_code in (400, 422):
            lower = self._lower_format(fmt, schema)
            if lower is None:
                raise TaskWeaverLabError(errors.refused(where, model, exc)) from None
            log.info("%s refused response_format %s (%s); trying %s", where, fmt, errors.reason(exc), lower)
            return lower
        raise TaskWeaverLabError(errors.status_message(exc, model, tries.endpoint.azure)) from None

    def _lower_format(self, fmt: str, schema: dict[str, Any] | None) -> str | None:
        """The next rung to try after a 400, for this call only (remembered once it works)."""
        if schema is None or self.config.response_format != "auto" or fmt == "text":
            return None
        return FORMAT_LADDER[FORMAT_LADDER.index(fmt) + 1]

    def _request(self, endpoint: _Endpoint, model: str, messages: Messages, form: tuple[str, dict[str, Any] | None],
                 ctx: CallContext, reading: "_Reading", deadline: float) -> None:
        fmt, schema = form
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": self.config.temperature}
        if schema is not None and fmt != "text":
            kwargs["response_format"] = _response_format(fmt, schema)
        every = self.config.llm_progress_interval
        watch = Watch(ctx.cancel, deadline, every, lambda waited: ctx.emit(Notice("info", errors.waiting_notice(waited))))
        for item in relay(lambda: self._open(endpoint, kwargs, reading), watch):
            reading.take(item)
        if reading.items == 0:
            kind = reading.content_type or "no content type"
            raise Garbled(f"answered HTTP 200 with {kind} and not one event of a chat-completion stream")

    def _open(self, endpoint: _Endpoint, kwargs: dict[str, Any], reading: "_Reading") -> Iterable[Any]:
        """Runs in the request's worker thread: the stream (or the whole completion, as one item)."""
        try:
            return self._create(endpoint, kwargs, reading)
        except openai.OpenAIError:
            raise
        except Exception as exc:  # the request could not even be written: a malformed URL, a non-ASCII key
            raise Unsendable(f"{type(exc).__name__}: {exc}") from exc

    def _create(self, endpoint: _Endpoint, kwargs: dict[str, Any], reading: "_Reading") -> Iterable[Any]:
        if not self.config.stream:
            return [endpoint.client.chat.completions.create(**kwargs)]
        options = {"stream_options": {"include_usage": True}} if endpoint.stream_usage else {}
        try:
            stream = endpoint.client.chat.completions.create(stream=True, **kwargs, **options)
        except openai.BadRequestError as exc:
            if "stream_options" not in str(exc) or not options:
                raise
            endpoint.stream_usage = False
            stream = endpoint.client.chat.completions.create(stream=True, **kwargs)
        response = getattr(stream, "response", None)
        reading.content_type = str(getattr(response, "headers", {}).get("content-type", "")).split(";")[0]
        return stream

    def list_models(self, choices: UserChoices | None = None) -> list[str]:
        """The model (or deployment) names the endpoint lists."""
        endpoint = self._endpoint(choices or UserChoices())
        try:
            return sorted(str(m.id) for m in endpoint.client.models.list())
        except openai.APIStatusError as exc:
            raise TaskWeaverLabError(f"The LLM endpoint {endpoint.where} lists no models "
                                     f"(HTTP {exc.status_code}: {errors.reason(exc)}).") from None
        except openai.APIError as exc:
            raise TaskWeaverLabError(f"Cannot reach the LLM endpoint {endpoint.where} to list its models: "
                                     f"{type(exc).__name__}: {errors.reason(exc)}.") from None


@dataclass
class _Reading:
    """What one request's items added up to, read in the caller's thread."""

    on_delta: Callable[[str], None] | None
    parts: list[str] = field(default_factory=list)
    usage: tuple[int, int, int] | None = None
    items: int = 0
    content_type: str = ""

    def take(self, item: Any) -> None:
        choices = getattr(item, "choices", None)
        if not isinstance(choices, list):  # (an empty list is fine: usage, Azure's prompt_filter_results)
            raise Garbled(f"answered with {self.content_type or 'a body'} that is not a chat completion "
                          f"({errors.describe(item)!r})")
        self.items += 1
        if getattr(item, "usage", None):
            self.usage = _usage(item.usage)
        for choice in choices:
            piece = getattr(getattr(choice, "delta", None) or getattr(choice, "message", None), "content", None)
            if piece:
                self.parts.append(piece)
                if self.on_delta:
                    self.on_delta(piece)


@dataclass
class _Tries:
    """The retry budget of one logical call: transient failures (llm_retries), 429 waits (llm_rate_limit_wait),
    and the deadline over all of it (llm_deadline)."""

    config: TaskWeaverLab
    endpoint: _Endpoint
    model: str
    ctx: CallContext
    retries: int = 0
    failures: int = 0
    waited: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return self.started + self.config.llm_deadline if self.config.llm_deadline > 0 else 0.0

    def transient(self, exc: Exception, reading: _Reading, mid_reply: bool = False) -> None:
        self.retries += 1
        self.failures += 1
        if self.failures > self.config.llm_retries:
            where, model, n = self.endpoint.where, self.model, self.failures - 1
            if isinstance(exc, openai.APIStatusError):
                raise TaskWeaverLabError(errors.failing(where, model, n, exc)) from None
            cut = mid_reply or bool(reading.parts)
            message = errors.broken_off(where, model, n, exc) if cut else errors.unreachable(where, model, n, exc)
            raise TaskWeaverLabError(message) from None
        if reading.parts and reading.on_delta is not None:  # listeners drop the partial text they were shown
            self.ctx.emit(Notice("warning", errors.CUT_NOTICE))
        self._sleep(min(8.0, 0.5 * 2 ** (self.failures - 1)) * (0.75 + random.random() / 2))

    def rate_limited(self, exc: openai.APIStatusError) -> None:
        self.retries += 1
        asked, budget = errors.retry_after(errors.headers_of(exc)), self.config.llm_rate_limit_wait
        if asked is None:  # no Retry-After: back off like any transient failure
            self.failures += 1
            if self.failures > self.config.llm_retries:
                raise TaskWeaverLabError(errors.rate_limited(self.endpoint.where, self.model, self.waited, exc)) from None
            wait = min(8.0, 0.5 * 2 ** (self.failures - 1)) * (0.75 + random.random() / 2)
        elif self.waited + asked > budget:
            raise TaskWeaverLabError(errors.rate_limited(self.endpoint.where, self.model, self.waited, exc, asked, budget)) from None
        else:
            wait = max(0.5, asked)
        self.ctx.emit(Notice("info", errors.rate_limit_notice(wait, asked is not None)))
        self._sleep(wait)
        self.waited += wait

    def _sleep(self, seconds: float) -> None:
        if self.ctx.cancel.wait(seconds):
            raise Cancelled()


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


def test_connection(config: TaskWeaverLab, choices: UserChoices | None = None) -> dict[str, Any]:
    """What works on the configured endpoint: ``{"ok", "endpoint", "models", "models_error", "json_mode", "error"}``
    (``json_mode``: the response_format it takes). Makes one tiny JSON request to the Planner's model."""
    choices = choices or UserChoices()
    llm = LLM(config)
    result: dict[str, Any] = {"ok": False, "endpoint": llm.base_url(choices) or "the default OpenAI endpoint",
                              "models": [], "models_error": "", "json_mode": "", "error": ""}
    try:
        result["models"] = llm.list_models(choices)
    except TaskWeaverLabError as exc:
        result["models_error"] = str(exc)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    messages = [{"role": "user", "content": 'Reply with the JSON object {"ok": true} and nothing else.'}]
    try:
        llm.complete("planner", messages, schema, OneCall(choices=choices))
        result["ok"], result["json_mode"] = True, llm.response_format(choices)
    except TaskWeaverLabError as exc:
        result["error"] = str(exc)
    return result


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one
