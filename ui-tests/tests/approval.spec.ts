/**
 * Approval mode (no-RTC server): the user switches the policy in the panel's header; every verified
 * step then waits for Run / Edit / Skip, and the decisions shape what runs in the notebook's kernel.
 */
import { expect, test } from '@jupyterlab/galata';
import { codeReply, notebookWithSidebar, planReply, sendMessage, serverSideReady, startScriptedLLM } from './helpers';

const PLAN = ['Set a', 'Set b', 'Print a warning'];

test.beforeEach(async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
});

test('approval mode: Run, Edit and Skip each step', async ({ page }) => {
  const llm = await startScriptedLLM({
    planner: [
      planReply('Set a.', { plan: PLAN, step: 1 }),
      planReply('Set b.', { plan: PLAN, step: 2 }),
      planReply('Print a warning.', { plan: PLAN, step: 3 }),
      planReply('a + b is 42; the warning step was skipped.', { sendTo: 'User', stop: 'Completed', plan: PLAN, step: 3 })
    ],
    coder: [codeReply('a = 40'), codeReply('b = 1'), codeReply('print("never printed")')]
  });
  try {
    await notebookWithSidebar(page, 'approval.ipynb');
    await page.locator('.jp-TaskWeaver-approvalSwitch select').selectOption('approve');
    await sendMessage(page, 'Set a and b so that they add up to 42, then print a warning');
    const pending = page.locator('.jp-TaskWeaver-approval:not(.jp-mod-resolved)');

    await expect(pending).toContainText('a = 40', { timeout: 30000 });
    await pending.getByRole('button', { name: 'Run', exact: true }).click();

    await expect(pending).toContainText('b = 1', { timeout: 30000 });
    await pending.getByRole('button', { name: 'Edit' }).click();
    await pending.locator('.jp-TaskWeaver-approvalEditor').fill('b = 2');
    await pending.getByRole('button', { name: 'Run edited' }).click();

    await expect(pending).toContainText('never printed', { timeout: 30000 });
    await pending.getByRole('button', { name: 'Skip' }).click();

    await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('42', { timeout: 30000 });
    const decisions = page.locator('.jp-TaskWeaver-approval.jp-mod-resolved');
    await expect(decisions).toHaveText(['Decision: run', 'Decision: edit', 'Decision: skip']);

    // What ran is what the user decided: the edited cell is in the notebook, the skipped one never ran.
    const cells = page.locator('.jp-NotebookPanel .jp-Cell .jp-InputArea-editor');
    await expect(cells.filter({ hasText: 'b = 2' })).toHaveCount(1, { timeout: 30000 });
    await expect(cells.filter({ hasText: 'b = 1' })).toHaveCount(0);
    await expect(page.locator('.jp-NotebookPanel .jp-OutputArea-output', { hasText: 'never printed' })).toHaveCount(0);
  } finally {
    llm.stop();
  }
});
