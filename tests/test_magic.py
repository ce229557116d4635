"""``%%taskweaver`` headless (in-process): real nbconvert, real ipykernels, the scripted loopback LLM.

No Jupyter server here: the magic runs the agent core inside the kernel it was typed in.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbformat.v4 import new_code_cell, new_notebook

from taskweaver_lab.magic import parse_options
from taskweaver_lab.steps import TaskWeaverLabError
from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from conftest import API_KEY

MODELS_CONFIG = "c.TaskWeaverLab.planner_model = 'planner'\nc.TaskWeaverLab.code_generator_model = 'coder'\n"


def magic_env(config_dir: Path, base_url: str | None, extra_config: str = "") -> dict[str, str]:
    """The kernel's env: models from a jupyter_taskweaver_config.py in JUPYTER_CONFIG_DIR, endpoint from env."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_taskweaver_config.py").write_text(MODELS_CONFIG + extra_config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TASKWEAVER_LAB_"))}
    env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    if base_url:
        env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY=API_KEY)
    return env


@pytest.fixture
def dead_url() -> Iterator[str]:
    """An endpoint that refuses connections: the port stays bound (so nothing else gets it) but never listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


# --- nbconvert: the acceptance case ------------------------------------------------------------------
def script_two_rounds(server: ScriptedLLMServer) -> None:
    server.add("planner", plan_reply("Load sales.csv into `sales` and print its row count."),
               plan_reply("sales has its rows loaded.", send_to="User", stop="Completed"))
    server.add("coder", code_reply("import pandas as pd\nsales = pd.read_csv('sales.csv')\nprint(len(sales))"))
    server.add("planner", plan_reply("Compute `total_units`, the sum of sales['units'], and show it."),
               plan_reply("Total units computed.", send_to="User", stop="Completed"))
    server.add("coder", code_reply("total_units = int(sales['units'].sum())\ntotal_units"))


def two_cell_notebook(path: Path) -> None:
    nb = new_notebook(cells=[
        new_code_cell("%load_ext taskweaver_lab"),
        new_code_cell("%%taskweaver\nLoad sales.csv and tell me how many rows it has"),
        new_code_cell("%%taskweaver\nWhat is the total of the units column of the data you loaded?"),
        new_code_cell("print('user cell sees', total_units)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def nbconvert(notebook: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    out = notebook.with_name(notebook.stem + ".out.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", notebook.name,
         "--output", out.name, "--ExecutePreprocessor.timeout=120"],
        cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return nbformat.read(out, as_version=4)


def recorded_cells(cell: Any) -> list[dict[str, Any]]:
    return [o["metadata"]["taskweaver_lab"]["cell"] for o in cell.outputs
            if o.get("output_type") == "display_data" and "taskweaver_lab" in o.get("metadata", {})]


def test_nbconvert_two_cells_then_replay_with_the_endpoint_off(workspace: Path, tmp_path: Path, dead_url: str) -> None:
    notebook = workspace / "analysis.ipynb"
    two_cell_notebook(notebook)
    units = int(__import__("pandas").read_csv(workspace / "sales.csv")["units"].sum())
    cassette = "llm-cassette.json"
    with ScriptedLLMServer() as server:
        script_two_rounds(server)
        env = magic_env(tmp_path / "cfg-record", server.base_url,
                        f"c.TaskWeaverLab.llm_cassette = {cassette!r}\nc.TaskWeaverLab.llm_cassette_mode = 'record'\n")
        first = nbconvert(notebook, env)
        assert [r["model"] for r in server.requests] == ["planner", "coder", "planner"] * 2
    assert_two_rounds(first, units)
    assert (workspace / cassette).is_file() and API_KEY not in (workspace / cassette).read_text()

    # endpoint off (a closed port), replay from the cassette through the config file
    env = magic_env(tmp_path / "cfg-replay", dead_url,
                    f"c.TaskWeaverLab.llm_cassette = {cassette!r}\nc.TaskWeaverLab.llm_cassette_mode = 'replay'\n")
    second = nbconvert(notebook, env)
    assert_two_rounds(second, units)
    code = lambda nb: [c["source"] for cell in nb.cells for c in recorded_cells(cell) if c["cell_type"] == "code"]
    assert code(second) == code(first)


def assert_two_rounds(nb: nbformat.NotebookNode, units: int) -> None:
    nbformat.validate(nb)
    first, second, user = nb.cells[1], nb.cells[2], nb.cells[3]
    rounds = [recorded_cells(first), recorded_cells(second)]
    for number, cells in enumerate(rounds, 1):
        kinds = [c["metadata"]["taskweaver_lab"].get("kind", "code") for c in cells]
        assert kinds == ["user", "plan", "code", "answer"], kinds
        code = cells[2]["metadata"]["taskweaver_lab"]
        assert {"session", "round", "step", "verified", "attempt"} <= set(code) and code["round"] == number
        assert code["verified"] is True and code["ok"] is True
    assert rounds[0][0]["metadata"]["taskweaver_lab"]["session"] == rounds[1][0]["metadata"]["taskweaver_lab"]["session"]
    texts = json.dumps(second.outputs)
    assert str(units) in texts                      # the second round used the first round's `sales`
    assert user.outputs[0]["text"] == f"user cell sees {units}\n"
    assert "Traceback" not in json.dumps(nb.cells[1].outputs + nb.cells[2].outputs)
    assert API_KEY not in json.dumps(nb)


# --- a kernel driven through a client: errors, interrupts, the guard, figures --------------------------
class MagicKernel:
    def __init__(self, cwd: Path, env: dict[str, str], connection_file: Path) -> None:
        # named like a Jupyter server's kernels (kernel-<id>.json): the magic derives its kernel id from it
        self.manager = KernelManager(kernel_name="python3", connection_file=str(connection_file))
        self.manager.start_kernel(cwd=str(cwd), env=env)
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.run("%load_ext taskweaver_lab")

    def run(self, code: str, timeout: float = 120, stdin: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error", "update_display_data"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout, allow_stdin=stdin is not None,
                                                stdin_hook=stdin)
        return reply["content"], outputs

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel_factory(tmp_path: Path) -> Iterator[Any]:
    kernels: list[MagicKernel] = []

    def start(cwd: Path, base_url: str | None, extra_config: str = "", **extra_env: str) -> MagicKernel:
        env = magic_env(tmp_path / f"cfg{len(kernels)}", base_url, extra_config)
        kernels.append(MagicKernel(cwd, {**env, **extra_env}, tmp_path / f"kernel-{uuid.uuid4()}.json"))
        return kernels[-1]

    yield start
    for kernel in kernels:
        kernel.close()


def text_of(outputs: list[dict[str, Any]]) -> str:
    return json.dumps(outputs)


def error_line(reply: dict[str, Any], outputs: list[dict[str, Any]]) -> str:
    """The one line the user sees for a failed magic (UsageError: printed to stderr, no traceback)."""
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    lines = [o["text"] for o in outputs if o["type"] == "stream" and o["name"] == "stderr"]
    assert len("".join(lines).strip().splitlines()) == 1, lines
    assert not any(o["type"] == "error" for o in outputs)
    return lines[0].strip()


def test_no_endpoint_configured_is_one_actionable_line(kernel_factory: Any, workspace: Path) -> None:
    kernel = kernel_factory(workspace, None)
    reply, outputs = kernel.run("%%taskweaver\nplot sales")
    line = error_line(reply, outputs)
    assert line.startswith("UsageError: taskweaver: No LLM endpoint is configured") and "OPENAI_BASE_URL" in line
    assert kernel.run("1 + 1")[0]["status"] == "ok"


def test_endpoint_down_is_one_actionable_line(kernel_factory: Any, workspace: Path, dead_url: str) -> None:
    kernel = kernel_factory(workspace, dead_url, "c.TaskWeaverLab.llm_retries = 0\n")
    reply, outputs = kernel.run("%taskweaver plot sales")
    line = error_line(reply, outputs)
    assert "Cannot get a reply from the LLM endpoint" in line and "Is the server running" in line


def test_verification_exhausted_says_so_and_the_planner_reports(kernel_factory: Any, llm_server: ScriptedLLMServer,
                                                                workspace: Path) -> None:
    llm_server.add("planner", plan_reply("List the processes with subprocess."),
                   plan_reply("I cannot do that: running processes is not allowed here.", send_to="User", stop="TaskFailure"))
    llm_server.add("coder", *[code_reply("import subprocess\nsubprocess.run(['ps'])")] * 2)
    kernel = kernel_factory(workspace, llm_server.base_url, "c.TaskWeaverLab.max_attempts = 2\n")
    reply, outputs = kernel.run("%%taskweaver\nlist processes")
    line = error_line(reply, outputs)
    assert line == "UsageError: taskweaver: I cannot do that: running processes is not allowed here."
    shown = text_of(outputs)
    assert "rejected by the verifier" in shown and "gave up after 2 attempts" in shown
    assert "subprocess.run" not in "".join(o.get("text", "") for o in outputs if o["type"] == "stream")


def test_interrupt_during_agent_code_stops_the_turn_and_the_kernel_stays_usable(
        kernel_factory: Any, llm_server: ScriptedLLMServer, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Wait a while."))
    llm_server.add("coder", code_reply("import time\nfor _ in range(300):\n    time.sleep(0.1)\nwaited = True"))
    kernel = kernel_factory(workspace, llm_server.base_url)
    kernel.client.execute("%%taskweaver\nwait a while")
    deadline = time.monotonic() + 60
    while len(llm_server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)   # inside time.sleep in the agent's cell
    started = time.monotonic()
    kernel.manager.interrupt_kernel()
    reply = kernel.client.get_shell_msg(timeout=30)["content"]
    assert time.monotonic() - started < 10
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    assert [r["model"] for r in llm_server.requests] == ["planner", "coder"]   # no Planner call after Ctrl-C
    reply, outputs = kernel.run("print('still here', 'waited' in dir())\nopen('/etc/hostname').read()[:0]")
    assert reply["status"] == "ok" and "still here False" in text_of(outputs)   # guard off for the user's cells


def test_interrupt_while_waiting_for_the_llm_then_the_session_goes_on(
        kernel_factory: Any, llm_server: ScriptedLLMServer, workspace: Path) -> None:
    llm_server.add("planner", {"content": plan_reply("Too late."), "delay": 30})
    kernel = kernel_factory(workspace, llm_server.base_url)
    kernel.client.execute("%%taskweaver\nslow question")
    deadline = time.monotonic() + 60
    while not llm_server.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    kernel.manager.interrupt_kernel()
    started = time.monotonic()
    reply = kernel.client.get_shell_msg(timeout=30)["content"]
    assert reply["status"] == "error" and reply["ename"] == "UsageError" and time.monotonic() - started < 5
    llm_server.add("planner", plan_reply("Set w."), plan_reply("w is 5.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("w = 5"))
    reply, outputs = kernel.run("%%taskweaver\nset w")
    assert reply["status"] == "ok" and "w is 5." in text_of(outputs)
    assert "User: slow question" in json.dumps(llm_server.requests[-1]["messages"])   # same session, history kept


def test_guard_blocks_agent_code_only_and_figures_are_recorded(kernel_factory: Any, llm_server: ScriptedLLMServer,
                                                                workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Plot units and read a file outside the workspace."),
                   plan_reply("Plotted; the file was blocked.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply(
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\n"
        "import pathlib\nfolder = pathlib.Path.home().parent\nsorted(p.name for p in folder.iterdir())"))
    kernel = kernel_factory(workspace, llm_server.base_url, "c.TaskWeaverLab.max_attempts = 1\n")
    reply, outputs = kernel.run("%%taskweaver\nplot something")
    assert reply["status"] == "ok", reply
    displays = [o for o in outputs if o["type"] == "display_data"]
    assert any("image/png" in o["data"] for o in displays)              # the inline figure, re-shown
    code_record = next(o["metadata"]["taskweaver_lab"]["cell"] for o in displays
                       if o["metadata"].get("taskweaver_lab", {}).get("cell", {}).get("cell_type") == "code")
    assert code_record["metadata"]["taskweaver_lab"]["ok"] is False
    assert "PermissionError" in code_record["metadata"]["taskweaver_lab"]["summary"]
    assert "guard blocked" in code_record["metadata"]["taskweaver_lab"]["summary"]
    reply, outputs = kernel.run("import pathlib\nlen(list(pathlib.Path.home().parent.iterdir())) > 0")
    assert reply["status"] == "ok" and "True" in text_of(outputs)      # the user's own cell is not guarded


def test_line_magic_next_input_payload_and_timeout(kernel_factory: Any, llm_server: ScriptedLLMServer,
                                                   workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Sleep 5 s then set x."),
                   plan_reply("Set y instead.", plan=["set y"]), plan_reply("Done: y is 2.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import time\ntime.sleep(5)\nx = 1"), code_reply("y = 2\ny"))
    kernel = kernel_factory(workspace, llm_server.base_url)
    started = time.monotonic()
    reply, outputs = kernel.run("%taskweaver --TaskWeaverLab.execution_timeout=1 set x after a nap")
    assert reply["status"] == "ok" and time.monotonic() - started < 30
    assert "interrupted: the cell ran longer than 1 s" in json.dumps(llm_server.requests[2]["messages"])
    payloads = [p for p in reply.get("payload", []) if p.get("source") == "set_next_input"]
    assert len(payloads) == 1 and payloads[0]["text"].rstrip().endswith("y = 2\ny") and "time.sleep" not in payloads[0]["text"]
    assert "Done: y is 2." in text_of(outputs)
    assert "False" in text_of(kernel.run("'x' in dir()")[1])   # the timed-out cell never got to `x = 1`


def test_plain_ipython_without_a_kernel(llm_server: ScriptedLLMServer, workspace: Path, tmp_path: Path) -> None:
    llm_server.add("planner", plan_reply("Set answer to 42."), plan_reply("answer is 42.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("answer = 6 * 7\nprint('computed', answer)"))
    script = textwrap.dedent("""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_cell('%load_ext taskweaver_lab')
        result = shell.run_cell('%%taskweaver\\nset answer to 42')
        print('OK' if result.success and shell.user_ns['answer'] == 42 else 'FAILED')
    """)
    env = magic_env(tmp_path / "cfg", llm_server.base_url)
    done = subprocess.run([sys.executable, "-c", script], cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().endswith("OK"), done.stdout + done.stderr
    assert "computed 42" in done.stdout and "answer is 42." in done.stdout


def test_unreachable_server_falls_back_in_process_with_one_notice(kernel_factory: Any, llm_server: ScriptedLLMServer,
                                                                  workspace: Path, dead_url: str) -> None:
    llm_server.add("planner", plan_reply("Set z."), plan_reply("z is set.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("z = 3"))
    server_url = dead_url.replace("/v1", "/")
    kernel = kernel_factory(workspace, llm_server.base_url, TASKWEAVER_LAB_SERVER_URL=server_url)
    reply, outputs = kernel.run("%%taskweaver\nset z")
    assert reply["status"] == "ok", reply
    notice = outputs[0]["text"].strip()
    assert notice.startswith("taskweaver: the Jupyter server did not take the turn (") and "refused" in notice
    assert notice.endswith("running in this kernel instead.") and len(notice.splitlines()) == 1
    assert "z is set." in text_of(outputs)


def test_approve_asks_before_running(kernel_factory: Any, llm_server: ScriptedLLMServer, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Set a and b."), plan_reply("Set b; a was skipped.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("a = 1"))
    kernel = kernel_factory(workspace, llm_server.base_url)
    prompts: list[str] = []

    def answer(msg: dict[str, Any]) -> None:
        prompts.append(msg["content"]["prompt"])
        kernel.client.input("s")

    reply, outputs = kernel.run("%%taskweaver --approve\nset a", stdin=answer)
    assert reply["status"] == "ok" and prompts == ["Run this code? [y]es / [s]kip: "]
    assert "Proposed code" in text_of(outputs) and "skipped" in json.dumps(llm_server.requests[-1]["messages"])
    assert "False" in text_of(kernel.run("'a' in dir()")[1])
    llm_server.add("planner", plan_reply("Set a."))
    llm_server.add("coder", code_reply("a = 1"))
    reply, outputs = kernel.run("%%taskweaver --approve\nset a", timeout=60)   # no stdin: say how to run headless
    assert "use --auto for headless runs" in error_line(reply, outputs)


# --- the magic line ---------------------------------------------------------------------------------
def test_options_and_request_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = parse_options("--approve --new --plugins-only --cassette 'my tape.json'", "\nplot -- sales\n")
    assert (options.approval, options.new, options.plugins_only, options.request) == ("approve", True, True, "plot -- sales")
    assert options.overrides == {"llm_cassette": "my tape.json", "llm_cassette_mode": "record", "plugin_only": True}
    (tmp_path / "tape.json").write_text("{}")
    assert parse_options("--cassette=tape.json", "x").overrides["llm_cassette_mode"] == "replay"
    assert parse_options("--cassette tape.json --record", "x").overrides["llm_cassette_mode"] == "record"
    line = parse_options("--auto --TaskWeaverLab.max_attempts=2 what's --new in sales?", None)
    assert line.request == "what's --new in sales?" and not line.new and line.overrides == {"max_attempts": 2}
    assert line.llm_options and not parse_options("--plugins-only", "x").llm_options
    for bad in ("--bogus", "--TaskWeaverLab.nope=1", "--cassette"):
        with pytest.raises(TaskWeaverLabError):
            parse_options(bad, "x")
    with pytest.raises(TaskWeaverLabError, match="empty"):
        parse_options("--new", "   ")
