"""LLM faults (issue 12 items 1-3, 16 and 17): each injected by the real loopback server
(``taskweaver_lab.testing.ScriptedLLMServer`` fault modes) and met at the LLM boundary with one sentence
saying what the endpoint did; through a real session the round ends cleanly and nothing before it is lost."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.config import make_config
from taskweaver_lab.llm import LLM, Cancelled, ContextTooLong, OneCall
from taskweaver_lab.session import RoundOptions
from taskweaver_lab.steps import Notice, Step, TaskWeaverLabError, TextDelta
from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from conftest import API_KEY, agent_config
from server_support import as_json, post, read_until, server_config, turn_ended, wait_for_file, watched_notebook

pytest_plugins = ["pytest_jupyter.jupyter_server"]

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


@pytest.fixture
def jp_server_config(llm_server: ScriptedLLMServer) -> dict[str, Any]:
    return server_config(llm_server.base_url)


def make_llm(server: ScriptedLLMServer, **extra: Any) -> LLM:
    return LLM(make_config({"base_url": server.base_url, "api_key": API_KEY, "planner_model": "planner", **extra}))


def listening() -> tuple[list[Step], OneCall]:
    """A call whose deltas and notices land in one list, in order (what a live view sees)."""
    seen: list[Step] = []
    return seen, OneCall(on_delta=lambda text: seen.append(TextDelta("planner", text)), on_step=seen.append)


def notices(seen: list[Step]) -> list[str]:
    return [s.text for s in seen if isinstance(s, Notice)]


def eventually(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll (a loaded machine: generous timeout, no duration asserted)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def stop_when_asked(server: ScriptedLLMServer, cancel: threading.Event, requests: int = 1) -> threading.Thread:
    """Press Stop from another thread once the endpoint holds the request (it has not answered a byte)."""
    thread = threading.Thread(target=lambda: eventually(lambda: len(server.requests) >= requests) and cancel.set())
    thread.start()
    return thread


# --- item 1: protocol errors ----------------------------------------------------------------------
def test_an_event_that_is_not_json_is_named(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "x", "fault": "bad_sse"})
    with pytest.raises(TaskWeaverLabError, match="sent a streamed event that is not JSON") as info:
        make_llm(llm_server).complete("planner", MESSAGES)
    assert llm_server.base_url in str(info.value) and "<not json>" in str(info.value)
    assert API_KEY not in str(info.value) and "Traceback" not in str(info.value)


@pytest.mark.parametrize("stream", [True, False])
def test_a_200_page_that_is_not_json_is_named(llm_server: ScriptedLLMServer, stream: bool) -> None:
    llm_server.add("planner", {"content": "x", "fault": "bad_body"})
    with pytest.raises(TaskWeaverLabError, match="text/html" if stream else "that is not a chat completion") as info:
        make_llm(llm_server, stream=stream).complete("planner", MESSAGES)
    assert "check that base_url is the server's OpenAI-compatible API" in str(info.value)


def test_a_provider_error_event_mid_stream_is_retried_then_named(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "The model is overloaded.", "fault": "error_event"}, "whole answer")
    seen, ctx = listening()
    assert make_llm(llm_server).complete("planner", MESSAGES, ctx=ctx).text == "whole answer"
    llm_server.add("planner", *[{"content": "The model is overloaded.", "fault": "error_event"}] * 2)
    with pytest.raises(TaskWeaverLabError, match="kept breaking off its reply .* after 1 retries: The model is overloaded"):
        make_llm(llm_server, llm_retries=1).complete("planner", MESSAGES)


def test_a_cut_stream_is_retried_and_the_live_view_told_to_drop_the_partial_text(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "", "partial": "Half an ans", "fault": "cut"}, "The whole answer.")
    seen, ctx = listening()
    reply = make_llm(llm_server).complete("planner", MESSAGES, ctx=ctx)
    assert reply.text == "The whole answer." and reply.call.retries == 1
    kinds = [s.kind if isinstance(s, Notice) else s.text for s in seen]
    reset = kinds.index("notice")  # the sidebar drops its live text on any notice (src/turns.ts applyEvent)
    assert "".join(kinds[:reset]) == "Half an ans" and "".join(kinds[reset + 1:]) == "The whole answer."
    assert notices(seen) == ["The model's reply broke off; asking again (the partial text shown so far is discarded)."]


def test_a_protocol_error_ends_the_round_cleanly_and_keeps_what_came_before(llm_server: ScriptedLLMServer,
                                                                           workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Print 6*7."), plan_reply("It is 42.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("answer = 6 * 7\nprint(answer)"))
    llm_server.add("planner", {"content": "x", "fault": "bad_sse"})
    llm_server.add("planner", plan_reply("Print answer + 1."), plan_reply("It is 43.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(answer + 1)"))
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "p.ipynb") as session:
        assert session.chat("What is 6*7?").text == "It is 42."
        failed = session.chat("And then?")
        assert failed.stop == "TaskFailure" and "sent a streamed event that is not JSON" in failed.text
        assert session.chat("And 43?").text == "It is 43."  # the kernel's variable survived the failed round
    cells = nbformat.read(workspace / "p.ipynb", 4).cells
    kinds = [c.metadata.get("taskweaver_lab", {}).get("kind", c.cell_type) for c in cells]
    assert kinds.count("user") == 3 and kinds.count("answer") == 3
    failed_answer = next(c for c in cells if "not JSON" in c.source)
    assert cells[cells.index(failed_answer) - 1].source.strip().endswith("And then?")


async def test_a_protocol_error_in_a_server_turn_keeps_the_request_cell(jp_serverapp: Any, jp_fetch: Any,
                                                                        jp_ws_fetch: Any, jp_root_dir: Path,
                                                                        llm_server: ScriptedLLMServer) -> None:
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    llm_server.add("planner", {"content": "x", "fault": "bad_body"})
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "How many rows?"}
    response = await post(jp_fetch, "turns", body=body)
    assert response.code == 202, response.body
    envelopes = await read_until(ws, turn_ended, timeout=120)
    answer = next(e["event"] for e in envelopes if e["event"]["kind"] == "answer")
    assert "answered HTTP 200 with text/html" in answer["text"] and "Internal error" not in answer["text"]
    nb = await wait_for_file(notebook, lambda nb: len(nb.cells) >= 2, timeout=60)
    assert nb.cells[0].source == "**You:** How many rows?" and "text/html" in nb.cells[1].source
    ws.close()


async def test_stop_ends_a_server_turn_waiting_for_its_first_token(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                                   jp_root_dir: Path, llm_server: ScriptedLLMServer) -> None:
    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    llm_server.add("planner", {"content": "never sent", "delay": 600})
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "Think hard."}
    turn_id = as_json(await post(jp_fetch, "turns", body=body))["turn_id"]
    for _ in range(1200):  # the request reached the endpoint, which has not answered a byte
        if llm_server.requests:
            break
        await asyncio.sleep(0.05)
    assert as_json(await post(jp_fetch, "turns", turn_id, "stop"))["stopped"] is True
    envelopes = await read_until(ws, turn_ended, timeout=120)  # long before the endpoint's 600 s
    answer = next(e["event"] for e in envelopes if e["event"]["kind"] == "answer")
    assert answer["text"].startswith("Stopped.")
    ws.close()


# --- item 2: 429 with Retry-After -------------------------------------------------------------------
def test_429_retry_after_is_waited_out_with_a_notice(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"status": 429, "content": "Rate limit reached", "headers": {"Retry-After": "1"}}, "ok")
    seen, ctx = listening()
    reply = make_llm(llm_server, llm_retries=0).complete("planner", MESSAGES, ctx=ctx)
    assert reply.text == "ok" and reply.call.retries == 1 and len(llm_server.requests) == 2
    assert notices(seen) == ["The LLM endpoint is rate limiting requests (HTTP 429): waiting 1 s, as it asks, then trying again."]


def test_429_giving_up_says_rate_limited(llm_server: ScriptedLLMServer) -> None:
    too_long = {"status": 429, "content": "Rate limit reached", "headers": {"Retry-After": "120"}}
    llm_server.add("planner", too_long)
    with pytest.raises(TaskWeaverLabError, match=r"is rate limiting requests \(HTTP 429, model planner\) and asks to "
                                                 r"wait 120 s, beyond TaskWeaverLab.llm_rate_limit_wait \(60 s\)"):
        make_llm(llm_server).complete("planner", MESSAGES)
    assert len(llm_server.requests) == 1  # not hammered
    llm_server.add("planner", *[{"status": 429, "content": "Rate limit reached", "headers": {"retry-after-ms": "600"}}] * 3)
    with pytest.raises(TaskWeaverLabError, match="rate limit"):
        make_llm(llm_server, llm_rate_limit_wait=1.5).complete("planner", MESSAGES)
    assert len(llm_server.requests) == 1 + 3  # waited 0.6 + 0.6, then a third wait would pass 1.5 s


def test_429_without_retry_after_says_rate_limited_when_giving_up(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", *[{"status": 429, "content": "Too many requests"}] * 2)
    with pytest.raises(TaskWeaverLabError, match="still rate limiting requests .*Too many requests"):
        make_llm(llm_server, llm_retries=1).complete("planner", MESSAGES)


# --- item 3: a deadline per request; Stop closes it at once -------------------------------------------
def test_a_keep_alive_drip_ends_at_the_deadline_and_the_connection_is_closed(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "", "fault": "drip", "chunk_delay": 0.1})
    with pytest.raises(TaskWeaverLabError, match="did not finish its reply .* within 2 s, the deadline TaskWeaverLab.llm_deadline"):
        make_llm(llm_server, llm_deadline=2, llm_retries=0).complete("planner", MESSAGES)
    assert eventually(lambda: llm_server.hangups == 1)  # the server saw the client go: the drip ended


def test_stop_closes_a_request_still_waiting_for_its_first_byte(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "far too late", "delay": 600})
    cancel = threading.Event()
    stopper = stop_when_asked(llm_server, cancel)
    with pytest.raises(Cancelled):
        make_llm(llm_server).complete("planner", MESSAGES, ctx=OneCall(cancel=cancel))
    stopper.join()


def test_stop_ends_a_dripping_stream_and_hangs_up(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "", "fault": "drip", "chunk_delay": 0.1})
    cancel = threading.Event()
    stopper = stop_when_asked(llm_server, cancel)
    with pytest.raises(Cancelled):
        make_llm(llm_server).complete("planner", MESSAGES, ctx=OneCall(cancel=cancel))
    stopper.join()
    assert eventually(lambda: llm_server.hangups == 1)


def test_stop_during_a_slow_first_token_ends_the_round_stopped(llm_server: ScriptedLLMServer, workspace: Path) -> None:
    llm_server.add("planner", {"content": plan_reply("never used"), "delay": 600})
    cancel = threading.Event()
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "s.ipynb") as session:
        stopper = stop_when_asked(llm_server, cancel)
        answer = session.chat("Count the rows of sales.csv", options=RoundOptions(cancel=cancel))
        stopper.join()
    assert answer.text.startswith("Stopped.") and answer.stop == "TaskFailure"
    sources = [c.source for c in nbformat.read(workspace / "s.ipynb", 4).cells]
    assert any("Count the rows of sales.csv" in s for s in sources) and any("Stopped." in s for s in sources)


def test_a_long_first_token_wait_shows_progress_not_an_error(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "slow but fine", "delay": 3})
    seen, ctx = listening()
    reply = make_llm(llm_server, llm_progress_interval=0.3).complete("planner", MESSAGES, ctx=ctx)
    assert reply.text == "slow but fine"
    waits = notices(seen)
    assert waits and all(t.startswith("Waiting for the model to start its reply (") for t in waits)
    first_text = next(i for i, s in enumerate(seen) if isinstance(s, TextDelta))
    assert all(isinstance(s, Notice) for s in seen[:first_text])  # progress only before the reply starts


def test_a_first_token_slower_than_llm_timeout_is_awaited_until_the_deadline(llm_server: ScriptedLLMServer) -> None:
    llm_server.add("planner", {"content": "worth the wait", "delay": 3})
    reply = make_llm(llm_server, llm_timeout=1, llm_deadline=120, llm_retries=0).complete("planner", MESSAGES)
    assert reply.text == "worth the wait" and len(llm_server.requests) == 1


# --- item 16 (the LLM half): a context-length error is what it is ---------------------------------------
def test_context_length_error_is_named_and_keeps_json_schema() -> None:
    with ScriptedLLMServer({"planner": ['{"a": 1}']}, context_chars=2000) as server:
        llm = make_llm(server)
        with pytest.raises(ContextTooLong, match="The conversation is too long for the model's context") as info:
            llm.complete("planner", [{"role": "user", "content": "x" * 5000}], SCHEMA)
        assert "maximum context length is 500 tokens" in str(info.value)
        assert llm.complete("planner", MESSAGES, SCHEMA).text == '{"a": 1}'
    formats = [(r.get("response_format") or {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_schema"]  # one request for the long prompt: no format ladder, no retry
