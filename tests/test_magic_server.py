"""``%%taskweaver`` joined to the server's notebook session: a pytest-jupyter server with the extension,
a kernel started through the sessions API (as JupyterLab does), cells executed through a kernel client
with JupyterLab's ``cellId`` metadata, the scripted loopback LLM. The magic itself is the client here."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from taskweaver_lab.testing import code_reply, plan_reply

from server_support import (NS, script_one_step, as_json, code_cell, make_notebook, open_notebook_kernel, post, server_config, started,
                            wait_for_file)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)




class Cells:
    """Runs cells on a kernel the way JupyterLab does: execute_request with ``metadata.cellId``."""

    def __init__(self, serverapp: Any, kernel_id: str) -> None:
        self.id = kernel_id
        self.prompts: list[str] = []
        self.ready = False
        self.client = serverapp.kernel_manager.get_kernel(kernel_id).client()
        self.client.start_channels()

    async def run(self, code: str, cell_id: str = "", timeout: float = 90,
                  answers: list[str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``answers``: replies to the cell's input() prompts (the prompts are collected in ``self.prompts``)."""
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": answers is not None, "stop_on_error": True}
        if answers:
            asyncio.ensure_future(self._answer(list(answers), timeout))
        if not self.ready:   # iopub is a SUB socket: messages sent before it connects are lost (slow joiner)
            await self.client.wait_for_ready(timeout=60)
            self.ready = True
        msg = self.client.session.msg("execute_request", content, metadata={"cellId": cell_id} if cell_id else {})
        self.client.shell_channel.send(msg)
        msg_id, deadline = msg["header"]["msg_id"], time.monotonic() + timeout
        outputs: list[dict[str, Any]] = []
        while True:
            reply = await self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            if reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
                break
            if reply["msg_type"] in ("stream", "display_data", "update_display_data", "execute_result", "error"):
                outputs.append({"type": reply["msg_type"], **reply["content"]})
        while True:
            reply = await self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], outputs

    async def _answer(self, answers: list[str], timeout: float) -> None:
        for text in answers:
            request = await self.client.get_stdin_msg(timeout=timeout)
            self.prompts.append(request["content"]["prompt"])
            self.client.input(text)

    def close(self) -> None:
        self.client.stop_channels()


def shown(outputs: list[dict[str, Any]]) -> str:
    return json.dumps(outputs)


async def open_with_magic(serverapp: Any, fetch: Any, root: Path, name: str, request: str) -> tuple[Path, Cells]:
    cells = [code_cell("%load_ext taskweaver_lab", "load"), code_cell(f"%%taskweaver\n{request}", "magic-cell"),
             code_cell("print('below')", "next-cell")]
    notebook = make_notebook(root, name, cells=cells)
    kernel = Cells(serverapp, await open_notebook_kernel(fetch, name))
    reply, _ = await kernel.run("%load_ext taskweaver_lab", "load")
    assert reply["status"] == "ok", reply
    return notebook, kernel


async def test_magic_cell_joins_the_notebook_session(jp_serverapp: Any, jp_fetch: Any, jp_root_dir: Path,
                                                     llm_server: Any) -> None:
    await started(jp_serverapp)
    notebook, kernel = await open_with_magic(jp_serverapp, jp_fetch, jp_root_dir, "nb.ipynb", "make magic_value")
    script_one_step(llm_server, "magic_value = 6 * 7\nprint('magic', magic_value)", "magic_value is 42.")
    try:
        reply, outputs = await kernel.run("%%taskweaver\nmake magic_value", "magic-cell")
        assert reply["status"] == "ok", (reply, outputs)
        text = shown(outputs)
        assert "Plan" in text and "step 1, attempt 1 ran" in text and "**TaskWeaver:** magic_value is 42." in text
        assert "in this kernel instead" not in text                      # joined, no fallback
        assert "magic 42" not in "".join(o.get("text", "") for o in outputs if o["type"] == "stream")  # ran below

        nb = await wait_for_file(notebook, lambda nb: any("magic_value = 6 * 7" in c.source for c in nb.cells))
        nbformat.validate(nb)
        sources = [c.source for c in nb.cells]
        generated = nb.cells[sources.index("%%taskweaver\nmake magic_value") + 1:sources.index("print('below')")]
        code = [c for c in generated if c.cell_type == "code"]
        assert len(code) == 1 and code[0].outputs[0]["text"].startswith("magic 42\n")
        meta = code[0].metadata["taskweaver_lab"]
        assert {"session", "round", "step", "verified", "attempt"} <= set(meta) and meta["verified"] is True

        snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
        assert snapshot["session_id"] == meta["session"]
        assert [e["text"] for e in snapshot["events"] if e["kind"] == "user"] == ["make magic_value"]
        assert [e["text"] for e in snapshot["events"] if e["kind"] == "answer"] == ["magic_value is 42."]
        reply, outputs = await kernel.run("print(magic_value)")
        assert shown(outputs).count("42") == 1                               # same kernel, same namespace
        if "History logging moved" in code[0].outputs[0]["text"]:
            # kernel.py runs subshell cells with store_history=True while the magic's cell holds the same
            # history line number: IPython's sqlite history complains into the agent cell's output.
            pytest.xfail("kernel.py: store_history on a subshell collides with the busy main shell's history line")
    finally:
        kernel.close()


