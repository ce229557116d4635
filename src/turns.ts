/**
 * Turn state and the pure reducer that folds protocol events into it.
 * No signals, no DOM: model.ts owns the turns and notifies; components render them.
 */
import type {
  ApprovalAction,
  ChatEvent,
  IAnswerStep,
  IApprovalEvent,
  IDraftStep,
  IExecutionStep,
  ILLMCallStep,
  INoticeStep,
  IPlanStep,
  ITurnEvent,
  IUsage,
  IVerdictStep,
  Role
} from './types';

export type TurnState = 'sending' | 'running' | 'stopping' | 'finished' | 'failed' | 'stopped';

export interface IPlanItem {
  type: 'plan';
  plan: IPlanStep;
  replan: boolean;
  /** How many plan steps are done (they render ticked). */
  completed: number;
}
export interface IDraftItem {
  type: 'draft';
  draft: IDraftStep;
  verdict: IVerdictStep | null;
  /** Steps in the plan this draft works on (0: no plan). */
  planSteps: number;
}
export interface IExecutionItem {
  type: 'execution';
  execution: IExecutionStep;
}
export interface IAnswerItem {
  type: 'answer';
  answer: IAnswerStep;
}
export interface INoticeItem {
  type: 'notice';
  notice: INoticeStep;
}
export interface IApprovalItem {
  type: 'approval';
  approval: IApprovalEvent;
  resolved: ApprovalAction | null;
}
export type ChatItem =
  | IPlanItem
  | IDraftItem
  | IExecutionItem
  | IAnswerItem
  | INoticeItem
  | IApprovalItem;

export interface ITurn {
  id: string;
  userText: string;
  state: TurnState;
  items: ChatItem[];
  live: { role: Role; text: string } | null;
  /** The LLM call being streamed (or just ended): its role, how many tokens came, when it started. */
  call: ILiveCall | null;
  /** The server session the turn ran in (cells carry it in metadata.taskweaver_lab.session). */
  sessionId: string;
  usage: IUsage;
  startedAt: number;
  finishedAt: number | null;
  error: string;
}

export interface ILiveCall {
  role: Role;
  /** Streamed chunks so far; each is one token as the endpoint sends them. */
  tokens: number;
  startedAt: number;
  /** Its llm_call report came: the call is over. */
  done: boolean;
}

export function emptyUsage(): IUsage {
  return { calls: 0, prompt_tokens: 0, completion_tokens: 0, latency_s: 0, by_role: {} };
}

export function newTurn(id: string, userText: string, state: TurnState): ITurn {
  return {
    id,
    userText,
    state,
    items: [],
    live: null,
    call: null,
    sessionId: '',
    usage: emptyUsage(),
    startedAt: Date.now(),
    finishedAt: null,
    error: ''
  };
}

export function isActive(turn: ITurn): boolean {
  return turn.state === 'sending' || turn.state === 'running' || turn.state === 'stopping';
}

export function pendingApproval(turn: ITurn): IApprovalItem | null {
  const item = lastItem(turn, 'approval');
  return item && item.resolved === null ? item : null;
}

/** Folds one event into the turn (mutates it). `cell` events are side effects: model.ts. */
export function applyEvent(turn: ITurn, event: ChatEvent): void {
  if (event.kind !== 'delta' && event.kind !== 'llm_call') {
    turn.live = null;
  }
  switch (event.kind) {
    case 'user':
      turn.userText = turn.userText || event.text;
      return;
    case 'delta':
      return appendDelta(turn, event.role, event.text);
    case 'plan':
      return applyPlan(turn, event);
    case 'draft':
      turn.items.push({ type: 'draft', draft: event, verdict: null, planSteps: lastItem(turn, 'plan')?.plan.plan.length ?? 0 });
      return;
    case 'verdict':
      return attachVerdict(turn, event);
    case 'execution':
      return applyExecution(turn, event);
    case 'answer':
      return applyAnswer(turn, event);
    case 'notice':
      turn.items.push({ type: 'notice', notice: event });
      return;
    case 'llm_call':
      if (turn.call) {
        turn.call.done = true;
      }
      return addCall(turn.usage, event);
    case 'approval':
      turn.items.push({ type: 'approval', approval: event, resolved: null });
      return;
    case 'turn':
      return applyTurnState(turn, event);
    default:
      return;
  }
}

