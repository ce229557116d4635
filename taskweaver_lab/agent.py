"""The loop, and only the loop: Planner -> (Code Generator -> Verifier -> Executor)* -> Planner ... -> Answer."""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Callable, Literal

from .codegen import CodeGenerator
from .config import TaskWeaverLab
from .kernel import Executor
from .llm import Cancelled, Reply
from .planner import Planner, stalled
from .steps import Answer, Draft, Execution, Notice, Plan, Step, TaskWeaverLabError, TextDelta, UserMessage, Verdict
from .verifier import Policy, verify

Decision = tuple[Literal["run", "skip", "edit"], str]


class CallCapReached(TaskWeaverLabError):
    pass


@dataclass
class Turn:
    """What one round needs from its caller: where steps go, Stop, approvals, the call budget."""

    add: Callable[[Step], None]            # append to history, emit to listeners, record in the notebook
    emit: Callable[[Step], None]           # listeners only (deltas, verdicts, usage)
    max_calls: int
    cancel: threading.Event = field(default_factory=threading.Event)
    approve: Callable[[Draft, Verdict], Decision] | None = None
    calls: int = 0

    def record(self, reply: Reply) -> None:
        self.calls += 1
        self.emit(reply.call)

    def check_budget(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()
        if self.calls >= self.max_calls:
            raise CallCapReached(f"Stopped after {self.calls} LLM calls in this round (the cap, "
                                 "TaskWeaverLab.max_llm_calls_per_round). Rephrase the request or raise the cap.")

    def delta(self, role: str) -> Callable[[str], None]:
        return lambda text: self.emit(TextDelta(role, text))  # type: ignore[arg-type]


def last_result(history: list[Step], round_number: int) -> Execution | None:
    """The round's last successful execution (what a stalled round ends with)."""
    return next((s for s in reversed(history) if isinstance(s, Execution) and s.ok and s.round == round_number), None)


class Agent:
    def __init__(self, planner: Planner, coder: CodeGenerator, executor: Executor,
                 policy: Callable[[], Policy], config: TaskWeaverLab) -> None:
        self.planner, self.coder, self.executor, self.policy, self.config = planner, coder, executor, policy, config

    def run_round(self, history: list[Step], user: UserMessage, turn: Turn) -> Answer:
        """ReAct: the Planner sees each execution and continues, re-plans, asks the user or answers."""
        turn.add(user)
        while True:
            plan = self.planner.next(history, user.round, turn.record, turn.delta("planner"), turn.cancel)
            finished = last_result(history, user.round) if stalled(plan, history) else None
            turn.add(plan)
            if plan.send_to == "User" or finished is not None:
                answer = self._answer(plan, finished)
                turn.add(answer)
                return answer
            self.run_step(plan, user.text, turn)

    @staticmethod
    def _answer(plan: Plan, finished: Execution | None) -> Answer:
        if finished is None:
            return Answer(plan.message, plan.is_question, plan.stop, plan.round)
        # Still asking for finished work after the Planner's re-ask: end with what is known, not at the call cap.
        return Answer("The Planner kept asking for work that is already done, so this round ends with the last "
                      f"result:\n{finished.summary}", False, "Completed", plan.round)

    def run_step(self, plan: Plan, request: str, turn: Turn) -> None:
        """Auto-correction: rejections and errors go straight back to the Code Generator, no Planner call.

        Every execution is added to the history as it happens; the Planner reads the last one.
        """
        feedback: list[tuple[Draft, str]] = []
        execution: Execution | None = None
        for attempt in range(1, self.config.max_attempts + 1):
            draft = self.coder.write(plan, request, self.executor.variables, feedback, attempt,
                                     turn.record, turn.delta("code_generator"), turn.cancel)
            turn.emit(draft)
            if draft.reply_type == "text":
                return turn.add(self._execution(plan, draft, ok=True, summary=f"(no code) {draft.thought}"))
            verdict = verify(draft.code, dataclasses.replace(self.policy(), user_names=self.executor.user_names), attempt)
            turn.emit(verdict)
            decision = self._decide(draft, verdict, turn)
            if decision is None:
                feedback.append((draft, "Rejected before running:\n" + verdict.feedback()))
                continue
            if decision[0] == "skip":
                return turn.add(self._execution(plan, draft, ok=False, summary="The user skipped this step."))
            execution = self._run(plan, draft, decision[1], verified=decision[0] == "run" and verdict.ok)
            turn.add(execution)
            if execution.ok or execution.interrupted:
                return None
            feedback.append((draft, execution.summary))
        turn.emit(Notice("warning", f"Step {plan.current_step}: gave up after {self.config.max_attempts} attempts."))
        if execution is None:  # nothing ran: tell the Planner why
            turn.add(self._execution(plan, feedback[-1][0], ok=False, summary=feedback[-1][1]))
        return None

    def _decide(self, draft: Draft, verdict: Verdict, turn: Turn) -> Decision | None:
        """None: feed the rejection back. Rebinding the user's variables needs the user's yes."""
        needs_user = not verdict.ok and all(v.rule == "namespace" for v in verdict.violations)
        if verdict.ok and turn.approve is None:
            return ("run", verdict.checked_source or draft.code)  # exactly what was checked
        if (verdict.ok or needs_user) and turn.approve is not None:
            action, code = turn.approve(draft, verdict)
            return (action if action != "run" or verdict.ok else "edit", code or draft.code)
        return None

    def _run(self, plan: Plan, draft: Draft, code: str, verified: bool) -> Execution:
        result = self.executor.execute(code, agent=True, timeout=self.config.execution_timeout)
        return dataclasses.replace(result, attempt=draft.attempt, step=plan.current_step, round=plan.round, verified=verified)

    @staticmethod
    def _execution(plan: Plan, draft: Draft, ok: bool, summary: str) -> Execution:
        return Execution(ok=ok, code="", summary=summary, attempt=draft.attempt, step=plan.current_step, round=plan.round)
