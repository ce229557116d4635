/**
 * One real turn against the scripted LLM, in the RTC and the no-RTC server (projects in
 * playwright.config.js): plan ticks, the generated cell with its plot lands in the notebook,
 * Stop interrupts a long cell, a reload restores the chat.
 */
import { expect, test } from '@jupyterlab/galata';
import {
  codeReply,
  notebookWithSidebar,
  planReply,
  reloadWithNotebook,
  screenshot,
  sendMessage,
  serverSideReady,
  startScriptedLLM
} from './helpers';

const PLOT_CODE = `
import matplotlib.pyplot as plt
values = [3, 1, 4, 1, 5, 9, 2, 6]
plt.plot(values, marker="o")
plt.title("scripted plot")
plt.show()
`;

test.beforeEach(async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
});

test('a turn: plan ticks, cell with plot appears in the notebook, answer and usage shown', async ({
  page
}, testInfo) => {
  const llm = await startScriptedLLM({
    planner: [
      { content: planReply('Plot the values.', { plan: ['Plot the values', 'Report'] }), delay: 1.5 },
      planReply('I plotted the values: the peak is 9.', { sendTo: 'User', stop: 'Completed', plan: ['Plot the values', 'Report'], step: 2 })
    ],
    coder: [{ content: codeReply(PLOT_CODE, 'A line plot of the values.'), chunk_delay: 0.05, chunk_chars: 8 }]
  });
  try {
    await notebookWithSidebar(page, `turn-${testInfo.project.name}.ipynb`);
    await sendMessage(page, 'Plot 3 1 4 1 5 9 2 6');
    await expect(page.locator('.jp-TaskWeaver-stop')).toBeVisible();
    await expect(page.locator('.jp-TaskWeaver-planStep')).toHaveCount(2, { timeout: 30000 });
    if (testInfo.project.name === 'rtc') {
      await screenshot(page, 'sidebar-mid-turn.png');
    }
    await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('peak is 9', { timeout: 60000 });
    await expect(page.locator('.jp-TaskWeaver-planStep[data-state="done"]')).toHaveCount(2);
    // Once the turn ended, the working (plan, code, outputs) folds under the answer; open it again.
    await expect(page.locator('.jp-TaskWeaver-send')).toBeVisible({ timeout: 30000 });
    await page.locator('.jp-TaskWeaver-working > summary').click();
    await expect(page.locator('.jp-TaskWeaver-outputs img')).toBeVisible();
    await expect(page.locator('.jp-TaskWeaver-usage')).toContainText('LLM call');
    const notebookPlot = page.locator('.jp-NotebookPanel .jp-Cell .jp-OutputArea-output img');
    await expect(notebookPlot.first()).toBeVisible({ timeout: 30000 });
    await expect(page.locator('.jp-NotebookPanel .jp-Cell').filter({ hasText: 'scripted plot' })).not.toHaveCount(0);
    if (testInfo.project.name === 'rtc') {
      await screenshot(page, 'sidebar-answer.png');
    }
  } finally {
    llm.stop();
  }
});

test('Stop interrupts a long-running cell', async ({ page }, testInfo) => {
  const llm = await startScriptedLLM({
    planner: [
      planReply('Wait for a long time.'),
      planReply('Stopped as asked.', { sendTo: 'User', stop: 'Completed' })
    ],
    coder: [codeReply('import time\nfor _ in range(600):\n    time.sleep(0.1)')]
  });
  try {
    await notebookWithSidebar(page, `stop-${testInfo.project.name}.ipynb`);
    await sendMessage(page, 'Sleep for a minute');
    await expect(page.locator('.jp-TaskWeaver-badge.jp-mod-ok')).toBeVisible({ timeout: 30000 });
    await page.waitForTimeout(1500);
    const started = Date.now();
    await page.locator('.jp-TaskWeaver-stop').click();
    await expect(page.locator('.jp-TaskWeaver-send')).toBeVisible({ timeout: 20000 });
    expect(Date.now() - started).toBeLessThan(20000);
    await expect(page.locator('.jp-TaskWeaver-turn').last()).toHaveAttribute('data-state', /stopped|finished|failed/);
  } finally {
    llm.stop();
  }
});

test('reloading the page restores the chat from the notebook record', async ({ page }, testInfo) => {
  const name = `reload-${testInfo.project.name}.ipynb`;
  const llm = await startScriptedLLM({
    planner: [
      planReply('Compute 6 times 7.'),
      planReply('The answer is 42.', { sendTo: 'User', stop: 'Completed' })
    ],
    coder: [codeReply('6 * 7')]
  });
  try {
    await notebookWithSidebar(page, name);
    await sendMessage(page, 'What is 6 times 7?');
    await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('42', { timeout: 60000 });
    await page.waitForTimeout(2000); // autosave / frontend save
    await reloadWithNotebook(page, name);
    await expect(page.locator('.jp-TaskWeaver-userMessage')).toContainText('6 times 7', { timeout: 30000 });
    await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('42');
  } finally {
    llm.stop();
  }
});
