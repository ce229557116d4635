"""Examples: TaskWeaver example YAMLs load unchanged, are selected by relevance, round-trip from our steps."""
from __future__ import annotations

import json
from pathlib import Path

from taskweaver_lab.examples import Example, ExampleTurn, example_to_yaml, load_examples, select_examples
from taskweaver_lab.steps import Answer, Draft, Execution, Plan, UserMessage, Verdict, Violation

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "examples"


def _load() -> list[Example]:
    examples, errors = load_examples([str(FIXTURES)])
    assert errors == []
    return examples


def test_fixtures_load_and_disabled_ones_are_skipped() -> None:
    examples = _load()
    roles = sorted((Path(e.source_path).name, e.role) for e in examples)
    assert roles == [
        ("example-code-legacy.yaml", "code_generator"),
        ("example-code-plot.yaml", "code_generator"),
        ("example-planner-anomaly.yaml", "planner"),
        ("example-planner-csv.yaml", "planner"),
    ]


def test_planner_turns_use_taskweaver_field_names() -> None:
    example = next(e for e in _load() if e.source_path.endswith("example-planner-anomaly.yaml"))
    assert [t.role for t in example.turns] == ["user", "planner", "result", "planner"]
    first, last = (json.loads(t.text) for t in example.turns if t.role == "planner")
    assert list(first) == ["init_plan", "plan", "current_plan_step", "send_to", "message", "stop"]
    assert first["send_to"] == "CodeInterpreter" and first["stop"] == "InProcess"  # default when absent
    assert "<interactively depends on 1>" in first["init_plan"]
    assert last["send_to"] == "User" and last["stop"] == "Clarification"
    assert example.turns[2].text == "df has 480 rows; columns ts (str), val (float64)"


def test_code_turns_new_and_legacy_formats() -> None:
    examples = {Path(e.source_path).name: e for e in _load()}
    plot = examples["example-code-plot.yaml"].turns
    assert [t.role for t in plot] == ["planner", "code", "result"]
    assert plot[1].reply_type == "python" and plot[1].text.startswith("import pandas as pd")
    assert plot[1].thought == "CodeInterpreter will group revenue by month and draw a line chart."
    assert plot[2].text == "<Axes title Monthly revenue>"
    legacy = examples["example-code-legacy.yaml"].turns
    assert [(t.role, t.reply_type) for t in legacy] == [
        ("planner", "python"), ("code", "text"), ("planner", "python"), ("code", "python"), ("result", "python")]
    assert legacy[1].text.startswith("Hello!") and legacy[3].text.startswith("import numpy as np")


def test_select_by_relevance_and_role() -> None:
    examples = _load()
    best = select_examples(examples, "planner", "count the rows of data.csv")
    assert [Path(e.source_path).name for e in best] == ["example-planner-csv.yaml"]
    best = select_examples(examples, "planner", "find anomalies in the time_series table")
    assert [Path(e.source_path).name for e in best] == ["example-planner-anomaly.yaml"]
    best = select_examples(examples, "code_generator", "draw a line chart of revenue", limit=1)
    assert [Path(e.source_path).name for e in best] == ["example-code-plot.yaml"]
    # Nothing in common: still one example, because an example also teaches the reply format.
    assert len(select_examples(examples, "code_generator", "zzz qqq", limit=1)) == 1
    assert len(select_examples(examples, "planner", "anything", limit=5)) == 2


def test_errors_name_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "no_rounds.yaml").write_text("enabled: true\n")
    (tmp_path / "bad_post.yaml").write_text(
        "rounds:\n  - user_query: hi\n    post_list:\n      - message: hi\n        send_to: Planner\n")
    (tmp_path / "bad_yaml.yaml").write_text("rounds: [\n")
    (tmp_path / "bad_attachment.yaml").write_text(
        "rounds:\n  - post_list:\n      - {message: hi, send_from: User, send_to: Planner,"
        " attachment_list: [{content: x}]}\n")
    examples, errors = load_examples([str(tmp_path), str(tmp_path / "missing")])
    assert examples == []
    joined = "\n".join(errors)
    assert any("no_rounds.yaml: field 'rounds'" in e for e in errors), joined
    assert any("bad_post.yaml: field 'rounds[0].post_list[0].send_from'" in e for e in errors), joined
    assert any("bad_yaml.yaml" in e and "not valid YAML" in e for e in errors), joined
    assert any("bad_attachment.yaml: field 'rounds[0].post_list[0].attachment_list[0]'" in e for e in errors), joined
    assert any("missing: example directory not found" in e for e in errors), joined


