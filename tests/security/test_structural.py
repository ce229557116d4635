"""Issue 11's structural bypass classes, through the real executor, the real loop and real kernels.

Each snippet of ``structural.py`` runs as agent code with the verifier bypassed (``executor.execute``: the
same execute_request, kernel helper report, guard and redaction a round uses); then the canaries must be
intact. One round per class also goes through the whole loop (scripted LLM, verifier, notebook record).
"""
from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from taskweaver_lab import sandbox
from taskweaver_lab.session import Session
from taskweaver_lab.steps import Execution
from taskweaver_lab.testing import ScriptedLLMServer

from .harness import CANARY_FILE_TEXT, AgentKernel, Canaries
from .loop import everything_recorded, leaked_secrets, open_session, planted_env, run_round
from .structural import CREDENTIALS, LATER_CALLBACKS, PLUGIN_PATHS, REPORT_WINDOW, TEMPLATES

LEAK = "leaked.txt"


@contextmanager
def credentials_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def fill(canaries: Canaries, code: str) -> str:
    return (canaries.fill(code).replace("@LEAK@", str(canaries.workspace / LEAK))
            .replace("@DB@", str(canaries.root / "elsewhere" / "secret.db")))


def seen(session: Session, execution: Execution) -> str:
    """Everything of one execution the session (and so the LLM, the notebook, the chat) can see."""
    return json.dumps(execution.to_json()) + session.executor.state.variables


def assert_intact(canaries: Canaries, texts: list[str]) -> None:
    needles = (CANARY_FILE_TEXT, *CREDENTIALS.values())
    leaks = [f"{n[:12]}... in {t[:300]!r}" for t in texts for n in needles if n in t]
    leak_file = canaries.workspace / LEAK
    if leak_file.exists() and CANARY_FILE_TEXT in leak_file.read_text():
        leaks.append("a callback copied the secret into the workspace")
    assert not leaks + canaries.leaks([]), leaks + canaries.leaks([])


@pytest.fixture(scope="module")
def session(llm: ScriptedLLMServer, canaries: Canaries) -> Iterator[Session]:
    (canaries.root / "elsewhere").mkdir(exist_ok=True)
    with sqlite3.connect(canaries.root / "elsewhere" / "secret.db") as db:
        db.execute("CREATE TABLE secrets (v TEXT)")
        db.execute("INSERT INTO secrets VALUES (?)", (CANARY_FILE_TEXT,))
    db.close()
    (canaries.workspace / "link.db").symlink_to(canaries.root / "elsewhere" / "secret.db")
    with planted_env(), credentials_env(), open_session(llm, canaries, "structural.ipynb", max_attempts=1,
                                                        execution_timeout=30, llm_retries=2) as opened:
        yield opened


def test_class1_agent_objects_are_never_evaluated_outside_the_guard(session: Session, canaries: Canaries) -> None:
    texts = []
    for number, (_, code) in enumerate(REPORT_WINDOW):
        execution = session.executor.execute(fill(canaries, code), agent=True, timeout=60)
        texts.append(seen(session, execution))
        # the next cell (the user's) must not run the agent's objects either: the report touches them again
        user = session.executor.execute(f"marker_{number} = {number}", agent=False)
        texts.append(seen(session, user))
    session.executor.execute("import pandas as pd\npd.reset_option('display.float_format')", agent=False)
    assert_intact(canaries, texts)
    assert "leak_var: Leak" in session.executor.state.variables   # still described, by its type's name


def test_class1_through_the_loop(session: Session, llm: ScriptedLLMServer, canaries: Canaries) -> None:
    """Verifier-clean: a display option holding the agent's function, rendered by the report after the cell."""
    code = fill(canaries, REPORT_WINDOW[8][1]).replace("pd.DataFrame({'x': [1.5]})", "shown_frame = pd.DataFrame({'x': [1.5]})\nshown_frame")
    done = run_round(session, llm, "float_format", "Show a small frame.", [code])
    session.executor.execute("import pandas as pd\npd.reset_option('display.float_format')", agent=False)
    assert done.verdicts and done.verdicts[0].ok and done.executions, done.events   # the verifier let it through
    assert not leaked_secrets(everything_recorded(llm, [done], canaries.workspace / "structural.ipynb"))
    assert_intact(canaries, [json.dumps(e.to_json()) for e in done.events])


