"""The loop, and only the loop: Planner -> (Code Generator -> Verifier -> Executor)* -> Planner ... -> Answer."""
from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Literal

from . import grounding, stall
from .codegen import CodeGenerator
from .config import TaskWeaverLab
from .kernel import Executor, printed_result
from .llm import Cancelled, Reply, UserChoices
from .planner import Planner
from .steps import (Answer, Draft, Execution, Notice, Plan, Role, Step, StopReason, TaskWeaverLabError, TextDelta,
                    UserMessage, Verdict)
from .verifier import Policy, verify

Decision = tuple[Literal["run", "skip", "edit"], str]


class CallCapReached(TaskWeaverLabError):
    pass


@dataclass
class RoundContext:
    """Everything one round (a user message to its answer) needs, passed down explicitly: where steps
    go, Stop, approvals, the call budget, the user's model choices and the policy in force.

    Nothing about a round is set on the long-lived session, agent, LLM or executor. It is also the
    ``llm.CallContext`` of every LLM call of the round."""

    number: int
    add: Callable[[Step], None]            # append to history, emit to listeners, record in the notebook
    emit: Callable[[Step], None]           # listeners only (deltas, verdicts, usage)
    max_calls: int
    policy: Policy
    cancel: threading.Event = field(default_factory=threading.Event)
    approve: Callable[[Draft, Verdict], Decision] | None = None
    choices: UserChoices = field(default_factory=UserChoices)
    subshell: bool = False                 # agent code on the kernel's subshell: a %%taskweaver cell holds the main shell
    calls: int = 0

    def before_call(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()
        if self.calls >= self.max_calls:
            raise CallCapReached(f"Stopped after {self.calls} LLM calls in this round (the cap, "
                                 "TaskWeaverLab.max_llm_calls_per_round). Rephrase the request or raise the cap.")

    def after_call(self, reply: Reply) -> None:
        self.calls += 1
        self.emit(reply.call)

    def delta(self, role: Role) -> Callable[[str], None]:
        return lambda text: self.emit(TextDelta(role, text))


class Agent:
    def __init__(self, planner: Planner, coder: CodeGenerator, executor: Executor, config: TaskWeaverLab) -> None:
        self.planner, self.coder, self.executor, self.config = planner, coder, executor, config

    def run_round(self, history: list[Step], user: UserMessage, ctx: RoundContext) -> Answer:
        """ReAct: the Planner sees each execution and continues, re-plans, asks the user or answers."""
        ctx.add(user)
        while True:
            plan = self.planner.next(history, user.round, ctx)
            finished = stall.finished(plan, history)
            ctx.add(plan)
            if plan.send_to == "User" or finished is not None:
                answer = self._answer(plan, finished, history)
                ctx.add(answer)
                return answer
            self.run_step(plan, user.text, ctx)
            computed = grounding.fields_answer(history, user.round)
            if computed:  # every result the user asked for is printed, in their format: no more calls needed
                answer = self._grounded(f"The code computed every result you asked for:\n\n{computed}",
                                        "Completed", history, user.round)
                ctx.add(answer)
                return answer

    @staticmethod
    def _answer(plan: Plan, finished: Execution | None, history: list[Step]) -> Answer:
        if finished is not None:
            # Still asking for finished work after the Planner's re-ask: end with what was computed, not at the call cap.
            text = f"Here is what the analysis computed:\n\n{printed_result(finished)}"
        else:
            text = plan.message
        if plan.is_question:
            return Answer(text, True, plan.stop, plan.round)
        # The format the user asked for, from what the code printed.
        text = grounding.complete_format(text, history, plan.round)
        return Agent._grounded(text, "Completed" if finished else plan.stop, history, plan.round)

    @staticmethod
    def _grounded(text: str, stop: StopReason, history: list[Step], round_number: int) -> Answer:
        """A final answer with every figure traced to the cell that printed it; what none printed is marked."""
        found = grounding.check(text, history, round_number)
        return Answer(grounding.mark(text, found.ungrounded), False, stop, round_number, found.sources, found.ungrounded)

    def run_step(self, plan: Plan, request: str, ctx: RoundContext) -> None:
        """Auto-correction: rejections and errors go straight back to the Code Generator, no Planner call.

        Every execution is added to the history as it happens; the Planner reads the last one.
        """
        feedback: list[tuple[Draft, str]] = []
        execution: Execution | None = None
        for attempt in range(1, self.config.max_attempts + 1):
            draft = self.coder.write(plan, request, self.executor.state.variables, feedback, attempt, ctx)
            ctx.emit(draft)
            refusal = _not_runnable(draft, feedback)
            if refusal:  # a text reply is no result; the same failing code would fail the same way
                feedback.append((draft, refusal))
                continue
            verdict = verify(draft.code, dataclasses.replace(ctx.policy, user_names=self.executor.state.user_names), attempt)
            ctx.emit(verdict)
            decision = self._decide(draft, verdict, ctx)
            if decision is None:
                feedback.append((draft, "Rejected before running:\n" + verdict.feedback()))
                continue
            if decision[0] == "skip":
                return ctx.add(self._execution(plan, draft, ok=False, summary="The user skipped this step."))
            execution = _judged(self._run(plan, draft, decision[1], ctx, verified=decision[0] == "run" and verdict.ok))
            ctx.add(execution)
            if execution.ok or execution.interrupted:
                return None
            feedback.append((draft, execution.summary))
        ctx.emit(Notice("warning", f"Step {plan.current_step}: gave up after {self.config.max_attempts} attempts."))
        if execution is None:  # nothing ran: tell the Planner why, honestly (no result to pass on)
            last_draft, reason = feedback[-1]
            why = "the Code Generator only replied in text, without code" if reason == TEXT_REPLY else reason
            ctx.add(self._execution(plan, last_draft, ok=False, summary=f"Nothing was computed for this step: {why}"))
        return None

    @staticmethod
    def _decide(draft: Draft, verdict: Verdict, ctx: RoundContext) -> Decision | None:
        """None: feed the rejection back. Rebinding the user's variables needs the user's yes."""
        needs_user = not verdict.ok and all(v.rule == "namespace" for v in verdict.violations)
        if verdict.ok and ctx.approve is None:
            return ("run", verdict.checked_source or draft.code)  # exactly what was checked
        if (verdict.ok or needs_user) and ctx.approve is not None:
            action, code = ctx.approve(draft, verdict)
            return (action if action != "run" or verdict.ok else "edit", code or draft.code)
        return None

    def _run(self, plan: Plan, draft: Draft, code: str, ctx: RoundContext, verified: bool) -> Execution:
        if ctx.cancel.is_set():  # a Stop between the draft and its run
            raise Cancelled()
        result = self.executor.execute(code, agent=True, timeout=self.config.execution_timeout,
                                       subshell=ctx.subshell, cancel=ctx.cancel)
        return dataclasses.replace(result, attempt=draft.attempt, step=plan.current_step, round=plan.round, verified=verified)

    @staticmethod
    def _execution(plan: Plan, draft: Draft, ok: bool, summary: str) -> Execution:
        return Execution(ok=ok, code="", summary=summary, attempt=draft.attempt, step=plan.current_step, round=plan.round)


TEXT_REPLY = ("You answered in text, without code. A step's result must be computed by code that runs: write Python "
              "that computes it and prints the result (never state a figure yourself).")
SAME_CODE = "This is the same code that already failed above; it would fail again. Take a different approach."


def _not_runnable(draft: Draft, feedback: list[tuple[Draft, str]]) -> str:
    """Why ``draft`` is sent back without running, or "" to go on and verify it."""
    if draft.reply_type == "text":
        return TEXT_REPLY
    if any(earlier.code.strip() == draft.code.strip() for earlier, _ in feedback if earlier.code):
        return SAME_CODE
    return ""


_EMPTY = re.compile(r"\bnan\b|\bNaT\b|Series\(\[\]|Empty DataFrame", re.I)


def _judged(execution: Execution) -> Execution:
    """A run that printed only NaN or an empty table computed nothing useful: treat it like an error so
    the Code Generator corrects it (a wrong column, a filter that matched nothing) instead of reporting it."""
    shown = printed_result(execution) if execution.ok else ""
    if not shown or re.search(r"\d", shown.replace("[a figure]", "")) or not _EMPTY.search(shown):
        return execution
    problem = ("The result is empty or NaN, so nothing useful was computed: check the column names, the filters "
               "and missing values, then compute it again.")
    return dataclasses.replace(execution, ok=False, error=problem, summary=f"{execution.summary}\n[useless result] {problem}")
