"""Server faults (issue 12): a bad config value, a turn posted on the previous turn's "finished", a server
restarted mid-turn. A real jupyter server (pytest-jupyter), real kernels, the scripted loopback LLM."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import API_KEY
from server_support import (NS, as_json, open_notebook_kernel, post, read_until, script_one_step, server_config,
                            started, turn_ended, watched_notebook)

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
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    out: list[str] = []
    try:
        await client.execute_interactive("import os; print(os.environ.get('OPENAI_API_KEY'))", timeout=30,
                                         output_hook=lambda m: out.append(m["content"].get("text", "")))
    finally:
        client.stop_channels()
    assert "".join(out).strip() == "None"


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
