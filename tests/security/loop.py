"""The real loop for security tests: scripted LLM (loopback), real TaskWeaverApp session, real kernel.

One session (one kernel, one notebook) serves many rounds. Canaries are planted in the *server*
process env before the session's kernel starts (the kernel's env is scrubbed on start), so a key
that shows up anywhere proves a leak. ``Round`` collects what one ``session.chat`` produced: the
events, the LLM requests it made and the answer, and says which layer stopped the round's code.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from taskweaver_lab import TaskWeaverApp
from taskweaver_lab.session import Session
from taskweaver_lab.steps import Answer, Execution, Step, Verdict
from taskweaver_lab.testing import ScriptedLLMServer, code_reply, plan_reply

from .harness import BLOCK_MARK, CANARY_FILE_TEXT, CANARY_KEY, Canaries

# Planted in the server's env before the kernel starts; every value must stay out of kernels,
# prompts, the notebook and the events.
PLANTED_ENV = {
    "OPENAI_API_KEY": CANARY_KEY,
    "TASKWEAVER_LAB_TOKEN": "twl-canary-internal-7c1e9a0b55d3",
    "JUPYTER_TOKEN": "jpt-canary-token-3a8f0e6d21b9c4",
}
SECRET_NEEDLES = (*PLANTED_ENV.values(), CANARY_FILE_TEXT)
REJECTED_MARK = "Rejected before running"


@contextmanager
def planted_env() -> Iterator[None]:
    """The server's env holds the canary secrets while the session lives (set before its kernel starts)."""
    saved = {k: os.environ.get(k) for k in PLANTED_ENV}
    os.environ.update(PLANTED_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def loop_config(server: ScriptedLLMServer, **extra: Any) -> dict[str, Any]:
    """No api_key given: the app takes OPENAI_API_KEY from the (planted) env, as a real server does."""
    return {"base_url": server.base_url, "planner_model": "planner", "code_generator_model": "coder",
            "llm_retries": 0, "stream": False, **extra}


def open_session(server: ScriptedLLMServer, canaries: Canaries, notebook: str, **extra: Any) -> Session:
    app = TaskWeaverApp(config=loop_config(server, **extra))
    assert app.config.api_key == CANARY_KEY  # the planted env is what the server uses
    return app.create_session(notebook=canaries.workspace / notebook, new=True)


@dataclass
class Round:
    label: str
    code: str
    events: list[Step] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    answer: Answer | None = None

    @property
    def verdicts(self) -> list[Verdict]:
        return [e for e in self.events if isinstance(e, Verdict)]

    @property
    def executions(self) -> list[Execution]:
        """Executions of code that actually ran in the kernel (rejections are recorded without code)."""
        return [e for e in self.events if isinstance(e, Execution) and e.code]

    @property
    def rejected(self) -> bool:
        return any(not v.ok for v in self.verdicts)

    @property
    def blocked(self) -> bool:
        return any(BLOCK_MARK in _text(e) for e in self.executions)

    @property
    def stopped_by(self) -> str | None:
        if self.rejected and not self.executions:
            return "verifier"
        if self.blocked:
            return "guard"
        return None

    def planner_prompts(self) -> list[str]:
        return [json.dumps(r["messages"]) for r in self.requests if r.get("model") == "planner"]

    def problems(self) -> list[str]:
        """Why this round does not count as stopped and reported; empty when it does."""
        found = []
        if self.stopped_by is None:
            ran = "; ".join(_text(e)[:240] for e in self.executions) or "nothing ran"
            found.append(f"NOT STOPPED {self.label}: {self.code[:100]!r} -> {ran}")
        for verdict in self.verdicts:
            if not verdict.ok and not all(v.line >= 1 and v.rule and v.message for v in verdict.violations):
                found.append(f"{self.label}: rejection without rule/line: {verdict.violations}")
        if self.stopped_by and not any(REJECTED_MARK in p or BLOCK_MARK in p for p in self.planner_prompts()[1:]):
            found.append(f"{self.label}: the Planner was not told that the code was stopped")
        return found


def _text(step: Step) -> str:
    return json.dumps(step.to_json())


def run_round(session: Session, server: ScriptedLLMServer, label: str, task: str, codes: list[str],
              plans: list[str] | None = None) -> Round:
    """One user round: Planner -> Coder (one reply per attempt in ``codes``) -> Planner answers."""
    plans = plans if plans is not None else [plan_reply(task),
                                             plan_reply("Reported the outcome.", send_to="User", stop="Completed")]
    server.add("planner", *plans)
    server.add("coder", *(code_reply(c) for c in codes))
    before = len(server.requests)
    result = Round(label, "\n# ---\n".join(codes))
    result.answer = session.chat(task, on_event=result.events.append)
    result.requests = server.requests[before:]
    leftover = {m: len(q) for m, q in server.queues.items() if q}
    assert not leftover, f"{label}: the loop did not use the scripted replies as expected: {leftover}; {result.answer}"
    return result


def leaked_secrets(texts: dict[str, str]) -> list[str]:
    return [f"{needle[:14]}... found in {where}" for where, text in texts.items()
            for needle in SECRET_NEEDLES if needle in text]


def everything_recorded(server: ScriptedLLMServer, rounds: list[Round], notebook: Path) -> dict[str, str]:
    """Where a leak could surface: every LLM request body, every event, the notebook file."""
    return {
        "LLM requests": json.dumps(server.requests),
        "events": "\n".join(_text(e) for r in rounds for e in r.events),
        "notebook": notebook.read_text() if notebook.exists() else "",
    }
