"""Plugin faults (issue 12 items 10 and 11): list settings on the magic line, a plugin whose file raises on
import, a YAML that does not match its function. Real kernels, the real CLI, the scripted loopback LLM."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from test_magic import kernel_factory, text_of  # noqa: F401  (a fixture: real kernels with the magic loaded)

pytest_plugins = ["pytest_jupyter.jupyter_server"]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tw_plugins"


def test_magic_line_takes_list_settings(kernel_factory: Any, llm_server: ScriptedLLMServer,  # noqa: F811
                                        workspace: Path) -> None:
    shutil.copytree(FIXTURES / "shout", workspace / "loud plugins")
    (workspace / "counting").mkdir()
    for name in ("word_stats.py", "word_stats.yaml"):
        shutil.copy(FIXTURES / name, workspace / "counting" / name)
    llm_server.add("planner", plan_reply("Upper-case 'hi' with shout and count 'a b c' with word_stats."),
                   plan_reply("HI and 3 words.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(shout('hi'), word_stats('a b c')[0])"))
    kernel = kernel_factory(workspace, llm_server.base_url)
    reply, outputs = kernel.run('%%taskweaver --TaskWeaverLab.plugin_dirs="loud plugins" '
                                "--TaskWeaverLab.plugin_dirs=counting\nshout hi and count a b c")
    assert reply["status"] == "ok", text_of(outputs)
    coder_prompt = json.dumps(llm_server.requests[1]["messages"])
    assert "shout(text: str)" in coder_prompt and "word_stats(text: str)" in coder_prompt
    assert "HI 3" in text_of(outputs)


# --- item 10: plugins that cannot work ----------------------------------------------------------------------
YAML = """name: {name}
enabled: true
description: {description}
parameters:
{params}
returns:
  - name: result
    type: int
    description: what it computed
