import * as React from 'react';
import { stepOf } from '../present';
import type { IDraftItem } from '../turns';
import type { IVerdictStep } from '../types';

/** One Code Generator draft with its verification verdict. */
export function DraftView(props: { item: IDraftItem }): JSX.Element {
  const { draft, verdict } = props.item;
  return (
    <div className="jp-TaskWeaver-draft">
      {draft.thought && <div className="jp-TaskWeaver-thought">{draft.thought}</div>}
      {draft.reply_type === 'python' && (
        <details className="jp-TaskWeaver-code" open={verdict === null || !verdict.ok}>
          <summary>
            Code, {stepOf(draft.step, props.item.planSteps) || 'no step'}
            {draft.attempt > 1 ? `, attempt ${draft.attempt}` : ''} <VerdictBadge verdict={verdict} />
          </summary>
          <pre>{draft.code}</pre>
        </details>
      )}
      {verdict && !verdict.ok && <Violations verdict={verdict} />}
    </div>
  );
}

function VerdictBadge(props: { verdict: IVerdictStep | null }): JSX.Element {
  if (props.verdict === null) {
    return <span className="jp-TaskWeaver-badge">checking…</span>;
  }
  return props.verdict.ok ? (
    <span className="jp-TaskWeaver-badge jp-mod-ok">verified</span>
  ) : (
    <span className="jp-TaskWeaver-badge jp-mod-rejected">rejected</span>
  );
}

function Violations(props: { verdict: IVerdictStep }): JSX.Element {
  return (
    <ul className="jp-TaskWeaver-violations">
      {props.verdict.violations.map((v, i) => (
        <li key={i}>
          line {v.line}: [{v.rule}] {v.message}
        </li>
      ))}
    </ul>
  );
}
