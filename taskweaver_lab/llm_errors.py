"""What an LLM endpoint did wrong, as one sentence a user can act on (for ``llm.py``; no ``openai`` here).

Providers word their errors differently: OpenAI, Azure, llama.cpp and Ollama nest ``{"error": {...}}``,
vLLM puts the message at the top, LM Studio sends a bare string, Azure's 401 has ``statusCode``. The
client library hands over the parsed body as ``exc.body``; ``reason`` finds the words in any of them and
the classifiers find the kind. Keys never appear in these messages (bodies are the server's words).
"""
from __future__ import annotations

import email.utils
import re
import time
from typing import Any, Mapping

from .steps import TaskWeaverLabError


class ContextTooLong(TaskWeaverLabError):
    """The prompt does not fit the model's context window (the caller may shorten the history and retry)."""


class Garbled(Exception):
    """The endpoint answered with something that is not the OpenAI protocol; ``str()`` says what it sent."""


class Unsendable(Exception):
    """The request could not be written at all (a malformed base_url, a key that is not plain text)."""


_CONTEXT = re.compile(
    r"context[_ ]?(length|size|window)|maximum context|max context|context the overflows|too many tokens|"
    r"prompt (is )?too long|exceed_context|input is too long|reduce the length of the messages", re.I)


def reason(exc: BaseException) -> str:
    """The endpoint's own words (at most 300 characters)."""
    body = getattr(exc, "body", None)
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    if isinstance(body, Mapping):
        inner = body.get("error")
        for candidate in (inner.get("message") if isinstance(inner, Mapping) else inner, body.get("message")):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()[:300]
    return str(exc)[:300]


def _codes(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if not isinstance(body, Mapping):
        return ""
    inner = body.get("error")
    found = [body.get("code"), body.get("type")]
    if isinstance(inner, Mapping):
        found += [inner.get("code"), inner.get("type")]
    return " ".join(str(value) for value in found if value)


def is_context_too_long(exc: BaseException) -> bool:
    return bool(_CONTEXT.search(f"{_codes(exc)} {reason(exc)}"))


def is_content_filter(exc: BaseException) -> bool:
    return "content_filter" in _codes(exc) or "content management policy" in reason(exc).lower()


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the endpoint asks to wait (``retry-after-ms``, or ``Retry-After`` in seconds or as a date)."""
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def headers_of(exc: BaseException) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)


# --- the messages ------------------------------------------------------------------------------
def too_long(where: str, model: str, exc: BaseException) -> str:
    return (f"The conversation is too long for the model's context ({model} at {where} said: {reason(exc)}); "
            "start a new chat, or ask again with a shorter message.")


def unreachable(where: str, model: str, retries: int, exc: BaseException) -> str:
    return (f"Cannot get a reply from the LLM endpoint {where} (model {model}) after {retries} retries: "
            f"{type(exc).__name__}: {reason(exc).rstrip('.')}. Is the server running, and is base_url right?")


def failing(where: str, model: str, retries: int, exc: BaseException) -> str:
    status = getattr(exc, "status_code", "?")
    return (f"The LLM endpoint {where} kept failing (HTTP {status}, model {model}) after {retries} retries: "
            f"{reason(exc)}. Try again later, or check the server's log.")


def broken_off(where: str, model: str, retries: int, exc: BaseException) -> str:
    return (f"The LLM endpoint {where} kept breaking off its reply (model {model}) after {retries} retries: "
            f"{reason(exc)}. Try again later, or check the server's log.")


def rate_limited(where: str, model: str, waited: float, exc: BaseException, asked: float | None = None,
                 budget: float = 0.0) -> str:
    if asked is not None:
        after = f" more after {secs(waited)} s of waiting" if waited else ""
        return (f"The LLM endpoint {where} is rate limiting requests (HTTP 429, model {model}) and asks to wait "
                f"{secs(asked)} s{after}, beyond TaskWeaverLab.llm_rate_limit_wait ({secs(budget)} s); ask again "
                "later, or raise llm_rate_limit_wait.")
    return (f"The LLM endpoint {where} is still rate limiting requests (HTTP 429, model {model}: {reason(exc)}) "
            f"after {secs(waited)} s of waiting; ask again in a minute, or use a plan or model with a higher rate limit.")


def deadline(where: str, model: str, seconds: float) -> str:
    return (f"The LLM endpoint {where} did not finish its reply (model {model}) within {math_ceil(seconds)} s, the "
            "deadline TaskWeaverLab.llm_deadline sets; try again, use a faster model, or raise llm_deadline.")


def unsendable(where: str, model: str, detail: str) -> str:
    return (f"The request to the LLM endpoint {where} could not be made (model {model}): {detail[:200]}; check "
            "base_url (a full http(s) URL) and the API key (plain ASCII).")


def garbled(where: str, model: str, what: str) -> str:
    return (f"The LLM endpoint {where} {what} (model {model}), so the reply was dropped; check that base_url is the "
            "server's OpenAI-compatible API (usually ending in /v1) and that no proxy in between changes its replies.")


def refused(where: str, model: str, exc: BaseException) -> str:
    return f"The LLM endpoint {where} refused the request (model {model}): {reason(exc)}"


def filtered(where: str, model: str, exc: BaseException) -> str:
    return (f"The provider's content filter blocked this request (model {model} at {where}): {reason(exc)}. "
            "Rephrase the request.")


def status_message(exc: BaseException, model: str, azure: bool) -> str:
    status = getattr(exc, "status_code", 0)
    if status in (401, 403):
        key = "AZURE_OPENAI_API_KEY / TaskWeaverLab.api_key" if azure else "OPENAI_API_KEY / TaskWeaverLab.api_key"
        return f"The LLM endpoint rejected the API key (HTTP {status}). Check {key}."
    if status == 404 and azure:
        return (f"The Azure OpenAI resource has no deployment {model!r} (HTTP 404: {reason(exc)}). Check the deployment "
                "names (TaskWeaverLab.model / planner_model / code_generator_model) and azure_endpoint.")
    if status == 404:
        return (f"The LLM endpoint does not know model {model!r} (HTTP 404). "
                "Check TaskWeaverLab.model / planner_model / code_generator_model.")
    return f"The LLM endpoint failed (HTTP {status}, model {model}): {reason(exc)}"


def waiting_notice(seconds: float) -> str:
    return (f"Waiting for the model to start its reply ({math_ceil(seconds)} s so far); a local model can take minutes "
            "to read a long prompt. Stop ends the wait.")


def rate_limit_notice(seconds: float, asked: bool) -> str:
    how = ", as it asks," if asked else ""
    return f"The LLM endpoint is rate limiting requests (HTTP 429): waiting {secs(seconds)} s{how} then trying again."


CUT_NOTICE = "The model's reply broke off; asking again (the partial text shown so far is discarded)."


def math_ceil(value: float) -> int:
    return int(-(-value // 1))


def secs(value: float) -> str:
    """Seconds for a sentence: whole when they are, else one decimal."""
    return f"{value:.1f}".removesuffix(".0")


def describe(item: Any) -> str:
    """What a non-protocol reply looked like, briefly (never a whole page)."""
    text = item if isinstance(item, str) else repr(item)
    text = " ".join(text.split())
    return text[:80] + ("..." if len(text) > 80 else "")
