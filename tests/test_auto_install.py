"""Issue 15 item 3: opt-in auto_install through a real server and kernel. Agent code imports a package that is
not installed; the server pip-installs it from a tiny local wheel built here (--no-index --find-links: no
network) into the kernel's Python and runs the step again, saying so; a module outside the allowlist is never
installed."""
from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import agent_config
from taskweaver_lab import TaskWeaverApp
from server_support import kinds, post, read_until, script_one_step, server_config, turn_ended, watched_notebook

pytest_plugins = ["pytest_jupyter.jupyter_server"]
PROBE = f"twl_probe_{uuid.uuid4().hex[:8]}"     # a name no index has
OUTSIDE = f"twl_outside_{uuid.uuid4().hex[:8]}"  # importable by the verifier, not in the install allowlist
API_PROBE = f"twl_api_probe_{uuid.uuid4().hex[:8]}"  # the Python API's own kernel (the CLI's path)


def build_wheel(folder: Path, name: str, version: str = "0.1") -> Path:
    """A minimal pure-Python wheel (PEP 427) holding ``name/__init__.py`` with VALUE = 42."""
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{name}-{version}.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def wheels(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "wheels"
    folder.mkdir()
    build_wheel(folder, PROBE)
    build_wheel(folder, API_PROBE)
    yield folder
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", PROBE, API_PROBE], capture_output=True, timeout=300)


@pytest.fixture
def jp_server_config(llm_server: Any, wheels: Path) -> dict[str, Any]:
    return server_config(llm_server.base_url, auto_install=True, auto_install_packages=[PROBE], max_attempts=1,
                         auto_install_pip_args=["--no-index", "--find-links", str(wheels)],
                         allowed_modules=[PROBE, OUTSIDE])


async def test_an_allowlisted_missing_package_is_installed_and_the_step_runs_again(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    assert subprocess.run([sys.executable, "-c", f"import {PROBE}"], capture_output=True).returncode != 0
    notebook, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    body = {"path": "nb.ipynb", "kernel_id": kernel_id}
    script_one_step(llm_server, f"import {PROBE}\nprint({PROBE}.VALUE)", "It is 42.")
    assert (await post(jp_fetch, "turns", body={**body, "message": "use the probe"})).code == 202
    envelopes = await read_until(ws, turn_ended, timeout=600)
    assert envelopes[-1]["event"]["state"] == "finished", envelopes[-1]
    executions = [e["event"] for e in envelopes if e["event"]["kind"] == "execution"]
    assert len(executions) == 1 and executions[0]["ok"], executions
    texts = [o.get("text", "") for o in executions[0]["outputs"]]
    assert texts[0].startswith(f"[TaskWeaver] '{PROBE}' was missing: installed {PROBE} with pip (auto_install)")
    assert texts[-1] == "42\n"
    assert "installed" in notebook.read_text()  # the record says so too
    # pip ran outside the kernel, into the kernel's Python (the kernelspec's), found only in the local folder
    assert subprocess.run([sys.executable, "-c", f"import {PROBE}"], capture_output=True).returncode == 0

    # Not on the allowlist: nothing is installed, and the step says why.
    script_one_step(llm_server, f"import {OUTSIDE}", "Could not.")
    assert (await post(jp_fetch, "turns", body={**body, "message": "use the other"})).code == 202
    envelopes = await read_until(ws, turn_ended, timeout=300)
    execution = next(e["event"] for e in envelopes if e["event"]["kind"] == "execution")
    assert not execution["ok"] and "ModuleNotFoundError" in execution["error"]
    assert f"'{OUTSIDE}' is not installed and not in TaskWeaverLab.auto_install_packages" in execution["summary"]
    assert "execution" in kinds(envelopes)
    ws.close()


def test_the_api_and_cli_own_kernel_installs_too(llm_server: Any, workspace: Path, wheels: Path) -> None:
    script_one_step(llm_server, f"import {API_PROBE}\nprint({API_PROBE}.VALUE + 1)", "It is 43.")
    app = TaskWeaverApp(config=agent_config(llm_server, auto_install=True, auto_install_packages=[API_PROBE],
                                            auto_install_pip_args=["--no-index", "--find-links", str(wheels)],
                                            allowed_modules=[API_PROBE], max_attempts=1))
    seen: list[Any] = []
    with app.create_session(notebook=workspace / "api.ipynb") as session:
        answer = session.chat("use the probe", on_event=seen.append)
    assert answer.text == "It is 43."
    execution = next(s for s in seen if s.kind == "execution")
    assert execution.ok and execution.outputs[-1]["text"] == "43\n"
    assert f"installed {API_PROBE} with pip (auto_install)" in execution.summary
