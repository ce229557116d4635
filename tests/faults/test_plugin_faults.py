"""Plugin faults (issue 12 items 10 and 11): list settings on the magic line, a plugin whose file raises on
import, a YAML that does not match its function. Real kernels, the real CLI, the scripted loopback LLM."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from test_magic import kernel_factory, text_of  # noqa: F401  (a fixture: real kernels with the magic loaded)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tw_plugins"


def test_magic_line_takes_list_settings(kernel_factory: Any, llm_server: ScriptedLLMServer,  # noqa: F811
                                        workspace: Path) -> None:
    shutil.copytree(FIXTURES / "shout", workspace / "loud plugins")
    (workspace / "counting").mkdir()
    for name in ("word_stats.py", "word_stats.yaml"):
        shutil.copy(FIXTURES / name, workspace / "counting" / name)
    llm_server.add("planner", plan_reply("Upper-case 'hi' with shout and count 'a b c' with word_stats."),
                   plan_reply("HI and 3 words.", send_to="User", stop="Completed"))
    llm_server.add("coder", code_reply("print(shout('hi'), word_stats('a b c')[0])"))
    kernel = kernel_factory(workspace, llm_server.base_url)
    reply, outputs = kernel.run('%%taskweaver --TaskWeaverLab.plugin_dirs="loud plugins" '
                                "--TaskWeaverLab.plugin_dirs=counting\nshout hi and count a b c")
    assert reply["status"] == "ok", text_of(outputs)
    coder_prompt = json.dumps(llm_server.requests[1]["messages"])
    assert "shout(text: str)" in coder_prompt and "word_stats(text: str)" in coder_prompt
    assert "HI 3" in text_of(outputs)
