"""Server faults (issue 12): a bad config value, a turn posted on the previous turn's "finished", a server
restarted mid-turn. A real jupyter server (pytest-jupyter), real kernels, the scripted loopback LLM."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from taskweaver_lab.server.turns import TurnManager
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY
from server_support import (NS, as_json, kernel_eval, open_notebook_kernel, post, read_until, script_one_step,
                            server_config, started, turn_ended, watched_notebook)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def bad_setting() -> dict[str, Any]:
    return {}


@pytest.fixture
def jp_server_config(llm_server: Any, bad_setting: dict[str, Any]) -> dict[str, Any]:
    return server_config(llm_server.base_url, **bad_setting)


# --- item 12: a bad config value -------------------------------------------------------------------------
@pytest.mark.parametrize("bad_setting", [{"max_attempts": 0}, {"sandbox": "bogus"}])
async def test_a_bad_config_value_is_what_the_sidebar_shows(jp_serverapp: Any, jp_fetch: Any, jp_root_dir: Path,
                                                            bad_setting: dict[str, Any], monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    ext = await started(jp_serverapp)
    name = next(iter(bad_setting))
    status = await jp_fetch(NS, "status", raise_error=False)
    assert status.code == 500 and status.headers["Content-Type"].startswith("application/json")
    error = as_json(status)["error"]
    assert name in error and "restart the Jupyter server" in error and "Traceback" not in error
    # every other endpoint says the same, and no turn can start
    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "nb.ipynb")
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    refused = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "hi"})
    assert refused.code == 503 and as_json(refused)["error"] == error
    sessions = await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}, raise_error=False)
    assert sessions.code == 503 and as_json(sessions)["error"] == error
    # degraded, yet kernels still never inherit the server's secrets
    assert ext.config_error == error
    assert (await kernel_eval(jp_serverapp, kernel_id, "import os; print(os.environ.get('OPENAI_API_KEY'))")).strip() == "None"


# --- item 17: a turn posted right on "finished" ---------------------------------------------------------
async def test_the_notebook_is_free_when_finished_is_sent(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                          jp_root_dir: Path, llm_server: Any) -> None:
    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    ext = await started(jp_serverapp)
    busy_when_finished: list[bool] = []

    def on_event(envelope: dict[str, Any]) -> None:  # runs where the websocket's message is written
        if turn_ended(envelope):
            busy_when_finished.append("nb.ipynb" in ext.turns.active)

    ext.turns.subscribe("nb.ipynb", on_event)
    for round_number in range(3):
        script_one_step(llm_server, f"x{round_number} = {round_number}\nprint(x{round_number})", "Done.")
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "go"}
    first = await post(jp_fetch, "turns", body=body)
    assert first.code == 202, first.body
    for _ in range(2):  # each next turn is posted the moment the previous one's "finished" arrives
        ended = (await read_until(ws, turn_ended, timeout=120))[-1]
        assert ended["event"]["state"] == "finished", ended
        nxt = await post(jp_fetch, "turns", body=body)
        assert nxt.code == 202, nxt.body
    assert (await read_until(ws, turn_ended, timeout=120))[-1]["event"]["state"] == "finished"
    assert busy_when_finished == [False, False, False]
    ws.close()


# --- item 13: the server restarted mid-turn ----------------------------------------------------------------
async def test_server_restart_mid_turn_keeps_the_request_and_announces_the_new_kernel(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    llm_server.add("planner", plan_reply("Load the data into `rows`, then wait for the export.", plan=["load", "export"]))
    llm_server.add("coder", code_reply("rows = [1, 2, 3]\nimport time\ntime.sleep(60)"))
    first = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "load and export"})
    assert first.code == 202, first.body
    await read_until(ws, lambda e: e["event"]["kind"] == "verdict", timeout=120)
    await asyncio.sleep(1.0)  # the cell runs: this is when the server dies
    on_disk_at_crash = notebook.read_text()
    crashed = nbformat.reads(on_disk_at_crash, 4)
    assert [c.metadata["taskweaver_lab"]["kind"] for c in crashed.cells] == ["user", "plan"]
    assert "load and export" in crashed.cells[0].source and "Load the data" in crashed.cells[1].source

    # The restart: the old turn is gone (stopped here, its later cells dropped), the file is what was on disk,
    # a fresh registry, and the notebook gets a new kernel, as after a real restart.
    ext = await started(jp_serverapp)
    ext.turns.stop(as_json(first)["turn_id"])
    await read_until(ws, turn_ended, timeout=120)
    ws.close()
    ext.turns.close()
    notebook.write_text(on_disk_at_crash)
    ext.turns = TurnManager(ext.core, jp_serverapp, asyncio.get_running_loop(), ext.ydoc)
    for session in json.loads((await jp_fetch("api", "sessions")).body):  # the old kernel went with the old server
        await jp_fetch("api", "sessions", session["id"], method="DELETE")
    new_kernel = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    assert new_kernel != kernel_id
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    script_one_step(llm_server, "rows = [4, 5]\nprint(len(rows))", "There are 2 rows.")
    again = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": new_kernel, "message": "load again"})
    assert again.code == 202, again.body
    envelopes = await read_until(ws, turn_ended, timeout=120)
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    executions = [e["event"] for e in envelopes if e["event"]["kind"] == "execution"]
    assert "kernel was restarted" in executions[0]["summary"] and not executions[0]["code"]
    planner_prompt = json.dumps(llm_server.calls("planner")[-2]["messages"])
    assert "kernel was restarted" in planner_prompt and "load and export" in planner_prompt
    assert executions[1]["ok"] and executions[1]["outputs"][0]["text"] == "2\n"
    ws.close()


async def test_a_resumed_chat_on_its_own_kernel_is_not_announced_as_replaced(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    script_one_step(llm_server, "kept = 7\nprint(kept)", "Set.")
    assert (await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "set"})).code == 202
    await read_until(ws, turn_ended, timeout=120)
    ext = await started(jp_serverapp)  # a fresh registry (the extension reloaded), the kernel kept its variables
    ext.turns = TurnManager(ext.core, jp_serverapp, asyncio.get_running_loop(), ext.ydoc)
    ws.close()
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    script_one_step(llm_server, "print(kept + 1)", "8.")
    assert (await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "add"})).code == 202
    envelopes = await read_until(ws, turn_ended, timeout=120)
    executions = [e["event"] for e in envelopes if e["event"]["kind"] == "execution"]
    assert len(executions) == 1 and executions[0]["outputs"][0]["text"] == "8\n"
    ws.close()


# --- issue 13: streamed text coalesced ------------------------------------------------------------------
def test_delta_buffer_coalesces_per_role_and_keeps_order() -> None:
    from taskweaver_lab.server.turns import DeltaBuffer

    sent: list[dict[str, Any]] = []
    buffer = DeltaBuffer(sent.append, interval=3600)
    for piece in ("Hel", "lo ", "world"):
        buffer.add({"kind": "delta", "role": "planner", "text": piece})
    assert sent == []
    buffer.add({"kind": "delta", "role": "code_generator", "text": "x = 1"})  # another role: the first goes out
    assert sent == [{"kind": "delta", "role": "planner", "text": "Hello world"}]
    buffer.flush()
    buffer.flush()
    assert sent[1:] == [{"kind": "delta", "role": "code_generator", "text": "x = 1"}]
    every = DeltaBuffer(sent.append, interval=0)
    every.add({"kind": "delta", "role": "planner", "text": "a"})
    assert sent[-1]["text"] == "a"


async def test_streamed_text_arrives_whole_and_before_its_step(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                                jp_root_dir: Path, llm_server: Any) -> None:
    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    answer = "The sum is 3, computed from the two numbers you gave; nothing else was needed for it."
    llm_server.add("planner", {"content": plan_reply("Add 1 and 2."), "chunk_chars": 2},
                   {"content": plan_reply(answer, send_to="User", stop="Completed"), "chunk_chars": 2})
    llm_server.add("coder", code_reply("print(1 + 2)"))
    assert (await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "1+2"})).code == 202
    envelopes = await read_until(ws, turn_ended, timeout=120)
    events = [e["event"] for e in envelopes]
    last_plan = max(i for i, e in enumerate(events) if e["kind"] == "plan")
    streamed = "".join(e["text"] for e in events[:last_plan] if e["kind"] == "delta" and e["role"] == "planner")
    assert answer in streamed  # every piece arrived, in order, before the step it belongs to
    assert events[-1]["state"] == "finished"
    ws.close()
