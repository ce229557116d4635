"""The LLM client against a real loopback OpenAI-compatible server: streaming, usage, retries, fallbacks, cassette."""
from __future__ import annotations

import threading

import pytest

from taskweaver_lab.config import make_config
from taskweaver_lab.llm import LLM, Cancelled, OneCall
from taskweaver_lab.steps import TaskWeaverLabError
from taskweaver_lab.testing import ScriptedLLMServer

from conftest import API_KEY

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def make_llm(server: ScriptedLLMServer, **extra) -> LLM:
    return LLM(make_config({"base_url": server.base_url, "api_key": API_KEY, "planner_model": "planner", **extra}))


def test_streams_deltas_and_reports_usage_with_the_role_model(llm_server) -> None:
    llm_server.add("planner", {"content": "hello there, analyst", "chunk_chars": 5})
    deltas: list[str] = []
    reply = make_llm(llm_server).complete("planner", MESSAGES, ctx=OneCall(on_delta=deltas.append))
    assert reply.text == "hello there, analyst" and "".join(deltas) == reply.text and len(deltas) == 4
    assert (reply.call.role, reply.call.model) == ("planner", "planner")
    assert reply.call.prompt_tokens > 0 and reply.call.completion_tokens > 0
    assert llm_server.requests[0]["model"] == "planner" and llm_server.requests[0]["stream"] is True


def test_retries_5xx_and_429_then_succeeds(llm_server) -> None:
    llm_server.add("planner", {"status": 503, "content": "busy"}, {"status": 429, "content": "slow down"}, "ok")
    reply = make_llm(llm_server).complete("planner", MESSAGES)
    assert reply.text == "ok" and reply.call.retries == 2 and len(llm_server.requests) == 3


def test_gives_up_after_the_configured_retries_with_a_clear_message(llm_server) -> None:
    llm_server.add("planner", *[{"status": 500, "content": "boom"}] * 3)
    with pytest.raises(TaskWeaverLabError, match="kept failing .HTTP 500, model planner. after 2 retries: boom") as info:
        make_llm(llm_server, llm_retries=2).complete("planner", MESSAGES)
    assert API_KEY not in str(info.value) and len(llm_server.requests) == 3


def test_json_schema_refused_falls_back_to_json_object_and_remembers() -> None:
    with ScriptedLLMServer({"planner": ['{"a": 1}', '{"a": 2}']}, reject_json_schema=True) as server:
        llm = make_llm(server)
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 1}'
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 2}'
    formats = [(r.get("response_format") or {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", "json_object"]


def test_auth_and_unknown_model_errors_are_actionable(llm_server) -> None:
    llm_server.add("planner", {"status": 401, "content": "bad key"}, {"status": 404, "content": "no such model"})
    llm = make_llm(llm_server)
    with pytest.raises(TaskWeaverLabError, match="rejected the API key"):
        llm.complete("planner", MESSAGES)
    with pytest.raises(TaskWeaverLabError, match="does not know model 'planner'"):
        llm.complete("planner", MESSAGES)


def test_no_endpoint_configured_says_how_to_configure(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(TaskWeaverLabError, match="OPENAI_BASE_URL"):
        LLM(make_config({})).complete("planner", MESSAGES)


def test_stop_cancels_a_stream(llm_server) -> None:
    llm_server.add("planner", {"content": "x" * 400, "chunk_chars": 4, "chunk_delay": 0.02})
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        make_llm(llm_server).complete("planner", MESSAGES, ctx=OneCall(cancel=cancel, on_delta=lambda _: cancel.set()))


def test_cassette_records_then_replays_without_the_endpoint(llm_server, tmp_path) -> None:
    cassette = tmp_path / "llm.json"
    llm_server.add("planner", "recorded answer")
    assert make_llm(llm_server, llm_cassette=str(cassette), llm_cassette_mode="record").complete("planner", MESSAGES).text == "recorded answer"
    offline = LLM(make_config({"base_url": "http://127.0.0.1:9/v1", "llm_cassette": str(cassette), "llm_cassette_mode": "replay"}))
    spaced = [{"role": m["role"], "content": "  " + m["content"] + "\n"} for m in MESSAGES]  # whitespace-normalized key
    assert offline.complete("planner", spaced).text == "recorded answer"
    with pytest.raises(TaskWeaverLabError, match="has no reply for this planner prompt"):
        offline.complete("planner", [{"role": "user", "content": "something else"}])
    assert API_KEY not in cassette.read_text()


def test_a_request_that_cannot_be_made_says_what_to_check(llm_server) -> None:
    with pytest.raises(TaskWeaverLabError, match="could not be made .*UnicodeEncodeError.*check base_url .* and the API key"):
        make_llm(llm_server, api_key="sk-clé-été-000000").complete("planner", MESSAGES)
    assert llm_server.requests == []
    with pytest.raises(TaskWeaverLabError, match=r"The request to the LLM endpoint http://\[::1/v1 could not be made"):
        LLM(make_config({"base_url": "http://[::1/v1", "api_key": API_KEY})).complete("planner", MESSAGES)
