"""Function -> plugin (issue 15 item 3): @taskweaver_lab.plugin and `jupyter taskweaver plugin new|from-function`
write TaskWeaver's plugin YAML from the signature, hints and docstring; the result loads in our plugin loader and
is called in a real turn (real kernel, scripted loopback LLM)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import taskweaver_lab
from taskweaver_lab.authoring import parse_docstring, plugin_fields, write_plugin
from taskweaver_lab.plugins import load_plugins
from taskweaver_lab.steps import TaskWeaverLabError
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import agent_config

MODULE = '''\
"""Tools of a data team."""
from __future__ import annotations

import re

import pandas as pd

import taskweaver_lab

SEPARATOR = re.compile(r"[^A-Za-z]+")


def _words(text: str) -> list[str]:
    return [w for w in SEPARATOR.split(text) if w]


def unrelated() -> None:
    raise RuntimeError("never copied into the plugin")


@taskweaver_lab.plugin(required=True)
def word_lengths(text: str, min_length: int = 1) -> tuple[pd.DataFrame, str]:
    """Tabulate the words of a text with their lengths.

    Longer texts are fine.

    Args:
        text: The text to split into words.
        min_length: Words shorter than this are left out.

    Returns:
        table (DataFrame): One row per word: columns word and length.
        description: A sentence saying how many words were kept.
    """
    kept = [w for w in _words(text) if len(w) >= min_length]
    table = pd.DataFrame({"word": kept, "length": [len(w) for w in kept]})
    return table, f"Kept {len(kept)} words of at least {min_length} letters."
'''


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd)] + sys.path)}
    return subprocess.run(["jupyter", "taskweaver", "plugin", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_function_to_yaml_to_loaded_plugin_to_a_call_in_a_turn(llm_server, workspace: Path) -> None:
    (workspace / "teamtools.py").write_text(MODULE)
    result = cli(workspace, "from-function", "teamtools:word_lengths", "--dir", "my_plugins")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((workspace / "my_plugins" / "word_lengths.yaml").read_text())
    assert data["name"] == "word_lengths" and data["required"] is True and data["enabled"] is True
    assert data["description"] == "Tabulate the words of a text with their lengths. Longer texts are fine."
    assert data["parameters"] == [
        {"name": "text", "type": "str", "required": True, "description": "The text to split into words."},
        {"name": "min_length", "type": "int", "required": False, "description": "Words shorter than this are left out.",
         "default": 1}]
    assert [(r["name"], r["type"]) for r in data["returns"]] == [("table", "DataFrame"), ("description", "str")]
    assert data["examples"] == "table, description = word_lengths(text)"
    source = (workspace / "my_plugins" / "word_lengths.py").read_text()
    assert "from taskweaver.plugin import register_plugin\n" in source and "@register_plugin\ndef word_lengths(" in source
    assert "def _words" in source and "SEPARATOR = " in source and "import pandas as pd" in source
    assert "unrelated" not in source and "taskweaver_lab" not in source.split('"""', 2)[2]
    specs, errors = load_plugins([str(workspace / "my_plugins")], include_builtins=False)
    assert errors == [] and [s.signature() for s in specs] == [
        "word_lengths(text: str, min_length: int = 1) -> (table: DataFrame, description: str)"]

    llm_server.add("planner", plan_reply("Tabulate the words of 'plans become running code' longer than 4 letters."),
                   plan_reply("3 words were kept.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("table, description = word_lengths('plans become running code', 5)\n"
                                       "print(description)\nprint(table['length'].sum())"))
    config = agent_config(llm_server, plugin_dirs=[str(workspace / "my_plugins")], load_builtin_plugins=False)
    app = taskweaver_lab.TaskWeaverApp(config=config)
    with app.create_session(notebook=workspace / "p.ipynb") as session:
        answer = session.chat("which words of 'plans become running code' have 5+ letters?")
    assert answer.stop == "Completed"
    coder_prompt = json.dumps(llm_server.requests[1]["messages"])
    assert "word_lengths(text: str, min_length: int = 1)" in coder_prompt
    assert "Kept 3 words of at least 5 letters." in json.dumps(llm_server.requests[-1]["messages"])
    assert "\\n18" in json.dumps(llm_server.requests[-1]["messages"])  # plans 5 + become 6 + running 7