async def test_long_magic_turn_while_the_server_is_busy_completes(jp_serverapp: Any, jp_fetch: Any,
                                                                  jp_root_dir: Path, llm_server: Any) -> None:
    """The magic blocks the main shell for the whole turn; its 4 s cell runs on a subshell meanwhile.
    At the same time another notebook's sidebar turn waits 6 s on a slow LLM reply; the server keeps answering."""
    await started(jp_serverapp)
    _, kernel = await open_with_magic(jp_serverapp, jp_fetch, jp_root_dir, "a.ipynb", "sleep")
    make_notebook(jp_root_dir, "b.ipynb")
    other_kernel = await open_notebook_kernel(jp_fetch, "b.ipynb")
    llm_server.add("planner", {"content": plan_reply("Hello from b.", send_to="User", stop="Completed"), "delay": 6})
    try:
        sidebar = await post(jp_fetch, "turns", body={"path": "b.ipynb", "kernel_id": other_kernel, "message": "hi"})
        assert sidebar.code == 202, sidebar.body
        while not llm_server.requests:   # b's reply is taken (and delayed) before a's script is queued
            await asyncio.sleep(0.05)
        script_one_step(llm_server, "import time\nfor _ in range(40):\n    time.sleep(0.1)\nslept = True", "Slept.")
        started_at = time.monotonic()
        magic = asyncio.create_task(kernel.run("%%taskweaver\nsleep", "magic-cell", timeout=120))
        latencies = []
        while not magic.done():
            before = time.monotonic()
            await jp_fetch(NS, "status")
            latencies.append(time.monotonic() - before)
            await asyncio.sleep(0.5)
        reply, outputs = await magic
        assert reply["status"] == "ok", (reply, outputs)
        assert "Slept." in shown(outputs) and 4 < time.monotonic() - started_at < 60
        assert max(latencies) < 2.0, latencies
        reply, outputs = await kernel.run("print(slept)")
        assert "True" in shown(outputs)
        for _ in range(100):
            snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "b.ipynb"}))
            if not snapshot["busy"]:
                break
            await asyncio.sleep(0.1)
        assert [e["text"] for e in snapshot["events"] if e["kind"] == "answer"] == ["Hello from b."]
    finally:
        kernel.close()


