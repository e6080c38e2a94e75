// <credits-children> in headless Chromium: the demo page with
// `children=true` for a partner's token; prints one JSON line with each
// row as shown (name, figures, status text, the bar's colour and ARIA
// value), axe-core's findings, and what else the page did.
//
//   node children.mjs BASE TOKEN CUSTOMER CREDIT_SYSTEM SCREENSHOT
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const [base, token, customer, creditSystem, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error('usage: node children.mjs BASE TOKEN CUSTOMER CREDIT_SYSTEM SCREENSHOT');
  process.exit(2);
}
const origin = new URL(base);
const seen = { external: [], pageErrors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.host === origin.host) return route.continue();
    seen.external.push(url.href);
    return route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
  const url = new URL('/widgets/demo', base);
  url.search = new URLSearchParams({ token, customer, creditSystem, children: 'true' }).toString();
  await page.goto(url.href, { waitUntil: 'load' });
  const widget = page.locator('credits-children');
  await widget.locator('tbody tr').first().waitFor({ timeout: 10000 });
  await page.locator('credits-balance').getByText('Live', { exact: true }).waitFor({ timeout: 10000 });
  const rows = [];
  for (const row of await widget.locator('tbody tr').all()) {
    const bar = row.getByRole('progressbar');
    rows.push({
      cells: await row.locator('th, td').allInnerTexts(),
      status: await row.getAttribute('data-status'),
      valuenow: await bar.getAttribute('aria-valuenow'),
      valuetext: await bar.getAttribute('aria-valuetext'),
      colour: await bar.locator('.fill').evaluate((el) => getComputedStyle(el).backgroundColor),
      width: await bar.locator('.fill').evaluate((el) => el.getBoundingClientRect().width
        / el.parentElement.getBoundingClientRect().width),
    });
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.evaluate(`${axeSource}\n;0`);
  const axe = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return { rules: r.passes.length + r.violations.length + r.incomplete.length,
      violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help })) };
  });
  console.log(JSON.stringify({ rows, axe, ...seen }));
} catch (e) {
  failed = true;
  console.log(JSON.stringify({ error: String(e && e.stack || e), ...seen }));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