def test_plugin_new_writes_a_pair_that_loads(tmp_path: Path) -> None:
    result = cli(tmp_path, "new", "summarize_text")
    assert result.returncode == 0, result.stderr
    specs, errors = load_plugins([str(tmp_path / "plugins")], include_builtins=False)
    assert errors == [] and specs[0].name == "summarize_text"
    assert specs[0].signature() == "summarize_text(text: str, limit: int = 10) -> (result: str, description: str)"
    again = cli(tmp_path, "new", "summarize_text")
    assert again.returncode == 2 and "already exist; pass --force" in again.stderr and "Traceback" not in again.stderr
    bad = cli(tmp_path, "from-function", "no_such_module:f")
    assert bad.returncode == 2 and "Cannot import no_such_module" in bad.stderr


def test_the_decorator_leaves_the_function_callable_and_reads_rest_docstrings(tmp_path: Path) -> None:
    @taskweaver_lab.plugin
    def scale(values: list[float], factor: float = 2.0) -> list[float]:
        """Multiply every value by a factor.

        :param values: the numbers.
        :param factor: what to multiply by.
        :returns: the scaled numbers.
        """
        return [v * factor for v in values]

    assert scale([1.0, 2.0]) == [2.0, 4.0]
    fields = plugin_fields(scale)
    assert [p["type"] for p in fields["parameters"]] == ["list[float]", "float"]
    assert fields["parameters"][0]["description"] == "the numbers."
    assert fields["returns"] == [{"name": "result", "type": "list[float]", "description": "the scaled numbers."}]
    yaml_path, py_path = write_plugin(scale, tmp_path)
    assert "def scale(" in py_path.read_text() and "@taskweaver_lab.plugin" not in py_path.read_text()
    assert load_plugins([str(tmp_path)], include_builtins=False)[0][0].name == "scale"

    @taskweaver_lab.plugin(save_to=tmp_path / "saved", name="shift")
    def add(values: list[float], offset: float = 1.0) -> list[float]:
        """Add an offset to every value."""
        return [v + offset for v in values]

    specs, errors = load_plugins([str(tmp_path / "saved")], include_builtins=False)
    assert errors == [] and specs[0].signature() == "shift(values: list[float], offset: float = 1.0) -> list[float]"
    assert "def shift(values" in specs[0].source and add([1.0]) == [2.0]


def test_no_docstring_is_refused_with_the_reason() -> None:
    def bare(x: int) -> int:
        return x

    with pytest.raises(TaskWeaverLabError, match="bare has no docstring: its first paragraph becomes"):
        plugin_fields(bare)
    assert parse_docstring("Summary.\n\nArgs:\n    x: an x\n      continued").params == {"x": "an x continued"}


def test_the_decorator_in_a_notebook_cell_of_a_real_kernel(tmp_path: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    cell = '''
import taskweaver_lab

@taskweaver_lab.plugin(save_to="nb_plugins")
def shout(text: str, times: int = 1) -> str:
    """Upper-case a text and repeat it.

    Args:
        text: what to shout.
        times: how often.
    """
    return " ".join([text.upper()] * times)

print(shout("hi", 2))
'''
    manager, client = start_new_kernel(cwd=str(tmp_path))
    try:
        reply = client.execute_interactive(cell, timeout=120, output_hook=lambda msg: None)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    specs, errors = load_plugins([str(tmp_path / "nb_plugins")], include_builtins=False)
    assert errors == [] and specs[0].signature() == "shout(text: str, times: int = 1) -> str"
    assert specs[0].parameters[0]["description"] == "what to shout." and "@register_plugin\ndef shout(" in specs[0].source
