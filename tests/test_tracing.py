"""Tracing (issue 15): a per-session JSONL trace of every LLM call, verification and execution, through a real round
(real kernel, scripted loopback LLM); OpenTelemetry spans when the opentelemetry packages are installed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.tracing import prompt_hash
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY, agent_config

REQUEST = "what is the mean of the units column of sales.csv? (secret-words-of-the-user)"


def script_round(llm_server: Any) -> None:
    """A rejection, an error, a success: every kind of trace event in one round."""
    llm_server.add("planner", plan_reply("Compute the mean of the 'units' column of sales.csv and print it."),
                   plan_reply("The mean is printed above.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import subprocess\nsubprocess.run(['ls'])"),
                   code_reply("import pandas as pd\nprint(pd.read_csv('sales.csv')['Units'].mean())"),
                   code_reply("import pandas as pd\nprint(pd.read_csv('sales.csv')['units'].mean())"))


def read_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_llm_call_verification_and_execution_is_traced_without_prompts_or_keys(llm_server, workspace: Path,
                                                                                    tmp_path: Path) -> None:
    script_round(llm_server)
    app = TaskWeaverApp(config=agent_config(llm_server, trace_dir=str(tmp_path / "traces")))
    with app.create_session(notebook=workspace / "t.ipynb") as session:
        answer = session.chat(REQUEST)
        path = tmp_path / "traces" / f"{session.id}.jsonl"
    assert answer.stop == "Completed"
    records = read_trace(path)
    assert [r["event"] for r in records] == [
        "llm_call", "llm_call", "verification", "llm_call", "verification", "execution", "llm_call", "verification",
        "execution", "llm_call", "answer"]
    assert {r["session"] for r in records} == {session.id} and {r["round"] for r in records} == {1}
    calls = [r for r in records if r["event"] == "llm_call"]
    assert [c["role"] for c in calls] == ["planner"] + ["code_generator"] * 3 + ["planner"]
    assert [c["model"] for c in calls] == ["planner"] + ["coder"] * 3 + ["planner"]
    assert all(c["ok"] and c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 and c["latency_s"] >= 0 for c in calls)
    # The hash is of exactly the messages the endpoint received: equal prompts can be matched, none can be read.
    assert [c["prompt_sha256"] for c in calls] == [prompt_hash(r["messages"]) for r in llm_server.requests]
    verdicts = [r for r in records if r["event"] == "verification"]
    assert [v["ok"] for v in verdicts] == [False, True, True] and verdicts[0]["violations"][0]["rule"] == "import"
    runs = [r for r in records if r["event"] == "execution"]
    assert [(e["ok"], e["attempt"], e["error_name"]) for e in runs] == [(False, 2, "KeyError"), (True, 3, "")]
    assert all(len(e["code_sha256"]) == 64 and e["execution_count"] for e in runs)
    text = path.read_text()
    for secret in (API_KEY, "secret-words-of-the-user", "sales.csv", "read_csv", "printed above"):
        assert secret not in text


def test_a_failed_llm_call_is_traced_too(llm_server, workspace: Path, tmp_path: Path) -> None:
    llm_server.add("planner", {"status": 401, "content": "bad key"})
    app = TaskWeaverApp(config=agent_config(llm_server, trace_dir=str(tmp_path), llm_retries=0))
    with app.create_session(notebook=workspace / "f.ipynb") as session:
        answer = session.chat("hello")
        records = read_trace(tmp_path / f"{session.id}.jsonl")
    assert answer.stop == "TaskFailure"
    assert [(r["event"], r.get("ok")) for r in records] == [("llm_call", False), ("answer", None)]
    assert records[0]["error"] == "TaskWeaverLabError" and records[1]["stop"] == "TaskFailure"


def test_opentelemetry_spans_when_installed(llm_server, workspace: Path) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the opentelemetry packages are not installed")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    script_round(llm_server)
    app = TaskWeaverApp(config=agent_config(llm_server, trace_otel=True))  # spans only: no trace_dir
    with app.create_session(notebook=workspace / "o.ipynb") as session:
        session.chat(REQUEST)
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("taskweaver_lab.llm_call") == 5 and names.count("taskweaver_lab.execution") == 2
    assert names[-1] == "taskweaver_lab.round"
    round_span = spans[-1]
    children = [s for s in spans if s.parent is not None and s.parent.span_id == round_span.context.span_id]
    assert len(children) == len(spans) - 1
    failed = [s for s in spans if s.name == "taskweaver_lab.execution" and not s.status.is_ok]
    assert len(failed) == 1 and failed[0].attributes["taskweaver_lab.error_name"] == "KeyError"
    first_call = next(s for s in spans if s.name == "taskweaver_lab.llm_call")
    assert first_call.attributes["taskweaver_lab.role"] == "planner"
    assert first_call.attributes["taskweaver_lab.prompt_sha256"] == prompt_hash(llm_server.requests[0]["messages"])
    assert API_KEY not in json.dumps([dict(s.attributes) for s in spans])