async def test_interrupt_during_a_magic_turn_leaves_the_kernel_usable(jp_serverapp: Any, jp_fetch: Any,
                                                                      jp_root_dir: Path, llm_server: Any) -> None:
    await started(jp_serverapp)
    notebook, kernel = await open_with_magic(jp_serverapp, jp_fetch, jp_root_dir, "nb.ipynb", "sleep then set done")
    llm_server.add("planner", plan_reply("Sleep 10 s, then set `step_one`."))
    llm_server.add("coder", code_reply("import time\nfor _ in range(100):\n    time.sleep(0.1)\nstep_one = True"))
    try:
        magic = asyncio.create_task(kernel.run("%%taskweaver\nsleep then set done", "magic-cell"))
        deadline = time.monotonic() + 60
        while len(llm_server.requests) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)                                  # the agent's cell is running on the subshell
        await jp_serverapp.kernel_manager.interrupt_kernel(kernel.id)   # JupyterLab's Stop button
        reply, outputs = await magic
        assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
        errors = "".join(o.get("text", "") for o in outputs if o["type"] == "stream" and o["name"] == "stderr")
        assert errors.strip().startswith("UsageError: taskweaver: interrupted") and len(errors.strip().splitlines()) == 1
        assert not any(o["type"] == "error" for o in outputs)
        assert [r["model"] for r in llm_server.requests] == ["planner", "coder"]   # the Planner was not asked again
        snapshot = as_json(await jp_fetch(NS, "sessions", params={"path": "nb.ipynb"}))
        assert snapshot["busy"] is False
        reply, outputs = await kernel.run("print('usable', 1 + 1, 'step_one' in dir())")
        assert reply["status"] == "ok" and "usable 2 False" in shown(outputs)   # the subshell's cell was stopped too

        script_one_step(llm_server, "after = 'stop'\nprint(after)", "Works again.")   # and the next turn runs
        reply, outputs = await kernel.run("%%taskweaver\nagain", "magic-cell")
        assert reply["status"] == "ok" and "Works again." in shown(outputs), (reply, outputs)
    finally:
        kernel.close()


async def test_approve_mode_shows_the_proposal_and_waits_for_the_panel(jp_serverapp: Any, jp_fetch: Any,
                                                                        jp_root_dir: Path, llm_server: Any) -> None:
    """``--approve`` in a joined turn: the cell shows each proposed cell; Run/Skip come from the chat panel."""
    await started(jp_serverapp)
    _, kernel = await open_with_magic(jp_serverapp, jp_fetch, jp_root_dir, "nb.ipynb", "two steps")
    llm_server.add("planner", plan_reply("Set a."), plan_reply("Set b.", plan=["set a", "set b"], step=2),
                   plan_reply("a set, b skipped.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("a = 1"), code_reply("b = 2"))
    try:
        magic = asyncio.create_task(kernel.run("%%taskweaver --approve\ntwo steps", "magic-cell"))
        for action in ("run", "skip"):
            await approve_when_asked(jp_fetch, "nb.ipynb", action)
        reply, outputs = await magic
        assert reply["status"] == "ok", (reply, outputs)
        text = shown(outputs)
        proposals = [o for o in outputs if "Proposed code" in o.get("data", {}).get("text/markdown", "")]
        assert len(proposals) == 2 and "b = 2" in text and "a set, b skipped." in text
        _, outputs = await kernel.run("print('a' in dir(), 'b' in dir())")
        assert "True False" in shown(outputs)
    finally:
        kernel.close()


async def approve_when_asked(fetch: Any, path: str, action: str, timeout: float = 30) -> None:
    """What the panel's Run/Skip buttons do: POST approve once the turn waits (409 before that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = as_json(await fetch(NS, "sessions", params={"path": path}))
        if snapshot.get("turn_id"):
            response = await post(fetch, "turns", snapshot["turn_id"], "approve", body={"action": action})
            if response.code == 200:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the turn never asked for approval ({action})")


async def test_kernel_without_a_notebook_falls_back_in_process(jp_serverapp: Any, jp_fetch: Any,
                                                               llm_server: Any) -> None:
    """A console kernel of this server: the server refuses (no notebook), the magic says so in one line and runs
    in the kernel; without LLM settings in the kernel (the server scrubbed them) that ends in one more line."""
    await started(jp_serverapp)
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel = Cells(jp_serverapp, json.loads(response.body)["id"])
    try:
        await kernel.run("%load_ext taskweaver_lab")
        reply, outputs = await kernel.run("%taskweaver hello")
        streams = [o["text"].strip() for o in outputs if o["type"] == "stream"]
        assert streams[0].startswith("taskweaver: the Jupyter server did not take the turn (This kernel is not attached")
        assert streams[0].endswith("running in this kernel instead.")
        assert reply["ename"] == "UsageError" and streams[-1].startswith("UsageError: taskweaver: No LLM endpoint")
        assert llm_server.requests == []
    finally:
        kernel.close()

