/**
 * Issue 16 item 9: the sidebar passes an automated accessibility check (axe-core, WCAG 2 A/AA rules) in the
 * light and the dark theme, with a finished turn on screen (answer, figure links, folded working, error).
 */
import AxeBuilder from '@axe-core/playwright';
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { codeReply, notebookWithSidebar, planReply, sendMessage, serverSideReady, startScriptedLLM } from './helpers';

test.beforeEach(async ({ page }) => {
  test.skip(!(await serverSideReady(page)), 'taskweaver_lab/status is not served yet (handlers.py missing)');
});

/** axe's violations inside the sidebar; checks first that it did examine the sidebar's buttons and colours. */
async function sidebarViolations(page: IJupyterLabPageFixture): Promise<string[]> {
  const results = await new AxeBuilder({ page })
    .include('#jp-TaskWeaver-sidebar')
    .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
    .analyze();
  const examined = [...results.passes, ...results.violations].map(rule => rule.id);
  expect(examined).toEqual(expect.arrayContaining(['button-name', 'color-contrast', 'label']));
  return results.violations.map(
    violation => `${violation.id}: ${violation.help} (${violation.nodes.map(node => node.target.join(' ')).join(', ')})`
  );
}

/**
 * WCAG contrast of the sidebar's own text. axe's color-contrast rule examines only form controls in
 * JupyterLab's DOM (it skips the text of Lab's own panels too), so the text is measured here: each
 * element's colour, alpha-blended over its first opaque background, against that background.
 */
const TEXT = [
  '.jp-TaskWeaver-binding',
  '.jp-TaskWeaver-plan .jp-TaskWeaver-planTitle',
  '.jp-TaskWeaver-models',
  '.jp-TaskWeaver-userMessage',
  '.jp-TaskWeaver-working > summary',
  '.jp-TaskWeaver-executionStatus',
  '.jp-TaskWeaver-errorLine',
  '.jp-TaskWeaver-answer p',
  '.jp-TaskWeaver-figuresTitle',
  '.jp-TaskWeaver-figureLink',
  '.jp-TaskWeaver-usage',
  '.jp-TaskWeaver-copy',
  '.jp-TaskWeaver-send'
];

async function lowContrast(page: IJupyterLabPageFixture): Promise<string[]> {
  return page.evaluate(selectors => {
    const rgba = (text: string): number[] => {
      const parts = (text.match(/[\d.]+/g) ?? []).map(Number);
      return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0, parts[3] ?? 1];
    };
    const over = (top: number[], bottom: number[]): number[] =>
      [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
    const background = (element: Element | null): number[] => {
      const layers: number[][] = [];
      for (let node = element; node; node = node.parentElement) {
        const color = rgba(getComputedStyle(node).backgroundColor);
        if (color[3] > 0) {
          layers.push(color);
          if (color[3] >= 1) {
            break;
          }
        }
      }
      return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255, 1]);
    };
    const luminance = (color: number[]): number => {
      const [r, g, b] = color.slice(0, 3).map(v => {
        const c = v / 255;
        return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const problems: string[] = [];
    let measured = 0;
    for (const selector of selectors) {
      const element = document.querySelector(`#jp-TaskWeaver-sidebar ${selector}`);
      if (!element) {
        problems.push(`${selector}: not on screen`);
        continue;
      }
      const back = background(element);
      const fore = over(rgba(getComputedStyle(element).color), back);
      const [light, dark] = [luminance(fore), luminance(back)].sort((a, b) => b - a);
      const ratio = (light + 0.05) / (dark + 0.05);
      measured += 1;
      if (ratio < 4.5) {
        problems.push(`${selector}: contrast ${ratio.toFixed(2)} < 4.5`);
      }
    }
    return measured ? problems : ['nothing measured'];
  }, TEXT);
}

async function setTheme(page: IJupyterLabPageFixture, theme: string, isLight: boolean): Promise<void> {
  await page.evaluate(
    name => (window as any).jupyterapp.commands.execute('apputils:change-theme', { theme: name }),
    theme
  );
  await expect(page.locator('body')).toHaveAttribute('data-jp-theme-light', String(isLight), { timeout: 30000 });
  await page.waitForTimeout(1000); // the theme's stylesheet applies after the attribute changes
}

test('the sidebar passes axe-core in the light and the dark theme', async ({ page }, testInfo) => {
  const llm = await startScriptedLLM({
    planner: [
      planReply('Add up the two sales figures.'),
      planReply('The total sales are 16250.', { sendTo: 'User', stop: 'Completed' })
    ],
    coder: [codeReply('print(missing_name)'), codeReply('total = 7000 + 9250\nprint(total)')]
  });
  try {
    await notebookWithSidebar(page, `a11y-${testInfo.project.name}.ipynb`);
    await sendMessage(page, 'What are the total sales of the two shops?');
    await expect(page.locator('.jp-TaskWeaver-figureLink')).toBeVisible({ timeout: 60000 });
    await expect(page.locator('.jp-TaskWeaver-send')).toBeVisible({ timeout: 30000 });
    await page.locator('.jp-TaskWeaver-working > summary').click();
    await expect(page.locator('.jp-TaskWeaver-errorLine')).toBeVisible();
    await page.locator('.jp-TaskWeaver-input').fill('Next question');

    await setTheme(page, 'JupyterLab Light', true);
    expect(await sidebarViolations(page)).toEqual([]);
    expect(await lowContrast(page)).toEqual([]);
    await setTheme(page, 'JupyterLab Dark', false);
    expect(await sidebarViolations(page)).toEqual([]);
    expect(await lowContrast(page)).toEqual([]);
  } finally {
    await setTheme(page, 'JupyterLab Light', true).catch(() => undefined);
    llm.stop();
  }
});
