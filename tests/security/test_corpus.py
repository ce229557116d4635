"""Phase 1: the attack corpus is stopped by the verifier or the guard; the benign corpus passes both.

Every attack runs as agent code (execute_request metadata) in a real kernel with canaries: a key
planted in the server's env (scrubbed on kernel start), a secret file outside the workspace and a
listening loopback socket. Results are printed (run with -s) so the numbers in docs/security.md can
be re-measured.
"""
from __future__ import annotations

import time
from collections import Counter

from taskweaver_lab.verifier import Policy, verify

from .attacks import ATTACKS, NAMESPACE_ATTACKS
from .structural import LATER_CALLBACKS, PLUGIN_PATHS, REPORT_WINDOW, TEMPLATES
from .benign import benign_cells
from .harness import AgentKernel, Canaries


def test_corpus_sizes() -> None:
    """Issue 11's goal: at least 230 attack snippets in at least 70 categories (structural.py's classes count:
    they are judged by their canaries in test_structural.py)."""
    structural = REPORT_WINDOW + LATER_CALLBACKS + PLUGIN_PATHS + TEMPLATES
    categories = {c for c, _, _ in ATTACKS} | {c for c, _ in NAMESPACE_ATTACKS + structural}
    total = len(ATTACKS) + len(NAMESPACE_ATTACKS) + len(structural)
    print(f"\ncorpus: {total} attack snippets in {len(categories)} categories; {len(benign_cells())} benign cells")
    assert total >= 230
    assert len(categories) >= 70
    assert len(benign_cells()) >= 200
    assert len(set(code for _, code, _ in ATTACKS)) == len(ATTACKS), "duplicate attack snippets"


def test_benign_cells_pass_verifier_and_guard(kernel: AgentKernel, policy: Policy) -> None:
    started, failures = time.monotonic(), []
    for cell in benign_cells():
        verdict = verify(cell, policy)
        if not verdict.ok:
            failures.append(f"verifier rejected {cell[:70]!r}: {verdict.feedback()}")
            continue
        result = kernel.run(verdict.checked_source, agent=True)
        if result.error or result.blocked or result.timed_out:
            failures.append(f"kernel failed {cell[:70]!r}: {result.error or result.text[-300:]}")
    print(f"\nbenign: {len(benign_cells())} cells, {len(failures)} false positives, "
          f"{time.monotonic() - started:.1f} s")
    assert not failures, "\n".join(failures)


def test_every_attack_is_rejected_or_blocked(kernel: AgentKernel, canaries: Canaries, policy: Policy) -> None:
    stopped_by: Counter[str] = Counter()
    escaped, results = [], []
    for category, code, _ in ATTACKS:
        verdict = verify(canaries.fill(code), policy)
        if not verdict.ok:
            stopped_by["verifier"] += 1
            assert verdict.violations and all(v.line >= 1 and v.message for v in verdict.violations)
            continue
        result = kernel.run(verdict.checked_source, agent=True, timeout=20)
        results.append(result)
        if result.blocked:
            stopped_by["guard"] += 1
        else:
            escaped.append(f"{category}: {code[:80]!r} -> {result.error or result.text[:200]}")
    print(f"\nattacks: {len(ATTACKS)} stopped by {dict(stopped_by)}")
    assert not escaped, "\n".join(escaped)
    assert not canaries.leaks(results)


def test_namespace_attacks_need_approval(policy: Policy) -> None:
    for _, code in NAMESPACE_ATTACKS:
        verdict = verify(code, policy)
        assert not verdict.ok, code
        assert {v.rule for v in verdict.violations} == {"namespace"}, (code, verdict.feedback())
        assert "new variable name" in verdict.feedback()


def test_guard_alone_stops_effectful_attacks(kernel: AgentKernel, canaries: Canaries) -> None:
    """No layer is trusted alone: bypass the verifier and send the attacks straight to the kernel."""
    escaped, results = [], []
    chosen = [(c, code) for c, code, guard_alone in ATTACKS if guard_alone]
    for category, code in chosen:
        result = kernel.run(canaries.fill(code), agent=True, timeout=20)
        results.append(result)
        if not result.blocked:
            escaped.append(f"{category}: {code[:80]!r} -> {result.error or result.text[:200]}")
        if "import *" in code:   # `from os import *` shadowed `open` for the cells that follow
            kernel.run("from builtins import open", agent=False)
    print(f"\nguard alone: {len(chosen) - len(escaped)}/{len(chosen)} effectful attacks blocked")
    assert not escaped, "\n".join(escaped)
    assert not canaries.leaks(results), canaries.leaks(results)
    # user cells are unaffected afterwards (`io` re-imported: `from os import *` above shadowed `open`)
    user = kernel.run("import io\nprint(io.open('sales.csv').readline()[:4])", agent=False)
    assert user.text.startswith("date") and not user.error
