"""The one stall policy: a Planner reply that would go round in circles.

Small models keep counting steps past the last one, or send the step that just succeeded again (seen
with a 1.5B model: identical steps until the call cap). Such a reply gets one corrective re-ask
(``planner.py`` asks ``problem``); if the next reply still stalls, the round ends with what was computed
(``agent.py`` asks ``finished``) instead of burning calls.
"""
from __future__ import annotations

from typing import Sequence

from .steps import Execution, Plan, Step

_DONE = ('Answer the User with the results you have (send_to "User", stop "Completed"), or re-plan if '
         'something is still missing')


def _last(history: Sequence[Step], kind: type) -> Step | None:
    return next((s for s in reversed(history) if isinstance(s, kind)), None)


def _repeats(plan: Plan, history: Sequence[Step], ok: bool) -> bool:
    """Does ``plan`` send again the message whose run just ended (``ok``: successfully / in failure)?"""
    previous, last_run = _last(history, Plan), _last(history, Execution)
    return (isinstance(previous, Plan) and isinstance(last_run, Execution) and last_run.ok == ok
            and last_run.round == previous.round == plan.round and previous.message == plan.message
            )  # the step number may differ: small models renumber the same work


def _all_done(plan: Plan, history: Sequence[Step]) -> str:
    """Every step is done, yet the Planner sends more work: why, or ""."""
    if plan.current_step > len(plan.plan):
        return (f'"current_plan_step" {plan.current_step} is past the end of your {len(plan.plan)}-step plan, '
                f'so every step is done. {_DONE}')
    if _repeats(plan, history, ok=True):
        return ('this very instruction already ran successfully (its report is above). Go on with the next '
                f'step, or if that was the last one: {_DONE}')
    return ""


def problem(plan: Plan, history: Sequence[Step]) -> str:
    """Why ``plan`` would go round in circles (quoted back to the Planner), or ""."""
    if plan.send_to != "CodeInterpreter":
        return ""
    if _repeats(plan, history, ok=False):
        return ('this very instruction just failed (its report is above) and would fail again. Re-plan with a '
                'different approach (other columns, another method, a smaller step), ask the User, or report '
                'the failure (send_to "User", stop "TaskFailure")')
    return _all_done(plan, history)


def finished(plan: Plan, history: Sequence[Step]) -> Execution | None:
    """The round's last successful execution when ``plan`` still asks for finished work (after the re-ask)."""
    if plan.send_to != "CodeInterpreter" or not _all_done(plan, history):
        return None
    return next((s for s in reversed(history) if isinstance(s, Execution) and s.ok and s.code
                 and s.round == plan.round), None)
