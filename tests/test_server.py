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
from server_support import (NS, script_one_step, as_json, code_cell, kernel_eval, kinds, make_notebook, open_notebook_kernel, post, read_until,
                            server_config, signed, started, turn_ended)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)




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

    # A server restart loses no finished round: a fresh registry rebuilds the chat from the notebook.
    from taskweaver_lab.server.turns import TurnManager

    ext = await started(jp_serverapp)
    ext.turns = TurnManager(ext.core, jp_serverapp, asyncio.get_running_loop(), ext.ydoc)
    restored = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
    assert restored["session_id"] == accepted["session_id"]
    assert [e["kind"] for e in restored["events"]] == [e["kind"] for e in snapshot["events"]]


async def test_frontend_mode_stop_and_a_usable_kernel(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                     jp_root_dir: Path, llm_server: Any) -> None:
    """record=frontend: the sidebar inserts the cells. Stop interrupts a long cell; the kernel stays usable."""
    await started(jp_serverapp)
    notebook = make_notebook(jp_root_dir)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    llm_server.add("planner", plan_reply("Wait a long time."))
    llm_server.add("coder", code_reply("import time\ntime.sleep(30)"))
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "sleep", "record": "frontend"}
    accepted = as_json(await post(jp_fetch, "turns", body=body))
    assert accepted["record"] == "frontend"
    await read_until(ws, lambda e: e["event"]["kind"] == "verdict")
    await asyncio.sleep(0.5)  # the cell is running now
    stopped_at = time.monotonic()
    assert as_json(await post(jp_fetch, "turns", accepted["turn_id"], "stop"))["stopped"] is True
    envelopes = await read_until(ws, turn_ended, timeout=10)
    assert time.monotonic() - stopped_at < 5
    execution = next(e["event"] for e in envelopes if e["event"]["kind"] == "execution")
    assert execution["interrupted"] and "KeyboardInterrupt" in execution["error"]
    assert envelopes[-2]["event"]["kind"] == "answer" and "Stopped" in envelopes[-2]["event"]["text"]
    cells = [e["event"] for e in envelopes if e["event"]["kind"] == "cell"]
    assert cells and all(c["insert"] for c in cells)
    assert any(c["cell"]["cell_type"] == "code" and "time.sleep(30)" in c["cell"]["source"] for c in cells)
    assert nbformat.read(notebook, 4).cells == []  # the frontend records, not the server

    script_one_step(llm_server, "print('alive')")
    accepted = as_json(await post(jp_fetch, "turns", body=body))
    envelopes = await read_until(ws, turn_ended)
    execution = next(e["event"] for e in envelopes if e["event"]["kind"] == "execution")
    assert execution["ok"] and execution["outputs"][0]["text"] == "alive\n"
    ws.close()