"""


def write_plugin(folder: Path, name: str, params: list[tuple[str, bool]], python: str,
                 description: str = "A plugin of the fault tests.") -> None:
    lines = "\n".join(f"  - name: {p}\n    type: int\n    required: {str(req).lower()}\n    description: input {p}"
                      for p, req in params) or "  []"
    (folder / f"{name}.yaml").write_text(YAML.format(name=name, description=description, params=lines))
    (folder / f"{name}.py").write_text("from taskweaver.plugin import Plugin, register_plugin\n\n\n" + python)


def method(body: str) -> str:
    return f"@register_plugin\nclass P(Plugin):\n    def __call__(self, {body}):\n        return 1\n"


MISMATCHES = {  # name: (YAML parameters, the implementation, what the message must say)
    "extra_in_yaml": ([("a", True), ("b", True)], method("a"), "the YAML's parameter 'b' is not a parameter of P.__call__ (it takes: a)"),
    "missing_in_yaml": ([("a", True)], method("a, b"), "P.__call__ requires 'b', which the YAML's parameters do not declare"),
    "optional_no_default": ([("a", False)], method("a"), "marks 'a' optional (required: false) but P.__call__ has no default"),
    "swapped": ([("b", True), ("a", True)], method("a, b"), "another order than P.__call__ (it takes: a, b)"),
    "function_style": ([("text", True)], "@register_plugin\ndef function_style(txt):\n    return txt\n",
                       "the YAML's parameter 'text' is not a parameter of function_style()"),
}
MATCHES = {
    "fits": ([("a", True), ("b", False)], method("a, b=2")),
    "takes_kwargs": ([("a", True), ("anything", False)], method("a, **options")),
    "keyword_only": ([("a", True), ("mode", False)], method("a, *, mode='x'")),
}


def broken_plugins(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for name, (params, python, _) in MISMATCHES.items():
        write_plugin(folder, name, params, python)
    for name, (params, python) in MATCHES.items():
        write_plugin(folder, name, params, python)
    write_plugin(folder, "raises_on_import", [("a", True)], "import not_a_real_module_xyz\n\n" + method("a"),
                 "Counts the widgets of a warehouse.")
    return folder


def test_yaml_that_does_not_match_its_function_is_not_loaded(tmp_path: Path) -> None:
    from taskweaver_lab.plugins import load_plugins

    specs, errors = load_plugins([str(broken_plugins(tmp_path / "plugins"))], include_builtins=False)
    assert {s.name for s in specs} == set(MATCHES) | {"raises_on_import"}  # an import error shows only in a kernel
    assert len(errors) == len(MISMATCHES), errors
    for name, (_, _, phrase) in MISMATCHES.items():
        line = next(e for e in errors if e.startswith(str(tmp_path / "plugins" / f"{name}.py")))
        assert phrase in line and f"calls written from {name}.yaml would fail" in line, line


def test_cli_reports_both_and_keeps_them_out_of_prompts(llm_server: ScriptedLLMServer, workspace: Path) -> None:
    from test_cli import run_cli

    broken_plugins(workspace / "plugins")
    llm_server.add("planner", plan_reply("Count to three."), plan_reply("3.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(3)"))
    result = run_cli(workspace, llm_server.base_url, "p.ipynb", "-m", "count the widgets", "--TaskWeaverLab.plugin_dirs=plugins",
                     "--TaskWeaverLab.max_plugins_in_prompt=20")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("raises_on_import" in w and "failed to load in the kernel" in w and "not_a_real_module_xyz" in w
               and "not offered to the LLM" in w for w in warnings), result.stderr
    for name in MISMATCHES:
        assert any(f"{name}.py" in w and "would fail" in w for w in warnings), (name, result.stderr)
    assert "Traceback" not in result.stderr
    prompts = json.dumps([r["messages"] for r in llm_server.requests])
    assert "fits(" in prompts and "takes_kwargs(" in prompts  # the good ones are offered
    for name in [*MISMATCHES, "raises_on_import"]:
        assert f"{name}(" not in prompts, name


def test_magic_reports_both_and_keeps_them_out_of_prompts(kernel_factory: Any, llm_server: ScriptedLLMServer,  # noqa: F811
                                                          workspace: Path) -> None:
    broken_plugins(workspace / "plugins")
    llm_server.add("planner", plan_reply("Count to three."), plan_reply("3.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(3)"))
    kernel = kernel_factory(workspace, llm_server.base_url, "c.TaskWeaverLab.plugin_dirs = ['plugins']\n"
                                                            "c.TaskWeaverLab.max_plugins_in_prompt = 20\n")
    reply, outputs = kernel.run("%%taskweaver\ncount the widgets")
    assert reply["status"] == "ok", text_of(outputs)
    shown = text_of(outputs)
    assert "raises_on_import" in shown and "not_a_real_module_xyz" in shown
    assert all(f"{name}.py" in shown for name in MISMATCHES)
    prompts = json.dumps([r["messages"] for r in llm_server.requests])
    assert "fits(" in prompts
    for name in [*MISMATCHES, "raises_on_import"]:
        assert f"{name}(" not in prompts, name


# --- the server: its status (the sidebar's warnings), the chat, and files fixed while it runs ----------------
@pytest.fixture
def jp_server_config(llm_server: ScriptedLLMServer, tmp_path: Path) -> dict[str, Any]:
    from server_support import server_config

    return server_config(llm_server.base_url, plugin_dirs=[str(broken_plugins(tmp_path / "server_plugins"))],
                         max_plugins_in_prompt=20)


async def test_server_status_and_chat_report_both_and_a_fixed_file_is_loaded_again(
        jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any, jp_root_dir: Path, llm_server: ScriptedLLMServer,
        tmp_path: Path) -> None:
    from server_support import NS, as_json, post, read_until, script_one_step, turn_ended, watched_notebook

    _, kernel_id, ws = await watched_notebook(jp_serverapp, jp_fetch, jp_ws_fetch, jp_root_dir)
    status = as_json(await jp_fetch(NS, "status"))
    assert all(any(f"{name}.py" in e and "would fail" in e for e in status["load_errors"]) for name in MISMATCHES)
    assert not any("raises_on_import" in e for e in status["load_errors"])  # not known before a kernel imports it

    script_one_step(llm_server, "print(3)", "3.")
    body = {"path": "nb.ipynb", "kernel_id": kernel_id, "message": "count the widgets"}
    assert (await post(jp_fetch, "turns", body=body)).code == 202
    envelopes = await read_until(ws, turn_ended, timeout=120)
    notices = [e["event"]["text"] for e in envelopes if e["event"]["kind"] == "notice"]
    assert any("raises_on_import" in n and "not_a_real_module_xyz" in n for n in notices), notices
    status = as_json(await jp_fetch(NS, "status"))
    assert any("raises_on_import" in e and "failed to load in the kernel" in e for e in status["load_errors"])
    prompts = json.dumps([r["messages"] for r in llm_server.requests])
    assert "fits(" in prompts and "raises_on_import(" not in prompts and "swapped(" not in prompts

    # The author fixes both files while the server runs: the next turn loads them again, into the kernel too.
    folder = tmp_path / "server_plugins"
    (folder / "raises_on_import.py").write_text("from taskweaver.plugin import Plugin, register_plugin\n\n\n"
                                                + method("a").replace("return 1", "return a * 10"))
    write_plugin(folder, "swapped", [("a", True), ("b", True)], method("a, b"))
    llm_server.requests.clear()
    script_one_step(llm_server, "print(raises_on_import(4))", "40.")
    assert (await post(jp_fetch, "turns", body={**body, "message": "count again"})).code == 202
    envelopes = await read_until(ws, turn_ended, timeout=120)
    execution = next(e["event"] for e in envelopes if e["event"]["kind"] == "execution")
    assert execution["ok"] and execution["outputs"][0]["text"] == "40\n", execution
    prompts = json.dumps([r["messages"] for r in llm_server.requests])
    assert "raises_on_import(" in prompts and "swapped(" in prompts
    status = as_json(await jp_fetch(NS, "status"))
    assert not any("raises_on_import" in e or "swapped" in e for e in status["load_errors"]), status["load_errors"]
    ws.close()


def test_the_python_api_reports_a_plugin_that_raised_and_keeps_it_out_of_prompts(
        llm_server: ScriptedLLMServer, workspace: Path) -> None:
    from taskweaver_lab import TaskWeaverApp

    from conftest import agent_config

    broken_plugins(workspace / "plugins")
    llm_server.add("planner", plan_reply("Count to three."), plan_reply("3.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(3)"))
    app = TaskWeaverApp(config=agent_config(llm_server, plugin_dirs=[str(workspace / "plugins")], max_plugins_in_prompt=20))
    with app.create_session(notebook=workspace / "api.ipynb") as session:
        warnings = [n.text for n in session.setup_notices]
        session.chat("count the widgets of the warehouse")
    assert any("raises_on_import" in w and "not offered to the LLM" in w for w in warnings), warnings
    prompts = json.dumps([r["messages"] for r in llm_server.requests])
    assert "fits(" in prompts and "raises_on_import(" not in prompts
