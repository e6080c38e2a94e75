// A new user's journey through the console on a fresh server
// (`tests/browser_journey.rs` starts it with only the tenant and its admin
// key, as `cargo run -p api` does):
//
//   node journey.mjs BASE ADMIN_KEY SCREENSHOT_DIR
//
// Signs in with the key; creates a credit system; a plan with an
// allowance and graduated tiers (the live preview shown); publishes it;
// creates a customer; subscribes it; sees the allowance as its balance.
// Then writes SCREENSHOT_DIR/journey-ready and waits: the Rust side
// consumes credits through the API (as a backend would) and the balance
// shown must move, live. Last, a customer token made in the console opens
// the widgets demo page, which shows the balance. A READ key made on the
// API keys page then sees no write control. No GraphQL typed by hand; axe-core on every page state; screenshots journey-*.png.
import { writeFileSync } from 'node:fs';
import { run } from './harness.mjs';

const [base, adminKey, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node journey.mjs BASE ADMIN_KEY SCREENSHOT_DIR');
  process.exit(2);
}

await run(base, shots, async ({ page, axe, shot }) => {
  const main = page.locator('main');
  const h1 = (name) => main.getByRole('heading', { name, level: 1, exact: true }).waitFor({ timeout: 10000 });
  const nav = (name) => page.getByRole('navigation').getByRole('link', { name, exact: true }).click();
  const out = { steps: [] };
  const step = (s) => out.steps.push(s);

  // Sign in with the printed key.
  await page.goto(new URL('/console', base).href, { waitUntil: 'load' });
  await page.getByLabel('API key').waitFor({ timeout: 10000 });
  await axe('sign-in');
  await page.getByLabel('API key').fill(adminKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console/customers', { timeout: 10000 });
  await h1('Customers');
  out.emptyCustomers = await main.getByText('No customers yet.').isVisible();
  await axe('customers-empty');
  step('signed in');

  // A credit system.
  await nav('Credit systems');
  await h1('Credit systems');
  const cs = main.getByRole('region', { name: 'New credit system' });
  await cs.getByLabel('Key', { exact: true }).fill('tokens');
  await cs.getByLabel('Name', { exact: true }).fill('Tokens');
  await cs.getByLabel('Unit (singular)').fill('token');
  await cs.getByLabel('Unit (plural)').fill('tokens');
  await cs.getByLabel('Precision').fill('0');
  await cs.getByRole('button', { name: 'Create credit system' }).click();
  await page.waitForURL('**/console/credit-systems/tokens', { timeout: 10000 });
  await h1('Tokens');
  await axe('credit-system');
  step('credit system');

  // A plan of a new product, with 1000 included and graduated tiers.
  await nav('Plans');
  await h1('Plans');
  const np = main.getByRole('region', { name: 'New plan' });
  await np.getByLabel('Product', { exact: true }).selectOption({ label: 'New product…' });
  await np.getByLabel('New product key').fill('api');
  await np.getByLabel('New product name').fill('API');
  await np.getByLabel('Plan key').fill('starter');
  await np.getByLabel('Plan name').fill('Starter');
  await np.getByLabel('Description').fill('1000 tokens a month, then graduated top-ups');
  await np.getByRole('button', { name: 'Create draft plan' }).click();
  await page.waitForURL('**/console/plans/starter', { timeout: 10000 });
  await h1('Starter');
  const editor = main.getByRole('region', { name: 'Attach a credit system' });
  await editor.getByLabel('Credit system', { exact: true }).selectOption('tokens');
  await editor.getByLabel('Included amount').fill('1000');
  await editor.getByLabel('Currency').fill('EUR');
  await editor.getByLabel('Tax rate').fill('0.2');
  await editor.getByLabel('Pricing type').first().selectOption('GRADUATED');
  await editor.getByLabel('Model').first().selectOption('PER_UNIT');
  await editor.getByLabel('Top-up price tier 1 first unit').fill('0');
  await editor.getByLabel('Top-up price tier 1 last unit').fill('1000');
  await editor.getByLabel('Top-up price tier 1 amount').fill('0.05');
  await editor.getByRole('button', { name: 'Add top-up price tier' }).click();
  await editor.getByLabel('Top-up price tier 2 amount').fill('0.03');
  await editor.getByLabel('Preview quantity').fill('2500');
  await page.waitForFunction(() => document.querySelector('main dd[data-field="total"]')?.textContent, null, { timeout: 10000 });
  out.preview = {
    total: await editor.locator('dd[data-field="total"]').innerText(),
    summary: await editor.getByRole('status').filter({ hasText: 'would cost' }).innerText(),
  };
  await editor.getByLabel('Preview quantity').scrollIntoViewIfNeeded();
  await axe('plan-editor');
  await shot('plan-editor');
  await page.screenshot({ path: `${shots}/journey-plan-editor-view.png`, fullPage: false });
  await editor.getByRole('button', { name: 'Attach credit system' }).click();
  await main.getByRole('status').filter({ hasText: 'Credit system attached' }).waitFor({ timeout: 10000 });
  await main.getByRole('button', { name: 'Publish plan' }).click();
  await main.getByRole('button', { name: 'Yes, publish' }).click();
  await main.getByRole('status').filter({ hasText: 'Plan published' }).waitFor({ timeout: 10000 });
  out.published = await main.locator('dl.facts').first().innerText();
  await axe('plan-published');
  step('plan published');

  // A customer, created in the console: its page opens.
  await nav('Customers');
  await h1('Customers');
  const nc = main.getByRole('region', { name: 'New customer' });
  await nc.getByLabel('External id', { exact: true }).fill('acme');
  await nc.getByLabel('Name', { exact: true }).fill('Acme');
  await nc.getByLabel('Email (optional)').fill('billing@acme.test');
  await axe('customers-new');
  await nc.getByRole('button', { name: 'Create customer' }).click();
  await page.waitForURL('**/console/customers/acme', { timeout: 10000 });
  await h1('Acme');
  out.customerFacts = await main.locator('dl.facts').first().innerText();
  out.noWallets = await main.getByText('No wallets yet').isVisible();
  await axe('customer-new');
  step('customer created');

  // Edit it: a new name and email, shown at once.
  const edit = main.getByRole('region', { name: 'Edit customer' });
  await edit.getByLabel('Name', { exact: true }).fill('Acme Corp');
  await edit.getByLabel('Email').fill('finance@acme.test');
  await edit.getByRole('button', { name: 'Save customer' }).click();
  await edit.getByRole('status').filter({ hasText: 'Saved' }).waitFor({ timeout: 10000 });
  await h1('Acme Corp');
  out.edited = { facts: await main.locator('dl.facts').first().innerText(),
    name: await edit.getByLabel('Name', { exact: true }).inputValue() };
  step('customer edited');

  // Subscribe it to the plan: the allowance is its balance.
  const sub = main.getByRole('region', { name: 'Subscribe to a plan' });
  await sub.getByLabel('Plan', { exact: true }).selectOption('starter');
  await sub.getByRole('button', { name: 'Subscribe' }).click();
  out.subscribed = await sub.getByRole('status').filter({ hasText: 'Subscribed' }).innerText({ timeout: 10000 });
  const wallet = main.locator('section.wallet[data-credit-system="tokens"]');
  const available = wallet.locator('credits-balance dd[data-field="available"]');
  await available.waitFor({ timeout: 10000 });
  await wallet.locator('credits-balance').getByText('Live', { exact: true }).waitFor({ timeout: 10000 });
  out.balanceAfterSubscribe = await available.innerText();
  out.grants = await wallet.getByRole('table', { name: 'Grants of Tokens' }).locator('tbody tr').allInnerTexts();
  await axe('customer-subscribed');
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('customer');
  await page.screenshot({ path: `${shots}/journey-customer-view.png`, fullPage: false });
  step('subscribed');

  // The backend spends: the Rust side consumes through the API once this
  // file exists; the balance shown moves by itself.
  const before = await available.textContent();
  writeFileSync(`${shots}/journey-ready`, 'ready');
  const t0 = Date.now();
  await page.waitForFunction((old) => {
    const dd = document.querySelector('main section.wallet[data-credit-system="tokens"] credits-balance')
      ?.shadowRoot?.querySelector('dd[data-field="available"]');
    return dd && dd.textContent !== old;
  }, before, { timeout: 15000, polling: 20 });
  out.liveMs = Date.now() - t0;
  out.balanceAfterConsume = await available.innerText();
  out.reloads = out.steps.length; // no navigation happened in between
  step('balance moved');

  // A customer token, and the widgets demo page with it.
  const tok = main.getByRole('region', { name: 'Create a customer token' });
  await tok.getByRole('button', { name: 'Create token' }).click();
  await tok.getByRole('status').filter({ hasText: 'Token created' }).waitFor({ timeout: 10000 });
  out.tokenShown = (await tok.getByRole('textbox', { name: 'Customer token' }).inputValue()).length > 20;
  await axe('customer-token');
  await tok.getByRole('link', { name: /See the widgets with this token/ }).click();
  await page.waitForURL('**/widgets/demo?**', { timeout: 10000 });
  const balance = page.locator('credits-balance');
  await balance.getByText('Live', { exact: true }).waitFor({ timeout: 10000 });
  await page.locator('credits-history tbody tr').first().waitFor({ timeout: 10000 });
  out.widgetsBalance = await balance.locator('dd[data-field="available"]').innerText();
  out.widgetsHistory = await page.locator('credits-history tbody tr').allInnerTexts();
  await axe('widgets');
  await shot('widgets');
  await page.screenshot({ path: `${shots}/journey-widgets-view.png`, fullPage: false });
  step('widgets');

  // The customers list with the new customer, for the README.
  await page.goto(new URL('/console/customers', base).href, { waitUntil: 'load' });
  await h1('Customers');
  await main.locator('tbody tr').first().waitFor({ timeout: 10000 });
  out.customers = await main.locator('tbody tr').allInnerTexts();
  await axe('customers');
  await page.screenshot({ path: `${shots}/journey-customers-view.png`, fullPage: false });
  step('customers');

  // A READ key, made in the console: the same pages, no New customer, no
  // Edit customer, no form but the search.
  await nav('API keys');
  await h1('API keys');
  const nk = main.getByRole('region', { name: 'New API key' });
  await nk.getByLabel('Name', { exact: true }).fill('viewer');
  await nk.getByLabel('Role', { exact: true }).selectOption('READ');
  await nk.getByRole('button', { name: 'Create key' }).click();
  const readKey = await nk.getByLabel('API key secret', { exact: true }).inputValue({ timeout: 10000 });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').fill(readKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console/customers', { timeout: 10000 });
  await h1('Customers');
  await main.locator('tbody tr').first().waitFor({ timeout: 10000 });
  const controls = () => page.evaluate(() => [...document.querySelectorAll('main :is(form, button, input, select, textarea)')]
    .map((e) => `${e.tagName.toLowerCase()}:${e.getAttribute('role') || e.id || e.textContent.trim()}`));
  out.read = { customers: await controls() };
  await main.getByRole('link', { name: 'acme', exact: true }).click();
  await h1('Acme Corp');
  await main.locator('section.wallet credits-balance dd[data-field="available"]').waitFor({ timeout: 10000 });
  out.read.customer = await controls();
  await axe('read-customer');
  step('read key');
  return out;
}, { prefix: 'journey-' });
