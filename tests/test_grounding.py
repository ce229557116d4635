"""Trustworthy answers (issue 10): results come from code that ran, figures are traced to their cells.

Unit tests of ``grounding.py`` on real steps, then the rules through the real loop (real kernel, real
notebook file, the scripted loopback LLM): a text reply is re-asked, an ungrounded figure is re-asked
then marked, the same failing code is refused, a NaN result is corrected, missing imports are added.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

from taskweaver_lab import TaskWeaverApp, grounding
from taskweaver_lab.agent import SAME_CODE, TEXT_REPLY
from taskweaver_lab.notebook import read_notebook, steps_from_notebook
from taskweaver_lab.steps import Answer, Execution, UserMessage
from taskweaver_lab.testing import code_reply, plan_reply

from conftest import agent_config


def _printed(text: str, step: int = 1) -> Execution:
    return Execution(ok=True, code="print(x)", outputs=({"output_type": "stream", "name": "stdout", "text": text},),
                     step=step, round=1, attempt=2, execution_count=7)


def test_figures_skip_single_digits_and_keep_decimals_thousands_and_percents() -> None:
    assert grounding.figures("In 3 steps: mean 12.35, total 1,234,567, share 25.3% and 42 rows (42 again).") == \
        ["12.35", "1,234,567", "25.3%", "42"]


def test_a_figure_matches_rounded_truncated_separated_and_percent_forms() -> None:
    history = [UserMessage("use a threshold of 0.75", 1), _printed("mean 12.3456\ntotal 1234567\nshare 0.2531\n")]
    found = grounding.check("Mean 12.35 (or 12.34), total 1,234,567, share 25.3%, threshold 0.75.", history, 1)
    assert not found.ungrounded
    by_figure = {s.figure: s for s in found.sources}
    assert by_figure["12.35"].origin == "cell" and (by_figure["12.35"].step, by_figure["12.35"].attempt) == (1, 2)
    assert by_figure["0.75"].origin == "user"


def test_a_figure_nobody_printed_is_ungrounded_and_marked() -> None:
    history = [UserMessage("mean please", 1), _printed("mean 12.3456\n")]
    found = grounding.check("The mean is 12.35 and the median is 11.9.", history, 1)
    assert found.ungrounded == ("11.9",)
    assert grounding.mark("The mean is 12.35 and the median is 11.9.", found.ungrounded) == \
        "The mean is 12.35 and the median is 11.9 (not computed)."
    assert "11.9" in grounding.problem("The median is 11.9.", history, 1)


def test_figures_from_another_round_or_a_failed_run_do_not_ground() -> None:
    old = Execution(ok=True, code="print(1)", outputs=({"output_type": "stream", "name": "stdout", "text": "55.5"},), round=0)
    failed = Execution(ok=False, code="x", outputs=({"output_type": "stream", "name": "stdout", "text": "66.6"},), round=1)
    assert grounding.check("55.5 and 66.6", [old, failed], 1).ungrounded == ("55.5", "66.6")


# --- through the loop --------------------------------------------------------------------------------
def _answer_cells(path: Path) -> list[dict]:
    return [c.metadata["taskweaver_lab"]["data"] for c in nbformat.read(path, 4).cells
            if c.metadata.get("taskweaver_lab", {}).get("kind") == "answer"]


def test_a_text_reply_is_sent_back_for_code_and_never_passed_on_as_a_result(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Compute the total of the 'units' column of sales.csv."))
    llm_server.add("coder", "The total of units is 99999.")  # plain text: an invented figure
    llm_server.add("coder", code_reply("import pandas as pd\nprint(pd.read_csv('sales.csv')['units'].sum())"))
    llm_server.add("planner", plan_reply("The total is 16250.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "text.ipynb") as session:
        answer = session.chat("total units")
    first, second = [r for r in llm_server.requests if r["model"] == "coder"]
    assert "response_format" not in first  # Markdown first; after prose, JSON constrained to python content
    assert second["response_format"]["json_schema"]["schema"]["properties"]["reply_type"]["enum"] == ["python"]
    second_coder_prompt = second["messages"]
    assert second_coder_prompt[-1]["content"] == TEXT_REPLY
    assert "99999" not in json.dumps(second_coder_prompt)  # the prose is not shown again (small models copy it)
    assert answer.text == "The total is 16250." and not answer.ungrounded
    assert [s.figure for s in answer.sources] == ["16250"] and answer.sources[0].origin == "cell"
    assert "99999" not in json.dumps([r["messages"] for r in llm_server.requests if r["model"] == "planner"])


def test_a_step_that_never_ran_code_fails_honestly(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Compute the mean fare."))
    llm_server.add("coder", *["The mean fare is 12.34."] * 2)
    llm_server.add("planner", plan_reply("I could not compute the mean fare.", send_to="User", stop="TaskFailure"))
    app = TaskWeaverApp(config=agent_config(llm_server, max_attempts=2))
    with app.create_session(notebook=workspace / "never.ipynb") as session:
        session.chat("mean fare")
        failed = [s for s in session.history if isinstance(s, Execution)]
    assert len(failed) == 1 and not failed[0].ok and "Nothing was computed" in failed[0].summary
    assert "12.34" not in failed[0].summary


def test_an_ungrounded_figure_gets_one_re_ask_then_is_marked_not_computed(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Print the total of the 'units' column of sales.csv."))
    llm_server.add("coder", code_reply("import pandas as pd\nprint('total', pd.read_csv('sales.csv')['units'].sum())"))
    invented = plan_reply("The total is 16250 and the average is 812.5.", send_to="User", stop="Completed")
    llm_server.add("planner", invented, invented)
    app = TaskWeaverApp(config=agent_config(llm_server))
    notebook = workspace / "ground.ipynb"
    with app.create_session(notebook=notebook) as session:
        answer = session.chat("total and average units")
    reask = llm_server.requests[-1]["messages"][-1]["content"]
    assert "812.5" in reask and "no code in this round printed" in reask and "16250" not in reask
    assert answer.text == "The total is 16250 and the average is 812.5 (not computed)."
    assert answer.ungrounded == ("812.5",) and [s.figure for s in answer.sources] == ["16250"]
    recorded = _answer_cells(notebook)[-1]  # the record keeps the grounding, and a resume reads it back
    assert recorded["ungrounded"] == ["812.5"] and recorded["sources"][0]["step"] == 1
    resumed = [s for s in steps_from_notebook(read_notebook(notebook))[1] if isinstance(s, Answer)][-1]
    assert resumed.sources == answer.sources


def test_the_same_failing_code_is_refused_before_it_runs(llm_server, workspace: Path) -> None:
    broken = code_reply("import pandas as pd\nprint(pd.read_csv('sales.csv')['amount'].sum())")
    llm_server.add("planner", plan_reply("Print the total of the 'units' column of sales.csv."))
    llm_server.add("coder", broken, broken, code_reply("import pandas as pd\nprint(pd.read_csv('sales.csv')['units'].sum())"))
    llm_server.add("planner", plan_reply("The total is 16250.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "same.ipynb") as session:
        session.chat("total units")
        runs = [s for s in session.history if isinstance(s, Execution)]
    assert [r.ok for r in runs] == [False, True]  # the repeat never reached the kernel
    third = [r for r in llm_server.requests if r["model"] == "coder"][2]["messages"]
    assert SAME_CODE in third[-1]["content"]


def test_a_nan_result_is_corrected_like_an_error(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Print the mean of the 'units' column of sales.csv."))
    llm_server.add("coder", code_reply("import pandas as pd\ns = pd.read_csv('sales.csv')\nprint(s[s['units'] < 0]['units'].mean())"),
                   code_reply("import pandas as pd\nprint(pd.read_csv('sales.csv')['units'].mean())"))
    llm_server.add("planner", plan_reply("The mean is 169.27.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "nan.ipynb") as session:
        answer = session.chat("mean units")
        runs = [s for s in session.history if isinstance(s, Execution)]
    assert [r.ok for r in runs] == [False, True] and "empty or NaN" in runs[0].summary
    assert answer.text == "The mean is 169.27." and not answer.ungrounded


def test_conventional_imports_are_added_so_a_fresh_kernel_does_not_fail(llm_server, workspace: Path) -> None:
    llm_server.add("planner", plan_reply("Print the number of rows of sales.csv."))
    llm_server.add("coder", code_reply("print(len(pd.read_csv('sales.csv')))"))  # no import: NameError before
    llm_server.add("planner", plan_reply("There are 96 rows.", send_to="User", stop="Completed"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "imports.ipynb") as session:
        answer = session.chat("how many rows?")
        run = next(s for s in session.history if isinstance(s, Execution))
    assert run.ok and run.code.startswith("import pandas as pd\n")
    assert answer.sources and answer.sources[0].figure == "96"


def test_a_re_plan_that_repeats_the_failed_step_is_re_asked(llm_server, workspace: Path) -> None:
    failing = plan_reply("Print the total of the 'amount' column of sales.csv.")
    llm_server.add("planner", failing, failing,
                   plan_reply("sales.csv has no 'amount' column.", send_to="User", stop="TaskFailure"))
    llm_server.add("coder", code_reply("import pandas as pd\nprint(pd.read_csv('sales.csv')['amount'].sum())"))
    app = TaskWeaverApp(config=agent_config(llm_server, max_attempts=1))
    with app.create_session(notebook=workspace / "replan.ipynb") as session:
        answer = session.chat("total amount")
    assert [r["model"] for r in llm_server.requests] == ["planner", "coder", "planner", "planner"]
    assert "just failed" in llm_server.requests[-1]["messages"][-1]["content"]
    assert answer.stop == "TaskFailure" and "amount" in answer.text


def test_the_requested_output_format_is_re_asked_then_completed_from_printed_fields(llm_server, workspace: Path) -> None:
    request = "What are the total and the mean of units in sales.csv? Format: @total_units[value] @mean_units[value]"
    llm_server.add("planner", plan_reply("Print the total and the mean of the 'units' column of sales.csv."))
    llm_server.add("coder", code_reply("import pandas as pd\nunits = pd.read_csv('sales.csv')['units']\n"
                                       "print(f\"@total_units[{units.sum()}]\")\nprint('mean', units.mean())"))
    prose = plan_reply("The total is 16250 and the mean is 169.27.", send_to="User", stop="Completed")
    llm_server.add("planner", prose, prose)  # the format is dropped, even after the re-ask
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "format.ipynb") as session:
        answer = session.chat(request)
    assert "@mean_units[value]" in llm_server.requests[-1]["messages"][-1]["content"]
    # Only the field some code printed in the asked form is completed; the mean is never re-formatted by us.
    assert answer.text == "The total is 16250 and the mean is 169.27.\n\n@total_units[16250]" and not answer.ungrounded


def test_a_round_ends_without_another_planner_call_once_code_printed_every_requested_field(
        llm_server, workspace: Path) -> None:
    request = "Total and maximum of units in sales.csv? Answer as @total_units[value] @max_units[value]"
    llm_server.add("planner", plan_reply("Load sales.csv.", plan=["Load sales.csv", "Compute the total and maximum"]))
    llm_server.add("coder", code_reply("import pandas as pd\nunits = pd.read_csv('sales.csv')['units']\n"
                                       "print(f'@total_units[{units.sum()}]')\nprint(f'@max_units[{units.max()}]')"))
    app = TaskWeaverApp(config=agent_config(llm_server))
    with app.create_session(notebook=workspace / "fields.ipynb") as session:
        answer = session.chat(request)
    assert [r["model"] for r in llm_server.requests] == ["planner", "coder"]
    assert answer.stop == "Completed" and answer.text.endswith("@total_units[16250]\n@max_units[281]")
    assert not answer.ungrounded and {s.figure for s in answer.sources} == {"16250", "281"}
    assert all(s.origin == "cell" and s.step == 1 for s in answer.sources)
    assert _answer_cells(workspace / "fields.ipynb")[-1]["text"] == answer.text


def test_printed_fields_end_the_round_only_when_every_requested_one_is_there() -> None:
    history = [UserMessage("Format: @mean[value] @median[value]", 1), _printed("@mean[12.5]\n")]
    assert grounding.fields_answer(history, 1) == ""
    history.append(_printed("@median[ 11 ]\n", step=2))
    assert grounding.fields_answer(history, 1) == "@mean[12.5]\n@median[11]"
    assert grounding.fields_answer([UserMessage("the mean please", 1), _printed("@mean[12.5]\n")], 1) == ""
    placeholder = [UserMessage("Format: @mean[value]", 1), _printed("@mean[value]\n")]
    assert grounding.fields_answer(placeholder, 1) == ""


def test_a_requested_field_nobody_printed_is_never_invented() -> None:
    history = [UserMessage("Format: @mean[value] @median[value]", 1), _printed("@mean[12.5]\n")]
    assert grounding.missing_fields("The mean is 12.5.", history, 1) == ["mean", "median"]
    assert grounding.complete_format("The mean is 12.5.", history, 1) == "The mean is 12.5.\n\n@mean[12.5]"
    assert "@median[value]" in grounding.format_problem("The mean is 12.5.", history, 1)
