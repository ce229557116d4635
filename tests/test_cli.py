"""`jupyter taskweaver run` (ARCHITECTURE A3) as a user runs it: a real subprocess, kernel and notebook."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY

PLANTED_ANOMALIES = 7  # scripts/make_sample_data.py plants exactly this many


def run_cli(workspace: Path, server_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    options = [f"--TaskWeaverLab.base_url={server_url}", "--TaskWeaverLab.planner_model=planner",
               "--TaskWeaverLab.code_generator_model=coder"]
    return subprocess.run(["jupyter", "taskweaver", "run", *args, *options], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=180)


def test_anomaly_case_end_to_end_through_the_cli(llm_server, workspace: Path) -> None:
    llm_server.add("planner",
                   plan_reply("Pull all rows of the time_series table from anomaly.db with sql_pull_data and show the columns and dtypes.",
                              plan=["pull time_series and show its schema", "ask which columns to use", "detect anomalies"]),
                   plan_reply("The table has columns ts and val. Which is the time column and which is the value column?",
                              send_to="User", stop="Clarification", step=2,
                              plan=["pull time_series and show its schema", "ask which columns to use", "detect anomalies"]),
                   plan_reply("Run anomaly_detection on df with time column ts and value column val.", step=3,
                              plan=["pull time_series and show its schema", "ask which columns to use", "detect anomalies"]),
                   plan_reply("The anomaly detection found the anomalies reported above.", send_to="User", stop="Completed", step=3))
    llm_server.add("coder",
                   code_reply("df, description = sql_pull_data('SELECT * FROM time_series', 'anomaly.db')\nprint(description)\ndf.dtypes"),
                   code_reply("df_anomaly, description = anomaly_detection(df, 'ts', 'val')\nprint(description)"))
    result = run_cli(workspace, llm_server.base_url, "record.ipynb", "--json",
                     "-m", "detect anomalies on the time_series table of anomaly.db", "-m", "use ts and val")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    answers = [e for e in events if e["kind"] == "answer"]
    assert [a["is_question"] for a in answers] == [True, False]
    calls = [e for e in events if e["kind"] == "llm_call"]
    assert [c["role"] for c in calls] == ["planner", "code_generator", "planner"] * 2
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 for c in calls)
    # Round 1 showed the schema to the Planner; round 2 ran the plugin on round 1's `df` in the same kernel.
    assert "ts" in json.dumps(llm_server.requests[2]["messages"])
    assert f"There are {PLANTED_ANOMALIES} anomalies" in json.dumps(llm_server.requests[-1]["messages"])
    nb = nbformat.read(workspace / "record.ipynb", 4)
    nbformat.validate(nb)
    kinds = [c.metadata["taskweaver_lab"].get("kind", "code") for c in nb.cells]
    assert kinds == ["user", "plan", "code", "answer", "user", "plan", "code", "answer"]
    assert API_KEY not in (workspace / "record.ipynb").read_text() and API_KEY not in result.stdout + result.stderr


def test_plain_output_prints_each_answer(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Hello! Ask me about your data.", send_to="User", stop="Completed"))
    result = run_cli(workspace, llm_server.base_url, "hello.ipynb", "-m", "hi")
    assert result.returncode == 0 and result.stdout.strip() == "Hello! Ask me about your data."


def test_failure_exits_nonzero_with_one_line(workspace: Path) -> None:
    result = run_cli(workspace, "http://127.0.0.1:9/v1", "dead.ipynb", "-m", "hi", "--TaskWeaverLab.llm_retries=0")
    assert result.returncode != 0
    reason = [line for line in result.stderr.splitlines() if line.startswith("taskweaver:")]
    assert len(reason) == 1 and "Cannot get a reply from the LLM endpoint" in reason[0]
    assert len(nbformat.read(workspace / "dead.ipynb", 4).cells) == 2  # the user message and the failure are recorded


def test_bad_option_is_named(workspace: Path) -> None:
    result = run_cli(workspace, "http://127.0.0.1:9/v1", "x.ipynb", "-m", "hi", "--TaskWeaverLab.max_attempts=lots")
    assert result.returncode == 2 and "max_attempts" in result.stderr and "Traceback" not in result.stderr


def test_save_example_verb_round_trips(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Count the rows of sales.csv."), plan_reply("96 rows.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import pandas as pd\nlen(pd.read_csv('sales.csv'))"))
    assert run_cli(workspace, llm_server.base_url, "ex.ipynb", "-m", "how many rows in sales.csv?").returncode == 0
    saved = subprocess.run(["jupyter", "taskweaver", "save-example", "ex.ipynb", "ex.yaml"], cwd=workspace,
                           capture_output=True, text=True, timeout=60)
    assert saved.returncode == 0, saved.stderr
    from taskweaver_lab.examples import load_examples

    examples, errors = load_examples([str(workspace)])
    assert not errors and examples[0].role == "planner"
    assert any("how many rows" in t.text for t in examples[0].turns)


def test_config_verb_prints_a_config_file_of_every_knob(tmp_path: Path) -> None:
    from taskweaver_lab.config import TaskWeaverLab, load_config_files

    result = subprocess.run(["jupyter", "taskweaver", "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    knobs = TaskWeaverLab.class_traits(config=True)
    assert all(f"# c.TaskWeaverLab.{name} = " in result.stdout for name in knobs)
    # Uncommented, it is a valid config file that sets every knob to its default.
    active = result.stdout.replace("# c.TaskWeaverLab.", "c.TaskWeaverLab.")
    (tmp_path / "jupyter_taskweaver_config.py").write_text(active)
    section = load_config_files([str(tmp_path)]).TaskWeaverLab
    assert set(section) == set(knobs)
    assert section.max_attempts == TaskWeaverLab().max_attempts and section.approval == "auto"


def test_list_settings_on_the_command_line(llm_server, workspace: Path) -> None:
    """Issue 12 item 11: `--TaskWeaverLab.plugin_dirs=DIR` (repeatable) reaches the run: both folders' plugins are
    offered to the Code Generator and callable in the kernel."""
    fixtures = Path(__file__).resolve().parent / "fixtures" / "tw_plugins"
    shutil.copytree(fixtures / "shout", workspace / "loud plugins")
    (workspace / "counting").mkdir()
    for name in ("word_stats.py", "word_stats.yaml"):
        shutil.copy(fixtures / name, workspace / "counting" / name)
    llm_server.add("planner", plan_reply("Upper-case 'hi' with shout and count the words of 'a b c' with word_stats."),
                   plan_reply("HI, and 3 words.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(shout('hi'), word_stats('a b c')[0])"))
    result = run_cli(workspace, llm_server.base_url, "lists.ipynb", "--json", "-m", "shout hi and count a b c",
                     "--TaskWeaverLab.plugin_dirs=loud plugins", "--TaskWeaverLab.plugin_dirs=counting",
                     "--TaskWeaverLab.load_builtin_plugins=False")
    assert result.returncode == 0, result.stderr
    coder_prompt = json.dumps(llm_server.requests[1]["messages"])
    assert "shout(text: str)" in coder_prompt and "word_stats(text: str)" in coder_prompt
    execution = next(json.loads(line) for line in result.stdout.splitlines() if '"kind": "execution"' in line)
    assert execution["ok"] and execution["outputs"][0]["text"] == "HI 3\n"


def test_list_setting_literal_and_a_bad_one(workspace: Path) -> None:
    from taskweaver_lab.cli import split_config_args
    from taskweaver_lab.steps import TaskWeaverLabError

    rest, overrides = split_config_args(["x", '--TaskWeaverLab.allowed_models=["a", "b"]', "--TaskWeaverLab.example_dirs=",
                                         "--TaskWeaverLab.max_attempts=2", "--TaskWeaverLab.max_attempts=4"])
    assert rest == ["x"] and overrides == {"allowed_models": ["a", "b"], "example_dirs": [], "max_attempts": 4}
    with pytest.raises(TaskWeaverLabError, match="allowed_models"):
        split_config_args(["--TaskWeaverLab.allowed_models=[1, oops]"])
    result = run_cli(workspace, "http://127.0.0.1:9/v1", "x.ipynb", "-m", "hi", "--TaskWeaverLab.plugin_dirs=['a', b]")
    assert result.returncode == 2 and "plugin_dirs" in result.stderr and "Traceback" not in result.stderr


def test_a_config_file_in_the_working_folder_loads_only_when_named_with_config(llm_server, workspace: Path) -> None:
    """Generated code can write the working folder: a config file there is never loaded by itself. Each run stops
    at its first bad setting (no kernel needed): which setting it names shows which file was read."""
    (workspace / "jupyter_taskweaver_config.py").write_text("c.TaskWeaverLab.max_attempts = 0\n")
    bad_flag = "--TaskWeaverLab.data_preview_files=-1"
    unnamed = run_cli(workspace, llm_server.base_url, "a.ipynb", "-m", "hi", bad_flag)
    assert "is not loaded" in unnamed.stderr and "data_preview_files" in unnamed.stderr, unnamed.stderr
    assert "max_attempts" not in unnamed.stderr
    named = run_cli(workspace, llm_server.base_url, "b.ipynb", "-m", "hi", "--config", "jupyter_taskweaver_config.py")
    assert named.returncode != 0 and "max_attempts" in named.stderr and "Traceback" not in named.stderr, named.stderr
    missing = run_cli(workspace, llm_server.base_url, "c.ipynb", "-m", "hi", "--config", "nowhere.py")
    assert missing.returncode != 0 and "nowhere.py" in missing.stderr and "Traceback" not in missing.stderr
    assert llm_server.requests == [] and not list(workspace.glob("*.ipynb"))
