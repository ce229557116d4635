import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { Locator } from '@playwright/test';
import {
  codeReply,
  LLM_PORT,
  openSidebar,
  planReply,
  sendMessage,
  serverSideReady,
  SIDEBAR_ID,
  startScriptedLLM
} from './helpers';

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

test('a user can point their own turns at their endpoint from the Settings Editor', async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
  const llm = await startScriptedLLM({
    'my-planner': [
      planReply('Compute 6 times 7.'),
      planReply('Your endpoint says 42.', { sendTo: 'User', stop: 'Completed' })
    ],
    'my-coder': [codeReply('6 * 7')]
  });
  try {
    await page.notebook.createNew('own-endpoint.ipynb');
    await page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').waitFor({ timeout: 60000 });
    await openSidebar(page);
    await expect(page.locator('.jp-TaskWeaver-firstRun')).toContainText('Settings Editor > TaskWeaver');

    await page.evaluate(() => (window as any).jupyterapp.commands.execute('settingeditor:open', { query: 'TaskWeaver' }));
    await settingField(page, 'LLM base URL').fill(`http://127.0.0.1:${LLM_PORT}/v1`);
    await settingField(page, 'Planner model').fill('my-planner');
    await settingField(page, 'Code Generator model').fill('my-coder');
    await settingField(page, 'Code Generator model').blur();

    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: 'own-endpoint.ipynb' }).click();
    await expect(page.locator('.jp-TaskWeaver-firstRun')).toHaveCount(0, { timeout: 15000 });
    await expect(page.locator('.jp-TaskWeaver-models')).toContainText('my-planner / my-coder · your endpoint');
    await sendMessage(page, 'What is 6 times 7?');
    await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('Your endpoint says 42', { timeout: 60000 });
  } finally {
    llm.stop();
  }
});

/** The Settings Editor's text box under the heading `title` (the form's fields have no <label>). */
function settingField(page: IJupyterLabPageFixture, title: string): Locator {
  const heading = page.getByRole('heading', { name: title, exact: true, level: 3 });
  return page.locator('div').filter({ has: heading }).last().getByRole('textbox');
}
