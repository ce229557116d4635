"""``--TaskWeaverLab.sandbox=landlock`` in SERVER mode, end to end: a real Jupyter server (pytest-jupyter)
with the extension, real sandboxed ipykernels started through the REST API from the ``taskweaver-sandbox``
kernelspec, the real scripted loopback LLM server. Nothing of ours is mocked.

Shown: the kernelspec is offered; a turn runs in the sandboxed kernel (IPC transport, private socket folder);
with the guard off, code the verifier passes is stopped by the OS (a file outside the notebook folder, a
loopback connection) and the canaries stay untouched; a plain python3 kernel is refused with one actionable
sentence, through the sidebar and through ``%%taskweaver``; nothing is left behind when kernels go.
"""
from __future__ import annotations

import json
import os
import platform
import queue
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from taskweaver_lab import sandbox
from taskweaver_lab.server.sandbox_kernelspec import (DISPLAY_NAME, KERNEL_NAME, SOCKET_PATH_MAX, SWITCH_KERNEL,
                                               private_socket_dir)
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import REPO
from server_support import (NS, as_json, make_notebook, post, read_until, script_one_step, server_config, signed,
                            started, turn_ended)

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ABI = sandbox.landlock_abi()
SUPPORTED = ABI >= 1 and platform.machine() == "x86_64"
WHY_NOT = (f"sandbox=landlock needs Linux >= 5.13 with Landlock on x86_64; this machine: {platform.system()} "
           f"{platform.release()} {platform.machine()}, Landlock ABI {ABI}")
needs_landlock = pytest.mark.skipif(not SUPPORTED, reason=WHY_NOT)
CANARY_TEXT = "CANARY-SERVER-SANDBOX-7c1e"


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url, sandbox="landlock", max_attempts=1)


