"""A TaskWeaver project used unchanged (issue 14 item 4): --TaskWeaverLab.app_dir=path/to/project loads its
taskweaver_config.json, plugins/ and examples/. The project is written here in TaskWeaver's own layout and formats."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.steps import TaskWeaverLabError
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY

PLUGIN_YAML = """\
name: count_vowels
enabled: true
required: false
description: >-
  Count the vowels (a, e, i, o, u) in a text.
examples: |-
  n, description = count_vowels("some text")
parameters:
  - name: text
    type: str
    required: true
    description: The text to count in.
returns:
  - name: n
    type: int
    description: How many vowels.
  - name: description
    type: str
    description: A sentence with the count.
"""
PLUGIN_PY = '''\
from taskweaver.plugin import Plugin, register_plugin


@register_plugin
class CountVowels(Plugin):
    def __call__(self, text: str):
        n = sum(ch in "aeiou" for ch in text.lower())
        return n, f"The text has {n} vowels."
'''
PLANNER_EXAMPLE = """\
enabled: true
rounds:
  - user_query: how many vowels are in the word banana
    state: finished
    post_list:
      - message: how many vowels are in the word banana
        send_from: User
        send_to: Planner
        attachment_list: []
      - message: Count the vowels of 'banana' with count_vowels
        send_from: Planner
        send_to: CodeInterpreter
        attachment_list:
          - type: plan
            content: |-
              1. count the vowels of banana
              2. report the count
          - type: current_plan_step
            content: 1. count the vowels of banana
      - message: The text has 3 vowels.
        send_from: CodeInterpreter
        send_to: Planner
        attachment_list: []
      - message: banana has 3 vowels (marker-from-the-planner-example)
        send_from: Planner
        send_to: User
        attachment_list:
          - type: plan
            content: |-
              1. count the vowels of banana
              2. report the count
          - type: current_plan_step
            content: 2. report the count
"""
CODE_EXAMPLE = """\
enabled: true
rounds:
  - user_query: vowels of banana
    state: finished
    post_list:
      - message: Count the vowels of 'banana' with count_vowels
        send_from: Planner
        send_to: CodeInterpreter
        attachment_list: []
      - message: The text has 3 vowels.
        send_from: CodeInterpreter
        send_to: Planner
        attachment_list:
          - type: thought
            content: "{ROLE_NAME} calls the plugin."
          - type: reply_type
            content: python
          - type: reply_content
            content: |-
              n, description = count_vowels("banana")
              print(description)  # marker-from-the-code-example
