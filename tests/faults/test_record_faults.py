"""Faults of the notebook record (issue 12 items 6-9, 13, 14, 15, 16; issue 13's incremental writes), each
through real parts: a real kernel, the scripted loopback LLM server, real files made read-only, corrupt or
full (a small tmpfs when root), two real processes. Each asserts the message the user sees and that nothing
that could be kept was lost."""
from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_output

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.notebook import INTERRUPTED, cell_for, read_notebook
from taskweaver_lab.record_io import FileRecorder, cell_text, document_text
from taskweaver_lab.steps import Answer, Execution, Notice, Plan, Step, TaskWeaverLabError, UserMessage
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY, agent_config

ROOT = os.geteuid() == 0


def answer_directly(server: Any, *texts: str) -> None:
    for text in texts:
        server.add("planner", plan_reply(text, send_to="User", stop="Completed"))


def one_step(server: Any, code: str, answer: str = "Done.") -> None:
    server.add("planner", plan_reply("Run the code."), plan_reply(answer, send_to="User", stop="Completed"))
    server.add("coder", code_reply(code))


def warnings(events: list[Step]) -> list[str]:
    return [e.text for e in events if isinstance(e, Notice) and e.level == "warning"]


def kinds(path: Path) -> list[str]:
    return [c.metadata["taskweaver_lab"].get("kind", "code") for c in nbformat.read(path, 4).cells]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@contextlib.contextmanager
