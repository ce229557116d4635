import * as React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { UseSignal } from '@jupyterlab/ui-components';
import type { ChatModel } from '../model';
import { formatElapsed, runningPhase, splitWorking } from '../present';
import { ChatItem, IApprovalItem, isActive, ITurn } from '../turns';
import type { ApprovalAction } from '../types';
import { AnswerView } from './answer';
import { ApprovalView } from './approval';
import { PartBoundary } from './boundary';
import { DraftView } from './draft';
import { ExecutionView } from './execution';
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
    <PartBoundary>
      <UseSignal signal={chat.turnChanged} shouldUpdate={(_, changed) => changed === turn}>
        {() => <TurnBody {...props} />}
      </UseSignal>
    </PartBoundary>
  );
}

/** The message, what the agent did (folded once the answer is there), its answer, and the usage line. */
function TurnBody(props: ITurnViewProps): JSX.Element {
  const { chat, turn } = props;
  const onApprove = (item: IApprovalItem, action: ApprovalAction, code?: string) =>
    void chat.approve(turn, item, action, code);
  const { working, shown } = splitWorking(turn);
  const hasAnswer = shown.some(item => item.type === 'answer');
  const items = (list: ChatItem[]) =>
    list.map((item, i) => (
      <PartBoundary key={i}>
        <ItemView {...props} item={item} onApprove={onApprove} />
      </PartBoundary>
    ));
  return (
    <div className="jp-TaskWeaver-turn" data-state={turn.state} data-turn-id={turn.id}>
      {turn.userText && <div className="jp-TaskWeaver-userMessage">{turn.userText}</div>}
      {working.length > 0 && <WorkingFold count={working.length}>{items(working)}</WorkingFold>}
      {items(shown)}
      <LiveText chat={chat} turn={turn} />
      {turn.state === 'stopped' && <div className="jp-TaskWeaver-notice">Stopped.</div>}
      {turn.error && <div className="jp-TaskWeaver-error">{turn.error}</div>}
      {!hasAnswer && <UsageFooter turn={turn} />}
    </div>
  );
}

/** The plan, code and outputs behind an answer, folded; the user can open them again. */
function WorkingFold(props: { count: number; children: React.ReactNode }): JSX.Element {
  const [open, setOpen] = React.useState(false);
  return (
    <details
      className="jp-TaskWeaver-working"
      open={open}
      onToggle={event => setOpen((event.currentTarget as HTMLDetailsElement).open)}
    >
      <summary>
        {open ? 'Hide' : 'Show'} the work behind this answer ({props.count} part{props.count === 1 ? '' : 's'}: plan,
        code, outputs)
      </summary>
      {props.children}
    </details>
  );
}

/**
 * What is running now (Planner or Code Generator), for how long, how many tokens streamed; the Code
 * Generator's code as it streams. Never the Planner's raw JSON. Re-rendered per token and each second.
 */
function LiveText(props: { chat: ChatModel; turn: ITurn }): JSX.Element {
  const { chat, turn } = props;
  return (
    <UseSignal signal={chat.streamed} shouldUpdate={(_, changed) => changed === turn}>
      {() => (
        <>
          {isActive(turn) && <RunningStatus turn={turn} />}
          {turn.live && turn.live.role === 'code_generator' && !looksLikeJson(turn.live.text) && (
            <pre className="jp-TaskWeaver-live" data-role={turn.live.role}>
              {turn.live.text}
            </pre>
          )}
        </>
      )}
    </UseSignal>
  );
}

function looksLikeJson(text: string): boolean {
  return text.trimStart().startsWith('{');
}

function RunningStatus(props: { turn: ITurn }): JSX.Element {
  const { turn } = props;
  const [now, setNow] = React.useState(Date.now());
  React.useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  const call = turn.call && !turn.call.done ? turn.call : null;
  return (
    <div className="jp-TaskWeaver-progress jp-TaskWeaver-running" role="status" aria-live="polite">
      <span className="jp-TaskWeaver-phase">{runningPhase(turn)}</span>
      <span className="jp-TaskWeaver-elapsed"> · {formatElapsed(now - turn.startedAt)}</span>
      {call && (
        <span className="jp-TaskWeaver-tokens">
          {' '}
          · {call.tokens} token{call.tokens === 1 ? '' : 's'} streamed
        </span>
      )}
    </div>
  );
}

function ItemView(props: ItemViewProps): JSX.Element {
  const { item, chat, turn } = props;
  switch (item.type) {
    case 'plan':
      return <PlanChecklist item={item} />;
    case 'draft':
      return <DraftView item={item} />;
    case 'execution':
      return <ExecutionView item={item} rendermime={props.rendermime} downloadUrl={props.downloadUrl} />;
    case 'answer':
      return (
        <AnswerView
          answer={item.answer}
          session={turn.sessionId}
          rendermime={props.rendermime}
          showCell={target => chat.showCell(target)}
          footer={
            <>
              {!isActive(turn) && turn.userText && !item.answer.is_question && (
                <SaveExampleButton chat={chat} turn={turn} />
              )}
              <UsageFooter turn={turn} />
            </>
          }
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

/** "Save as example": the round as TaskWeaver example YAMLs next to the notebook; says where, or why not. */
function SaveExampleButton(props: { chat: ChatModel; turn: ITurn }): JSX.Element {
  const [state, setState] = React.useState<'idle' | 'saving' | 'saved' | 'failed'>('idle');
  const [text, setText] = React.useState('');
  const save = async () => {
    setState('saving');
    try {
      const saved = await props.chat.saveExample(props.turn);
      setText(`Saved as ${saved.join(' and ')} (add that folder to example_dirs to use it).`);
      setState('saved');
    } catch (error) {
      setText(error instanceof Error ? error.message : String(error));
      setState('failed');
    }
  };
  return (
    <>
      <button
        className="jp-mod-styled jp-TaskWeaver-saveExample"
        title="Save this round as a TaskWeaver example (planner and code YAML next to the notebook)"
        disabled={state === 'saving'}
        onClick={() => void save()}
      >
        {state === 'saving' ? 'Saving…' : 'Save as example'}
      </button>
      {text && (
        <span
          className={state === 'failed' ? 'jp-TaskWeaver-error' : 'jp-TaskWeaver-saved'}
          role="status"
        >
          {text}
        </span>
      )}
    </>
  );
}
