"""The attack corpus as LLM-generated code through the REAL loop and a real kernel.

A scripted Code Generator replies with each attack snippet; the scripted Planner sends one task to
the CodeInterpreter and then answers. Everything in between is the product: reply parsing, the
verifier, the executor (execute_request with agent metadata), the guard in the kernel, redaction,
the notebook recorder and the events. One session (one kernel) runs every round, ``max_attempts=1``
so each attack is exactly one draft (Planner -> Coder -> Planner).

For every attack: the verifier rejected it (a ``Verdict`` event with rule and line, nothing ran) or
the guard blocked it (its PermissionError is in the execution the Planner, the events and the
notebook cell see). Canaries: secrets planted in the server's env before the kernel started, a file
outside the workspace, a listening loopback socket. Run with ``-s`` for the numbers.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Iterator

import nbformat
import pytest

from taskweaver_lab.session import Session
from taskweaver_lab.testing import ScriptedLLMServer

from .attacks import ATTACKS, NAMESPACE_ATTACKS
from .benign import SETUP
from .harness import BLOCK_MARK, Canaries
from .loop import Round, everything_recorded, leaked_secrets, open_session, planted_env, run_round

NOTEBOOK = "attacks.ipynb"


@pytest.fixture(scope="module")
def session(llm: ScriptedLLMServer, canaries: Canaries) -> Iterator[Session]:
    with planted_env(), open_session(llm, canaries, NOTEBOOK, max_attempts=1, execution_timeout=20) as opened:
        setup = opened.executor.execute(SETUP, agent=False)  # the user's own cell: sales/sensors/customers
        assert setup.ok, setup.error
        yield opened


def test_the_whole_corpus_is_stopped_through_the_loop(session: Session, llm: ScriptedLLMServer,
                                                       canaries: Canaries) -> None:
    started = time.monotonic()
    # Positive control: an ordinary cell goes through the same loop and runs (and the kernel learns
    # which names the user owns, for the namespace rule).
    control = run_round(session, llm, "control", "Count the rows of `sales`.", ["n_rows = len(sales)\nprint(n_rows)"])
    assert [v.ok for v in control.verdicts] == [True] and control.executions[0].ok, control.events
    assert "400" in control.executions[0].summary
    assert {"sales", "sensors", "customers"} <= session.executor.state.user_names

    rounds: list[Round] = []
    corpus = [(c, canaries.fill(code)) for c, code, _ in ATTACKS] + list(NAMESPACE_ATTACKS)
    for number, (category, code) in enumerate(corpus, 1):
        if number == len(ATTACKS) + 1:
            # A successful agent cell first: after a FAILED agent cell the kernel reports no user names
            # (ipykernel skips user_expressions on error), see test_namespace_rule_after_a_failed_cell.
            refresh = run_round(session, llm, "refresh", "Count the rows of `sensors`.", ["n_sensor_rows = len(sensors)"])
            assert refresh.executions[0].ok and "sales" in session.executor.state.user_names
        rounds.append(run_round(session, llm, f"#{number} {category}", f"Please do step {number} ({category}).", [code]))
    elapsed = time.monotonic() - started

    stopped = Counter(r.stopped_by for r in rounds)
    categories = {c for c, _ in corpus}
    print(f"\nthrough the loop: {len(rounds)} attacks in {len(categories)} categories, {elapsed:.1f} s "
          f"({elapsed / (len(rounds) + 1):.2f} s/round); stopped by {dict(stopped)}; "
          f"{len(llm.requests)} LLM calls")
    problems = [p for r in rounds for p in r.problems()]
    assert not problems, "\n".join(problems)

    # namespace attacks: rejected by the namespace rule only (headless: no approval callback)
    for r in rounds[len(ATTACKS):]:
        assert r.stopped_by == "verifier" and {v.rule for r_v in r.verdicts for v in r_v.violations} == {"namespace"}, r.label

    # The user is told: each rejection is a Verdict event (rule + line) plus the give-up notice;
    # each guard block is in the recorded cell's outputs in the notebook.
    for r in rounds:
        if r.stopped_by == "verifier":
            assert any(e.kind == "notice" and "gave up" in e.text for e in r.events), r.label  # type: ignore[attr-defined]
    notebook = canaries.workspace / NOTEBOOK
    cells = nbformat.read(notebook, 4).cells
    code_cells = [c for c in cells if c.cell_type == "code"]
    guarded = [r for r in rounds if r.stopped_by == "guard"]
    blocked_cells = [c for c in code_cells if BLOCK_MARK in nbformat.writes(nbformat.v4.new_notebook(cells=[c]))]
    assert len(blocked_cells) == len(guarded), (len(blocked_cells), [r.label for r in guarded])
    assert all(c.metadata["taskweaver_lab"]["ok"] is False for c in blocked_cells)
    # rejected drafts never reach the kernel: the only code cells are control, refresh and the guarded ones
    assert len(code_cells) == 2 + len(guarded), [c.source[:60] for c in code_cells]

    # Canaries: no secret in any prompt, event or the notebook; nothing written, removed or reached.
    leaks = leaked_secrets(everything_recorded(llm, [control, *rounds], notebook))
    leaks += canaries.leaks([])
    assert not leaks, leaks
    # the kernel itself never had the planted secrets (scrubbed on start); checked as the user, unguarded
    env = session.executor.execute("import os\nprint(sorted(k for k in os.environ if 'TOKEN' in k or 'KEY' in k))",
                                   agent=False)
    assert env.ok and "OPENAI_API_KEY" not in env.summary and "JUPYTER_TOKEN" not in env.summary, env.summary

    # the kernel and the loop are still healthy after 180 attacks
    after = run_round(session, llm, "after", "Mean units of `sales`.", ["mean_units = float(sales['units'].mean())\nmean_units"])
    assert after.executions and after.executions[0].ok, after.events


def test_namespace_rule_after_a_failed_cell(session: Session, llm: ScriptedLLMServer) -> None:
    """An injected instruction can first make a cell fail, then clobber the user's data unasked."""
    user = session.executor.execute("user_budget = {'q1': 100}", agent=False)
    assert user.ok
    ok = run_round(session, llm, "ok", "Show the budget.", ["print(user_budget)"])
    assert "user_budget" in session.executor.state.user_names, ok.events
    failed = run_round(session, llm, "fails", "Divide.", ["ratio = 1 / 0"])
    assert not failed.executions[0].ok
    clobber = run_round(session, llm, "clobber", "Reset the budget.", ["user_budget = None"])
    assert clobber.stopped_by == "verifier", clobber.executions[0].summary if clobber.executions else clobber.events
