"""Helpers for the server extension tests (pytest-jupyter, real kernels, scripted loopback LLM)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from taskweaver_lab.kernel_auth import sign_headers
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY

NS = "taskweaver_lab"


def server_config(base_url: str, extensions: dict[str, bool] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"taskweaver_lab": True, **(extensions or {})}},
        "TaskWeaverLab": {"base_url": base_url, "api_key": API_KEY, "planner_model": "planner",
                          "code_generator_model": "coder", "guard": True, **extra},
    }


async def started(serverapp: Any) -> Any:
    """pytest-jupyter never calls the start hook: do it (the loop is running here)."""
    ext = serverapp.extension_manager.extension_points["taskweaver_lab"].app
    if ext.turns is None:
        await ext._start_jupyter_server_extension(serverapp)
    return ext


def make_notebook(root: Path, name: str = "nb.ipynb", cells: list[Any] | None = None) -> Path:
    path = root / name
    nb = new_notebook(cells=cells or [], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


async def open_notebook_kernel(fetch: Any, path: str) -> str:
    """A kernel for ``path`` through the sessions API, as JupyterLab does when a notebook opens."""
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    response = await fetch("api", "sessions", method="POST", body=json.dumps(body))
    return json.loads(response.body)["kernel"]["id"]


async def post(fetch: Any, *parts: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return await fetch(NS, *parts, method="POST", body=json.dumps(body or {}), raise_error=False, **kwargs)


def as_json(response: Any) -> dict[str, Any]:
    return json.loads(response.body or b"{}")


async def read_until(ws: Any, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Envelopes from the events socket until ``predicate(envelope)`` holds (inclusive)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; got kinds {[e['event']['kind'] for e in seen]}")
        message = await asyncio.wait_for(ws.read_message(), left)
        if message is None:
            raise AssertionError("the events socket closed")
        envelope = json.loads(message)
        seen.append(envelope)
        if predicate(envelope):
            return seen


def turn_ended(envelope: dict[str, Any]) -> bool:
    event = envelope["event"]
    return event["kind"] == "turn" and event["state"] in ("finished", "failed")


def kinds(envelopes: list[dict[str, Any]]) -> list[str]:
    return [e["event"]["kind"] for e in envelopes]


async def wait_for_file(path: Path, predicate: Any, timeout: float = 15.0) -> Any:
    """Poll a notebook file (it may be read mid-write: retry on parse errors)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = nbformat.read(path, as_version=4)
            if predicate(last):
                return last
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never matched; last: {last}")


def signed(kernel_key: bytes, kernel_id: str, method: str, url_path: str, body: str = "", now: float | None = None) -> dict[str, str]:
    return sign_headers(kernel_key, kernel_id, method, url_path, body, now)


def code_cell(source: str, cell_id: str) -> Any:
    cell = new_code_cell(source)
    cell["id"] = cell_id
    return cell


async def kernel_eval(serverapp: Any, kernel_id: str, code: str) -> str:
    """Run ``code`` in the user's kernel on its own client; returns the stdout."""
    client = serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    out: list[dict[str, Any]] = []
    try:
        # A kernel_info round trip first: a new client's IOPub socket may not be subscribed yet (ZMQ's slow
        # joiner), and output sent before it is would be missed (seen under CI load: "Timeout waiting for output").
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(code, timeout=20, output_hook=lambda msg: out.append(msg))
    finally:
        client.stop_channels()
    assert reply["content"]["status"] == "ok", reply
    return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")


def script_one_step(llm: Any, code: str, answer: str = "Done.", planner: str = "planner", coder: str = "coder") -> None:
    """A plan with one step, its code, and the answer; replies queued under the given model names."""
    llm.add(planner, plan_reply("Run the step."), plan_reply(answer, send_to="User", stop="Completed"))
    llm.add(coder, code_reply(code))


async def start_turn(fetch: Any, serverapp: Any, kernel_id: str, message: str, origin: str = "sidebar",
                     path: str = "nb.ipynb") -> str:
    """A turn as the sidebar starts it (main shell) or as ``%%taskweaver`` does (signed by the kernel's
    key, run on a subshell); returns its id."""
    if origin == "sidebar":
        response = await post(fetch, "turns", body={"path": path, "kernel_id": kernel_id, "message": message})
    else:
        key = serverapp.kernel_manager.get_kernel(kernel_id).session.key
        body = json.dumps({"message": message, "cell_id": "none", "nonce": time.monotonic_ns()})  # no replay refusal
        url_path = f"{serverapp.base_url}{NS}/kernel/turns"
        response = await fetch(NS, "kernel", "turns", method="POST", body=body, raise_error=False,
                               headers={"Authorization": "", **signed(key, kernel_id, "POST", url_path, body)})
    assert response.code == 202, response.body
    return str(as_json(response)["turn_id"])


async def watched_notebook(serverapp: Any, fetch: Any, ws_fetch: Any, root: Path,
                           cells: list[Any] | None = None) -> tuple[Path, str, Any]:
    """The usual start: the extension started, nb.ipynb with its kernel, and the chat's events socket on it."""
    await started(serverapp)
    notebook = make_notebook(root, cells=cells)
    kernel_id = await open_notebook_kernel(fetch, "nb.ipynb")
    return notebook, kernel_id, await ws_fetch(NS, "events", params={"path": "nb.ipynb"})
