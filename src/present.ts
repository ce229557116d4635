/**
 * What the panel says about a turn, computed from its state alone (pure, unit-tested without a DOM):
 * an answer's figures and where they were computed, a failed execution's one-line error, what a
 * running turn is doing now, the step counters.
 */
import type * as nbformat from '@jupyterlab/nbformat';
import type { ChatItem, ITurn } from './turns';
import { isActive } from './turns';
import type { IAnswerStep, IExecutionStep, Role } from './types';

/** The generated code cell a figure came from, as its metadata.taskweaver_lab names it. */
export interface ICellTarget {
  session: string;
  round: number;
  step: number;
  attempt: number;
  executionCount: number | null;
}

/** One figure under an answer: a link to its cell, the user's own figure, or one nobody computed. */
export interface IFigureLink {
  figure: string;
  label: string;
  kind: 'cell' | 'user' | 'not-computed';
  target: ICellTarget | null;
}

export const ROLE_NAMES: Record<Role, string> = {
  planner: 'Planner',
  code_generator: 'Code Generator'
};

/** Each figure of the answer with where it came from; ungrounded ones last, marked "not computed". */
export function figureLinks(answer: IAnswerStep, session: string): IFigureLink[] {
  const links: IFigureLink[] = [];
  const seen = new Set<string>();
  for (const source of answer.sources ?? []) {
    if (seen.has(source.figure)) {
      continue;
    }
    seen.add(source.figure);
    if (source.origin === 'user') {
      links.push({ figure: source.figure, label: `${source.figure} — from your message`, kind: 'user', target: null });
      continue;
    }
    const cell = source.execution_count === null ? 'its cell' : `cell [${source.execution_count}]`;
    links.push({
      figure: source.figure,
      label: `${source.figure} — step ${source.step}, ${cell}`,
      kind: 'cell',
      target: {
        session,
        round: source.round,
        step: source.step,
        attempt: source.attempt,
        executionCount: source.execution_count
      }
    });
  }
  for (const figure of answer.ungrounded ?? []) {
    if (!seen.has(figure)) {
      seen.add(figure);
      links.push({ figure, label: `${figure} — not computed`, kind: 'not-computed', target: null });
    }
  }
  return links;
}

/** True when a cell's metadata.taskweaver_lab says it is the generated cell `target` points at. */
export function cellMatches(metadata: unknown, target: ICellTarget): boolean {
  if (!metadata || typeof metadata !== 'object') {
    return false;
  }
  const meta = metadata as Record<string, unknown>;
  if (target.session && meta.session !== target.session) {
    return false;
  }
  return meta.round === target.round && meta.step === target.step && meta.attempt === target.attempt;
}

/** The turn's answer (the last one), if it has one. */
export function answerOf(turn: ITurn): IAnswerStep | null {
  for (let i = turn.items.length - 1; i >= 0; i--) {
    const item = turn.items[i];
    if (item.type === 'answer') {
      return item.answer;
    }
  }
  return null;
}

/**
 * Once the turn has ended with an answer, everything before it is "working": it folds away under the
 * answer. Notices stay visible (they say what went wrong or what the user must know).
 */
export function splitWorking(turn: ITurn): { working: ChatItem[]; shown: ChatItem[] } {
  const hasAnswer = answerOf(turn) !== null;
  if (!hasAnswer || isActive(turn)) {
    return { working: [], shown: turn.items };
  }
  const working = turn.items.filter(item => item.type !== 'answer' && item.type !== 'notice');
  const shown = turn.items.filter(item => item.type === 'answer' || item.type === 'notice');
  return { working, shown };
}

/** A failed execution in one line: "Step 2 failed: KeyError: 'amount'". */
export interface IErrorSummary {
  line: string;
  /** The error outputs (rendered folded through rendermime); empty when only `error` text exists. */
  errorOutputs: nbformat.IOutput[];
  /** The full error text when there is no error output to render (shown folded as ANSI text). */
  text: string;
}

export function errorSummary(execution: IExecutionStep): IErrorSummary | null {
  if (execution.ok || execution.interrupted) {
    return null;
  }
  const errorOutputs = execution.outputs.filter(output => output.output_type === 'error');
  const first = errorOutputs[0] as nbformat.IError | undefined;
  let last = '';
  if (first) {
    last = first.evalue ? `${first.ename}: ${first.evalue}` : first.ename;
  } else {
    last = lastLine(execution.error) || lastLine(execution.summary) || 'the code raised an error';
  }
  const where = execution.step > 0 ? `Step ${execution.step}` : 'The code';
  return {
    line: `${where} failed: ${stripAnsi(last)}`,
    errorOutputs,
    text: first ? '' : execution.error
  };
}

function lastLine(text: string): string {
  const lines = (text ?? '').split('\n').map(line => line.trim()).filter(Boolean);
  return lines.length ? lines[lines.length - 1] : '';
}

export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');
}

/** What a running turn is doing now, from the events it got so far. */
export function runningPhase(turn: ITurn): string {
  if (!isActive(turn)) {
    return '';
  }
  if (turn.state === 'sending') {
    return 'Sending…';
  }
  if (turn.state === 'stopping') {
    return 'Stopping…';
  }
  const call = turn.call;
  if (call && !call.done) {
    return call.role === 'planner' ? 'Planner is thinking…' : 'Code Generator is writing code…';
  }
  return nextPhase(turn.items[turn.items.length - 1]);
}

/** What comes after the last item: the loop's order (plan -> code -> verify -> run -> plan). */
function nextPhase(last: ChatItem | undefined): string {
  if (!last) {
    return 'Planner is thinking…';
  }
  switch (last.type) {
    case 'plan':
      return last.plan.send_to === 'CodeInterpreter' ? 'Code Generator is writing code…' : 'Finishing…';
    case 'draft':
      if (last.verdict === null) {
        return last.draft.reply_type === 'python' ? 'Checking the code…' : 'Code Generator is writing code…';
      }
      return last.verdict.ok ? 'Running the code in the kernel…' : 'Code Generator is writing code…';
    case 'approval':
      return last.resolved === null ? 'Waiting for your approval…' : 'Running the code in the kernel…';
    case 'execution':
    case 'notice':
      return 'Planner is thinking…';
    case 'answer':
      return 'Finishing…';
  }
}

/** "12 s" or "2 min 05 s". */
export function formatElapsed(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) {
    return `${seconds} s`;
  }
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${String(seconds % 60).padStart(2, '0')} s`;
}

/** "step 2 of 3"; never a step beyond the plan ("step 2 of 1" becomes "step 2"). */
export function stepOf(step: number, total: number): string {
  if (step <= 0) {
    return '';
  }
  return total > 0 && step <= total ? `step ${step} of ${total}` : `step ${step}`;
}
