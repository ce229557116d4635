"""Kernel faults in an API/CLI session (issue 12 items 4, 5 and 17's IPC part), through real parts: a real
kernel killed with a signal or restarted under a running step, the scripted loopback LLM server, a real
notebook file and the real CLI. Each asserts what the user sees and that the earlier rounds are kept."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

import nbformat

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.kernel import KERNEL_RESTARTED
from taskweaver_lab.own_kernel import OWN_KERNEL_DIED
from taskweaver_lab.resume import KERNEL_RENEWED
from taskweaver_lab.session import KERNEL_REPLACED
from taskweaver_lab.steps import Answer, Execution, Notice, Step, Verdict
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY, agent_config

HANG_GUARD_S = 240  # generous: only keeps a broken build from hanging the suite (no duration is asserted)


def one_step(server: Any, code: str, answer: str = "Done.") -> None:
    server.add("planner", plan_reply("Run the code."), plan_reply(answer, send_to="User", stop="Completed"))
    server.add("coder", code_reply(code))


def chat_in_thread(session: Any, text: str, on_event: Callable[[Step], None]) -> Answer:
    """The round in a worker thread with a hang guard (the fault is injected from the listener)."""
    result: list[Answer] = []
    worker = threading.Thread(target=lambda: result.append(session.chat(text, on_event=on_event)), daemon=True)
    worker.start()
    worker.join(HANG_GUARD_S)
    assert not worker.is_alive(), "the round never noticed the kernel was gone"
    return result[0]


def when_running(action: Callable[[], None]) -> Callable[[Step], None]:
    """A listener that fires ``action`` (from another thread) once the step's code was verified and is starting."""
    def listener(step: Step) -> None:
        if isinstance(step, Verdict) and step.ok:
            threading.Timer(1.0, action).start()
    return listener


def test_a_killed_kernel_is_replaced_on_the_next_round_and_the_planner_told(llm_server, workspace: Path) -> None:
    notebook = workspace / "killed.ipynb"
    one_step(llm_server, "x = 41\nprint(x)")
    llm_server.add("planner", plan_reply("Wait."))
    llm_server.add("coder", code_reply("import time\ntime.sleep(600)"))
    one_step(llm_server, "y = 2\nprint(y)", "y is 2.")
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
        session.chat("set x")
        first_pid = session.executor.pid
        answer = chat_in_thread(session, "wait a long time", when_running(lambda: os.kill(first_pid, signal.SIGKILL)))
        assert answer.stop == "TaskFailure" and answer.text.startswith(OWN_KERNEL_DIED)
        events: list[Step] = []
        third = session.chat("set y", on_event=events.append)
        assert session.executor.pid != first_pid
    assert third.text == "y is 2."
    assert [e.text for e in events if isinstance(e, Notice)] == [KERNEL_RENEWED]
    replaced = [e for e in events if isinstance(e, Execution) and not e.code]
    assert [e.summary for e in replaced] == [KERNEL_REPLACED] and replaced[0].round == 3  # in the round that follows
    assert KERNEL_REPLACED in json.dumps(llm_server.requests[-3]["messages"])  # the Planner heard it first
    ran = [e for e in events if isinstance(e, Execution) and e.code]
    assert ran[0].ok and ran[0].outputs[0]["text"] == "2\n"
    cells = nbformat.read(notebook, 4).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert "".join(code[0].outputs[0]["text"]) == "41\n"  # round 1 is kept
    assert any(OWN_KERNEL_DIED in "".join(c.source) for c in cells if c.cell_type == "markdown")


def test_a_kernel_restarted_mid_step_is_noticed_at_once(llm_server, workspace: Path) -> None:
    notebook = workspace / "restarted.ipynb"
    one_step(llm_server, "x = 41\nprint(x)")
    llm_server.add("planner", plan_reply("Wait."))
    llm_server.add("coder", code_reply("import time\ntime.sleep(600)"))
    one_step(llm_server, "try:\n    print(x)\nexcept NameError:\n    print('x is gone')", "Checked.")
    config = agent_config(llm_server, execution_timeout=900)  # without detection the step would wait 15 minutes
    with TaskWeaverApp(config=config).create_session(notebook=notebook) as session:
        session.chat("set x")
        first_pid = session.executor.pid
        manager = session.executor.manager
        answer = chat_in_thread(session, "wait a long time", when_running(lambda: manager.restart_kernel(now=True)))
        assert answer.stop == "TaskFailure" and answer.text.startswith(KERNEL_RESTARTED)
        assert "did not answer" not in answer.text
        events: list[Step] = []
        session.chat("is x still there", on_event=events.append)
        assert session.executor.pid not in (None, first_pid)
    assert [e.text for e in events if isinstance(e, Notice)] == [KERNEL_RENEWED]
    ran = [e for e in events if isinstance(e, Execution) and e.code]
    assert ran[0].ok and ran[0].outputs[0]["text"] == "x is gone\n"  # honest: the new kernel has no x


def test_kernels_the_product_starts_use_ipc_and_the_cli_prints_no_tcp_warning(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Hello.", send_to="User", stop="Completed"))
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "ipc.ipynb") as session:
        assert session.executor.manager.transport == "ipc"
        state = session.executor.execute("print(6 * 7)", agent=False)
        assert state.outputs[0]["text"] == "42\n"
        runtime = Path(session.executor.manager.connection_file).parent
    assert not runtime.exists()  # the private socket folder goes with the kernel
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    result = subprocess.run(["jupyter", "taskweaver", "run", "cli.ipynb", "-m", "hi",
                             f"--TaskWeaverLab.base_url={llm_server.base_url}", "--TaskWeaverLab.planner_model=planner"],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello."
    assert "without encryption" not in result.stderr and "TCP" not in result.stderr
    assert not list(workspace.glob("kernel-*"))  # no socket files in the user's folder
