"""Kernel faults through a real Jupyter server (issue 12 item 5): the notebook's kernel restarted under a running
step. A real jupyter server (pytest-jupyter), its own kernel REST API, real kernels, the scripted loopback LLM."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from taskweaver_lab.kernel import KERNEL_RESTARTED
from taskweaver_lab.session import KERNEL_REPLACED
from taskweaver_lab.testing import code_reply, plan_reply

from server_support import post, read_until, script_one_step, server_config, turn_ended, watched_notebook

pytest_plugins = ["pytest_jupyter.jupyter_server"]

# The old detection waited this long for the kernel's answer; the turn must end well before it.
OLD_WAIT_S = 30.0


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url, execution_timeout=900)  # without detection: a 60 s sleep runs out


async def test_a_kernel_restarted_mid_step_ends_the_sidebar_turn_at_once(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    llm_server.add("planner", plan_reply("Set `x`, then wait a long time."))
    llm_server.add("coder", code_reply("x = 41\nimport time\ntime.sleep(60)"))
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "set x and wait"}
    assert (await post(jp_fetch, "turns", body=body)).code == 202
    await read_until(ws, lambda e: e["event"]["kind"] == "verdict", timeout=120)
    await asyncio.sleep(1.0)  # the cell runs now
    restarted = await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    assert restarted.code == 200 and json.loads(restarted.body)["id"] == kernel_id  # same kernel id, new process

    # well below the old 30 s wait (counted from the restart's answer, itself after the new kernel is up)
    envelopes = await read_until(ws, turn_ended, timeout=OLD_WAIT_S * 2 / 3)
    answer = [e["event"] for e in envelopes if e["event"]["kind"] == "answer"]
    assert answer and answer[-1]["text"].startswith(KERNEL_RESTARTED), [e["event"] for e in envelopes[-4:]]
    assert "did not answer" not in json.dumps([e["event"] for e in envelopes])
    cells = nbformat.read(notebook, as_version=4).cells
    kinds = [c.metadata["taskweaver_lab"]["kind"] for c in cells]
    assert kinds[:2] == ["user", "plan"], kinds
    assert "set x and wait" in cells[0].source and "wait a long time" in cells[1].source

    # the next turn runs on the new kernel, and the Planner hears first that the variables are gone
    script_one_step(llm_server, "try:\n    print(x)\nexcept NameError:\n    print('x is gone')", "Checked.")
    assert (await post(jp_fetch, "turns", body={**body, "message": "is x still there"})).code == 202
    envelopes = await read_until(ws, turn_ended, timeout=120)
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    ran = [e["event"] for e in envelopes if e["event"]["kind"] == "execution" and e["event"].get("code")]
    assert ran[0]["ok"] and ran[0]["outputs"][0]["text"] == "x is gone\n"  # honest: the new kernel has no x
    planner_prompt = json.dumps(llm_server.calls("planner")[-2]["messages"])
    assert KERNEL_REPLACED in json.loads(planner_prompt)[-1]["content"] and "set x and wait" in planner_prompt
    ws.close()
