import * as React from 'react';
import type { IConnectionState } from '../model';
import type { INotebookBinding } from '../notebook';
import type { ApprovalPolicy, IStatus } from '../types';

export interface IModelsShown {
  planner: string;
  codeGenerator: string;
  ownEndpoint: string;
}

/** Which notebook (and kernel) the chat is bound to, the models, the approval switch and "Test connection". */
export function Header(props: {
  binding: INotebookBinding | null;
  status: IStatus | null;
  models: IModelsShown | null;
  approval: ApprovalPolicy;
  onApproval: (policy: ApprovalPolicy) => void;
  connection: IConnectionState;
  onTestConnection: () => void;
}): JSX.Element {
  const { binding, status, models, connection } = props;
  return (
    <div className="jp-TaskWeaver-header">
      <div className="jp-TaskWeaver-binding" title={binding?.path ?? ''}>
        {binding ? (
          <>
            Notebook: <strong>{binding.path}</strong>
            <span className="jp-TaskWeaver-kernel">
              {binding.kernelId ? ` · kernel ${binding.kernelId.slice(0, 8)}` : ' · no kernel'}
            </span>
          </>
        ) : (
          'No notebook open: open one to chat about it.'
        )}
      </div>
      <div className="jp-TaskWeaver-controls">
        {models && (
          <span
            className="jp-TaskWeaver-models"
            title={`Planner / Code Generator models${models.ownEndpoint ? ` at your endpoint ${models.ownEndpoint}` : ''}`}
          >
            {models.planner} / {models.codeGenerator}
            {models.ownEndpoint ? ' · your endpoint' : ''}
            {status?.rtc ? ' · RTC' : ''}
            {status?.sandbox === 'landlock' ? ' · sandboxed' : ''}
          </span>
        )}
        <label className="jp-TaskWeaver-approvalSwitch">
          Run code:{' '}
          <select
            value={props.approval}
            onChange={event => props.onApproval(event.target.value as ApprovalPolicy)}
          >
            <option value="auto">automatically</option>
            <option value="approve">after approval</option>
          </select>
        </label>
      </div>
      <div className="jp-TaskWeaver-connectionRow">
        <button
          type="button"
          className="jp-mod-styled jp-TaskWeaver-testConnection"
          disabled={connection.state === 'testing'}
          title="Try the LLM endpoint your turns would use, with your settings: models listed, JSON mode"
          onClick={() => props.onTestConnection()}
        >
          Test connection
        </button>
        {connection.state !== 'idle' && (
          <span
            className={`jp-TaskWeaver-connection jp-mod-${connection.state}`}
            role="status"
            data-state={connection.state}
          >
            {connection.text}
          </span>
        )}
      </div>
    </div>
  );
}
