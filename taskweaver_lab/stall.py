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


def problem(plan: Plan, history: Sequence[Step]) -> str:
    """Why ``plan`` would go round in circles (quoted back to the Planner), or ""."""
    if plan.send_to != "CodeInterpreter":
        return ""
    if plan.current_step > len(plan.plan):
        return (f'"current_plan_step" {plan.current_step} is past the end of your {len(plan.plan)}-step plan, '
                f'so every step is done. {_DONE}')
    previous = next((s for s in reversed(history) if isinstance(s, Plan)), None)
    last_run = next((s for s in reversed(history) if isinstance(s, Execution)), None)
    if (previous is not None and last_run is not None and last_run.ok and last_run.round == plan.round
            and previous.round == plan.round and (previous.current_step, previous.message) == (plan.current_step, plan.message)):
        return (f'step {plan.current_step} already ran successfully with this very message (its report is above). '
                f'Go on with step {plan.current_step + 1}, or if this was the last step: {_DONE}')
    return ""


def finished(plan: Plan, history: Sequence[Step]) -> Execution | None:
    """The round's last successful execution when ``plan`` still stalls (after the re-ask), else None."""
    if not problem(plan, history):
        return None
    return next((s for s in reversed(history) if isinstance(s, Execution) and s.ok and s.code
                 and s.round == plan.round), None)
