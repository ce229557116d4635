import { expect, test } from '@jupyterlab/galata';
import { notebookWithSidebar } from './helpers';

test.use({ autoGoto: true });

// Issue 12 item 12, the other half: the front end installed but the taskweaver_lab server extension not loaded
// (playwright.config.js, project "no-server-extension"). Its routes answer with Jupyter's 404 HTML page: the
// sidebar must say what that means (src/api.ts errorMessage), never show the page itself.
test('a server without the extension is explained in the sidebar, not shown as an HTML page', async ({ page }) => {
  const status = await page.request.get('/taskweaver_lab/status');
  expect(status.status()).toBe(404);
  expect((await status.text()).toLowerCase()).toContain('<html'); // what the sidebar used to show

  await notebookWithSidebar(page, 'no-server-extension.ipynb');
  const panel = page.locator('.jp-TaskWeaver-panel');
  const error = panel.locator('.jp-TaskWeaver-error').first();
  await expect(error).toContainText('jupyter server extension enable taskweaver_lab', { timeout: 30000 });
  const shown = (await panel.innerText()).toLowerCase();
  expect(shown).not.toContain('<html');
  expect(shown).not.toContain('<!doctype');
});
