"""Secrets: scrubbed kernel environments and redacted outputs."""
from __future__ import annotations

import json

from taskweaver_lab.config import DEFAULT_SCRUB_ENV
from taskweaver_lab.secrets import REDACTED, redact, scrubbed_env


def test_scrubbed_env_removes_default_secrets_and_keeps_the_rest() -> None:
    env = {"OPENAI_API_KEY": "sk-x", "AZURE_OPENAI_API_KEY": "a", "ANTHROPIC_API_KEY": "b", "JUPYTER_TOKEN": "t",
           "TASKWEAVER_LAB_SERVER_TOKEN": "s", "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    assert scrubbed_env(env, DEFAULT_SCRUB_ENV) == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    assert env["OPENAI_API_KEY"] == "sk-x"   # the input is not modified


def test_scrub_patterns_are_fnmatch_and_case_sensitive() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "k", "aws_secret_access_key": "lower", "MY_TOKEN": "t"}
    assert scrubbed_env(env, ["AWS_*", "*_TOKEN"]) == {"aws_secret_access_key": "lower"}


def test_redact_known_values_and_secret_shapes() -> None:
    text = ("key=sk-proj-AbCdEf0123456789xyzXYZ auth: Bearer eyJhbGciOi.abcdefghijklmnop "
            "aws AKIAIOSFODNN7EXAMPLE token 0123456789abcdef0123456789abcdef01234567 my-own-secret-value "
            "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789")
    out = redact(text, ["my-own-secret-value"])
    for leaked in ("sk-proj", "eyJhbGciOi", "AKIAIOSFODNN7EXAMPLE", "0123456789abcdef0123", "my-own-secret", "ghp_"):
        assert leaked not in out, out
    assert out.count(REDACTED) >= 6


def test_redact_leaves_ordinary_analysis_output_alone() -> None:
    text = ("mean revenue 1234.56, std 78.9; rows: 400; md5 900150983cd24fb0d6963f7d28e17f72; "
            "region north has 97 rows; date 2024-03-01T00:00:00; sk-learn is a nickname")
    assert redact(text) == text


def test_short_known_secrets_are_ignored_to_avoid_redacting_words() -> None:
    assert redact("the value is abc", ["abc"]) == "the value is abc"


def test_a_key_held_in_a_kernel_variable_never_reaches_the_variables_line_of_a_prompt(llm_server, workspace) -> None:
    """The configured key, in a shape the kernel cannot recognize as a credential, stored in a variable by
    code: the next Code Generator prompt lists the variable without the value."""
    from taskweaver_lab import TaskWeaverApp
    from taskweaver_lab.testing import code_reply, plan_reply

    from conftest import agent_config

    key = "plainwords-like-a-passphrase-417"
    plan = ["Keep the phrase", "Count the rows of sales.csv"]
    llm_server.add("planner", plan_reply("Keep the phrase.", plan=plan), plan_reply("Count the rows.", plan=plan, step=2),
                   plan_reply("Done.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply(f"kept_phrase = {key!r}"), code_reply("import pandas as pd\nlen(pd.read_csv('sales.csv'))"))
    with TaskWeaverApp(config=agent_config(llm_server, api_key=key)).create_session(notebook=workspace / "k.ipynb") as session:
        session.chat("keep it, then count")
    second = llm_server.calls("coder")[1]["messages"][-1]["content"]
    assert "kept_phrase" in second and key not in second
    assert key not in json.dumps(llm_server.requests)