def test_class3_callbacks_run_guarded_wherever_they_run(llm: ScriptedLLMServer, canaries: Canaries) -> None:
    """Own kernel: the callbacks stay registered for every later cell of it."""
    with planted_env(), open_session(llm, canaries, "callbacks.ipynb", execution_timeout=30) as own:
        texts = []
        for _, code in LATER_CALLBACKS:
            texts.append(seen(own, own.executor.execute(fill(canaries, code), agent=True, timeout=60)))
        for number in range(3):   # the user's own cells fire pre/post_run_cell and pre/post_execute
            texts.append(seen(own, own.executor.execute(f"user_value_{number} = {number}", agent=False)))
            time.sleep(1)          # give the scheduled callbacks their turn (they must be blocked, not late)
        later = own.executor.execute("print('after')", agent=True)
        assert "guard blocked" in seen(own, later)   # the blocks on the kernel's threads are reported
        assert_intact(canaries, texts + [seen(own, later)])


def test_class6_plugin_refuses_paths_outside_the_workspace(session: Session, canaries: Canaries) -> None:
    texts = []
    for _, code in PLUGIN_PATHS:
        execution = session.executor.execute(fill(canaries, code), agent=True, timeout=60)
        assert not execution.ok and "sql_pull_data refused" in execution.error, execution.error
        texts.append(seen(session, execution))
    assert_intact(canaries, texts)
    with sqlite3.connect(canaries.workspace / "inside.db") as db:
        db.execute("CREATE TABLE t (v INTEGER)")
        db.execute("INSERT INTO t VALUES (42)")
    db.close()
    ok = session.executor.execute("inside_df, inside_d = sql_pull_data('SELECT v FROM t', 'inside.db')\n"
                                  "print(inside_df.v.sum())", agent=True)
    assert ok.ok and "42" in ok.summary, ok.summary


def test_class7_credentials_never_reach_the_kernel(session: Session, llm: ScriptedLLMServer,
                                                   canaries: Canaries) -> None:
    texts = []
    for _, code in TEMPLATES:
        texts.append(seen(session, session.executor.execute(code, agent=True, timeout=60)))
    assert "[REDACTED]" in session.executor.state.variables and "token_var" in session.executor.state.variables
    done = run_round(session, llm, "expandvars", "Show the environment.", [TEMPLATES[0][1]])
    assert done.verdicts[0].ok and done.executions, done.events
    texts += [json.dumps(e.to_json()) for e in done.events] + [json.dumps(llm.requests)]
    env = session.executor.execute("import os\nprint(sorted(os.environ))", agent=False)   # the user's own view
    assert not set(CREDENTIALS) & set(env.summary.replace("'", " ").replace(",", " ").split()), env.summary
    assert_intact(canaries, texts)


@pytest.mark.skipif(sandbox.landlock_abi() < 1 or platform.machine() != "x86_64",
                    reason="sandbox=landlock needs Linux >= 5.13 with Landlock on x86_64")
def test_the_sandbox_kernel_holds_these_classes_without_the_guard(llm: ScriptedLLMServer, canaries: Canaries) -> None:
    """The boundary: a sandboxed kernel with the guard switched OFF keeps every canary of classes 1, 3, 6 and 7."""
    with planted_env(), credentials_env(), open_session(llm, canaries, "boxed.ipynb", sandbox="landlock", guard=False,
                                                        execution_timeout=30) as boxed:
        texts = []
        for _, code in REPORT_WINDOW + LATER_CALLBACKS + PLUGIN_PATHS + TEMPLATES:
            texts.append(seen(boxed, boxed.executor.execute(fill(canaries, code), agent=True, timeout=60)))
        for number in range(3):   # later cells fire the callbacks (unguarded here: the OS refuses their effects)
            texts.append(seen(boxed, boxed.executor.execute(f"boxed_value_{number} = {number}", agent=False)))
            time.sleep(1)
        boxed.executor.execute("import pandas as pd\npd.reset_option('display.float_format')", agent=False)
        assert_intact(canaries, texts)


@pytest.mark.xfail(strict=True, reason="known gap (issue 11 class 5): worker processes the USER started earlier run "
                                       "agent functions outside the guard; only the sandbox kernel holds this")
def test_class5_a_worker_pool_the_user_started_runs_agent_functions_unguarded(canaries: Canaries) -> None:
    kernel = AgentKernel(canaries.workspace)
    try:
        assert not kernel.install_guard(canaries.workspace).error
        started = kernel.run("from joblib import Parallel, delayed\nprint(Parallel(n_jobs=2)(delayed(abs)(i) for i in "
                             "range(4)))", agent=False)
        assert "[0, 1, 2, 3]" in started.text, started
        agent = kernel.run(fill(canaries, "from joblib import Parallel, delayed\ndef grab(p):\n    return open(p).read()\n"
                                          "opts = {'n_jobs': 2}\nprint(Parallel(**opts)(delayed(grab)('@SECRET@') "
                                          "for _ in range(2)))"), agent=True, timeout=60)
        assert CANARY_FILE_TEXT not in agent.text + agent.error
    finally:
        kernel.close()
