/**
 * What the panel says about a turn (src/present.ts), computed from recorded examples of real server
 * messages (wire.golden.ts): an answer's figures and their cells, errors in one line, the running phase.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  cellMatches,
  errorSummary,
  figureLinks,
  formatElapsed,
  runningPhase,
  splitWorking,
  stepOf
} from '../present';
import { applyEvent, ITurn, newTurn } from '../turns';
import type { ChatEvent, IExecutionStep } from '../types';
import * as wire from './wire.golden';

function copy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function fold(events: ChatEvent[], turn: ITurn = newTurn('t1', 'ask', 'running')): ITurn {
  for (const event of events) {
    applyEvent(turn, copy(event));
  }
  return turn;
}

function failed(changes: Partial<IExecutionStep> = {}): IExecutionStep {
  return { ...copy(wire.execution), ok: false, step: 2, ...changes };
}

describe("an answer's figures", () => {
  test('a figure from a cell links to that cell; one from the user says so; ungrounded ones are marked', () => {
    const links = figureLinks(copy(wire.answer), 'sess');
    assert.deepEqual(
      links.map(link => [link.label, link.kind]),
      [
        ['120.5 — step 1, cell [3]', 'cell'],
        ['98 — from your message', 'user'],
        ['14 % — not computed', 'not-computed']
      ]
    );
    assert.deepEqual(links[0].target, { session: 'sess', round: 1, step: 1, attempt: 1, executionCount: 3 });
    assert.equal(links[1].target, null);
    assert.equal(links[2].target, null);
  });

  test('a cell without an execution count is still linked', () => {
    const answer = copy(wire.answer);
    answer.sources = [{ ...answer.sources[0], execution_count: null }];
    answer.ungrounded = [];
    assert.deepEqual(figureLinks(answer, '').map(link => link.label), ['120.5 — step 1, its cell']);
  });

  test('the generated cell is found by session, round, step and attempt in its metadata', () => {
    const target = figureLinks(copy(wire.answer), 'sess')[0].target!;
    const meta = { session: 'sess', round: 1, step: 1, attempt: 1, verified: true };
    assert.ok(cellMatches(meta, target));
    assert.ok(!cellMatches({ ...meta, attempt: 2 }, target), 'a failed earlier attempt is not the cell');
    assert.ok(!cellMatches({ ...meta, session: 'other' }, target), 'another session of the notebook is not');
    assert.ok(!cellMatches(undefined, target));
    assert.ok(cellMatches({ ...meta, session: 'any' }, { ...target, session: '' }), 'no session known: any');
  });
});

describe('the answer is set apart from the working', () => {
  const events: ChatEvent[] = [wire.turn_started, wire.plan, wire.draft, wire.verdict, wire.execution, wire.notice, wire.answer];

  test('while the turn runs nothing folds', () => {
    const { working, shown } = splitWorking(fold(events));
    assert.equal(working.length, 0);
    assert.equal(shown.length, 5);
  });

  test('once it ended, plan, code and outputs fold; notices and the answer stay', () => {
    const { working, shown } = splitWorking(fold([...events, wire.turn_finished]));
    assert.deepEqual(working.map(item => item.type), ['plan', 'draft', 'execution']);
    assert.deepEqual(shown.map(item => item.type), ['notice', 'answer']);
  });

  test('a turn that ended without an answer shows everything', () => {
    const turn = fold([wire.turn_started, wire.plan, wire.execution, wire.turn_finished]);
    assert.equal(splitWorking(turn).working.length, 0);
  });
});

describe('a failed step in one line', () => {
  test('the last line of an error output, with its step; the error output is kept for the fold', () => {
    const error = { output_type: 'error', ename: 'KeyError', evalue: "'amount'", traceback: ['\u001b[0;31mKeyError\u001b[0m'] };
    const summary = errorSummary(failed({ outputs: [copy(wire.execution.outputs[0]), error] }));
    assert.equal(summary?.line, "Step 2 failed: KeyError: 'amount'");
    assert.equal(summary?.errorOutputs.length, 1);
  });

  test('without an error output, the last line of the error text (ANSI codes left out of the line)', () => {
    const summary = errorSummary(failed({ outputs: [], error: 'Traceback...\n  line 3\n\u001b[31mValueError: bad\u001b[0m\n' }));
    assert.equal(summary?.line, 'Step 2 failed: ValueError: bad');
    assert.ok(summary?.text.includes('Traceback'));
  });

  test('a successful or interrupted execution has no error line', () => {
    assert.equal(errorSummary(copy(wire.execution)), null);
    assert.equal(errorSummary(failed({ interrupted: true })), null);
  });
});

describe('what a running turn is doing', () => {
  test('the Planner first; its streamed JSON is named, not shown', () => {
    const turn = fold([wire.turn_started]);
    assert.equal(runningPhase(turn), 'Planner is thinking…');
    fold([{ kind: 'delta', role: 'planner', text: '{"plan"' }, { kind: 'delta', role: 'planner', text: ': [' }], turn);
    assert.equal(runningPhase(turn), 'Planner is thinking…');
    assert.equal(turn.call?.tokens, 2);
    assert.equal(turn.call?.role, 'planner');
  });

  test('after a plan for the CodeInterpreter the Code Generator writes; tokens count per call', () => {
    const turn = fold([wire.turn_started, { kind: 'delta', role: 'planner', text: '{' }, wire.llm_call, wire.plan]);
    assert.equal(turn.call?.done, true);
    assert.equal(runningPhase(turn), 'Code Generator is writing code…');
    fold([{ kind: 'delta', role: 'code_generator', text: 'import' }], turn);
    assert.equal(turn.call?.tokens, 1, 'a new call starts counting afresh');
  });

  test('a verified draft runs; after it ran the Planner is back; a pending approval waits', () => {
    const turn = fold([wire.turn_started, wire.plan, wire.draft, { ...copy(wire.verdict), ok: true }]);
    assert.equal(runningPhase(turn), 'Running the code in the kernel…');
    fold([wire.execution], turn);
    assert.equal(runningPhase(turn), 'Planner is thinking…');
    fold([wire.approval], turn);
    assert.equal(runningPhase(turn), 'Waiting for your approval…');
  });

  test('an ended turn has no phase and no live call', () => {
    const turn = fold([wire.turn_started, wire.delta, wire.turn_finished]);
    assert.equal(runningPhase(turn), '');
    assert.equal(turn.call, null);
  });
});

describe('counters', () => {
  test('elapsed time reads as seconds, then minutes', () => {
    assert.equal(formatElapsed(12400), '12 s');
    assert.equal(formatElapsed(125000), '2 min 05 s');
  });

  test('a step is never "of" a smaller total', () => {
    assert.equal(stepOf(2, 3), 'step 2 of 3');
    assert.equal(stepOf(2, 1), 'step 2');
    assert.equal(stepOf(0, 1), '');
  });
});
