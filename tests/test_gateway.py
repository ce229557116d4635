"""Issue 15 item 1: the extension on a server whose kernels run through a real local kernel gateway
(``jupyter kernelgateway`` in a subprocess; the pytest-jupyter server gets ``GatewayClient.url``): a full
turn recorded in the notebook, Stop of a long cell, and the clear refusals of what cannot work remotely."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest

from conftest import API_KEY
from server_support import (NS, as_json, kinds, post, read_until, script_one_step, server_config, started,
                            turn_ended, watched_notebook)
from taskweaver_lab.auto_install import NO_LOCAL_PYTHON
from taskweaver_lab.server.gateway_kernel import GATEWAY_MAGIC, GATEWAY_SANDBOX
from taskweaver_lab.testing import code_reply, plan_reply

pytest.importorskip("kernel_gateway", reason="needs jupyter_kernel_gateway (the [test] extras)")
pytest_plugins = ["pytest_jupyter.jupyter_server"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: Any) -> Iterator[str]:
    """A real kernel gateway on a free loopback port; its env has no LLM key (its kernels inherit it)."""
    port, folder = free_port(), tmp_path_factory.mktemp("gateway")
    env = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    log = open(folder / "gateway.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
         "--JupyterWebsocketPersonality.list_kernels=True"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/api", timeout=5).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError("the kernel gateway did not start: " + (folder / "gateway.log").read_text()[-2000:])
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(autouse=True)
def fresh_gateway_client() -> Iterator[None]:
    """GatewayClient is a process-wide singleton: no other test's server may see this module's gateway, or vice versa."""
    from jupyter_server.gateway.gateway_client import GatewayClient

    GatewayClient.clear_instance()
    yield
    GatewayClient.clear_instance()


@pytest.fixture
def extra_config() -> dict[str, Any]:
    return {"auto_install": True, "auto_install_packages": ["twl_gw_missing"], "max_attempts": 1,
            "allowed_modules": ["time", "twl_gw_missing"]}


@pytest.fixture
def jp_server_config(llm_server: Any, gateway_url: str, extra_config: dict[str, Any]) -> dict[str, Any]:
    config = server_config(llm_server.base_url, **extra_config)
    config["GatewayClient"] = {"url": gateway_url, "request_timeout": 120.0, "connect_timeout": 60.0}
    return config


async def test_turn_stop_and_record_through_a_kernel_gateway(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any, gateway_url: str) -> None:
    assert "gateway" in type(jp_serverapp.kernel_manager).__module__
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    remote = json.loads(urllib.request.urlopen(gateway_url + "/api/kernels", timeout=30).read())
    assert kernel_id in [k["id"] for k in remote]  # the notebook's kernel is the gateway's

    script_one_step(llm_server, "answer = 6 * 7\nprint(answer)",
                    "The answer is 42.")
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "compute 6*7"}
    response = await post(jp_fetch, "turns", body=body)
    assert response.code == 202, response.body
    envelopes = await read_until(ws, turn_ended, timeout=180)
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    for kind in ("plan", "draft", "verdict", "execution", "answer", "cell"):
        assert kind in kinds(envelopes), kind
    execution = next(e["event"] for e in envelopes if e["event"]["kind"] == "execution")
    assert execution["ok"] and execution["outputs"][0]["text"] == "42\n"
    nb = nbformat.read(notebook, 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 1 and code[0].outputs[0]["text"] == "42\n"
    assert API_KEY not in notebook.read_text()

    # Stop interrupts a long cell on the remote kernel; the kernel keeps its variables and runs the next turn.
    llm_server.add("planner", plan_reply("Wait a long time."))
    llm_server.add("coder", code_reply("import time\ntime.sleep(120)"))
    turn_id = as_json(await post(jp_fetch, "turns", body={**body, "message": "sleep"}))["turn_id"]
    await read_until(ws, lambda e: e["event"]["kind"] == "verdict", timeout=120)
    stopped = False
    deadline = time.monotonic() + 60
    while not stopped and time.monotonic() < deadline:  # until the cell is running, Stop only sets the flag
        await __import__("asyncio").sleep(1.0)
        stopped = as_json(await post(jp_fetch, "turns", turn_id, "stop"))["stopped"]
    ended = await read_until(ws, turn_ended, timeout=90)
    execution = next(e["event"] for e in ended if e["event"]["kind"] == "execution")
    assert execution["interrupted"] and "KeyboardInterrupt" in execution["error"]

    script_one_step(llm_server, "print(answer + 1)", "43.")
    assert (await post(jp_fetch, "turns", body={**body, "message": "add one"})).code == 202
    ended = await read_until(ws, turn_ended, timeout=180)
    execution = next(e["event"] for e in ended if e["event"]["kind"] == "execution")
    assert execution["ok"] and execution["outputs"][0]["text"] == "43\n"

    # Approval: the turn waits for the user's Run, then runs the approved code on the remote kernel.
    script_one_step(llm_server, "print(answer * 2)", "84.")
    turn_id = as_json(await post(jp_fetch, "turns", body={**body, "message": "double", "approval": "approve"}))["turn_id"]
    waiting = await read_until(ws, lambda e: e["event"]["kind"] == "approval", timeout=180)
    assert waiting[-1]["event"]["draft"]["code"] == "print(answer * 2)"
    assert (await post(jp_fetch, "turns", turn_id, "approve", body={"action": "run"})).code == 200
    ended = await read_until(ws, turn_ended, timeout=180)
    execution = next(e["event"] for e in ended if e["event"]["kind"] == "execution")
    assert execution["ok"] and execution["outputs"][0]["text"] == "84\n"

    # auto_install cannot reach a gateway's kernel: the step says so instead of installing on the server's machine.
    script_one_step(llm_server, "import twl_gw_missing", "Could not.")
    assert (await post(jp_fetch, "turns", body={**body, "message": "use it"})).code == 202
    ended = await read_until(ws, turn_ended, timeout=180)
    execution = next(e["event"] for e in ended if e["event"]["kind"] == "execution")
    assert not execution["ok"] and NO_LOCAL_PYTHON.format(requirement="twl_gw_missing") in execution["summary"]

    # %%taskweaver's kernel endpoint cannot check a gateway kernel's signature: one clear refusal.
    magic = await jp_fetch(NS, "kernel", "turns", method="POST", raise_error=False, headers={"Authorization": ""},
                           body=json.dumps({"message": "hi"}))
    assert magic.code == 409 and as_json(magic)["error"] == GATEWAY_MAGIC
    ws.close()


@pytest.mark.parametrize("extra_config", [{"sandbox": "landlock"}])
async def test_the_os_sandbox_says_it_cannot_apply_to_gateway_kernels(jp_serverapp: Any, jp_fetch: Any) -> None:
    await started(jp_serverapp)
    status = await jp_fetch(NS, "status", raise_error=False)
    assert status.code == 500 and GATEWAY_SANDBOX in as_json(status)["error"]
    refused = await post(jp_fetch, "turns", body={"path": "nb.ipynb", "kernel_id": "x", "message": "hi"})
    assert refused.code == 503 and GATEWAY_SANDBOX in as_json(refused)["error"]
