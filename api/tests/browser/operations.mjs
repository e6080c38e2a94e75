// The console's Operations and Money pages (`tests/browser_console.rs`
// sets up a failing webhook endpoint with one failed delivery, 55 orders
// of which 5 failed, an invoice):
//
//   node operations.mjs BASE ADMIN_KEY READ_KEY FAILING_URL SCREENSHOT_DIR
//
// Webhooks: creating an endpoint with no event is refused (the API's
// message), then created (its secret shown once), disabled, deleted; the
// failing endpoint's delivery shows its attempt; Redeliver adds a new
// delivery. Email deliveries, jobs. API keys: create a READ key (secret
// and warning shown), revoke it; revoking the last ADMIN key is refused
// with the API's message. Orders: a second page, the FAILED filter, an
// order's page. Invoices. A READ key sees none of it.
import { run } from './harness.mjs';

const [base, adminKey, readKey, failingUrl, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node operations.mjs BASE ADMIN_KEY READ_KEY FAILING_URL SCREENSHOT_DIR');
  process.exit(2);
}

await run(base, shots, async ({ page, axe, shot }) => {
  const main = page.locator('main');
  page.on('dialog', (d) => d.accept());
  const nav = (name) => page.getByRole('navigation').getByRole('link', { name, exact: true }).click();
  const h1 = (name) => main.getByRole('heading', { name, level: 1 }).waitFor({ timeout: 10000 });
  const settled = async (locator) => {
    await page.waitForFunction((el) => el.className === 'ok' || el.className === 'error',
      await locator.elementHandle(), { timeout: 10000 });
    return locator.innerText();
  };
  const rows = (caption) => main.getByRole('table', { name: caption, exact: true }).locator('tbody tr');

  await page.goto(new URL('/console', base).href, { waitUntil: 'load' });
  await page.getByLabel('API key').fill(adminKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console/customers');

  // ---- Webhooks.
  const webhooks = {};
  await nav('Webhooks');
  await h1('Webhooks');
  const form = main.getByRole('region', { name: 'New webhook endpoint' });
  const out = form.getByRole('status').first();
  await form.getByLabel('URL', { exact: true }).fill(`${failingUrl}?copy=2`);
  await form.getByLabel('Description', { exact: true }).fill('Console test');
  for (const box of await form.getByRole('checkbox').all()) await box.uncheck();
  await form.getByRole('button', { name: 'Create endpoint' }).click();
  webhooks.refused = await settled(out);
  await form.getByLabel('credits.granted').check();
  await form.getByRole('button', { name: 'Create endpoint' }).click();
  webhooks.created = await settled(out);
  webhooks.secret = await form.getByLabel('Signing secret', { exact: true }).inputValue();
  await shot('webhooks');
  await axe('webhooks');
  await form.getByRole('button', { name: 'Done, show the endpoints' }).click();
  await page.waitForFunction(() => [...document.querySelectorAll('main table')]
    .find((t) => t.caption?.textContent === 'Webhook endpoints')?.tBodies[0].rows.length === 2, null, { timeout: 10000 });
  webhooks.endpointsAfterCreate = await rows('Webhook endpoints').count();
  await main.getByRole('button', { name: `Disable ${failingUrl}?copy=2`, exact: true }).click();
  await main.getByRole('button', { name: `Enable ${failingUrl}?copy=2`, exact: true }).waitFor({ timeout: 10000 });
  webhooks.disabledRow = await rows('Webhook endpoints').filter({ hasText: 'copy=2' }).innerText();
  await main.getByRole('button', { name: `Delete ${failingUrl}?copy=2`, exact: true }).click();
  await page.waitForFunction(() => [...document.querySelectorAll('main table')]
    .find((t) => t.caption?.textContent === 'Webhook endpoints')?.tBodies[0].rows.length === 1, null, { timeout: 10000 });
  webhooks.endpointsAfterDelete = await rows('Webhook endpoints').count();

  // The failing endpoint's page: its delivery, its attempt; Redeliver.
  await main.getByRole('link', { name: failingUrl, exact: true }).click();
  await h1(`Endpoint ${failingUrl}`);
  const deliveries = rows('Deliveries of this endpoint');
  await deliveries.first().waitFor({ timeout: 10000 });
  webhooks.deliveriesBefore = await deliveries.allInnerTexts();
  await main.getByRole('button', { name: /^Redeliver / }).first().click();
  const said = main.locator('.deliveries [role="status"]');
  await page.waitForFunction(() => document.querySelector('main .deliveries [role="status"]')?.className === 'ok'
    || document.querySelector('main .deliveries [role="status"]')?.className === 'error', null, { timeout: 10000 });
  webhooks.redelivered = await said.innerText();
  webhooks.deliveriesAfter = await deliveries.allInnerTexts();
  await shot('webhook-endpoint');
  await axe('webhook-endpoint');

  // ---- Emails, jobs.
  await nav('Emails');
  await h1('Email deliveries');
  await shot('emails');
  await axe('emails');
  await nav('Jobs');
  await h1('Jobs');
  const jobs = await main.innerText();
  await shot('jobs');
  await axe('jobs');

  // ---- API keys.
  const keys = {};
  await nav('API keys');
  await h1('API keys');
  const create = main.getByRole('region', { name: 'New API key' });
  await create.getByLabel('Name', { exact: true }).fill('ci-reader');
  await create.getByLabel('Role', { exact: true }).selectOption('READ');
  await create.getByRole('button', { name: 'Create key' }).click();
  keys.created = await settled(create.getByRole('status').first());
  keys.warning = await create.locator('.warning').innerText();
  keys.secret = await create.getByLabel('API key secret', { exact: true }).inputValue();
  await shot('api-keys');
  await axe('api-keys');
  await create.getByRole('button', { name: 'Done, show the keys' }).click();
  await rows('API keys').filter({ hasText: 'ci-reader' }).waitFor({ timeout: 10000 });
  await main.getByRole('button', { name: 'Revoke ci-reader', exact: true }).click();
  await page.waitForFunction(() => !document.querySelector('main button[aria-label="Revoke ci-reader"]'), null, { timeout: 10000 });
  keys.revokedRow = await rows('API keys').filter({ hasText: 'ci-reader' }).innerText();
  // The only ADMIN key (this session's): refused, the API says why.
  await rows('API keys').filter({ hasText: 'this session' }).getByRole('button', { name: /^Revoke/ }).click();
  const keyOut = main.locator(':scope > p[role="status"]');
  keys.lastAdmin = await settled(keyOut);

  // ---- Orders: page 1, page 2, FAILED, an order.
  const orders = {};
  await nav('Orders');
  await h1('Orders');
  await rows('Top-up orders').first().waitFor({ timeout: 10000 });
  orders.first = await rows('Top-up orders').count();
  await shot('orders');
  await axe('orders');
  await main.getByRole('link', { name: 'Next page', exact: true }).click();
  await page.waitForURL(/after=/);
  await rows('Top-up orders').first().waitFor({ timeout: 10000 });
  orders.second = await rows('Top-up orders').count();
  await main.getByLabel('Status').selectOption('FAILED');
  await main.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/status=FAILED/);
  await rows('Top-up orders, FAILED').first().waitFor({ timeout: 10000 });
  orders.failed = await rows('Top-up orders, FAILED').evaluateAll((trs) => trs.map((tr) => tr.cells[6].innerText.trim()));
  await rows('Top-up orders, FAILED').first().getByRole('link').first().click();
  await main.getByRole('heading', { name: /^Order / }).waitFor({ timeout: 10000 });
  orders.order = await main.innerText();
  await shot('order');
  await axe('order');

  // ---- Invoices.
  await nav('Invoices');
  await h1('Invoices');
  await rows('Invoices').first().waitFor({ timeout: 10000 });
  const invoices = await main.innerText();
  await shot('invoices');
  await axe('invoices');

  // ---- READ: told, nothing to press.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.goto(new URL('/console/webhooks', base).href, { waitUntil: 'load' });
  await page.getByLabel('API key').fill(readKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await h1('Webhooks');
  const readView = {
    said: await main.innerText(),
    forms: await page.evaluate(() => document.querySelectorAll('main form').length),
    buttons: await page.evaluate(() => document.querySelectorAll('main button').length),
  };
  await shot('webhooks-read');
  await axe('webhooks-read');
  return { webhooks, keys, orders, invoices, jobs, readView };
}, { prefix: 'console-' });
