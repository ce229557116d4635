"""Every reply form of ARCHITECTURE A1, plus truncated and garbage replies."""
from __future__ import annotations

import json

import pytest

from taskweaver_lab.codegen import parse_draft
from taskweaver_lab.planner import parse_plan
from taskweaver_lab.replies import ReplyParseError

PLAN = {"plan_reasoning": "r", "init_plan": ["load", "mean <sequentially depends on 1>"], "plan": ["load and mean"],
        "current_plan_step": 1, "stop": "InProcess", "send_to": "CodeInterpreter", "message": "Load x.csv", "extra": 1}


@pytest.mark.parametrize("text", [
    json.dumps(PLAN),
    json.dumps({"response": PLAN}),
    "```json\n" + json.dumps(PLAN, indent=2) + "\n```",
    "<think>I should plan {carefully}.</think>\n" + json.dumps(PLAN),
    "Here is my plan:\n" + json.dumps({"response": PLAN}) + "\nThanks.",
    "<think>hmm</think>\nSure.\n```json\n" + json.dumps({"response": PLAN}) + "\n```",
])
def test_planner_forms(text: str) -> None:
    plan = parse_plan(text)
    assert (plan.message, plan.send_to, plan.plan, plan.current_step, plan.stop) == \
        ("Load x.csv", "CodeInterpreter", ("load and mean",), 1, "InProcess")
    assert plan.init_plan[1] == "mean <sequentially depends on 1>" and plan.reasoning == "r"


def test_planner_string_fields_and_defaults() -> None:
    plan = parse_plan(json.dumps({"plan": "1. load data\n2. compute mean", "init_plan": "1. load data\n2. compute mean",
                                  "current_plan_step": "2. compute mean", "send_to": "User", "message": "Done: 3.5"}))
    assert plan.plan == ("load data", "compute mean") and plan.current_step == 2
    assert plan.stop == "Completed" and not plan.is_question  # no stop given: an answer to the user completes
    question = parse_plan(json.dumps({"plan": ["a"], "current_plan_step": 1, "send_to": "User",
                                      "message": "Which column?", "stop": "Clarification"}))
    assert question.is_question


def test_planner_message_with_raw_newlines_inside_strings() -> None:
    assert parse_plan('{"plan": ["a"], "send_to": "User", "message": "line one\nline two", "stop": "Completed"}').message == "line one\nline two"


@pytest.mark.parametrize("text, error", [
    ('{"plan": ["load"], "send_to": "CodeInterpreter", "mess', "incomplete or malformed"),
    ("I will now analyze your data.", "no JSON object"),
    (json.dumps({"plan": ["x"], "send_to": "Bob", "message": "hi"}), '"send_to" must be'),
    (json.dumps({"plan": ["x"], "send_to": "User"}), 'no "message"'),
    ("", "no JSON object"),
])
def test_planner_bad_replies(text: str, error: str) -> None:
    with pytest.raises(ReplyParseError, match=error):
        parse_plan(text)


CODE = "import pandas as pd\ndf = pd.read_csv('x.csv')\ndf.describe()"
JSON_REPLY = {"thought": "Describe it.", "reply_type": "python", "reply_content": CODE}


@pytest.mark.parametrize("text", [
    json.dumps(JSON_REPLY),
    json.dumps({"response": JSON_REPLY}),
    "```json\n" + json.dumps(JSON_REPLY) + "\n```",
    "<think>the user wants stats</think>" + json.dumps(JSON_REPLY),
    "Describe it.\n```python\n" + CODE + "\n```",
    "<think>ok</think>\nDescribe it.\n\n```python\n" + CODE + "\n```\n",
    "Describe it.\n```py\n" + CODE + "\n```",
])
def test_code_forms(text: str) -> None:
    draft = parse_draft(text)
    assert draft.reply_type == "python" and draft.code == CODE and "Describe it." in draft.thought


def test_code_text_replies() -> None:
    assert parse_draft("The data has no date column, so no code is needed.").reply_type == "text"
    text = parse_draft(json.dumps({"thought": "t", "reply_type": "text", "reply_content": "No code needed."}))
    assert (text.reply_type, text.thought, text.code) == ("text", "No code needed.", "")


def test_code_split_blocks_run_in_order() -> None:
    draft = parse_draft("First:\n```python\na = 1\n```\nthen:\n```python\nb = a + 1\n```")
    assert draft.code == "a = 1\n\nb = a + 1"


@pytest.mark.parametrize("text, error", [
    ("Here:\n```python\nimport pandas as pd\ndf = pd.read_", "not closed"),
    ('{"thought": "t", "reply_type": "python", "reply_content": "print(1)', "incomplete or malformed"),
    ('{"thought": "t", "reply_type": "python", "reply_content": ""}', "has no code"),
])
def test_code_bad_replies(text: str, error: str) -> None:
    with pytest.raises(ReplyParseError, match=error):
        parse_draft(text)
