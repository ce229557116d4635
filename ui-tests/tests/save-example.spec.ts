/**
 * Issue 15 item 3: "Save as example" under an answer writes the round as TaskWeaver example YAMLs next to the
 * notebook (planner and code) and says where; a real turn against the scripted LLM, RTC on and off.
 */
import { expect, test } from '@jupyterlab/galata';
import { codeReply, notebookWithSidebar, planReply, sendMessage, serverSideReady, startScriptedLLM } from './helpers';

test.beforeEach(async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
});

test('Save as example under an answer writes the planner and code examples', async ({ page, tmpPath }, testInfo) => {
  const llm = await startScriptedLLM({
    planner: [planReply('Compute it.'), planReply('It is 42.', { sendTo: 'User', stop: 'Completed' })],
    coder: [codeReply('answer = 6 * 7\nprint(answer)')]
  });
  const name = `example-${testInfo.project.name}`;
  try {
    await notebookWithSidebar(page, `${name}.ipynb`);
    await sendMessage(page, 'What is 6 times 7?');
    await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('It is 42', { timeout: 60000 });
    const button = page.locator('.jp-TaskWeaver-saveExample');
    await expect(button).toBeVisible({ timeout: 30000 });
    await button.click();
    const folder = `${tmpPath}/taskweaver_examples`; // galata opens each test in its own folder
    const planner = `${folder}/${name}-planner-1.yaml`;
    const coder = `${folder}/${name}-code_generator-1.yaml`;
    await expect(page.locator('.jp-TaskWeaver-saved')).toContainText(`Saved as ${planner} and ${coder}`, {
      timeout: 30000
    });
    expect(await page.contents.fileExists(planner)).toBe(true);
    expect(await page.contents.fileExists(coder)).toBe(true);
    await button.click(); // a second save never overwrites the first
    await expect(page.locator('.jp-TaskWeaver-saved')).toContainText(`${name}-planner-2.yaml`, { timeout: 30000 });
  } finally {
    llm.stop();
  }
});
