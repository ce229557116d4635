"""The server under stress and accidents: Stop racing the end of a cell, a notebook deleted mid-turn,
kernel restarts and deaths. Real jupyter server (pytest-jupyter), real kernels, the scripted loopback LLM."""
from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import nbformat
import pytest

from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from server_support import (NS, as_json, code_cell, kernel_eval, kinds, post, read_until, script_one_step, server_config,
                            start_turn, turn_ended, watched_notebook)

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
    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
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


async def test_notebook_deleted_mid_turn_is_not_written_again(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    """record "file" (no browser has the notebook open): the user deletes the .ipynb while a step runs.
    The turn ends normally with one clear notice; the file is not brought back with half a round;
    the chat keeps the whole round; the server goes on working."""
    own = [code_cell("print('mine')", "own-cell")]
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir, own)
    script_one_step(llm_server, "import time\ntime.sleep(2)\nslept = True\nprint('slept')", "Slept well.")
    turn_id = await start_turn(jp_fetch, jp_serverapp, kernel_id, "sleep a little")
    await read_until(ws, lambda e: e["event"]["kind"] == "verdict")
    notebook.unlink()  # while time.sleep(2) runs
    envelopes = await asyncio.wait_for(read_until(ws, turn_ended, ENDS_WITHIN_S), ENDS_WITHIN_S)
    assert final_state(envelopes) == ("finished", "Slept well.")
    notices = [e["event"]["text"] for e in envelopes if e["event"]["kind"] == "notice"]
    assert len(notices) == 1 and "nb.ipynb was deleted during the turn" in notices[0], notices
    assert all("Traceback" not in json.dumps(e["event"]) for e in envelopes)
    await asyncio.sleep(1.5)  # nothing is written late either
    assert not notebook.exists()

    snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
    assert [e["kind"] for e in snapshot["events"]] == ["user", "plan", "execution", "plan", "answer"]
    assert snapshot["events"][2]["ok"] and snapshot["events"][2]["outputs"][0]["text"] == "slept\n"
    again = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": kernel_id, "message": "more"})
    assert again.code == 404 and "does not exist" in as_json(again)["error"]
    assert as_json(await jp_fetch(NS, "status"))["configured"] is True  # the server is fine
    assert turn_id == envelopes[-1]["turn_id"]
    ws.close()


async def test_kernel_restart_between_turns_keeps_the_chat_and_sets_up_the_new_kernel(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    script_one_step(llm_server, "before_restart = 1\nprint(before_restart)", "Set.")
    first = await start_turn(jp_fetch, jp_serverapp, kernel_id, "set a variable")
    assert final_state(await read_until(ws, turn_ended))[0] == "finished"

    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    script_one_step(llm_server, "after_restart = 2\nprint(after_restart)", "Set again.")
    second = await start_turn(jp_fetch, jp_serverapp, kernel_id, "set another one")
    envelopes = await asyncio.wait_for(read_until(ws, turn_ended, ENDS_WITHIN_S), ENDS_WITHIN_S)
    assert final_state(envelopes) == ("finished", "Set again."), envelopes[-3:]
    executions = [e["event"] for e in envelopes if e["event"]["kind"] == "execution"]
    assert "kernel was restarted" in executions[0]["summary"] and not executions[0]["code"]
    assert executions[1]["ok"] and executions[1]["outputs"][0]["text"] == "2\n"
    # The Planner heard about it before planning the new round.
    planner_prompt = json.dumps(llm_server.calls("planner")[-2]["messages"])
    assert "kernel was restarted" in planner_prompt and "set a variable" in planner_prompt

    # The code ran in the new kernel, which has the helper, the guard and the plugins again.
    probe = ("import sys\nprint('before_restart' in globals(), after_restart, '_taskweaver_lab_kernel' in sys.modules, "
             "'_taskweaver_lab_guard' in sys.modules, callable(globals().get('anomaly_detection')))")
    assert (await kernel_eval(jp_serverapp, kernel_id, probe)).split() == ["False", "2", "True", "True", "True"]
    snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
    assert [e["text"] for e in snapshot["events"] if e["kind"] == "user"] == ["set a variable", "set another one"]
    assert {e["turn_id"] for e in envelopes} == {second} and first != second
    nb = nbformat.read(notebook, 4)
    nbformat.validate(nb)
    assert [c.metadata["taskweaver_lab"].get("kind", "code") for c in nb.cells].count("execution") == 1
    ws.close()


async def test_kernel_killed_mid_turn_ends_it_with_an_actionable_message(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    llm_server.add("planner", plan_reply("Wait."))
    llm_server.add("coder", code_reply("import time\ntime.sleep(30)"))
    await start_turn(jp_fetch, jp_serverapp, kernel_id, "wait")
    await read_until(ws, lambda e: e["event"]["kind"] == "verdict")
    await asyncio.sleep(0.5)  # the cell is running
    os.kill(jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner.pid, signal.SIGKILL)
    envelopes = await asyncio.wait_for(read_until(ws, turn_ended, ENDS_WITHIN_S), ENDS_WITHIN_S)
    state, text = final_state(envelopes)
    assert state == "finished" and text.startswith("The kernel died") and "Restart the kernel and ask again" in text
    assert "execution" not in kinds(envelopes)
    nb = nbformat.read(notebook, 4)
    nbformat.validate(nb)
    assert [c.metadata["taskweaver_lab"]["kind"] for c in nb.cells] == ["user", "plan", "answer"]

    # As the message says: restart the kernel and ask again.
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    script_one_step(llm_server, "print('back')", "Back.")
    await start_turn(jp_fetch, jp_serverapp, kernel_id, "again")
    envelopes = await asyncio.wait_for(read_until(ws, turn_ended, ENDS_WITHIN_S), ENDS_WITHIN_S)
    assert final_state(envelopes) == ("finished", "Back."), envelopes[-3:]
    ws.close()