def _anomaly_rounds() -> list[list]:
    plan_1 = Plan(message="Pull time_series from anomaly.db and show its columns", send_to="CodeInterpreter",
                  plan=("pull the data and show its columns", "ask the user which columns to use"),
                  init_plan=("pull the data", "ask the user <interactively depends on 1>"),
                  current_step=1, reasoning="The columns are unknown.", round=1)
    code = 'df, d = sql_pull_data("SELECT * FROM time_series", "anomaly.db")\nprint(d)'
    failed = Execution(ok=False, code=code, error="FileNotFoundError: anomaly.db", attempt=1, round=1)
    worked = Execution(ok=True, code=code, summary="Pulled 480 rows and 2 columns. Columns: ts, val", attempt=2, round=1)
    ask = Plan(message="Which columns hold the time and the value?", send_to="User", stop="Clarification",
               plan=plan_1.plan, current_step=2, round=1)
    round_1 = [UserMessage("detect anomalies in anomaly.db", 1), plan_1,
               Draft(thought="Open the file myself.", code="import os\nos.remove('x')", round=1),
               Verdict(ok=False, violations=(Violation("blocked-function", 2, "os.remove is not allowed"),)),
               Draft(thought="Pull the table first.", code=code, attempt=2, round=1), failed,
               Draft(thought="Pull the table.", code=code, attempt=3, round=1), worked, ask,
               Answer("Which columns hold the time and the value?", is_question=True, stop="Clarification", round=1)]
    round_2 = [UserMessage("use ts and val", 2),
               Execution(ok=True, code="anomaly_detection(df, 'ts', 'val')", summary="There are 7 anomalies", round=2),
               Answer("There are 7 anomalies.", round=2)]
    return [round_1, round_2]


def test_planner_example_round_trips(tmp_path: Path) -> None:
    (tmp_path / "saved.yaml").write_text(example_to_yaml("planner", _anomaly_rounds()))
    (example,), errors = load_examples([str(tmp_path)])
    assert errors == [] and example.role == "planner"
    assert [t.role for t in example.turns] == ["user", "planner", "result", "planner", "user", "result", "planner"]
    first = json.loads(example.turns[1].text)
    assert first["plan_reasoning"] == "The columns are unknown."
    assert first["plan"] == "1. pull the data and show its columns\n2. ask the user which columns to use"
    assert first["current_plan_step"] == "1. pull the data and show its columns"
    assert example.turns[2].text == "Pulled 480 rows and 2 columns. Columns: ts, val"  # last attempt only
    ask = json.loads(example.turns[3].text)
    assert (ask["send_to"], ask["stop"], ask["message"]) == ("User", "Clarification", "Which columns hold the time and the value?")
    final = json.loads(example.turns[6].text)
    assert (final["message"], final["stop"]) == ("There are 7 anomalies.", "Completed")


def test_code_example_round_trips(tmp_path: Path) -> None:
    text = example_to_yaml("code_generator", _anomaly_rounds()[:1])
    assert "type: code_error" in text and "content: |-\n" in text  # the rejection is kept; code is a block
    (tmp_path / "saved.yaml").write_text(text)
    (example,), errors = load_examples([str(tmp_path)])
    assert errors == [] and example.role == "code_generator"
    assert [t.role for t in example.turns] == ["planner", "code", "code", "result", "code", "result"]
    assert example.turns[0].text == "Pull time_series from anomaly.db and show its columns"
    assert example.turns[1].text == "import os\nos.remove('x')"  # rejected: no result turn
    assert example.turns[4] == ExampleTurn(
        "code", 'df, d = sql_pull_data("SELECT * FROM time_series", "anomaly.db")\nprint(d)', "Pull the table.", "python")
    assert example.turns[3].text == "FileNotFoundError: anomaly.db"
    assert example.turns[5].text == "Pulled 480 rows and 2 columns. Columns: ts, val"
