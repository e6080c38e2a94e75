// The console in headless Chromium (`tests/browser.rs` sets up the data):
//
//   node console.mjs BASE ADMIN_KEY READ_KEY SCREENSHOT_DIR
//
// Signs in (a wrong key first), finds the navigation, searches and opens
// a customer, grants credits from the UI and waits for the balance and
// the history to show them, reads a plan's tiers, then signs in with a
// READ key and looks for write controls. Runs axe-core on every page it
// visits. Prints one JSON object; a failure prints {"failed":…} and exits 1.
import { run } from './harness.mjs';

const [base, adminKey, readKey, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node console.mjs BASE ADMIN_KEY READ_KEY SCREENSHOT_DIR');
  process.exit(2);
}

await run(base, shots, async ({ page, axe, shot }) => {
  const main = page.locator('main');

  // Sign in: a wrong key, then the admin key.
  await page.goto(new URL('/console', base).href, { waitUntil: 'load' });
  await page.getByLabel('API key').fill('ck_live_wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const wrong = await page.getByRole('alert').filter({ hasText: /not accepted/ }).innerText({ timeout: 10000 });
  await axe('signin');
  await shot('signin');
  await page.getByLabel('API key').fill(adminKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console/customers', { timeout: 10000 });
  await main.getByRole('heading', { name: 'Customers', level: 1 }).waitFor({ timeout: 10000 });
  const nav = {};
  for (const name of ['Customers', 'Plans', 'Credit systems', 'Orders', 'Webhooks', 'Jobs', 'API keys']) {
    nav[name] = await page.getByRole('navigation').getByRole('link', { name, exact: true }).getAttribute('href');
  }
  const storage = await page.evaluate(() => ({
    session: Object.values(sessionStorage), local: localStorage.length, cookies: document.cookie }));
  const allCustomers = await main.locator('tbody tr').count();
  await axe('customers');

  // Search, then open the customer from the list.
  await main.getByLabel(/Search customers/).fill('ali');
  await main.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL('**/console/customers?q=ali');
  await main.locator('tbody tr').first().waitFor();
  await page.waitForFunction(() => document.querySelectorAll('main tbody tr').length === 1, null, { timeout: 5000 });
  const found = await main.locator('tbody tr').allInnerTexts();
  await shot('customers');
  await main.getByRole('link', { name: 'alice', exact: true }).click();
  await page.waitForURL('**/console/customers/alice');
  const balance = page.locator('credits-balance');
  const available = balance.locator('dd[data-field="available"]');
  await balance.getByText('Live', { exact: true }).waitFor({ timeout: 10000 });
  const before = await available.innerText();
  const history = page.locator('credits-history');
  await history.locator('tbody tr').first().waitFor({ timeout: 10000 });
  const historyBefore = await history.locator('tbody tr').count();

  // Grant from the UI.
  const grant = main.getByRole('region', { name: 'Grant credits' });
  await grant.getByLabel('Credit system').selectOption('photos');
  // First an amount finer than the credit system's precision: refused,
  // with the server's message, and nothing granted.
  await grant.getByLabel('Amount').fill('0.5');
  await grant.getByLabel('Reason').fill('Too fine');
  await grant.getByRole('button', { name: 'Grant credits' }).click();
  const refused = await grant.getByRole('status').filter({ hasText: 'Not granted' }).innerText({ timeout: 10000 });
  await grant.getByLabel('Amount').fill('250');
  await grant.getByLabel('Category').selectOption('PROMOTIONAL');
  await grant.getByLabel('Reason').fill('Console goodwill');
  // Read before the click: the live update may arrive before the answer.
  const shownBefore = await available.textContent();
  await grant.getByRole('button', { name: 'Grant credits' }).click();
  const granted = await grant.getByRole('status').filter({ hasText: 'Granted' }).innerText({ timeout: 10000 });
  await page.waitForFunction((old) => {
    const dd = document.querySelector('credits-balance').shadowRoot.querySelector('dd[data-field="available"]');
    return dd && dd.textContent !== old;
  }, shownBefore, { timeout: 5000, polling: 50 });
  const after = await available.innerText();
  const newHistory = page.locator('credits-history');
  await newHistory.locator('tbody tr').first().waitFor({ timeout: 10000 });
  await page.waitForFunction((n) => document.querySelector('credits-history').shadowRoot
    .querySelectorAll('tbody tr').length > n, historyBefore, { timeout: 5000 });
  const firstEntry = await newHistory.locator('tbody tr').first().evaluate((tr) => [...tr.cells].map((c) => c.innerText.trim()));
  await shot('customer');
  await axe('customer');

  // Plans, through the navigation, and a plan's tiers; credit systems.
  await page.getByRole('navigation').getByRole('link', { name: 'Plans', exact: true }).click();
  await page.waitForURL('**/console/plans');
  await main.getByRole('link', { name: 'pro', exact: true }).click();
  await page.waitForURL('**/console/plans/pro');
  await main.getByRole('heading', { name: 'Pro', level: 1 }).waitFor({ timeout: 10000 });
  const tiers = await main.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.innerText.trim())));
  const planText = await main.innerText();
  await shot('plan');
  await axe('plan');
  await page.getByRole('navigation').getByRole('link', { name: 'Credit systems', exact: true }).click();
  await page.waitForURL('**/console/credit-systems');
  await main.getByRole('link', { name: 'photos', exact: true }).waitFor({ timeout: 10000 });
  await axe('credit-systems');
  const others = {};
  for (const [name, path] of [['Orders', 'orders'], ['Webhooks', 'webhooks'], ['Jobs', 'jobs'], ['API keys', 'api-keys']]) {
    await page.getByRole('navigation').getByRole('link', { name, exact: true }).click();
    await page.waitForURL(`**/console/${path}`);
    await main.getByRole('heading', { name, level: 1 }).waitFor({ timeout: 10000 });
    others[name] = await main.innerText();
    await axe(path);
  }
  // Back and forward: the History API.
  await page.goBack();
  await page.waitForURL('**/console/jobs');
  await main.getByRole('heading', { name: 'Jobs', level: 1 }).waitFor({ timeout: 10000 });

  // Sign out; a READ key sees no write controls, on a linked customer URL.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').waitFor();
  const afterSignOut = await page.evaluate(() => sessionStorage.length);
  await page.goto(new URL('/console/customers/alice', base).href, { waitUntil: 'load' });
  await page.getByLabel('API key').fill(readKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console/customers/alice');
  await page.locator('credits-balance').getByText('Live', { exact: true }).waitFor({ timeout: 10000 });
  const readAvailable = await page.locator('credits-balance dd[data-field="available"]').innerText();
  const readView = {
    available: readAvailable,
    grantButtons: await page.getByRole('button', { name: 'Grant credits' }).count(),
    // Forms of the console itself (not the widgets' own filters).
    forms: await page.evaluate(() => document.querySelectorAll('main form').length),
    who: await page.locator('#who').innerText(),
  };
  await shot('customer-read');
  await axe('customer-read');

  // A linked customer that doesn't exist: said so, signed in still.
  await page.goto(new URL('/console/customers/nobody', base).href, { waitUntil: 'load' });
  await main.getByRole('heading', { name: 'Not found', level: 1 }).waitFor({ timeout: 10000 });
  const missing = await main.getByRole('alert').innerText();

  return { wrong, refused, missing, nav, storage, allCustomers, found, before, after, granted, firstEntry,
    tiers, planText, others, afterSignOut, readView };
}, { prefix: 'console-' });
