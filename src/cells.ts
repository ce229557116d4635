/**
 * Where the sidebar inserts a generated cell (record mode "frontend"). Pure, so it is unit-tested
 * without a notebook; notebook.ts applies it to the open notebook's shared model.
 */

/**
 * The index for a new cell: right below the cell `afterCellId`, else at the end.
 *
 * A magic turn's first cell is anchored to its %%taskweaver cell and every later cell to the turn's
 * previous cell (the server chains the ids, turns.py EventRecorder), so a turn's cells stay together, in
 * order, under the magic cell even when the user edits around them. Without an anchor (a sidebar turn) or
 * when that cell was deleted, the cell goes at the end: the same rule as the server's recorders (rtc.py
 * index_after), so a notebook looks the same whoever records it.
 */
export function insertionIndex(
  cellIds: readonly (string | undefined)[],
  afterCellId?: string
): number {
  const anchor = afterCellId === undefined ? -1 : cellIds.indexOf(afterCellId);
  return anchor === -1 ? cellIds.length : anchor + 1;
}
