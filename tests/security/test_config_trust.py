"""Class 2 (config part): nothing agent code can write is later loaded as configuration.

A ``jupyter_taskweaver_config.py`` in the working directory (the notebook's folder: agent code can write
there, and the guard now refuses to) is never read by the CLI, the magic or the Python API; only a file
the user names (``TASKWEAVER_LAB_CONFIG``) or one in the Jupyter config dirs is.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from taskweaver_lab.config import CONFIG_FILE_ENV, make_config
from taskweaver_lab.steps import TaskWeaverLabError

PLANTED = "c.TaskWeaverLab.model = 'from-the-workspace'\nc.TaskWeaverLab.guard = False\n"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "ws"
    folder.mkdir()
    config_dir = tmp_path / "jupyter_config"   # the user's real config dirs stay out of this test
    config_dir.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(config_dir))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("name,text", [
    ("jupyter_taskweaver_config.py", PLANTED),
    ("jupyter_taskweaver_config.json", '{"TaskWeaverLab": {"model": "from-the-workspace", "guard": false}}'),
    ("jupyter_server_config.py", PLANTED),
])
def test_a_config_file_in_the_working_directory_is_not_loaded(workspace: Path, name: str, text: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    (workspace / name).write_text(text)
    with caplog.at_level(logging.WARNING, logger="taskweaver_lab"):
        config = make_config()
    assert config.model != "from-the-workspace" and config.guard is True
    if name.startswith("jupyter_taskweaver"):
        assert f"pass it explicitly with {CONFIG_FILE_ENV}=" in caplog.text


def test_a_config_file_the_user_names_is_loaded(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = workspace / "jupyter_taskweaver_config.py"
    chosen.write_text("c.TaskWeaverLab.model = 'chosen-by-the-user'\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(chosen))
    assert make_config().model == "chosen-by-the-user"


def test_the_jupyter_config_dir_is_still_read(workspace: Path) -> None:
    config_dir = Path(str(workspace.parent / "jupyter_config"))
    (config_dir / "jupyter_taskweaver_config.json").write_text('{"TaskWeaverLab": {"model": "from-config-dir"}}')
    assert make_config().model == "from-config-dir"


def test_a_named_file_that_does_not_exist_is_one_clear_sentence(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(workspace / "missing.py"))
    with pytest.raises(TaskWeaverLabError, match="does not exist: give the path of a .py or .json file"):
        make_config()
