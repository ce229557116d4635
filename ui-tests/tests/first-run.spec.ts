import { expect, test } from '@jupyterlab/galata';
import { openSidebar, serverSideReady, SIDEBAR_ID } from './helpers';

test.use({ autoGoto: true });

test('the sidebar panel opens from the right side bar', async ({ page }) => {
  await openSidebar(page);
  await expect(page.locator(`#${SIDEBAR_ID}`)).toBeVisible();
  await expect(page.locator('.jp-TaskWeaver-binding')).toContainText('No notebook open');
});

test('the panel binds to the active notebook', async ({ page }) => {
  await page.notebook.createNew('bound.ipynb');
  await openSidebar(page);
  await expect(page.locator('.jp-TaskWeaver-binding')).toContainText('bound.ipynb');
});

test('first run with no LLM endpoint shows how to configure one', async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
  await page.notebook.createNew('first-run.ipynb');
  await openSidebar(page);
  const help = page.locator('.jp-TaskWeaver-firstRun');
  await expect(help).toBeVisible();
  await expect(help).toContainText(/OPENAI_BASE_URL|base_url/);
  await expect(page.locator('.jp-TaskWeaver-input')).toBeDisabled();
});
