"""Tolerant reply handling shared by the Planner and the Code Generator (ARCHITECTURE A1)."""
from __future__ import annotations

import json
import re
from typing import Any, Callable, TypeVar

from .llm import LLM, CallContext, ContextTooLong, Messages
from .prompts import corrective_message
from .steps import Notice, Role, TaskWeaverLabError

T = TypeVar("T")


class ReplyParseError(ValueError):
    """An LLM reply that does not have the asked-for form; the message is quoted back to the LLM."""


_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.S)


def strip_think(text: str) -> str:
    return _THINK.sub("", text).strip()


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``: fenced, bare, or after prose; unwraps ``{"response": {...}}``."""
    text = strip_think(text)
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder(strict=False)  # models put raw newlines inside strings
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch == "{"):
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                inner = value.get("response")
                return inner if isinstance(inner, dict) else value
    if "{" in text:
        raise ReplyParseError("the JSON object is incomplete or malformed (was the reply cut off?)")
    raise ReplyParseError("no JSON object found in the reply")


def ask_parsed(llm: LLM, role: Role, messages: Messages, parse: Callable[[str], T], form: str,
               ctx: CallContext, schema: dict[str, Any] | None = None) -> T:
    """One call; on a malformed reply, one corrective re-ask quoting the error; then a clear failure."""
    reply = llm.complete(role, messages, schema, ctx)
    try:
        return parse(reply.text)
    except ReplyParseError as first:
        retry = messages + [{"role": "assistant", "content": reply.text}, corrective_message(str(first), form)]
        reply = llm.complete(role, retry, schema, ctx)
        try:
            return parse(reply.text)
        except ReplyParseError as second:
            who = "Planner" if role == "planner" else "Code Generator"
            raise TaskWeaverLabError(f"The {who}'s reply could not be understood twice ({second}). "
                                     f"Try again, or configure a stronger {role}_model.") from second


def ask_within_context(llm: LLM, role: Role, build: Callable[[bool], Messages], parse: Callable[[str], T], form: str,
                       ctx: CallContext, schema: dict[str, Any] | None = None) -> T:
    """``ask_parsed`` over ``build(False)``; when that prompt does not fit the model's context, once more over the
    shortened ``build(True)`` (older rounds, examples and earlier attempts left out). A second overflow is the
    endpoint's clear ContextTooLong message."""
    try:
        return ask_parsed(llm, role, build(False), parse, form, ctx, schema)
    except ContextTooLong:
        ctx.emit(Notice("warning", "The prompt did not fit the model's context; asking again with a shorter history "
                                   "(older rounds and earlier attempts left out)."))
        return ask_parsed(llm, role, build(True), parse, form, ctx, schema)
