import * as React from 'react';
import type { IApprovalItem } from '../turns';
import type { ApprovalAction } from '../types';

/** Approval mode: the verified draft waits for Run / Edit / Skip. */
export function ApprovalView(props: {
  item: IApprovalItem;
  onDecide: (action: ApprovalAction, code?: string) => void;
}): JSX.Element {
  const { draft, verdict } = props.item.approval;
  const [editing, setEditing] = React.useState(false);
  const [code, setCode] = React.useState(draft.code);
  if (props.item.resolved) {
    return <div className="jp-TaskWeaver-approval jp-mod-resolved">Decision: {props.item.resolved}</div>;
  }
  return (
    <div className="jp-TaskWeaver-approval">
      <div className="jp-TaskWeaver-approvalTitle">
        Approve step {draft.step}? {verdict.ok ? '(verified)' : '(verification failed)'}
      </div>
      {editing ? (
        <textarea
          className="jp-TaskWeaver-approvalEditor"
          value={code}
          onChange={event => setCode(event.target.value)}
          rows={Math.min(20, code.split('\n').length + 1)}
        />
      ) : (
        <pre>{draft.code}</pre>
      )}
      <div className="jp-TaskWeaver-approvalButtons">
        {editing ? (
          <button className="jp-mod-styled jp-mod-accept" onClick={() => props.onDecide('edit', code)}>
            Run edited
          </button>
        ) : (
          <button className="jp-mod-styled jp-mod-accept" onClick={() => props.onDecide('run')}>
            Run
          </button>
        )}
        {!editing && (
          <button className="jp-mod-styled" onClick={() => setEditing(true)}>
            Edit
          </button>
        )}
        <button className="jp-mod-styled jp-mod-reject" onClick={() => props.onDecide('skip')}>
          Skip
        </button>
      </div>
    </div>
  );
}