def small_fs(where: Path, size: str = "64k") -> Iterator[Path]:
    """A real, small file system (tmpfs) at ``where``: only for root."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# --- item 8: permissions ------------------------------------------------------------------------
def test_a_write_keeps_the_notebooks_mode(llm_server, workspace: Path) -> None:
    answer_directly(llm_server, "Hello.", "Hello again.")
    notebook = workspace / "shared.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    os.chmod(notebook, 0o664)  # group-writable, as a team shares it
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
        session.chat("hi")
        assert stat.S_IMODE(notebook.stat().st_mode) == 0o664
        session.chat("hi again")
    assert stat.S_IMODE(notebook.stat().st_mode) == 0o664
    assert kinds(notebook) == ["user", "answer"] * 2


def test_a_read_only_notebook_is_not_replaced_and_the_answer_still_comes(llm_server, workspace: Path) -> None:
    answer_directly(llm_server, "First answer.", "Second answer.", "Third answer.")
    notebook = workspace / "ro.ipynb"
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
        session.chat("first")
        os.chmod(notebook, 0o444)
        before = notebook.read_bytes()
        events: list[Step] = []
        answer = session.chat("second", on_event=events.append)
        assert answer.text == "Second answer."
        said = warnings(events)
        assert len(said) == 1 and "is read-only, so it was not changed" in said[0] and "chmod u+w" in said[0]
        assert notebook.read_bytes() == before and stat.S_IMODE(notebook.stat().st_mode) == 0o444
        assert leftovers(workspace) == []
        os.chmod(notebook, 0o644)  # the user makes it writable: the next step writes what was held back
        session.chat("third", on_event=events.append)
    assert kinds(notebook) == ["user", "answer"] * 3
    assert any("is written again" in e.text for e in events if isinstance(e, Notice))


# --- item 14: write errors ------------------------------------------------------------------------
def test_a_read_only_folder_shows_the_answer_and_says_the_record_was_not_written(llm_server, tmp_path: Path) -> None:
    answer_directly(llm_server, "The answer.")
    folder = tmp_path / "ro"
    with contextlib.ExitStack() as stack:
        if ROOT:  # root writes through any mode bits: a read-only file system is what refuses root
            stack.enter_context(small_fs(folder, "1m"))
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            folder.mkdir()
            os.chmod(folder, 0o555)
            stack.callback(os.chmod, folder, 0o755)
        events: list[Step] = []
        with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=folder / "r.ipynb") as session:
            answer = session.chat("question", on_event=events.append)
        assert answer.text == "The answer." and not answer.stop == "TaskFailure"
        said = warnings(events)
        assert len(said) == 1 and said[0].startswith(f"Could not write the record {folder / 'r.ipynb'}")
        assert "the chat keeps it" in said[0]
        assert list(folder.iterdir()) == []  # no notebook, no .tmp
        assert [type(s).__name__ for s in session.history] == ["UserMessage", "Plan", "Answer"]


@pytest.mark.skipif(not ROOT, reason="a full disk needs a small tmpfs, which only root can mount here")
def test_a_full_disk_keeps_the_cells_and_writes_them_when_there_is_room(llm_server, tmp_path: Path) -> None:
    answer_directly(llm_server, "One.", "Two.", "Three.")
    with small_fs(tmp_path / "small") as folder:
        notebook = folder / "full.ipynb"
        events: list[Step] = []
        with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
            session.chat("one", on_event=events.append)
            filler = folder / "filler"
            with contextlib.suppress(OSError), open(filler, "wb") as handle:
                while True:
                    handle.write(b"x" * 1024)
                    handle.flush()
            before = notebook.read_bytes()
            answer = session.chat("two", on_event=events.append)
            assert answer.text == "Two."
            said = warnings(events)
            assert len(said) == 1 and "No space left on device" in said[0] and "Free some disk space." in said[0]
            assert notebook.read_bytes() == before and leftovers(folder) == []
            filler.unlink()
            session.chat("three", on_event=events.append)
        assert kinds(notebook) == ["user", "answer"] * 3  # round two was held back, not lost
        nbformat.validate(nbformat.read(notebook, 4))


# --- item 9: corrupt notebook, hand-edited metadata ------------------------------------------------
def test_corrupt_notebook_json_names_the_file_and_what_is_wrong(llm_server, workspace: Path) -> None:
    notebook = workspace / "broken.ipynb"
    notebook.write_text('{"cells": [\n  {"cell_type": "markdown", "source": "hi"\n')  # cut off mid-way
    with pytest.raises(TaskWeaverLabError) as caught:
        TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook)
    assert str(notebook) in str(caught.value) and "is not valid JSON (line 3" in str(caught.value)
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    result = subprocess.run([sys.executable, "-m", "taskweaver_lab.cli", "run", "broken.ipynb", "-m", "hi",
                             f"--TaskWeaverLab.base_url={llm_server.base_url}"], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "broken.ipynb is not valid JSON (line 3" in result.stderr and "Repair it" in result.stderr
    assert notebook.read_text().startswith('{"cells": [\n  {"cell_type"')  # left as it was
    assert llm_server.requests == []


def test_hand_edited_metadata_is_skipped_by_name_and_the_rest_resumes(llm_server, workspace: Path) -> None:
    answer_directly(llm_server, "The first answer.", "The second answer.", "The third answer.")
    notebook = workspace / "edited.ipynb"
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
        session.chat("first question")
        session.chat("second question")
    nb = nbformat.read(notebook, 4)
    nb.cells[0].metadata["taskweaver_lab"]["data"] = "garbage"           # round 1's request
    nb.cells[1].metadata["taskweaver_lab"]["data"]["round"] = "one"       # round 1's answer
    nbformat.write(nb, notebook)
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as resumed:
        said = [n.text for n in resumed.setup_notices]
        assert len(said) == 1 and said[0].startswith("edited.ipynb: skipped 2 cell(s)")
        assert "cell 1: metadata.taskweaver_lab.data is str 'garbage'" in said[0] and "(and 1 more)" in said[0]
        assert [s.text for s in resumed.history if isinstance(s, UserMessage)] == ["second question"]
        answer = resumed.chat("third question")
    assert answer.text == "The third answer."
    assert "second question" in json.dumps(llm_server.requests[-1]["messages"])


# --- item 15: two writers ----------------------------------------------------------------------------
WRITER = """
import sys
from nbformat.v4 import new_markdown_cell
from taskweaver_lab.record_io import FileRecorder
recorder = FileRecorder(sys.argv[1])
for n in range(int(sys.argv[3])):
    cell = new_markdown_cell(f"{sys.argv[2]} {n}")
    cell.metadata["taskweaver_lab"] = {"session": sys.argv[2], "round": n, "kind": "answer", "data": {}}
    recorder.add_cell(cell)
