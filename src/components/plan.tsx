import * as React from 'react';
import { stepOf } from '../present';
import type { IPlanItem } from '../turns';

/** The plan as a checklist; the initial plan (before merging) folds away. */
export function PlanChecklist(props: { item: IPlanItem }): JSX.Element {
  const { plan, completed, replan } = props.item;
  return (
    <div className="jp-TaskWeaver-plan" data-replan={replan}>
      <div className="jp-TaskWeaver-planTitle">
        {replan ? 'Re-plan' : 'Plan'} · {planProgress(plan.plan.length, completed, plan.current_step)}
      </div>
      <ol className="jp-TaskWeaver-planSteps">
        {plan.plan.map((step, i) => (
          <PlanStepRow key={i} text={step} done={i < completed} current={i === plan.current_step - 1} />
        ))}
      </ol>
      {plan.init_plan.length > 0 && <InitPlan steps={plan.init_plan} />}
    </div>
  );
}

/** "step 2 of 3" while steps remain, "all 3 steps done" once they are ticked; never beyond the plan. */
function planProgress(total: number, completed: number, current: number): string {
  if (total > 0 && completed >= total) {
    return total === 1 ? 'done' : `all ${total} steps done`;
  }
  return stepOf(Math.min(Math.max(current, completed + 1), total), total) || `${total} steps`;
}

function PlanStepRow(props: { text: string; done: boolean; current: boolean }): JSX.Element {
  const state = props.done ? 'done' : props.current ? 'current' : 'todo';
  return (
    <li className={`jp-TaskWeaver-planStep jp-mod-${state}`} data-state={state}>
      <input type="checkbox" checked={props.done} readOnly tabIndex={-1} aria-label={state} />
      <span>{props.text}</span>
    </li>
  );
}

function InitPlan(props: { steps: string[] }): JSX.Element {
  return (
    <details className="jp-TaskWeaver-initPlan">
      <summary>Initial plan ({props.steps.length} steps)</summary>
      <ol>
        {props.steps.map((step, i) => (
          <li key={i}>{step}</li>
        ))}
      </ol>
    </details>
  );
}
