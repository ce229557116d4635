"""The server under stress and accidents: Stop racing the end of a cell, a notebook deleted mid-turn,
kernel restarts and deaths. Real jupyter server (pytest-jupyter), real kernels, the scripted loopback LLM."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from server_support import (NS, kernel_eval, make_notebook, open_notebook_kernel, post, read_until, script_one_step,
                            server_config, start_turn, started, turn_ended)

pytest_plugins = ["pytest_jupyter.jupyter_server"]

# Generous bounds that only keep a broken build from hanging the suite (not timing goals): a Stop's
# grace period (kernel.STOP_GRACE_S, 15 s) plus room for a busy 2-core machine.
ENDS_WITHIN_S = 60.0
STEPS = ("one", "two", "three", "four")


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)


def script_quick_steps(llm: ScriptedLLMServer) -> None:
    """A plan of quick steps (a few ms of Python each) and its answer; drops what an earlier Stop left."""
    llm.queues.clear()
    for number, name in enumerate(STEPS, 1):
        llm.add("planner", plan_reply(f"Compute v_{name}.", plan=list(STEPS), step=number))
        llm.add("coder", code_reply(f"v_{name} = sum(range(200000))\nprint(v_{name})"))
    llm.add("planner", plan_reply("All computed.", send_to="User", stop="Completed"))


def final_state(envelopes: list[dict[str, Any]]) -> tuple[str, str]:
    """(turn state, the text the user sees: the failure or the last answer)."""
    end = envelopes[-1]["event"]
    answers = [e["event"]["text"] for e in envelopes if e["event"]["kind"] == "answer"]
    return end["state"], end.get("error") or (answers[-1] if answers else "")


@pytest.mark.parametrize("origin", ["sidebar", "magic"])
async def test_stop_racing_the_end_of_a_step_always_ends_the_turn(
        origin: str, jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    """Stop sent at varied small delays after a quick step's execution event lands anywhere: between
    steps, while the next cell runs, or just after it ended. Every time the turn must end with a clear
    message, and the kernel (and, for magic turns, the session's subshell) must stay usable."""
    await started(jp_serverapp)
    make_notebook(jp_root_dir)
    kernel_id = await open_notebook_kernel(jp_fetch, "nb.ipynb")
    ws = await jp_ws_fetch(NS, "events", params={"path": "nb.ipynb"})
    for attempt in range(8):
        script_quick_steps(llm_server)
        turn_id = await start_turn(jp_fetch, jp_serverapp, kernel_id, f"compute ({attempt})", origin)
        await read_until(ws, lambda e: e["event"]["kind"] == "execution")
        await asyncio.sleep(attempt * 0.012)
        assert (await post(jp_fetch, "turns", turn_id, "stop")).code == 200
        envelopes = await asyncio.wait_for(read_until(ws, turn_ended, ENDS_WITHIN_S), ENDS_WITHIN_S)
        state, text = final_state(envelopes)
        assert {e["turn_id"] for e in envelopes} == {turn_id}
        assert state == "finished" and text.startswith(("Stopped", "All computed")), (attempt, state, text)
        assert "Traceback" not in text and "Internal error" not in text
        assert await asyncio.wait_for(kernel_eval(jp_serverapp, kernel_id, "print(v_one)"), 30) == "19999900000\n"

    # The same session runs a whole turn again: its executor (and subshell) survived every Stop.
    llm_server.queues.clear()
    script_one_step(llm_server, "after_stops = 'fine'\nprint(after_stops)", "Fine.")
    await start_turn(jp_fetch, jp_serverapp, kernel_id, "once more", origin)
    envelopes = await asyncio.wait_for(read_until(ws, turn_ended, ENDS_WITHIN_S), ENDS_WITHIN_S)
    execution = next(e["event"] for e in envelopes if e["event"]["kind"] == "execution")
    assert final_state(envelopes) == ("finished", "Fine.") and execution["ok"], envelopes[-3:]
    ws.close()
