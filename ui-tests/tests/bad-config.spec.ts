import { expect, test } from '@jupyterlab/galata';
import { notebookWithSidebar } from './helpers';

test.use({ autoGoto: true });

// Issue 12 item 12: the server runs with TaskWeaverLab.max_attempts=0 (playwright.config.js, project "bad-config").
// The extension loads degraded, and the sidebar says what is wrong instead of showing a raw 404 HTML page.
test('a bad server config value is what the sidebar shows', async ({ page }) => {
  const status = await page.request.get('/taskweaver_lab/status');
  expect(status.status()).toBe(500);
  expect((await status.json()).error).toContain('max_attempts');

  await notebookWithSidebar(page, 'bad-config.ipynb');
  const panel = page.locator('.jp-TaskWeaver-panel');
  const error = panel.locator('.jp-TaskWeaver-error').first();
  await expect(error).toContainText('max_attempts', { timeout: 30000 });
  await expect(error).toContainText('restart the Jupyter server');
  const shown = (await panel.innerText()).toLowerCase();
  expect(shown).not.toContain('<html');
  expect(shown).not.toContain('404');
  expect(shown).not.toContain('traceback');
});
