"""Issue 15 item 2: what a JupyterHub admin locks in jupyter_server_config.py holds against users' requests
(real pytest-jupyter server, real kernel, scripted loopback LLM), and the per-user usage log an admin reads."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import API_KEY
from server_support import (as_json, post, read_until, script_one_step, server_config, turn_ended, watched_notebook)
from taskweaver_lab.server.usage_log import read_usage

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def usage_file(tmp_path: Path) -> Path:
    return tmp_path / "admin" / "alice.jsonl"  # outside the user's root dir; its folder does not exist yet


@pytest.fixture
def jp_server_config(llm_server: Any, usage_file: Path) -> dict[str, Any]:
    return server_config(llm_server.base_url, allowed_models=["planner", "coder"], allow_user_base_url=False,
                         usage_log=str(usage_file.parent / "{user}.jsonl"))


async def test_locked_models_and_endpoint_are_refused_and_usage_is_logged(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any,
        usage_file: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")  # as JupyterHub sets it in alice's single-user server
    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    status = as_json(await jp_fetch("taskweaver_lab", "status"))
    assert status["allowed_models"] == ["planner", "coder"] and status["user_base_url"] is False

    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "compute 6*7"}
    big = await post(jp_fetch, "turns", body={**body, "overrides": {"planner_model": "gpt-huge"}})
    assert big.code == 403
    assert as_json(big)["error"] == ("Model 'gpt-huge' is not offered on this server; pick one of planner, coder in "
                                     "Settings > TaskWeaver (or clear the field).")
    own = await post(jp_fetch, "turns", body={**body, "overrides": {"base_url": "http://127.0.0.1:9/v1"}})
    assert own.code == 403 and "does not let users pick their own LLM endpoint" in as_json(own)["error"]
    assert llm_server.calls() == []  # refused before any LLM call
    assert not usage_file.exists()  # refused requests are no turns

    # An allowed pick runs; its usage lands in the admin's log, one line per turn.
    script_one_step(llm_server, "print(6 * 7)", "It is 42.", coder="coder")
    ok = await post(jp_fetch, "turns", body={**body, "overrides": {"code_generator_model": "coder"}})
    assert ok.code == 202, ok.body
    ended = await read_until(ws, turn_ended, timeout=120)
    assert ended[-1]["event"]["state"] == "finished", ended[-1]
    rows = read_usage(usage_file)
    assert len(rows) == 1
    row = rows[0]
    assert row["user"] == "alice" and row["path"] == "nb.ipynb" and row["state"] == "finished"
    assert row["calls"] == 3 and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["calls"] == ended[-1]["event"]["usage"]["calls"]
    assert row["prompt_tokens"] == ended[-1]["event"]["usage"]["prompt_tokens"]
    assert row["models"] == {"planner": "planner", "code_generator": "coder"} and row["time"].endswith("+00:00")
    text = usage_file.read_text()
    assert API_KEY not in text and "6 * 7" not in text and "compute" not in text  # counts only, never content

    # A second turn appends a second line.
    script_one_step(llm_server, "print(1)", "One.")
    assert (await post(jp_fetch, "turns", body=body)).code == 202
    await read_until(ws, turn_ended, timeout=120)
    assert [r["turn_id"] for r in read_usage(usage_file)][0] == row["turn_id"]
    assert len(read_usage(usage_file)) == 2 and all(json.loads(line) for line in text.splitlines())
    ws.close()
