"""The server extension end to end: pytest-jupyter server, real kernels started through the API,
websocket events, the scripted loopback LLM. RTC is off here (tests/test_rtc.py turns it on)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY
from server_support import (NS, as_json, code_cell, kinds, make_notebook, open_notebook_kernel, post, read_until,
                            server_config, signed, started, turn_ended, wait_for_file)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)


def script_one_step(llm: Any, code: str, answer: str = "Done.") -> None:
    llm.add("planner", plan_reply("Run the step."), plan_reply(answer, send_to="User", stop="Completed"))
    llm.add("coder", code_reply(code))


async def kernel_eval(serverapp: Any, kernel_id: str, code: str) -> str:
    """Run ``code`` in the user's kernel on its own client; returns the stdout."""
    client = serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        reply = await client.execute_interactive(code, timeout=20, output_hook=lambda msg: out.append(msg))
    finally:
        client.stop_channels()
    assert reply["content"]["status"] == "ok", reply
    return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")


out: list[dict[str, Any]] = []


async def test_turn_runs_in_the_notebook_kernel_and_lands_in_the_file(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)  # planted in the server's env: kernels must not see it
    await started(jp_serverapp)
    notebook = make_notebook(jp_root_dir)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    script_one_step(llm_server, "answer = 6 * 7\nprint(answer)", "The answer is 42.")
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    started_at = time.monotonic()
    response = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "compute 6*7"})
    assert response.code == 202, response.body
    accepted = as_json(response)
    assert accepted["record"] == "file" and accepted["session_id"]
    envelopes = await read_until(ws, turn_ended)
    assert {e["turn_id"] for e in envelopes} == {accepted["turn_id"]}
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    assert envelopes[-1]["event"]["usage"]["calls"] == 3
    for kind in ("user", "plan", "draft", "verdict", "execution", "answer", "cell", "llm_call"):
        assert kind in kinds(envelopes), kind
    execution = next(e["event"] for e in envelopes if e["event"]["kind"] == "execution")
    assert execution["ok"] and execution["outputs"][0]["text"] == "42\n"
    assert all(not e["event"]["insert"] for e in envelopes if e["event"]["kind"] == "cell")
    assert time.monotonic() - started_at < 15

    nb = nbformat.read(notebook, 4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 1 and code[0].outputs[0]["text"] == "42\n"
    meta = code[0].metadata["taskweaver_lab"]
    assert meta["session"] == accepted["session_id"] and {"round", "step", "verified", "attempt"} <= set(meta)
    assert [c.metadata["taskweaver_lab"].get("kind") for c in nb.cells if c.cell_type == "markdown"] == ["user", "plan", "answer"]

    # It ran in the notebook's own kernel; that kernel never saw the key, but knows the server.
    printed = await kernel_eval(jp_serverapp, kernel_id, "import os\nprint(answer, os.environ.get('OPENAI_API_KEY'), "
                                                         "os.environ.get('TASKWEAVER_LAB_SERVER_URL'))")
    value, key, url = printed.split()
    assert value == "42" and key == "None" and url.startswith("http://127.0.0.1:") and url.endswith(jp_serverapp.base_url)
    assert API_KEY not in notebook.read_text()

    snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
    assert snapshot["session_id"] == accepted["session_id"] and not snapshot["busy"]
    assert [e["kind"] for e in snapshot["events"]][0] == "user" and snapshot["events"][-1]["kind"] == "answer"
    ws.close()