@pytest.fixture
def canary_port() -> Iterator[tuple[int, "queue.Queue[str]"]]:
    """A listening loopback TCP socket (think: a database or metadata service); records every connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    seen: "queue.Queue[str]" = queue.Queue()

    def accept() -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            seen.put(f"{peer}")
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], seen
    listener.close()


async def open_kernel(fetch: Any, path: str, kernel_name: str) -> str:
    """A notebook session with a kernel of ``kernel_name``, as JupyterLab creates one."""
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": kernel_name}}
    response = await fetch("api", "sessions", method="POST", body=json.dumps(body))
    return json.loads(response.body)["kernel"]["id"]


async def run_user_cell(serverapp: Any, kernel_id: str, code: str) -> tuple[str, str]:
    """A plain execute_request (the user's own cell: no verifier, no guard); returns (stdout, 'EName: value')."""
    client = serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    out: list[dict[str, Any]] = []
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(code, timeout=60, output_hook=out.append)
    finally:
        client.stop_channels()
    text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
    content = reply["content"]
    return text, "" if content["status"] == "ok" else f"{content['ename']}: {content['evalue']}"


async def one_turn(fetch: Any, ws: Any, path: str, kernel_id: str, message: str) -> list[dict[str, Any]]:
    response = await post(fetch, "turns", body={"path": path, "kernel_id": kernel_id, "message": message})
    assert response.code == 202, response.body
    envelopes = await read_until(ws, turn_ended, timeout=90)
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    return [e["event"] for e in envelopes]


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


# --- the kernelspec ---------------------------------------------------------------------------------------
@needs_landlock
async def test_the_sandbox_kernelspec_is_offered(jp_serverapp: Any, jp_fetch: Any) -> None:
    ext = await started(jp_serverapp)
    listed = as_json(await jp_fetch("api", "kernelspecs"))["kernelspecs"]
    assert {KERNEL_NAME, "python3"} <= set(listed)      # offered next to the others, nothing installed
    spec = listed[KERNEL_NAME]["spec"]
    assert spec["display_name"] == DISPLAY_NAME and spec["argv"] == sandbox.sandboxed_kernel_cmd(None)
    assert "--workspace" not in spec["argv"]            # the kernel's cwd (the notebook's folder) is the workspace
    logo = await jp_fetch("kernelspecs", KERNEL_NAME, "logo-64x64.png")
    assert logo.code == 200 and logo.body[:4] == b"\x89PNG"
    status = as_json(await jp_fetch(NS, "status"))
    assert status["sandbox"] == "landlock" and status["sandbox_kernel"] == DISPLAY_NAME and "sandbox_error" not in status

    spec_root = ext.sandbox.spec_root
    assert spec_root is not None and spec_root.is_dir()
    await ext.stop_extension()
    assert not spec_root.exists()                       # the generated spec goes with the server


# --- turns in a sandboxed kernel; the OS layer behind a passing verifier ----------------------------------
ATTACKS = {  # both pass the verifier: the path and the URL are computed at run time
    "read": "from pathlib import Path\nprint(Path.cwd().parent.joinpath('secret.txt').read_text())",
    "connect": "import pandas as pd\nurl = 'ht' + 'tp://127.0.0.1:{port}/data.csv'\nprint(pd.read_csv(url))",
}


def private_folders(manager: Any) -> list[Path]:
    """What a sandboxed kernel has outside its workspace: socket folder, launcher state, connection file."""
    return [Path(manager.get_connection_info()["ip"]).parent, Path(sandbox.default_state_dir(manager.connection_file)),
            Path(manager.connection_file)]


async def open_sandboxed(serverapp: Any, fetch: Any, path: str) -> tuple[str, Any]:
    kernel_id = await open_kernel(fetch, path, KERNEL_NAME)
    manager = serverapp.kernel_manager.get_kernel(kernel_id)
    info = manager.get_connection_info()
    assert info["transport"] == "ipc" and os.path.isabs(info["ip"]) and len(f"{info['ip']}-65535") <= SOCKET_PATH_MAX
    assert stat.S_IMODE(Path(info["ip"]).parent.stat().st_mode) == 0o700
    return kernel_id, manager


async def analysis_turn(fetch: Any, ws_fetch: Any, llm: Any, kernel_id: str, project: Path) -> None:
    import pandas as pd

    units = int(pd.read_csv(project / "sales.csv")["units"].sum())
    script_one_step(llm, "import pandas as pd\nsales = pd.read_csv('sales.csv')\nprint(int(sales['units'].sum()))",
                    f"The total is {units} units.")
    ws = await ws_fetch(NS, "events", params={"path": "proj/nb.ipynb"})
    events = await one_turn(fetch, ws, "proj/nb.ipynb", kernel_id, "total units?")
    ws.close()
    execution = of_kind(events, "execution")[0]
    assert execution["ok"] and execution["outputs"][0]["text"] == f"{units}\n", execution
    assert of_kind(events, "answer")[-1]["text"] == f"The total is {units} units."


async def attack_turns(fetch: Any, ws_fetch: Any, llm: Any, kernel_id: str, port: int) -> None:
    ws = await ws_fetch(NS, "events", params={"path": "proj/attack.ipynb"})
    for name, code in ATTACKS.items():
        llm.add("planner", plan_reply(f"Do the {name}."), plan_reply("It failed.", send_to="User", stop="TaskFailure"))
        llm.add("coder", code_reply(code.format(port=port)))
        events = await one_turn(fetch, ws, "proj/attack.ipynb", kernel_id, f"the {name}")
        assert of_kind(events, "verdict")[0]["ok"], (name, of_kind(events, "verdict"))  # the verifier let it through
        execution = of_kind(events, "execution")[0]
        assert not execution["ok"] and ("PermissionError" in execution["error"]
                                         or "Operation not permitted" in execution["error"]), (name, execution)
        assert CANARY_TEXT not in json.dumps(events), name
    ws.close()


@needs_landlock
async def test_turns_run_sandboxed_and_the_os_stops_what_the_verifier_passed(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any,
        canary_port: tuple[int, "queue.Queue[str]"]) -> None:
    ext = await started(jp_serverapp)
    project = jp_root_dir / "proj"
    project.mkdir()
    shutil.copy(REPO / "sample_data" / "sales.csv", project / "sales.csv")
    secret = jp_root_dir / "secret.txt"                 # outside the notebook's folder, inside the server root
    secret.write_text(CANARY_TEXT)
    make_notebook(project, "nb.ipynb")
    make_notebook(project, "attack.ipynb")

    # (b) an analysis turn, all layers on (verifier, guard, sandbox)
    kernel_id, manager = await open_sandboxed(jp_serverapp, jp_fetch, "proj/nb.ipynb")
    await analysis_turn(jp_fetch, jp_ws_fetch, llm_server, kernel_id, project)

    # (c) guard off, in a fresh kernel: what the verifier cannot see must fail at the OS layer
    ext.config_section.guard = False
    attack_kernel, attack_manager = await open_sandboxed(jp_serverapp, jp_fetch, "proj/attack.ipynb")
    await attack_turns(jp_fetch, jp_ws_fetch, llm_server, attack_kernel, canary_port[0])
    assert secret.read_text() == CANARY_TEXT and canary_port[1].empty()
    assert CANARY_TEXT not in (project / "attack.ipynb").read_text()
    # The user's own cells in that kernel are sandboxed too (the documented caveat): no processes.
    _, error = await run_user_cell(jp_serverapp, attack_kernel, "import subprocess\nsubprocess.run(['id'])")
    assert error.startswith("PermissionError"), error

    # A restart keeps the private folders; (e) shutting the kernels down leaves nothing behind.
    left = private_folders(manager) + private_folders(attack_manager)
    assert all(p.exists() for p in left)
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    printed, error = await run_user_cell(jp_serverapp, kernel_id, "import os\nprint(os.getcwd())")
    assert (printed.strip(), error) == (str(project), "") and all(p.exists() for p in left)
    for kid in (kernel_id, attack_kernel):
        assert (await jp_fetch("api", "kernels", kid, method="DELETE")).code == 204
    assert [p for p in left if p.exists()] == []


# --- refusals ----------------------------------------------------------------------------------------------
MAGIC_CELL = "%load_ext taskweaver_lab\nget_ipython().run_cell_magic('taskweaver', '', 'total units?')"


@needs_landlock
async def test_a_plain_kernel_is_refused_with_the_switch_kernel_sentence(
        jp_serverapp: Any, jp_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    await started(jp_serverapp)
    make_notebook(jp_root_dir, "plain.ipynb")
    kernel_id = await open_kernel(jp_fetch, "plain.ipynb", "python3")
    assert jp_serverapp.kernel_manager.get_kernel(kernel_id).transport == "tcp"   # other kernelspecs: untouched

    sidebar = await post(jp_fetch, "turns", body={"path": "plain.ipynb", "kernel_id": kernel_id, "message": "total?"})
    assert (sidebar.code, as_json(sidebar)["error"]) == (409, SWITCH_KERNEL)

    url_path = f"{jp_serverapp.base_url}{NS}/kernel/turns"   # the %%taskweaver endpoint, signed by the kernel
    body = json.dumps({"message": "total?"})
    key = jp_serverapp.kernel_manager.get_kernel(kernel_id).session.key
    magic = await jp_fetch(NS, "kernel", "turns", method="POST", body=body, raise_error=False,
                           headers={"Authorization": "", **signed(key, kernel_id, "POST", url_path, body)})
    assert (magic.code, as_json(magic)["error"]) == (409, SWITCH_KERNEL)

    # The real magic in that kernel: the refusal ends the cell; no fallback to an in-process run.
    printed, error = await run_user_cell(jp_serverapp, kernel_id, MAGIC_CELL)
    assert error.startswith("UsageError") and SWITCH_KERNEL in error, (printed, error)
    assert "running in this kernel instead" not in printed
    assert llm_server.requests == []                    # nothing was asked of the LLM, nothing ran


@pytest.mark.skipif(SUPPORTED, reason="this machine supports Landlock: the unsupported path cannot happen here")
async def test_without_landlock_every_turn_is_refused(jp_serverapp: Any, jp_fetch: Any, jp_root_dir: Path,
                                                      llm_server: Any) -> None:
    await started(jp_serverapp)
    status = as_json(await jp_fetch(NS, "status"))
    assert status["sandbox"] == "landlock" and "cannot run sandboxed kernels" in status["sandbox_error"]
    assert KERNEL_NAME not in as_json(await jp_fetch("api", "kernelspecs"))["kernelspecs"]
    make_notebook(jp_root_dir, "plain.ipynb")
    kernel_id = await open_kernel(jp_fetch, "plain.ipynb", "python3")
    refused = await post(jp_fetch, "turns", body={"path": "plain.ipynb", "kernel_id": kernel_id, "message": "total?"})
    assert refused.code == 412 and "Landlock" in as_json(refused)["error"]
    assert llm_server.requests == []


# --- pieces without a server -------------------------------------------------------------------------------
def test_socket_folder_falls_back_to_the_temp_dir_when_the_runtime_path_is_too_long() -> None:
    long_runtime = "/nonexistent/" + "r" * 100
    folder = private_socket_dir(f"{long_runtime}/kernel-abc.json")
    try:
        assert os.path.dirname(folder) == tempfile.gettempdir() and stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert len(os.path.join(folder, "ipc-65535")) <= SOCKET_PATH_MAX
    finally:
        os.rmdir(folder)


@needs_landlock
def test_install_sandbox_kernelspec_command(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "taskweaver_lab.cli", "install-sandbox-kernelspec", "--prefix",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"] == sandbox.sandboxed_kernel_cmd(None) and spec["display_name"] == DISPLAY_NAME
    assert DISPLAY_NAME in done.stdout
