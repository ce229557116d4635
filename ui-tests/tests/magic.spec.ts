/**
 * %%taskweaver in a notebook open in Lab, with the chat sidebar watching it. With RTC off (project
 * "no-rtc") the server leaves the turn's cells to the sidebar and says where each goes (after_cell_id);
 * with RTC on the server puts them into the shared document itself. Either way they must land right
 * below the magic cell, in order, above the cells that were already below it, and only once.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { codeReply, notebookWithSidebar, planReply, serverSideReady, startScriptedLLM } from './helpers';

const CODE = 'x = 6 * 7\nprint(x)';

test.beforeEach(async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
});

/** The sources of the active notebook's cells, from its model (markdown cells render their input away). */
async function cellSources(page: IJupyterLabPageFixture): Promise<string[]> {
  return page.evaluate(() => {
    const panel = (window as any).jupyterapp.shell.currentWidget;
    return panel.content.model.sharedModel.cells.map((cell: any) => cell.getSource());
  });
}

/** The magic finds its notebook through the server's session of its kernel: wait until that has the new name. */
async function sessionRenamed(page: IJupyterLabPageFixture, name: string): Promise<void> {
  await expect
    .poll(
      async () => {
        const sessions: { path: string }[] = await (await page.request.get('/api/sessions')).json();
        return sessions.some(session => session.path.endsWith(`/${name}`));
      },
      { timeout: 30000 }
    )
    .toBe(true);
}

test('a magic turn\'s cells land below the magic cell, above the cells after it', async ({ page }, testInfo) => {
  const llm = await startScriptedLLM({
    planner: [planReply('Compute x.'), planReply('x is 42.', { sendTo: 'User', stop: 'Completed' })],
    coder: [codeReply(CODE)]
  });
  try {
    const name = `magic-${testInfo.project.name}.ipynb`;
    await notebookWithSidebar(page, name);
    await sessionRenamed(page, name);
    await page.notebook.setCell(0, 'code', '%load_ext taskweaver_lab');
    await page.notebook.addCell('code', '%%taskweaver\nSet x to 6 times 7');
    await page.notebook.addCell('code', "print('below')");
    await page.notebook.runCell(0, { inplace: true });
    await page.notebook.runCell(1, { inplace: true, wait: false });

    // The sidebar shows the magic's turn like its own.
    await expect(page.locator('.jp-TaskWeaver-answer')).toContainText('x is 42', { timeout: 60000 });
    // The answer's record cell is the turn's last one (it follows the answer event, after a save).
    await expect
      .poll(async () => (await cellSources(page)).some(source => source.includes('x is 42')), { timeout: 30000 })
      .toBe(true);
    const sources = await cellSources(page);
    expect(sources[0]).toBe('%load_ext taskweaver_lab');
    expect(sources[1]).toMatch(/^%%taskweaver/);
    expect(sources[sources.length - 1]).toBe("print('below')");
    const turnCells = sources.slice(2, -1);
    expect(turnCells.filter(source => source.trim() === CODE)).toHaveLength(1);
    expect(turnCells[0]).toContain('Set x to 6 times 7'); // the request's record cell comes first
    expect(turnCells[turnCells.length - 1]).toContain('x is 42'); // the answer last
  } finally {
    llm.stop();
  }
});
