"""The runtime guard in a REAL ipykernel: agent cells blocked, the user's cells untouched."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from security.harness import CANARY_FILE_TEXT, AgentKernel, Canaries

from taskweaver_lab.kernel_side.guard import shipped_source


@pytest.fixture
def canaries(tmp_path: Path) -> Iterator[Canaries]:
    found = Canaries(tmp_path)
    yield found
    found.close()


@pytest.fixture
def kernel(canaries: Canaries) -> Iterator[AgentKernel]:
    agent_kernel = AgentKernel(canaries.workspace)
    assert not agent_kernel.install_guard(canaries.workspace).error
    yield agent_kernel
    agent_kernel.close()


def test_user_cells_unaffected_agent_cells_blocked(kernel: AgentKernel, canaries: Canaries) -> None:
    read_secret = f"print(open({str(canaries.secret)!r}).read())"
    assert CANARY_FILE_TEXT in kernel.run(read_secret, agent=False).text
    agent = kernel.run(read_secret, agent=True)
    assert agent.error.startswith("PermissionError: taskweaver_lab guard blocked open: reading")
    assert CANARY_FILE_TEXT not in agent.text
    assert CANARY_FILE_TEXT in kernel.run(read_secret, agent=False).text   # switched off again


def test_agent_may_work_inside_the_workspace(kernel: AgentKernel, canaries: Canaries) -> None:
    code = "open('out.txt', 'w').write('hi')\nimport os\nos.remove('out.txt')\nprint(sorted(os.listdir('.')))"
    result = kernel.run(code, agent=True)
    assert not result.error and not result.blocked, result


@pytest.mark.parametrize("code,event", [
    ("import subprocess\nsubprocess.run(['true'])", "subprocess.Popen"),
    ("import os\nos.system('true')", "os.system"),
    ("import socket\nsocket.create_connection(('127.0.0.1', {port}))", "socket."),
    ("open('{outside}/pwned.txt', 'w')", "open"),
    ("import os\nos.remove('{secret}')", "os.remove"),
    ("import ctypes\nctypes.CDLL(None).system(b'true')", "ctypes.dlsym"),
    ("import pickle\npickle.loads(b'cos\\nsystem\\n(S\\'true\\'\\ntR.')", "pickle.find_class"),
    ("import sys\nsys.addaudithook(lambda *a: None)", "sys.addaudithook"),
])
def test_agent_effects_blocked(kernel: AgentKernel, canaries: Canaries, code: str, event: str) -> None:
    code = code.format(port=canaries.port, outside=canaries.outside, secret=canaries.secret)
    result = kernel.run(code, agent=True)
    # sys.addaudithook swallows the hook's exception and simply refuses the new hook: the cell's
    # block summary still reports it
    assert "taskweaver_lab guard blocked " + event in result.error + result.text, result
    assert result.error.startswith("PermissionError") or event == "sys.addaudithook"
    assert not canaries.leaks([result])


def test_threads_started_by_agent_code_are_guarded(kernel: AgentKernel, canaries: Canaries) -> None:
    code = (f"import threading\nout = []\ndef grab():\n    try:\n        out.append(open({str(canaries.secret)!r}).read())\n"
            "    except PermissionError as e:\n        out.append(str(e))\n"
            "t = threading.Thread(target=grab)\nt.start(); t.join()\nprint(out)")
    assert "guard blocked open" in kernel.run(code, agent=True).text
    assert CANARY_FILE_TEXT in kernel.run(code, agent=False).text   # the same code as the user


def test_swallowed_block_is_still_reported(kernel: AgentKernel, canaries: Canaries) -> None:
    code = f"try:\n    open({str(canaries.secret)!r})\nexcept Exception:\n    pass\nprint('done')"
    result = kernel.run(code, agent=True)
    assert not result.error
    assert "taskweaver_lab guard blocked 1 operation(s) in this agent cell" in result.text


def test_silent_agent_requests_are_guarded_too(kernel: AgentKernel, canaries: Canaries) -> None:
    content = {"code": f"open({str(canaries.secret)!r}).read()", "silent": True, "store_history": False,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}
    msg = kernel.client.session.msg("execute_request", content, metadata={"taskweaver_lab": {"agent": True}})
    kernel.client.shell_channel.send(msg)
    reply = kernel.shell_reply(msg["header"]["msg_id"])
    assert reply["content"]["status"] == "error"
    assert "taskweaver_lab guard blocked open" in reply["content"]["evalue"]


def test_agent_cannot_switch_the_guard_off(kernel: AgentKernel, canaries: Canaries) -> None:
    """Calling our post-execute callback by hand fails closed: the guard then stays on for every cell."""
    attempt = "[cb() for cb in get_ipython().events.callbacks['post_execute'] if cb.__name__ == 'post']"
    kernel.run(attempt, agent=True)
    later = kernel.run(f"print(open({str(canaries.secret)!r}).read())", agent=True)
    assert "guard blocked" in later.error
    user = kernel.run(f"print(open({str(canaries.secret)!r}).read())", agent=False)
    assert "guard blocked" in user.error   # fail closed: even the user's cells, until a restart


def test_unregistering_callbacks_fails_closed(kernel: AgentKernel, canaries: Canaries) -> None:
    code = ("ip = get_ipython()\nfor cb in list(ip.events.callbacks['pre_execute']):\n"
            "    ip.events.unregister('pre_execute', cb)")
    result = kernel.run(code, agent=True)
    assert "tampering detected" in result.text
    assert "guard blocked" in kernel.run(f"open({str(canaries.secret)!r})", agent=True).error


def test_agent_context_in_process_and_install_is_idempotent(tmp_path: Path) -> None:
    """Plain Python (no kernel): only agent_context() switches the guard on. Runs in a child process
    because an audit hook can never be removed from the process that installs it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shipped = tmp_path / "guard_source.py"
    shipped.write_text(shipped_source())
    script = textwrap.dedent(f"""
        import types, sys
        m = types.ModuleType("_taskweaver_lab_guard")
        exec(compile(open({str(shipped)!r}).read(), "<taskweaver_lab guard>", "exec"), m.__dict__)
        m.install(workspace={str(workspace)!r}); m.install(workspace={str(workspace)!r})
        print(open({str(secret)!r}).read())
        with m.agent_context():
            try:
                open({str(secret)!r})
            except PermissionError as e:
                print("BLOCKED", e)
        print(open({str(secret)!r}).read())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "s" and lines[1].startswith("BLOCKED taskweaver_lab guard blocked open") and lines[2] == "s"


def test_callbacks_agent_code_registers_run_guarded_and_can_be_unregistered(kernel: AgentKernel,
                                                                           canaries: Canaries) -> None:
    register = (f"def later(*args):\n    open({str(canaries.secret)!r}).read()\n"
                "get_ipython().events.register('post_run_cell', later)")
    first = kernel.run(register, agent=True)         # post_run_cell fires for this very cell already
    assert "guard blocked open" in first.error + first.text and CANARY_FILE_TEXT not in first.text, first
    user = kernel.run("x = 1", agent=False)          # IPython reports the callback's failure in the user's cell
    assert "guard blocked open" in user.error + user.text and CANARY_FILE_TEXT not in user.text, user
    undo = kernel.run("get_ipython().events.unregister('post_run_cell', later)", agent=True)
    assert not undo.error, undo
    assert "guard blocked" not in kernel.run("y = 2", agent=False).text


def test_subshells_can_still_be_made_and_used_by_the_user(kernel: AgentKernel, canaries: Canaries) -> None:
    """The server stops a subshell's agent cell from a throwaway subshell (kernel_helper.stop): the guard must not
    refuse the kernel's own control messages, nor a user request on a subshell."""
    assert not kernel.run("x_agent = 1", agent=True).error
    request = kernel.client.session.msg("create_subshell_request", {})
    kernel.client.control_channel.send(request)
    reply = kernel.client.get_control_msg(timeout=30)["content"]
    assert reply["status"] == "ok", reply
    code = "import sys\nprint(len(sys._current_frames()) > 1)"   # what kernel_helper.stop() needs
    message = kernel.client.session.msg("execute_request", {"code": code, "silent": False, "store_history": False,
                                                            "user_expressions": {}, "allow_stdin": False})
    message["header"]["subshell_id"] = reply["subshell_id"]
    kernel.client.shell_channel.send(message)
    assert kernel.shell_reply(message["header"]["msg_id"])["content"]["status"] == "ok"
