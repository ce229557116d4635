/** Where the sidebar inserts a turn's cells (record mode "frontend"), src/cells.ts. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { insertionIndex } from '../cells';
import type { ICellEvent } from '../types';
import * as wire from './wire.golden';

/** Inserts the cells of `events` one after the other, as the chat's cell queue does. */
function insertAll(cellIds: string[], events: ICellEvent[]): string[] {
  const ids = [...cellIds];
  for (const event of events) {
    ids.splice(insertionIndex(ids, event.after_cell_id), 0, event.cell.id as string);
  }
  return ids;
}

function anchored(id: string, after: string): ICellEvent {
  return { ...wire.cell_anchored, cell: { ...wire.cell_anchored.cell, id }, after_cell_id: after };
}

describe('insertionIndex', () => {
  test('a sidebar turn (no anchor) appends', () => {
    assert.equal(insertionIndex(['a', 'b'], wire.cell.after_cell_id), 2);
  });

  test('an anchored cell goes right below its anchor', () => {
    assert.equal(insertionIndex(['a', 'magic', 'b'], 'magic'), 2);
    assert.equal(insertionIndex(['magic'], 'magic'), 1);
  });

  test('an anchor that is gone (cell deleted) appends, as the server does', () => {
    assert.equal(insertionIndex(['a', 'b'], 'deleted'), 2);
    assert.equal(insertionIndex([], 'deleted'), 0);
  });

  test('cells without an id are never taken for the anchor', () => {
    assert.equal(insertionIndex([undefined, 'a'], undefined), 2);
  });
});

describe('a %%taskweaver turn with the sidebar inserting', () => {
  test('its cells land under the magic cell, in order, above the cells that were below it', () => {
    // The server anchors the first cell to the magic cell and each next one to the previous cell.
    const events = [anchored('tw-cell-1', 'magic-cell'), wire.cell_anchored, anchored('tw-cell-3', 'tw-cell-2')];
    assert.deepEqual(insertAll(['setup', 'magic-cell', 'below'], events), [
      'setup',
      'magic-cell',
      'tw-cell-1',
      'tw-cell-2',
      'tw-cell-3',
      'below'
    ]);
  });

  test('a sidebar turn\'s cells go to the end, in order', () => {
    const second = { ...wire.cell, cell: { ...wire.cell.cell, id: 'second' } };
    assert.deepEqual(insertAll(['a', 'b'], [wire.cell, second]), ['a', 'b', wire.cell.cell.id, 'second']);
  });
});
