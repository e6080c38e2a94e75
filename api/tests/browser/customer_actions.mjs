// A customer's actions in the console (`tests/browser_console.rs` sets up
// the data):
//
//   node customer_actions.mjs BASE ADMIN_KEY WRITE_KEY READ_KEY SCREENSHOT_DIR
//
// As ADMIN on /console/customers/alice: adjust the balance, void a grant
// from its row's Void button, refund a usage entry chosen from the list,
// allocate to a child (first to a customer who isn't one: the API's
// message), subscribe to the published plan and cancel it from the
// subscriptions table, create a customer token. After each write the
// balance shown by <credits-balance> must move. Then a WRITE key and a
// READ key see only their controls.
import { run } from './harness.mjs';

const [base, adminKey, writeKey, readKey, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node customer_actions.mjs BASE ADMIN_KEY WRITE_KEY READ_KEY SCREENSHOT_DIR');
  process.exit(2);
}

await run(base, shots, async ({ page, axe, shot }) => {
  const main = page.locator('main');
  page.on('dialog', (d) => d.accept());
  const available = page.locator('credits-balance dd[data-field="available"]');

  const signIn = async (key) => {
    await page.goto(new URL('/console/customers/alice', base).href, { waitUntil: 'load' });
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/console/customers/alice');
    await page.locator('credits-balance').getByText('Live', { exact: true }).waitFor({ timeout: 10000 });
    await page.locator('credits-history').locator('tbody tr').first().waitFor({ timeout: 10000 });
  };
  const signOut = async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
  };
  /** Submits a region's form, returns its status text once it settled. */
  const submit = async (region, button) => {
    await region.getByRole('button', { name: button, exact: true }).click();
    const status = region.getByRole('status').first();
    await page.waitForFunction((el) => el.className === 'ok' || el.className === 'error',
      await status.elementHandle(), { timeout: 10000 }).catch(async (e) => {
      throw new Error(`${button}: ${e.message}; the form says: ${await region.innerText()}`);
    });
    return status.innerText();
  };
  /** The balance shown once it differs from `old`. */
  const moved = async (old) => {
    await page.waitForFunction((o) => {
      const dd = document.querySelector('credits-balance')?.shadowRoot?.querySelector('dd[data-field="available"]');
      return dd && dd.textContent !== o;
    }, old, { timeout: 10000, polling: 50 });
    return available.innerText();
  };
  const steps = {};
  const region = (name) => main.getByRole('region', { name, exact: true });

  await signIn(adminKey);
  const start = await available.innerText();
  let balance = await available.textContent();

  // Adjust: -40. The first answer is lost on the way back (the server
  // applied it); sent again with the same inputs, the same idempotency
  // key: applied once.
  const adjust = region('Adjust balance');
  await adjust.getByLabel('Credit system').selectOption('photos');
  await adjust.getByLabel('Amount').fill('-40');
  await adjust.getByLabel('Reason').fill('Correction');
  let lost = false;
  await page.route('**/graphql', async (route) => {
    if (!lost && (route.request().postData() || '').includes('adjustBalance')) {
      lost = true;
      await route.fetch();
      return route.abort('connectionreset');
    }
    return route.fallback();
  });
  const lostSaid = await submit(adjust, 'Adjust balance');
  const afterLost = await moved(balance);
  await page.unroute('**/graphql');
  steps.adjust = { lost: lostSaid, afterLost, said: await submit(adjust, 'Adjust balance') };
  steps.adjust.balance = await available.innerText();
  balance = await available.textContent();

  // Void the promotion from its row.
  const row = main.locator('.grants tbody tr').filter({ hasText: 'to void' });
  await row.getByRole('button', { name: /^Void grant / }).click();
  const voiding = region('Void a grant');
  await page.waitForFunction(() => document.activeElement?.id === 'void-reason');
  await voiding.getByLabel('Reason').fill('Sent by mistake');
  steps.void = { said: await submit(voiding, 'Void grant') };
  steps.void.balance = await moved(balance);
  balance = await available.textContent();
  await page.waitForFunction(() => [...document.querySelectorAll('main .grants tbody tr')]
    .some((tr) => tr.innerText.includes('to void') && tr.innerText.includes('voided')), null, { timeout: 10000 });
  steps.void.status = await main.locator('.grants tbody tr').filter({ hasText: 'to void' }).locator('td').nth(4).innerText();

  // Refund the usage entry "photo 1", chosen from the list.
  const refund = region('Refund usage');
  const option = await refund.getByLabel('Usage entry').locator('option', { hasText: 'photo 1' }).getAttribute('value');
  await refund.getByLabel('Usage entry').selectOption(option);
  await refund.getByLabel('Reason').fill('Job failed');
  steps.refund = { said: await submit(refund, 'Refund usage') };
  steps.refund.balance = await moved(balance);
  balance = await available.textContent();

  // Allocate: bob is not below alice (refused), then alice-kid.
  const allocate = region('Allocate to a child');
  await allocate.getByLabel('Credit system').selectOption('photos');
  await allocate.getByLabel('Child (external id)').fill('bob');
  await allocate.getByLabel('Amount').fill('5');
  steps.allocateRefused = { said: await submit(allocate, 'Allocate') };
  await allocate.getByLabel('Child (external id)').fill('alice-kid');
  steps.allocate = { said: await submit(allocate, 'Allocate') };
  steps.allocate.balance = await moved(balance);
  balance = await available.textContent();

  // Subscribe to Pro: its 100 included photos arrive.
  const subscribe = region('Subscribe to a plan');
  await subscribe.getByLabel('Plan', { exact: true }).selectOption('pro');
  steps.subscribe = { said: await submit(subscribe, 'Subscribe') };
  steps.subscribe.balance = await moved(balance);
  const subs = main.getByRole('table', { name: 'Subscriptions' });
  await subs.locator('tbody tr').first().waitFor({ timeout: 10000 });
  steps.subscribe.row = await subs.locator('tbody tr').first().innerText();

  // A customer token, shown once with its expiry.
  const token = region('Create a customer token');
  steps.token = { said: await submit(token, 'Create token') };
  steps.token.value = await token.getByLabel('Customer token', { exact: true }).inputValue();
  await shot('customer-actions');
  await axe('customer-admin');

  // Cancel the subscription from its row (confirmed).
  await subs.getByRole('button', { name: /^Cancel subscription/ }).click();
  await page.waitForFunction(() => !document.querySelector('main table button[aria-label^="Cancel subscription"]'),
    null, { timeout: 10000 });
  steps.cancel = {
    row: await main.getByRole('table', { name: 'Subscriptions' }).locator('tbody tr').first().innerText(),
    buttons: await main.getByRole('button', { name: /^Cancel subscription/ }).count(),
  };

  // WRITE: refund, allocate, token only.
  await signOut();
  await signIn(writeKey);
  const regions = await main.locator('.actions > section').evaluateAll((s) => s.map((x) => x.querySelector('h3').textContent));
  const writeView = {
    regions,
    voidButtons: await main.getByRole('button', { name: /^Void/ }).count(),
    cancelButtons: await main.getByRole('button', { name: /^Cancel subscription/ }).count(),
  };
  await shot('customer-write');
  await axe('customer-write');

  // READ: nothing to press.
  await signOut();
  await signIn(readKey);
  await main.locator('.grants tbody tr').first().waitFor();
  const readView = {
    forms: await page.evaluate(() => document.querySelectorAll('main form').length),
    buttons: await page.evaluate(() => document.querySelectorAll('main button').length),
    grantsRows: await main.locator('.grants tbody tr').count(),
  };
  await shot('customer-read-actions');
  await axe('customer-read');

  return { start, steps, writeView, readView };
}, { prefix: 'console-' });