async def test_approval_run_skip_and_refusals(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                              jp_root_dir: Path, llm_server: Any) -> None:
    ext = await started(jp_serverapp)
    notebook = make_notebook(jp_root_dir)
    make_notebook(jp_root_dir, "other.ipynb")
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    llm_server.add("planner", plan_reply("Make a.", plan=["make a", "make b"]),
                   plan_reply("Make b.", plan=["make a", "make b"], step=2), plan_reply("Done.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("a = 1\nprint('ran a')"), code_reply("b = 2\nprint('ran b')"))
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "a then b", "approval": "approve"}
    turn_id = as_json(await post(jp_fetch, "turns", body=body))["turn_id"]
    first = await read_until(ws, lambda e: e["event"]["kind"] == "approval")
    assert first[-1]["event"]["draft"]["code"].startswith("a = 1") and first[-1]["event"]["verdict"]["ok"]

    # While it waits: a clear 4xx for every wrong request.
    refusals = {
        409: await post(jp_fetch, "turns", body=body),
        404: await post(jp_fetch, "turns", body={**body, "path": "missing.ipynb"}),
    }
    dead_kernel = await post(jp_fetch, "turns", body={**body, "path": "other.ipynb", "kernel_id": "0" * 32})
    not_notebook = await post(jp_fetch, "turns", body={**body, "path": "data.csv"})
    empty = await post(jp_fetch, "turns", body={**body, "message": "  "})
    bad_action = await post(jp_fetch, "turns", turn_id, "approve", body={"action": "maybe"})
    unknown = await post(jp_fetch, "turns", "abcdef123456", "stop")
    assert refusals[409].code == 409 and "already running" in as_json(refusals[409])["error"]
    assert refusals[404].code == 404 and "missing.ipynb does not exist" in as_json(refusals[404])["error"]
    assert dead_kernel.code == 404 and "is not running" in as_json(dead_kernel)["error"]
    assert (not_notebook.code, empty.code, bad_action.code, unknown.code) == (400, 400, 400, 404)

    assert (await post(jp_fetch, "turns", turn_id, "approve", body={"action": "run"})).code == 200
    second = await read_until(ws, lambda e: e["event"]["kind"] == "approval")
    assert second[-1]["event"]["draft"]["code"].startswith("b = 2")
    await post(jp_fetch, "turns", turn_id, "approve", body={"action": "skip"})
    envelopes = await read_until(ws, turn_ended)
    assert envelopes[-1]["event"]["state"] == "finished"
    executions = [e["event"] for e in first + second + envelopes if e["event"]["kind"] == "execution"]
    assert [(x["ok"], x["code"] != "") for x in executions] == [(True, True), (False, False)]
    assert "skipped" in executions[1]["summary"]
    code_cells = [c for c in nbformat.read(notebook, 4).cells if c.cell_type == "code"]
    assert [c.source for c in code_cells] == ["a = 1\nprint('ran a')"]  # the skipped step never ran

    # No endpoint configured: the first-run help, not a failure deep in a turn.
    config = ext.config_section
    config.base_url, config.api_key = "", ""
    status = as_json(await jp_fetch(NS, "status"))
    assert status["configured"] is False and "OPENAI_BASE_URL" in status["help"] and API_KEY not in json.dumps(status)
    unconfigured = await post(jp_fetch, "turns", body={**body, "approval": "auto"})
    assert unconfigured.code == 412 and "OPENAI_BASE_URL" in as_json(unconfigured)["error"]
    ws.close()


# Runs in the kernel's MAIN shell, blocking it the way %%taskweaver does, while the turn's code runs on a subshell.
MAGIC_CLIENT = r'''
import json, os, time, urllib.request, urllib.parse
from ipykernel.connect import get_connection_file
from taskweaver_lab.kernel_auth import sign_headers
_kid = os.path.basename(get_connection_file())[len("kernel-"):-len(".json")]
_base = os.environ["TASKWEAVER_LAB_SERVER_URL"]
def _call(method, rel, body=None, query=""):
    url = _base + rel
    data = json.dumps(body) if body is not None else ""
    headers = sign_headers(get_ipython().kernel.session.key, _kid, method, urllib.parse.urlparse(url).path, data)
    request = urllib.request.Request(url + query, data=data.encode() if method == "POST" else None, method=method,
                                     headers={**headers, "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=40).read())
_turn = _call("POST", "taskweaver_lab/kernel/turns", {"message": "make magic_value", "cell_id": "magic-cell"})
_after, _events = 0, []
while True:
    _page = _call("GET", f"taskweaver_lab/kernel/turns/{_turn['turn_id']}/events", query=f"?after={_after}&timeout=10")
    _events += _page["events"]; _after = _page["next"]
    if _page["done"]:
        break
print(_turn["record"], [e["event"]["kind"] for e in _events if e["event"]["kind"] in ("answer", "turn")][-2:], magic_value)
'''


async def test_magic_endpoint_from_inside_the_kernel(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                     jp_root_dir: Path, llm_server: Any) -> None:
    """The kernel authenticates with its own key; its turn runs on a subshell while the main shell waits
    (no deadlock); cells go below the magic cell; the sidebar's socket sees the magic's turn."""
    await started(jp_serverapp)
    cells = [code_cell("%%taskweaver\nmake magic_value", "magic-cell"), code_cell("print('below')", "next-cell")]
    notebook = make_notebook(jp_root_dir, cells=cells)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    script_one_step(llm_server, "import time\ntime.sleep(1)\nmagic_value = 99\nprint(magic_value)", "magic_value is 99.")
    printed = await kernel_eval(jp_serverapp, kernel_id, MAGIC_CLIENT)
    assert printed.split() == ["file", "['answer',", "'turn']", "99"], printed
    sources = [c.source for c in nbformat.read(notebook, 4).cells]
    assert sources[0].startswith("%%taskweaver") and sources[-1] == "print('below')"
    assert any("magic_value = 99" in s for s in sources[1:-1])  # directly below the magic cell, before the next

    # With the sidebar watching, the magic's turn is in its chat, and cells come with their anchor.
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    script_one_step(llm_server, "magic_value += 1\nprint(magic_value)", "Now 100.")
    printed = await kernel_eval(jp_serverapp, kernel_id, MAGIC_CLIENT)
    assert printed.split()[0] == "frontend" and printed.split()[-1] == "100"
    envelopes = await read_until(ws, turn_ended)
    cell_events = [e["event"] for e in envelopes if e["event"]["kind"] == "cell"]
    assert cell_events[0]["after_cell_id"] == "magic-cell" and cell_events[0]["insert"]
    assert cell_events[1]["after_cell_id"] == cell_events[0]["cell"]["id"]
    snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
    assert [e["text"] for e in snapshot["events"] if e["kind"] == "user"] == ["make magic_value"] * 2
    ws.close()


async def test_kernel_endpoint_refuses_bad_signatures(jp_serverapp: Any, jp_fetch: Any, jp_root_dir: Path,
                                                      llm_server: Any) -> None:
    await started(jp_serverapp)
    make_notebook(jp_root_dir)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    key = jp_serverapp.kernel_manager.get_kernel(kernel_id).session.key
    url_path = f"{jp_serverapp.base_url}{NS}/kernel/turns"
    body = json.dumps({"message": "hi"})

    async def attempt(headers: dict[str, str], data: str = body) -> Any:
        return await jp_fetch(NS, "kernel", "turns", method="POST", body=data, raise_error=False,
                              headers={"Authorization": "", **headers})

    no_signature = await attempt({})
    wrong_key = await attempt(signed(b"not-the-key", kernel_id, "POST", url_path, body))
    stale = await attempt(signed(key, kernel_id, "POST", url_path, body, now=time.time() - 120))
    other_body = await attempt(signed(key, kernel_id, "POST", url_path, json.dumps({"message": "other"})))
    assert [r.code for r in (no_signature, wrong_key, stale, other_body)] == [403] * 4
    assert "off" in as_json(stale)["error"] and "Bad kernel signature" in as_json(wrong_key)["error"]

    llm_server.add("planner", plan_reply("Hello.", send_to="User", stop="Completed"))
    good = signed(key, kernel_id, "POST", url_path, body)
    hello = await attempt(good)
    assert hello.code == 202
    replay = await attempt(good)
    assert replay.code == 403 and "replay" in as_json(replay)["error"]

    async def page(turn_id: str, after: int = 0, timeout: float = 5) -> dict[str, Any]:
        events_path = f"{url_path}/{turn_id}/events"
        return as_json(await jp_fetch(NS, "kernel", "turns", turn_id, "events", params={"after": after, "timeout": timeout},
                                      headers={"Authorization": "", **signed(key, kernel_id, "GET", events_path)}))

    async def until(turn_id: str, done: Any) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while not done(events):
            got = await page(turn_id, len(events))
            events += got["events"]
            if got["done"]:
                return events
        return events

    await until(as_json(hello)["turn_id"], lambda events: False)

    # Stop of a magic turn: its code runs on a subshell, which SIGINT cannot reach; the server raises
    # KeyboardInterrupt in that thread instead (effective for Python-level loops).
    llm_server.add("planner", plan_reply("Spin."))
    llm_server.add("coder", code_reply("import time\nt0 = time.time()\nwhile time.time() - t0 < 30:\n    sum(range(1000))"))
    spin = json.dumps({"message": "spin", "cell_id": "none"})
    turn = as_json(await attempt(signed(key, kernel_id, "POST", url_path, spin), spin))
    assert "turn_id" in turn, turn
    stop_path = f"{url_path}/{turn['turn_id']}/stop"
    await until(turn["turn_id"], lambda events: any(e["event"]["kind"] == "verdict" for e in events))
    await asyncio.sleep(0.5)
    stopped_at = time.monotonic()
    await jp_fetch(NS, "kernel", "turns", turn["turn_id"], "stop", method="POST", body="",
                   headers={"Authorization": "", **signed(key, kernel_id, "POST", stop_path, "")})
    events = await until(turn["turn_id"], lambda events: False)
    assert time.monotonic() - stopped_at < 5
    execution = next(e["event"] for e in events if e["event"]["kind"] == "execution")
    assert execution["interrupted"] and "KeyboardInterrupt" in execution["error"]
