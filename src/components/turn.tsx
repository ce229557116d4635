import * as React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { UseSignal } from '@jupyterlab/ui-components';
import type { ChatModel } from '../model';
import type { ChatItem, IApprovalItem, ITurn } from '../turns';
import type { ApprovalAction } from '../types';
import { ApprovalView } from './approval';
import { DraftView } from './draft';
import { ExecutionView } from './execution';
import { MarkdownView } from './mime';
import { PlanChecklist } from './plan';

export interface ITurnViewProps {
  chat: ChatModel;
  turn: ITurn;
  rendermime: IRenderMimeRegistry;
  downloadUrl: (artifact: string) => Promise<string | null>;
}

type ItemViewProps = ITurnViewProps & {
  item: ChatItem;
  onApprove: (item: IApprovalItem, action: ApprovalAction, code?: string) => void;
};

/** One user round; re-rendered when this turn changes, not when another one does. */
export function TurnView(props: ITurnViewProps): JSX.Element {
  const { chat, turn } = props;
  return (
    <UseSignal signal={chat.turnChanged} shouldUpdate={(_, changed) => changed === turn}>
      {() => <TurnBody {...props} />}
    </UseSignal>
  );
}

/** The message, what the agent did, its answer, and a usage footer. */
function TurnBody(props: ITurnViewProps): JSX.Element {
  const { chat, turn } = props;
  const onApprove = (item: IApprovalItem, action: ApprovalAction, code?: string) =>
    void chat.approve(turn, item, action, code);
  return (
    <div className="jp-TaskWeaver-turn" data-state={turn.state} data-turn-id={turn.id}>
      {turn.userText && <div className="jp-TaskWeaver-userMessage">{turn.userText}</div>}
      {turn.items.map((item, i) => (
        <ItemView key={i} {...props} item={item} onApprove={onApprove} />
      ))}
      <LiveText chat={chat} turn={turn} />
      {turn.state === 'sending' && <div className="jp-TaskWeaver-progress">Sending…</div>}
      {turn.state === 'stopping' && <div className="jp-TaskWeaver-progress">Stopping…</div>}
      {turn.state === 'stopped' && <div className="jp-TaskWeaver-notice">Stopped.</div>}
      {turn.error && <div className="jp-TaskWeaver-error">{turn.error}</div>}
      <UsageFooter turn={turn} />
    </div>
  );
}

/** What the LLM is writing right now; re-rendered per streamed token, alone. */
function LiveText(props: { chat: ChatModel; turn: ITurn }): JSX.Element {
  const { chat, turn } = props;
  return (
    <UseSignal signal={chat.streamed} shouldUpdate={(_, changed) => changed === turn}>
      {() =>
        turn.live && (
          <pre className="jp-TaskWeaver-live" data-role={turn.live.role}>
            {turn.live.text}
          </pre>
        )
      }
    </UseSignal>
  );
}

function ItemView(props: ItemViewProps): JSX.Element {
  const { item } = props;
  switch (item.type) {
    case 'plan':
      return <PlanChecklist item={item} />;
    case 'draft':
      return <DraftView item={item} />;
    case 'execution':
      return <ExecutionView item={item} rendermime={props.rendermime} downloadUrl={props.downloadUrl} />;
    case 'answer':
      return (
        <MarkdownView
          text={item.answer.text}
          rendermime={props.rendermime}
          className={`jp-TaskWeaver-answer${item.answer.is_question ? ' jp-mod-question' : ''}`}
        />
      );
    case 'notice':
      return (
        <div className={`jp-TaskWeaver-notice jp-mod-${item.notice.level}`}>{item.notice.text}</div>
      );
    case 'approval':
      return (
        <ApprovalView item={item} onDecide={(action, code) => props.onApprove(item, action, code)} />
      );
  }
}

function UsageFooter(props: { turn: ITurn }): JSX.Element | null {
  const { usage, startedAt, finishedAt } = props.turn;
  if (usage.calls === 0) {
    return null;
  }
  const tokens = usage.prompt_tokens + usage.completion_tokens;
  const seconds = finishedAt !== null && finishedAt > startedAt ? (finishedAt - startedAt) / 1000 : null;
  return (
    <div className="jp-TaskWeaver-usage">
      {usage.calls} LLM call{usage.calls === 1 ? '' : 's'} · {tokens} tokens ({usage.prompt_tokens} in,{' '}
      {usage.completion_tokens} out)
      {seconds !== null ? ` · ${seconds.toFixed(1)} s` : ''}
    </div>
  );
}
