import * as React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import type { SidebarModel } from '../model';
import type { ChatItem, ITurn } from '../turns';
import type { ApprovalAction } from '../types';
import { Composer } from './composer';
import { Header } from './header';
import { TurnView } from './turn';

/** The whole panel; renders SidebarModel and forwards user intents to it. */
export function ChatPanel(props: { model: SidebarModel; rendermime: IRenderMimeRegistry }): JSX.Element {
  const { model } = props;
  const chat = model.chat;
  const active = chat?.activeTurn ?? null;
  const binding = model.binding;
  const downloadUrl = (artifact: string) =>
    binding ? model.host.downloadUrl(binding.path, artifact) : Promise.resolve(null);
  const onApprove = (turn: ITurn) => (item: ChatItem, action: ApprovalAction, code?: string) => {
    if (item.type === 'approval' && chat) {
      void chat.approve(turn, item, action, code);
    }
  };
  return (
    <div className="jp-TaskWeaver-panel">
      <Header
        binding={binding}
        status={model.status}
        models={model.models}
        approval={model.settings.approval}
        onApproval={policy => void model.setApproval(policy)}
      />
      {model.statusError && <div className="jp-TaskWeaver-error">{model.statusError}</div>}
      {model.serverWarnings.map(warning => (
        <div key={warning} className="jp-TaskWeaver-serverWarning">
          {warning}
        </div>
      ))}
      {model.needsConfiguration && (
        <FirstRunHelp help={model.status?.help ?? ''} ownEndpointAllowed={model.status?.user_base_url !== false} />
      )}
      <div className="jp-TaskWeaver-turns">
        {chat?.loading && chat.turns.length === 0 && <div className="jp-TaskWeaver-progress">Loading chat…</div>}
        {chat?.error && <div className="jp-TaskWeaver-error">{chat.error}</div>}
        {chat?.turns.map(turn => (
          <TurnView
            key={turn.id}
            turn={turn}
            rendermime={props.rendermime}
            downloadUrl={downloadUrl}
            onApprove={onApprove(turn)}
          />
        ))}
        {binding && chat && chat.turns.length === 0 && !chat.loading && !model.needsConfiguration && (
          <div className="jp-TaskWeaver-empty">
            Ask a question about your data. TaskWeaver plans, writes verified Python and runs it in this
            notebook's kernel; the code lands in the notebook.
          </div>
        )}
      </div>
      {model.sendError && <div className="jp-TaskWeaver-error jp-TaskWeaver-sendError">{model.sendError}</div>}
      <Composer
        value={model.input}
        busy={active !== null}
        disabled={!binding || model.needsConfiguration}
        onChange={value => (model.input = value)}
        onSend={() => void model.send()}
        onStop={() => void model.stop()}
      />
    </div>
  );
}

function FirstRunHelp(props: { help: string; ownEndpointAllowed: boolean }): JSX.Element {
  return (
    <div className="jp-TaskWeaver-firstRun">
      <div className="jp-TaskWeaver-firstRunTitle">Connect an LLM endpoint to start</div>
      <pre className="jp-TaskWeaver-help">
        {props.help ||
          'Set OPENAI_BASE_URL and OPENAI_API_KEY (or c.TaskWeaverLab.base_url / api_key) for the Jupyter server and restart it.'}
      </pre>
      {props.ownEndpointAllowed && (
        <div className="jp-TaskWeaver-help">
          Or, for your own turns only: Settings &gt; Settings Editor &gt; TaskWeaver &gt; LLM base URL (and the model
          names), e.g. a local OpenAI-compatible model. The server&apos;s API key is never sent there.
        </div>
      )}
    </div>
  );
}
