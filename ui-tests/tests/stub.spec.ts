/** The sidebar against the protocol stub (TW_UI_STUB=1 only): rendering and frontend cell insertion. */
import { expect, test } from '@jupyterlab/galata';
import { notebookWithSidebar, reloadWithNotebook, sendMessage } from './helpers';

test('stub turn renders plan ticks, outputs, answer, usage and inserts the cell', async ({ page }) => {
  await notebookWithSidebar(page, 'stub.ipynb');
  await sendMessage(page, 'Plot the values');
  await expect(page.locator('.jp-TaskWeaver-stop')).toBeVisible();
  await expect(page.locator('.jp-TaskWeaver-planStep')).toHaveCount(2, { timeout: 20000 });
  await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('peak is', { timeout: 20000 });
  await expect(page.locator('.jp-TaskWeaver-planStep[data-state="done"]')).toHaveCount(2);
  await expect(page.locator('.jp-TaskWeaver-outputs img')).toBeVisible();
  await expect(page.locator('.jp-TaskWeaver-badge.jp-mod-ok')).toBeVisible();
  await expect(page.locator('.jp-TaskWeaver-usage')).toContainText('3 LLM calls');
  await expect(page.locator('a.jp-TaskWeaver-artifact')).toHaveAttribute('href', /\/files\/.*plot\.png/);
  await expect(page.locator('.jp-TaskWeaver-send')).toBeVisible();
  const cellImage = page.locator('.jp-NotebookPanel .jp-Cell .jp-OutputArea-output img');
  await expect(cellImage.first()).toBeVisible({ timeout: 10000 });
  await reloadWithNotebook(page, 'stub.ipynb');
  await expect(page.locator('.jp-TaskWeaver-userMessage')).toContainText('Plot the values', { timeout: 20000 });
  await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('peak is');
});