"""


def test_two_writer_processes_on_one_notebook_lose_no_cell(tmp_path: Path) -> None:
    notebook = tmp_path / "two.ipynb"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(notebook), name, "60"]) for name in ("a", "b")]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    texts = sorted("".join(c.source) for c in nbformat.read(notebook, 4).cells)
    assert texts == sorted(f"{name} {n}" for name in ("a", "b") for n in range(60))
    assert leftovers(tmp_path) == []


def test_two_cli_runs_on_one_notebook_keep_both_records(llm_server, workspace: Path) -> None:
    answer_directly(llm_server, *[f"Answer {n}." for n in range(8)])
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    runs = [subprocess.Popen(["jupyter", "taskweaver", "run", "same.ipynb", "--new", *sum((["-m", f"{who} {n}"] for n in range(4)), []),
                              f"--TaskWeaverLab.base_url={llm_server.base_url}", "--TaskWeaverLab.planner_model=planner"],
                             cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for who in ("left", "right")]
    results = [r.communicate(timeout=300) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], results
    cells = nbformat.read(workspace / "same.ipynb", 4).cells
    asked = sorted(c.metadata["taskweaver_lab"]["data"]["text"] for c in cells if c.metadata["taskweaver_lab"].get("kind") == "user")
    assert asked == sorted(f"{who} {n}" for who in ("left", "right") for n in range(4))
    assert sum(c.metadata["taskweaver_lab"].get("kind") == "answer" for c in cells) == 8


# --- item 7: unbounded output ----------------------------------------------------------------------
def test_a_flood_of_output_is_capped_in_the_record_and_on_the_wire(llm_server, workspace: Path) -> None:
    one_step(llm_server, "for i in range(200000):\n    print(f'line {i:06d} ' + 'x' * 20)", "Printed.")
    notebook = workspace / "flood.ipynb"
    events: list[Step] = []
    with TaskWeaverApp(config=agent_config(llm_server, max_output_chars=20_000)).create_session(notebook=notebook) as s:
        s.chat("print a lot", on_event=events.append)
    execution = next(e for e in events if isinstance(e, Execution))
    text = execution.outputs[0]["text"]
    assert len(text) < 21_000 and "line 000000" in text and "line 199999" in text
    assert "characters of this output were cut here" in text and "TaskWeaverLab.max_output_chars" in text
    assert notebook.stat().st_size < 60_000  # 5.8 MB were printed
    recorded = next(c for c in nbformat.read(notebook, 4).cells if c.cell_type == "code")
    assert "".join(recorded.outputs[0]["text"]) == text


# --- item 6: resume replays only what can rebuild the kernel, within a budget ------------------------
def recorded(code: str, ok: bool = True, interrupted: bool = False, error: bool = False) -> Any:
    outputs = ({"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []},) if error else ()
    return cell_for(Execution(ok=ok, code=code, outputs=outputs, interrupted=interrupted, round=1), "s1")


def record_file(path: Path, *cells: Any) -> None:
    nb = read_notebook(path)
    nb.cells.append(cell_for(UserMessage("work", 1), "s1"))
    nb.cells.extend(cells)
    nb.cells.append(cell_for(Answer("Done.", round=1), "s1"))
    nbformat.write(nb, path)


def test_resume_skips_failed_and_interrupted_cells_and_shows_progress(llm_server, workspace: Path) -> None:
    notebook = workspace / "resume.ipynb"
    user_failed = new_code_cell("open('user_cell_ran', 'w').close()\n1/0")
    user_failed.outputs = [new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]
    record_file(notebook, recorded("a = 1"), recorded("open('failed_ran', 'w').close()\n1/0", ok=False, error=True),
                recorded("open('runaway_ran', 'w').close()\nwhile True:\n    pass", ok=False, interrupted=True),
                user_failed, recorded("b = a + 1"))
    events: list[Step] = []
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook, on_event=events.append) as s:
        state = s.executor.execute("print(a, b)", agent=False)
    assert state.outputs[0]["text"] == "1 2\n"
    progress = [e.text for e in events if isinstance(e, Notice) and e.level == "info"]
    assert progress[0] == ("Resuming resume.ipynb: re-running 2 recorded code cell(s) to rebuild the kernel's variables "
                           "(at most 120 s in all, TaskWeaverLab.resume_timeout); 3 that failed or were interrupted "
                           "are not re-run.")
    assert progress[1:] == ["Re-running cell 1 of 2.", "Re-running cell 2 of 2.", "Resumed resume.ipynb: 2 cell(s) re-run."]
    assert not any((workspace / name).exists() for name in ("failed_ran", "runaway_ran", "user_cell_ran"))


def test_resume_stops_replaying_when_its_time_budget_is_used_up(llm_server, workspace: Path) -> None:
    notebook = workspace / "slow.ipynb"
    record_file(notebook, recorded("import time\nfirst = 1\ntime.sleep(600)"), recorded("second = 2"))
    config = agent_config(llm_server, resume_timeout=3)
    with TaskWeaverApp(config=config).create_session(notebook=notebook) as session:
        said = [n.text for n in session.setup_notices]
        state = session.executor.execute("print('first' in globals(), 'second' in globals())", agent=False)
    assert len(said) == 1 and said[0].startswith("Stopped re-running the record at cell 1 of 2: cell 1 ran past its time")
    assert "cells 1 to 2 are missing" in said[0]
    assert state.ok and state.outputs[0]["text"] == "True False\n"  # the kernel is usable, the cut is honest


# --- issue 12 item 13: an unfinished round is marked interrupted on resume ----------------------------
def test_an_unfinished_last_round_is_marked_interrupted_on_resume(llm_server, workspace: Path) -> None:
    notebook = workspace / "cut.ipynb"
    nb = read_notebook(notebook)
    nb.cells += [cell_for(UserMessage("first", 1), "s1"), cell_for(Answer("First done.", round=1), "s1"),
                 cell_for(UserMessage("second", 2), "s1"),
                 cell_for(Plan("Compute it.", "CodeInterpreter", ("compute it",), round=2), "s1")]
    nbformat.write(nb, notebook)  # the process was killed here: no answer to round 2
    answer_directly(llm_server, "Third done.")
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
        said = [n.text for n in session.setup_notices]
        assert said == ["cut.ipynb: round 2 never finished (the session ended while it ran); it is marked interrupted."]
        assert isinstance(session.history[-1], Answer) and session.history[-1].text == INTERRUPTED
        session.chat("third")
    assert kinds(notebook) == ["user", "answer", "user", "plan", "answer", "user", "answer"]
    cells = nbformat.read(notebook, 4).cells
    assert cells[4].metadata["taskweaver_lab"]["data"]["text"] == INTERRUPTED
    assert cells[5].metadata["taskweaver_lab"]["round"] == 3


# --- item 16: a huge message ----------------------------------------------------------------------
def test_a_huge_message_is_refused_clearly_and_does_not_poison_the_session(llm_server, workspace: Path) -> None:
    answer_directly(llm_server, "Small answer.")
    notebook = workspace / "huge.ipynb"
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
        with pytest.raises(TaskWeaverLabError) as caught:
            session.chat("x" * 1_000_000)
        assert str(caught.value).startswith("The message is 1,000,000 characters long; the limit is 32,000 "
                                            "(TaskWeaverLab.max_message_chars).")
        assert session.history == [] and llm_server.requests == []
        assert session.chat("a small question").text == "Small answer."
    assert kinds(notebook) == ["user", "answer"]


# --- issue 13: incremental writes, same bytes as nbformat -------------------------------------------
def test_incremental_writes_give_the_bytes_nbformat_writes(tmp_path: Path) -> None:
    recorder = FileRecorder(tmp_path / "inc.ipynb")
    steps = [UserMessage("héllo\nsecond line", 1), Plan("Do it.", "CodeInterpreter", ("do it",), round=1),
             Execution(ok=True, code="x = 1\nx", outputs=({"output_type": "execute_result", "execution_count": 1,
                                                          "data": {"text/plain": "1"}, "metadata": {}},), round=1),
             Answer("It is 1.", round=1)]
    for step in steps:
        recorder.add_cell(cell_for(step, "s1"))
    nb = nbformat.read(tmp_path / "inc.ipynb", 4)
    nbformat.validate(nb)
    assert (tmp_path / "inc.ipynb").read_text() == nbformat.writes(nb) + "\n"
    assert document_text([cell_text(c) for c in nb.cells], nb) == nbformat.writes(nb) + "\n"


def test_a_writer_placing_its_cells_itself_keeps_another_writers_cells(tmp_path: Path) -> None:
    """``FileRecorder.update``: the read-change-write under the lock (e.g. a cell below an anchor) builds on
    what another process wrote since, and loses nothing of it."""
    notebook = tmp_path / "anchored.ipynb"
    first = FileRecorder(notebook)
    first.add_cell(cell_for(UserMessage("mine", 1), "s1"))
    first.flush()
    other = subprocess.run([sys.executable, "-c", WRITER, str(notebook), "other", "3"], timeout=120)
    assert other.returncode == 0
    first.update(lambda nb: nb.cells.insert(1, nbformat.from_dict(cell_for(Answer("placed", round=1), "s1"))))
    texts = ["".join(c.source) for c in nbformat.read(notebook, 4).cells]
    assert texts == ["**You:** mine", "**TaskWeaver:** placed", "other 0", "other 1", "other 2"]


def test_the_cli_shows_resume_progress_as_it_happens(llm_server, workspace: Path) -> None:
    record_file(workspace / "progress.ipynb", recorded("a = 1"), recorded("1/0", ok=False, error=True))
    answer_directly(llm_server, "Resumed.")
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    result = subprocess.run(["jupyter", "taskweaver", "run", "progress.ipynb", "-m", "go on",
                             f"--TaskWeaverLab.base_url={llm_server.base_url}", "--TaskWeaverLab.planner_model=planner"],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[:3] == ["taskweaver: Resuming progress.ipynb: re-running 1 recorded code cell(s) to rebuild the kernel's "
                         "variables (at most 120 s in all, TaskWeaverLab.resume_timeout); 1 that failed or were "
                         "interrupted are not re-run.",
                         "taskweaver: Re-running cell 1 of 1.", "taskweaver: Resumed progress.ipynb: 1 cell(s) re-run."]
    assert result.stdout.strip() == "Resumed."