"""


def write_project(root: Path, base_url: str, **settings: Any) -> Path:
    """A TaskWeaver project: taskweaver_config.json, plugins/, examples/{planner,code_generator}_examples/."""
    project = root / "project"
    (project / "plugins").mkdir(parents=True)
    (project / "plugins" / "count_vowels.yaml").write_text(PLUGIN_YAML)
    (project / "plugins" / "count_vowels.py").write_text(PLUGIN_PY)
    for role, text in (("planner", PLANNER_EXAMPLE), ("code_generator", CODE_EXAMPLE)):
        folder = project / "examples" / f"{role}_examples"
        folder.mkdir(parents=True)
        (folder / f"example-{role}.yaml").write_text(text)
    config = {"llm.api_base": base_url, "llm.api_key": API_KEY, "llm.model": "tw-model",
              "llm.response_format": "json_object", "code_interpreter.code_verification_on": True,
              "code_interpreter.allowed_modules": ["pandas", "numpy"], "code_interpreter.max_retry_count": 2,
              "llm.embedding_model": "all-mpnet-base-v2", "execution_service.kernel_mode": "local",
              "planner.prompt_compression": False, **settings}
    (project / "taskweaver_config.json").write_text(json.dumps(config, indent=2))
    return project


def test_a_taskweaver_project_answers_a_round_with_its_model_key_plugin_and_examples(llm_server, tmp_path: Path,
                                                                                     monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    project = write_project(tmp_path, llm_server.base_url)
    llm_server.add("tw-model", plan_reply("Count the vowels of 'taskweaver' with count_vowels."),
                   code_reply('n, description = count_vowels("taskweaver")\nprint(description)'),
                   plan_reply("taskweaver has 4 vowels.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config={"app_dir": str(project)})
    config = app.config
    assert (config.base_url, config.api_key, config.model) == (llm_server.base_url, API_KEY, "tw-model")
    assert config.response_format == "json_object" and config.max_attempts == 3
    assert list(config.allowed_modules) == ["pandas", "numpy"]
    assert [w for w in app.load_errors] == [
        f"{project / 'taskweaver_config.json'}: not supported here, ignored: execution_service.kernel_mode, "
        "llm.embedding_model, planner.prompt_compression."]
    assert "count_vowels" in [p.name for p in app.plugins]
    assert sorted(e.role for e in app.examples) == ["code_generator", "planner"]
    with app.create_session(notebook=tmp_path / "tw.ipynb") as session:
        answer = session.chat("how many vowels are in the word taskweaver?")
    assert answer.stop == "Completed" and answer.text == "taskweaver has 4 vowels."
    planner_call, coder_call, last_call = llm_server.requests
    assert all(r["model"] == "tw-model" for r in llm_server.requests)
    assert set(llm_server.authorizations) == {f"Bearer {API_KEY}"}  # the project's key, sent to its endpoint only
    assert planner_call["response_format"]["type"] == "json_object"
    assert "marker-from-the-planner-example" in json.dumps(planner_call["messages"])
    assert "marker-from-the-code-example" in json.dumps(coder_call["messages"])
    assert "count_vowels(text: str)" in json.dumps(coder_call["messages"])
    assert "The text has 4 vowels." in json.dumps(last_call["messages"])  # the project's plugin ran in the kernel
    record = (tmp_path / "tw.ipynb").read_text()
    nbformat.validate(nbformat.reads(record, 4))
    assert API_KEY not in record


def test_explicit_settings_and_taskweaver_env_names_win_over_the_file(llm_server, tmp_path: Path, monkeypatch) -> None:
    project = write_project(tmp_path, llm_server.base_url, **{"plugin.base_path": "${AppBaseDir}/plugins"})
    monkeypatch.setenv("LLM_MODEL", "from-env")  # TaskWeaver's own rule: LLM_MODEL overrides llm.model
    config = TaskWeaverApp(config={"app_dir": str(project), "max_attempts": 5}).config
    assert config.model == "from-env" and config.max_attempts == 5
    assert config.plugin_dirs[0] == str(project / "plugins")
    config = TaskWeaverApp(config={"app_dir": str(project), "model": "explicit"}).config
    assert config.model == "explicit"
    stock = write_project(tmp_path / "stock", llm_server.base_url, **{"llm.api_key": ""})  # TaskWeaver's stock file
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment-123")
    assert TaskWeaverApp(config={"app_dir": str(stock)}).config.api_key == "sk-from-the-environment-123"


def test_unsupported_values_are_named_and_bad_projects_refused(llm_server, tmp_path: Path) -> None:
    project = write_project(tmp_path, llm_server.base_url, **{"llm.api_type": "azure_ad",
                                                             "code_interpreter.code_verification_on": False})
    warning, = TaskWeaverApp(config={"app_dir": str(project)}).load_errors  # cwd is not above the project
    assert "llm.api_type=azure_ad" in warning and "code_verification_on=false (generated code is always verified" in warning
    azure = write_project(tmp_path / "azure", "https://myres.openai.azure.com",
                          **{"llm.api_type": "azure", "llm.api_version": "2024-06-01"})
    app = TaskWeaverApp(config={"app_dir": str(azure)})
    assert (app.config.azure_endpoint, app.config.azure_api_version) == ("https://myres.openai.azure.com", "2024-06-01")
    assert "llm.api_type" not in " ".join(app.load_errors) and "llm.api_version" not in " ".join(app.load_errors)
    with pytest.raises(TaskWeaverLabError, match="is not a folder: point it at a TaskWeaver project"):
        TaskWeaverApp(config={"app_dir": str(tmp_path / "nowhere")})
    with pytest.raises(TaskWeaverLabError, match="No taskweaver_config.json in"):
        TaskWeaverApp(config={"app_dir": str(project / "plugins")})
    (project / "taskweaver_config.json").write_text('{"llm.max_retries": "x",')
    with pytest.raises(TaskWeaverLabError, match="Cannot read .*taskweaver_config.json"):
        TaskWeaverApp(config={"app_dir": str(project)})
    (project / "taskweaver_config.json").write_text('{"llm.response_format": "yaml"}')
    with pytest.raises(TaskWeaverLabError, match="bad value for 'llm.response_format'"):
        TaskWeaverApp(config={"app_dir": str(project)})


def test_the_command_line_flag(llm_server, tmp_path: Path) -> None:
    project = write_project(tmp_path, llm_server.base_url)
    llm_server.add("tw-model", plan_reply("Hello from the project's model.", send_to="User", stop="Completed"))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    result = subprocess.run(["jupyter", "taskweaver", "run", "cli.ipynb", "-m", "hi",
                             f"--TaskWeaverLab.app_dir={project}"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello from the project's model."
    warnings = [line for line in result.stderr.splitlines() if "not supported here, ignored" in line]
    assert len(warnings) == 1 and "llm.embedding_model" in warnings[0]
    # run from the folder holding the project: generated code could rewrite it, and the user is told so
    assert f"The TaskWeaver project {project} is inside the folder Jupyter runs in" in result.stderr
    assert textwrap.dedent(API_KEY) not in result.stdout + result.stderr
