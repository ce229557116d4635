"""The Codegen backend (issue 14 item 3) through real rounds: a real kernel, the scripted OpenAI-protocol server for
the Planner, and a scripted Codegen service on loopback (a real http.server) written here."""
from __future__ import annotations

import json
import logging
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.testing import plan_reply

from conftest import API_KEY, agent_config

CODEGEN_KEY = "cg-key-7d1e9b3a5c2f8e4d6b0a9c1f3e5d7b2a"  # planted: must never reach kernels, notebooks or logs


class CodegenServer:
    """Scripted Codegen API: each reply is ``{"generated_code": ...}`` or ``{"status": int, "body": str}``."""

    def __init__(self, *replies: Any) -> None:
        self.replies: deque[Any] = deque(replies)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/generate"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                server.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                server.headers.append(dict(self.headers))
                reply = server.replies.popleft() if server.replies else {"status": 500, "body": '{"error": "empty"}'}
                status = int(reply.get("status", 200))
                data = (reply["body"] if "body" in reply else json.dumps(reply)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def codegen(monkeypatch: pytest.MonkeyPatch) -> Iterator[CodegenServer]:
    server = CodegenServer()
    monkeypatch.setenv("CODEGEN_API_ENDPOINT", server.url)
    monkeypatch.setenv("CODEGEN_API_KEY", CODEGEN_KEY)
    yield server
    server.close()


def codegen_config(llm_server: Any, **extra: Any) -> dict[str, Any]:
    return agent_config(llm_server, code_generator_backend="codegen", **extra)


def test_codegen_writes_the_code_and_errors_go_back_as_error_resolution(llm_server, codegen, workspace: Path,
                                                                        tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    llm_server.add("planner", plan_reply("Compute the mean of the 'units' column of sales.csv and print it."),
                   plan_reply("The mean is printed above.", send_to="User", stop="Completed"))
    codegen.replies.extend([
        {"generated_code": "import pandas as pd\ns = pd.read_csv('sales.csv')\nprint(s['Units'].mean())"},  # KeyError
        {"generated_code": "import subprocess\nprint(subprocess.run(['ls']))"},  # the verifier rejects it
        {"generated_code": "```python\nimport pandas as pd\ns = pd.read_csv('sales.csv')\nprint(round(s['units'].mean(), 4))\n```"},
    ])
    approvals: list[str] = []

    def approve(draft: Any, verdict: Any) -> tuple[str, str]:
        approvals.append(draft.code)
        return ("run", draft.code)

    app = TaskWeaverApp(config=codegen_config(llm_server, trace_dir=str(tmp_path / "traces")))
    with app.create_session(notebook=workspace / "cg.ipynb") as session:
        answer = session.chat("mean units in sales.csv", approve=approve)
        trace = (tmp_path / "traces" / f"{session.id}.jsonl").read_text()
        kernel_env = session.executor.execute("import os\nprint(repr(os.environ.get('CODEGEN_API_KEY')))", agent=False)
    assert answer.stop == "Completed", answer.text
    assert [r["model"] for r in llm_server.requests] == ["planner", "planner"]  # no Code Generator LLM call
    first, second, third = codegen.requests
    assert first["language"] == "python" and "units" in first["task"] and "error" not in first
    assert "request_type" not in first and "sales.csv" in first["context"]
    assert second["request_type"] == "error_resolution" and "KeyError" in second["error"]
    assert "s['Units'].mean()" in second["context"]  # the failed code travels with the error
    assert third["request_type"] == "error_resolution" and "subprocess" in third["error"]
    assert all(h["Authorization"] == f"Bearer {CODEGEN_KEY}" for h in codegen.headers)
    assert len(approvals) == 2 and "import subprocess" not in "".join(approvals)  # rejected code is never offered
    import pandas as pd
    mean = round(pd.read_csv(workspace / "sales.csv")["units"].mean(), 4)
    assert str(mean) in json.dumps(llm_server.requests[-1]["messages"])  # the Planner saw the real result
    notebook = (workspace / "cg.ipynb").read_text()
    assert "round(s['units'].mean(), 4)" in notebook and "```" not in json.loads(notebook)["cells"][-2]["source"]
    service_calls = [json.loads(line) for line in trace.splitlines() if '"codegen_call"' in line]
    assert [(c["request_type"], c["status"], c["ok"]) for c in service_calls] == [
        ("generation", 200, True), ("error_resolution", 200, True), ("error_resolution", 200, True)]
    for where in (notebook, caplog.text, json.dumps(codegen.requests), kernel_env.summary, trace):
        assert CODEGEN_KEY not in where and API_KEY not in where
    assert "None" in kernel_env.summary  # the kernel never had the key in its environment


@pytest.mark.parametrize("reply, message", [
    ({"status": 401, "body": '{"error": "bad key"}'}, "The Codegen service rejected the key (HTTP 401)"),
    ({"status": 500, "body": '{"error": {"message": "model overloaded"}}'},
     "The Codegen service failed (HTTP 500): model overloaded"),
    ({"status": 200, "body": "<html>a login page</html>"}, 'did not answer with JSON {"generated_code": "..."}'),
])
def test_an_erroring_service_ends_the_round_with_one_clear_sentence(llm_server, codegen, workspace: Path, reply: Any,
                                                                    message: str) -> None:
    llm_server.add("planner", plan_reply("Print the number of rows of sales.csv."))
    codegen.replies.append(reply)
    app = TaskWeaverApp(config=codegen_config(llm_server, llm_retries=0))
    with app.create_session(notebook=workspace / "err.ipynb") as session:
        answer = session.chat("rows of sales.csv")
    assert answer.stop == "TaskFailure" and message in answer.text
    assert "Traceback" not in answer.text and CODEGEN_KEY not in answer.text


def test_a_dead_service_is_named(llm_server, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEGEN_API_ENDPOINT", "http://127.0.0.1:9/generate")
    llm_server.add("planner", plan_reply("Print the number of rows of sales.csv."))
    app = TaskWeaverApp(config=codegen_config(llm_server, llm_retries=1))
    with app.create_session(notebook=workspace / "dead.ipynb") as session:
        answer = session.chat("rows of sales.csv")
        assert session.tracer is None  # tracing is off by default
    assert answer.stop == "TaskFailure"
    assert "Cannot reach the Codegen service at http://127.0.0.1:9/generate" in answer.text
    assert "CODEGEN_API_ENDPOINT" in answer.text


def test_no_endpoint_is_named(llm_server, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEGEN_API_ENDPOINT", raising=False)
    llm_server.add("planner", plan_reply("Print the number of rows of sales.csv."))
    app = TaskWeaverApp(config=codegen_config(llm_server))
    with app.create_session(notebook=workspace / "none.ipynb") as session:
        answer = session.chat("rows of sales.csv")
    assert answer.stop == "TaskFailure" and "no Codegen endpoint is set: set CODEGEN_API_ENDPOINT" in answer.text


def test_the_guard_stops_service_code_the_verifier_let_through_and_the_block_goes_back(llm_server, codegen,
                                                                                      workspace: Path,
                                                                                      tmp_path_factory) -> None:
    canary = tmp_path_factory.mktemp("outside") / "canary.csv"
    canary.write_text("secret\ncanary-4f9e2d-outside-the-workspace\n")
    hidden = str(canary)[::-1]  # built at run time: the verifier cannot see the path, the guard must stop it
    llm_server.add("planner", plan_reply("Print the number of rows of sales.csv."),
                   plan_reply("The row count is printed above.", send_to="User", stop="Completed"))
    codegen.replies.extend([
        {"generated_code": f"import pandas as pd\nplace = {hidden!r}[::-1]\nprint(pd.read_csv(place))"},
        {"generated_code": "import pandas as pd\nprint(len(pd.read_csv('sales.csv')))"},
    ])
    app = TaskWeaverApp(config=codegen_config(llm_server))
    with app.create_session(notebook=workspace / "guard.ipynb") as session:
        answer = session.chat("rows of sales.csv")
    assert answer.stop == "Completed"
    blocked = codegen.requests[1]
    assert blocked["request_type"] == "error_resolution" and "guard blocked" in blocked["error"]
    assert "PermissionError" in blocked["error"]
    assert "canary-4f9e2d" not in json.dumps(codegen.requests) + json.dumps(llm_server.requests)
