/**
 * Issue 14 item 2: "Test connection" in the sidebar's header tries the endpoint the user's turns would use and says
 * in one line what works (models listed, JSON mode), or why it does not. Real server, scripted LLM endpoint.
 */
import { expect, test } from '@jupyterlab/galata';
import { LLM_PORT, openSidebar, serverSideReady, startScriptedLLM } from './helpers';

test.beforeEach(async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
});

test('Test connection lists the models and the JSON mode, then says when the endpoint is down', async ({ page }) => {
  const endpoint = `http://127.0.0.1:${LLM_PORT}/v1`;
  const llm = await startScriptedLLM({ planner: ['{"ok": true}'], coder: [] });
  let running = true;
  try {
    await openSidebar(page);
    const button = page.locator('.jp-TaskWeaver-testConnection');
    const line = page.locator('.jp-TaskWeaver-connection');
    await button.click();
    await expect(line).toHaveAttribute('data-state', 'ok', { timeout: 60000 });
    await expect(line).toHaveText(`Connected to ${endpoint}: 2 models, JSON mode works (json_schema).`);

    llm.stop();
    running = false;
    await button.click();
    await expect(line).toHaveAttribute('data-state', 'failed', { timeout: 90000 });
    await expect(line).toContainText(`Cannot get a reply from the LLM endpoint ${endpoint}`);
  } finally {
    if (running) {
      llm.stop();
    }
  }
});
