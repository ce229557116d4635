import { expect, IJupyterLabPageFixture } from '@jupyterlab/galata';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const LLM_PORT = 18013;
export const SIDEBAR_ID = 'jp-TaskWeaver-sidebar';
export const SCREENSHOTS = path.resolve(__dirname, '..', '..', 'docs', 'images');

/** Planner reply in ARCHITECTURE A1's JSON form (same shape as taskweaver_lab.testing.plan_reply). */
export function planReply(
  message: string,
  options: { sendTo?: string; stop?: string; plan?: string[]; step?: number } = {}
): string {
  const plan = options.plan ?? [message];
  return JSON.stringify({
    init_plan: plan,
    plan,
    current_plan_step: options.step ?? 1,
    send_to: options.sendTo ?? 'CodeInterpreter',
    message,
    stop: options.stop ?? 'InProcess'
  });
}

/** Code Generator reply in the Markdown form. */
export function codeReply(code: string, thought = 'Here is the code.'): string {
  return `${thought}\n\`\`\`python\n${code.trim()}\n\`\`\``;
}

export type Script = Record<string, Array<string | Record<string, unknown>>>;

/** Starts `python -m taskweaver_lab.testing serve` with a script; stop() ends it. */
export async function startScriptedLLM(script: Script): Promise<{ stop: () => void }> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tw-script-')), 'script.json');
  fs.writeFileSync(file, JSON.stringify(script));
  const child = spawn(
    process.env.PYTHON || 'python',
    ['-m', 'taskweaver_lab.testing', 'serve', '--script', file, '--port', String(LLM_PORT)],
    { stdio: ['ignore', 'pipe', 'pipe'] }
  );
  await waitForLine(child, 'BASE_URL=');
  return { stop: () => child.kill() };
}

function waitForLine(child: ChildProcess, marker: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`scripted LLM did not start: ${output}`)), 20000);
    const onData = (data: Buffer) => {
      output += data.toString();
      if (output.includes(marker)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', code => reject(new Error(`scripted LLM exited (${code}): ${output}`)));
  });
}

/** True when the server side of the protocol is present (status answers). */
export async function serverSideReady(page: IJupyterLabPageFixture): Promise<boolean> {
  const response = await page.request.get('/taskweaver_lab/status');
  return response.ok();
}

export async function openSidebar(page: IJupyterLabPageFixture): Promise<void> {
  // The extension's own command (activateById) is deterministic across reloads, unlike toggling the tab.
  await page.evaluate(() => (window as any).jupyterapp.commands.execute('taskweaver:open'));
  await expect(page.locator('.jp-TaskWeaver-panel')).toBeVisible();
}

/** A new notebook with an idle python kernel, and the sidebar open on it. */
export async function notebookWithSidebar(page: IJupyterLabPageFixture, name: string): Promise<void> {
  await page.notebook.createNew(name);
  await page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').waitFor({ timeout: 60000 });
  await openSidebar(page);
  await expect(page.locator('.jp-TaskWeaver-binding')).toContainText(name);
}

export async function sendMessage(page: IJupyterLabPageFixture, text: string): Promise<void> {
  await page.locator('.jp-TaskWeaver-input').fill(text);
  await page.locator('.jp-TaskWeaver-send').click();
}

export async function screenshot(page: IJupyterLabPageFixture, name: string): Promise<void> {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, name) });
}

/** Reloads Lab and makes sure `name` is open (restored by the workspace, or opened again) with the sidebar. */
export async function reloadWithNotebook(page: IJupyterLabPageFixture, name: string): Promise<void> {
  // galata's page.reload() waits on a tab state this layout never reaches; a plain browser reload is enough.
  await page.evaluate(() => window.location.reload());
  await page.waitForFunction(() => (window as any).jupyterapp?.started, undefined, { timeout: 60000 });
  await page.locator('#jp-main-dock-panel').waitFor();
  const tab = page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: name });
  if ((await tab.count()) === 0) {
    await page.filebrowser.open(name);
  } else {
    await tab.first().click();
  }
  await page.locator('.jp-NotebookPanel').first().waitFor();
  await openSidebar(page);
}
