import * as React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { UseSignal } from '@jupyterlab/ui-components';
import type { ChatModel, SidebarModel } from '../model';
import type { ComposerModel } from '../viewmodel';
import { ComposerView } from './composer';
import { Header } from './header';
import { TurnView } from './turn';

/**
 * The whole panel, rendered when the sidebar changes (notebook, status, settings). The chat and the
 * message box listen to their own signals, so a turn's events never re-render the header.
 */
export function ChatPanel(props: {
  model: SidebarModel;
  composer: ComposerModel;
  rendermime: IRenderMimeRegistry;
}): JSX.Element {
  const { model } = props;
  const chat = model.chat;
  const onKeyDown = (event: React.KeyboardEvent<HTMLDivElement>) => {
    if (event.key === 'Escape' && !event.defaultPrevented && props.composer.busy) {
      event.preventDefault();
      void props.composer.stop();
    }
  };
  return (
    <div className="jp-TaskWeaver-panel" data-path={model.binding?.path ?? ''} onKeyDown={onKeyDown}>
      <Header
        binding={model.binding}
        status={model.status}
        models={model.models}
        approval={model.settings.approval}
        onApproval={policy => void model.setApproval(policy)}
        connection={model.connection}
        onTestConnection={() => void model.testConnection()}
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
        {chat && (
          // keyed by path: UseSignal connects once, so another notebook's chat needs a new one
          <ChatTurns
            key={chat.path}
            chat={chat}
            hintWhenEmpty={model.binding !== null && !model.needsConfiguration}
            rendermime={props.rendermime}
            downloadUrl={artifact => model.host.downloadUrl(chat.path, artifact)}
          />
        )}
      </div>
      <ComposerView composer={props.composer} />
    </div>
  );
}

/** The chat's turns; re-rendered when turns come or go, start or end. */
function ChatTurns(props: {
  chat: ChatModel;
  hintWhenEmpty: boolean;
  rendermime: IRenderMimeRegistry;
  downloadUrl: (artifact: string) => Promise<string | null>;
}): JSX.Element {
  const { chat } = props;
  return (
    <UseSignal signal={chat.changed}>
      {() => (
        <>
          {chat.loading && chat.turns.length === 0 && <div className="jp-TaskWeaver-progress">Loading chat…</div>}
          {chat.error && <div className="jp-TaskWeaver-error">{chat.error}</div>}
          {chat.turns.map(turn => (
            <TurnView
              key={turn.id}
              chat={chat}
              turn={turn}
              rendermime={props.rendermime}
              downloadUrl={props.downloadUrl}
            />
          ))}
          {props.hintWhenEmpty && chat.turns.length === 0 && !chat.loading && (
            <div className="jp-TaskWeaver-empty">
              Ask a question about your data. TaskWeaver plans, writes verified Python and runs it in this
              notebook's kernel; the code lands in the notebook.
            </div>
          )}
        </>
      )}
    </UseSignal>
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