function appendDelta(turn: ITurn, role: Role, text: string): void {
  if (!turn.call || turn.call.role !== role || turn.call.done) {
    turn.call = { role, tokens: 0, startedAt: Date.now(), done: false };
  }
  turn.call.tokens += 1;
  if (!turn.live || turn.live.role !== role) {
    turn.live = { role, text: '' };
  }
  turn.live.text += text;
}

function applyPlan(turn: ITurn, plan: IPlanStep): void {
  const previous = lastItem(turn, 'plan');
  const reached = Math.max(0, Math.min(plan.current_step - 1, plan.plan.length));
  if (previous && plan.send_to === 'User') {
    // The Planner's reply to the user is the answer (its own item), not another plan: the checklist the
    // user followed stays, so its counters never read "step 2 of 1".
    return;
  }
  if (previous && samePlan(previous.plan, plan)) {
    previous.plan = plan;
    previous.completed = Math.max(previous.completed, reached);
    return;
  }
  turn.items.push({ type: 'plan', plan, replan: previous !== null, completed: reached });
}

function samePlan(a: IPlanStep, b: IPlanStep): boolean {
  return a.plan.length === b.plan.length && a.plan.every((step, i) => step === b.plan[i]);
}

function attachVerdict(turn: ITurn, verdict: IVerdictStep): void {
  const draft = lastItem(turn, 'draft');
  if (draft && draft.verdict === null) {
    draft.verdict = verdict;
  }
}

function applyExecution(turn: ITurn, execution: IExecutionStep): void {
  turn.items.push({ type: 'execution', execution });
  const plan = lastItem(turn, 'plan');
  if (plan && execution.ok && !execution.interrupted) {
    plan.completed = Math.max(plan.completed, Math.min(execution.step, plan.plan.plan.length));
  }
}

function applyAnswer(turn: ITurn, answer: IAnswerStep): void {
  turn.items.push({ type: 'answer', answer });
  const plan = lastItem(turn, 'plan');
  if (plan && answer.stop === 'Completed' && !answer.is_question) {
    plan.completed = plan.plan.plan.length;
  }
}

function applyTurnState(turn: ITurn, event: ITurnEvent): void {
  if (event.state === 'started') {
    turn.state = turn.state === 'stopping' ? 'stopping' : 'running';
    return;
  }
  // The server's totals replace ours: they also count calls made before this sidebar connected.
  turn.usage = { ...event.usage, by_role: { ...event.usage.by_role } };
  turn.finishedAt = Date.now();
  turn.live = null;
  turn.call = null;
  if (event.state === 'failed') {
    turn.state = 'failed';
    turn.error = event.error ?? 'The turn failed.';
  } else {
    turn.state = turn.state === 'stopping' ? 'stopped' : 'finished';
  }
}

/** Running totals while the turn runs, the way steps.py Usage.add counts them. */
function addCall(usage: IUsage, call: ILLMCallStep): void {
  usage.calls += 1;
  usage.prompt_tokens += call.prompt_tokens;
  usage.completion_tokens += call.completion_tokens;
  usage.latency_s += call.latency_s;
  usage.by_role[call.role] = (usage.by_role[call.role] ?? 0) + 1;
}

function lastItem<T extends ChatItem['type']>(
  turn: ITurn,
  type: T
): Extract<ChatItem, { type: T }> | null {
  for (let i = turn.items.length - 1; i >= 0; i--) {
    const item = turn.items[i];
    if (item.type === type) {
      return item as Extract<ChatItem, { type: T }>;
    }
  }
  return null;
}

/** Rebuilds finished turns from a session snapshot: each `user` event opens a turn. */
export function turnsFromHistory(events: ChatEvent[], sessionId = ''): ITurn[] {
  const turns: ITurn[] = [];
  for (const event of events) {
    if (event.kind === 'user' || turns.length === 0) {
      turns.push(newTurn(`history-${turns.length}`, '', 'finished'));
      turns[turns.length - 1].sessionId = sessionId;
    }
    applyEvent(turns[turns.length - 1], event);
  }
  for (const turn of turns) {
    turn.live = null;
    turn.call = null;
    turn.finishedAt = turn.finishedAt ?? turn.startedAt;
    if (turn.state !== 'failed') {
      turn.state = 'finished';
    }
  }
  return turns;
}
