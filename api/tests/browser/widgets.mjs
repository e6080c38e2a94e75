// The customer widgets in headless Chromium, driven step by step by the
// Rust test (`tests/browser.rs`) over stdin/stdout:
//
//   node widgets.mjs BASE TOKEN CUSTOMER CREDIT_SYSTEM SCREENSHOT_DIR
//
// Prints one JSON line per step and waits for a line on stdin where the
// Rust side must act on the server:
//   {"step":"shown",…}    the balance and history show, the socket is live
//     ← "consumed"        (the test consumed credits through the API)
//   {"step":"updated",…}  the new balance showed, and how long it took
//   {"step":"history",…}  "Load more" and the date filter worked
//   {"step":"armed"}      ← "expired" (the test moved its clock past expiry)
//   {"step":"expired",…}  the clear message showed
//   {"step":"reloaded",…} reloaded with the expired token: the message, no figures
//   {"step":"done",…}     what else it saw (requests, errors)
// Any failure prints {"step":"failed","error":…} and exits 1.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// axe-core, evaluated through the DevTools protocol (not a <script>, which
// the page's CSP would rightly refuse).
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const [base, token, customer, creditSystem, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node widgets.mjs BASE TOKEN CUSTOMER CREDIT_SYSTEM SCREENSHOT_DIR');
  process.exit(2);
}
const origin = new URL(base);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (o) => console.log(JSON.stringify(o));
async function expect(word) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== word) throw new Error(`expected ${word} on stdin, got ${value}`);
}
const seen = { external: [], requests: [], cspViolations: [], pageErrors: [], consoleErrors: [] };

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
    if (url.host === origin.host) {
      seen.requests.push(url.pathname);
      return route.continue();
    }
    seen.external.push(url.href);
    return route.abort('blockedbyclient');
  });
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') seen.consoleErrors.push(m.text()); });

  const url = new URL('/widgets/demo', base);
  url.search = new URLSearchParams({ token, customer, creditSystem }).toString();
  const response = await page.goto(url.href, { waitUntil: 'load' });
  if (response.status() !== 200) throw new Error(`GET /widgets/demo: HTTP ${response.status()}`);

  // Every text on the page, shadow roots included.
  const allText = () => page.evaluate(() => {
    const walk = (node) => [...node.childNodes].map((n) =>
      n.nodeType === Node.TEXT_NODE ? n.textContent
        : [n.shadowRoot ? walk(n.shadowRoot) : '', walk(n)].join(' ')).join(' ');
    return walk(document.body);
  });
  const balance = page.locator('credits-balance');
  const field = (name) => balance.locator(`dd[data-field="${name}"]`);
  await balance.getByText('Live', { exact: true }).waitFor({ timeout: 10000 });
  const history = page.locator('credits-history');
  await history.locator('tbody tr').first().waitFor({ timeout: 10000 });
  const usage = page.locator('credits-usage');
  await usage.locator('tbody tr').first().waitFor({ timeout: 10000 });
  const usageSeen = {
    months: await usage.getByRole('listitem').allInnerTexts(),
    days: await usage.locator('tbody tr').evaluateAll((trs) => trs.map((tr) =>
      [...tr.cells].map((c) => c.innerText.trim()))),
  };
  await usage.getByLabel('Group by').selectOption('HOUR');
  await usage.locator('thead th').first().getByText('Hour').waitFor({ timeout: 5000 });
  usageSeen.hours = await usage.locator('tbody tr').evaluateAll((trs) => trs.map((tr) =>
    [...tr.cells].map((c) => c.innerText.trim())));
  const figures = {};
  for (const f of ['available', 'pending', 'expiringSoon', 'scheduled']) figures[f] = await field(f).innerText();
  const status = await balance.getByRole('status').innerText();
  await page.screenshot({ path: `${shots}/widgets.png`, fullPage: true });
  // Accessibility: axe-core's rules (WCAG 2 A/AA and best practices) on
  // the whole page, shadow roots included.
  await page.evaluate(`${axeSource}\n;0`);
  const axe = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return { rules: r.passes.length + r.violations.length + r.incomplete.length,
      violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help })) };
  });
  say({ step: 'shown', figures, status, axe, usage: usageSeen, rows: await history.locator('tbody tr').count(),
    headers: await history.getByRole('columnheader').allInnerTexts(), text: await allText() });

  await expect('consumed');
  const before = figures.available;
  const t0 = Date.now();
  await page.waitForFunction((old) => {
    const dd = document.querySelector('credits-balance').shadowRoot.querySelector('dd[data-field="available"]');
    return dd && dd.textContent !== old;
  }, (await field('available').textContent()), { timeout: 5000, polling: 20 });
  const ms = Date.now() - t0;
  say({ step: 'updated', before, available: await field('available').innerText(), ms });

  // History: the next page, then a date range with nothing in it.
  const rows = await history.locator('tbody tr').count();
  await history.getByRole('button', { name: 'Load more' }).click();
  await page.waitForFunction((n) => document.querySelector('credits-history').shadowRoot
    .querySelectorAll('tbody tr').length > n, rows, { timeout: 5000 });
  const afterMore = await history.locator('tbody tr').count();
  const moreVisible = await history.getByRole('button', { name: 'Load more' }).isVisible();
  await history.getByLabel('From', { exact: true }).fill('2099-01-01');
  await history.getByRole('button', { name: 'Filter' }).click();
  await history.getByText('No entries.').waitFor({ timeout: 5000 });
  const filtered = await history.locator('tbody tr').count();
  await history.getByLabel('From', { exact: true }).fill('');
  await history.getByLabel('To', { exact: true }).fill('2099-01-01');
  await history.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction(() => document.querySelector('credits-history').shadowRoot
    .querySelectorAll('tbody tr').length > 0, null, { timeout: 5000 });
  const ranged = await history.locator('tbody tr').count();
  say({ step: 'history', rows, afterMore, moreVisible, filtered, ranged });

  say({ step: 'armed' });
  await expect('expired');
  const alert = balance.getByRole('alert');
  await alert.getByText(/expired or was refused/).waitFor({ timeout: 5000 });
  await page.screenshot({ path: `${shots}/widgets-expired.png`, fullPage: true });
  say({ step: 'expired', alert: await alert.innerText() });

  // Reloaded with the expired token: the queries answer 401, and both
  // widgets say so instead of showing figures.
  await page.reload({ waitUntil: 'load' });
  await balance.getByRole('alert').getByText(/expired or was refused/).waitFor({ timeout: 5000 });
  await history.getByRole('alert').getByText(/expired or was refused/).waitFor({ timeout: 5000 });
  say({ step: 'reloaded', figures: await balance.locator('dd').count(),
    rows: await history.locator('tbody tr').count() });

  seen.cspViolations = await page.evaluate(() => window.__csp);
  say({ step: 'done', ...seen, text: await allText() });
} catch (e) {
  failed = true;
  say({ step: 'failed', error: String(e && e.stack || e), ...seen });
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
