// The console's catalog in headless Chromium (`tests/browser_catalog.rs`
// sets up the data and checks the result):
//
//   node catalog.mjs BASE ADMIN_KEY READ_KEY SCREENSHOT_DIR
//
// As ADMIN: creates a credit system and edits its labels; creates a plan
// (with a new product), attaches the credit system with an allowance and
// graduated tiers, types a quantity and reads the live quote preview
// (then changes a tier and sees it follow), sets a feature's credit cost,
// publishes (the draft's edit controls go), duplicates (a new DRAFT),
// publishes and archives the copy. As READ: the same pages, no write
// controls. axe-core on every page; screenshots catalog-*.png.
import { run } from './harness.mjs';

const [base, adminKey, readKey, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node catalog.mjs BASE ADMIN_KEY READ_KEY SCREENSHOT_DIR');
  process.exit(2);
}

await run(base, shots, async ({ page, axe, shot }) => {
  const main = page.locator('main');
  const h1 = (name) => main.getByRole('heading', { name, level: 1, exact: true }).waitFor({ timeout: 10000 });
  const nav = (name) => page.getByRole('navigation').getByRole('link', { name, exact: true }).click();
  const signIn = async (key) => {
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/console/customers', { timeout: 10000 });
  };
  const writeControls = () => page.evaluate(() => [...document.querySelectorAll('main :is(button, input, select, textarea, form)')]
    .map((e) => `${e.tagName.toLowerCase()}:${e.textContent.trim() || e.getAttribute('aria-label') || e.id}`));
  const out = {};

  await page.goto(new URL('/console', base).href, { waitUntil: 'load' });
  await signIn(adminKey);

  // Credit systems: create, then edit labels and threshold.
  await nav('Credit systems');
  await h1('Credit systems');
  await axe('credit-systems');
  const create = main.getByRole('region', { name: 'New credit system' });
  await create.getByLabel('Key', { exact: true }).fill('tokens');
  await create.getByLabel('Name', { exact: true }).fill('Tokens');
  await create.getByLabel('Unit (singular)').fill('token');
  await create.getByLabel('Unit (plural)').fill('tokens');
  await create.getByLabel('Precision').fill('0');
  await create.getByLabel('Low-balance threshold').fill('100');
  out.currencyShownForUnits = await create.getByLabel('Currency').isVisible();
  await shot('credit-systems');
  await create.getByRole('button', { name: 'Create credit system' }).click();
  await page.waitForURL('**/console/credit-systems/tokens', { timeout: 10000 });
  await h1('Tokens');
  const edit = main.getByRole('region', { name: 'Edit credit system' });
  await edit.getByLabel('Name', { exact: true }).fill('AI tokens');
  await edit.getByLabel('Low-balance threshold').fill('50');
  await edit.getByRole('button', { name: 'Save credit system' }).click();
  await h1('AI tokens');
  out.creditSystem = await main.locator('dl.facts').innerText();
  await axe('credit-system');
  await shot('credit-system');

  // A refused create shows the API's message and field.
  await nav('Credit systems');
  await h1('Credit systems');
  const again = main.getByRole('region', { name: 'New credit system' });
  await again.getByLabel('Key', { exact: true }).fill('money');
  await again.getByLabel('Name', { exact: true }).fill('Money');
  await again.getByLabel('Unit (singular)').fill('euro');
  await again.getByLabel('Unit (plural)').fill('euros');
  await again.getByLabel('Kind').selectOption('MONETARY');
  await again.getByRole('button', { name: 'Create credit system' }).click();
  out.refusedSystem = await again.getByRole('status').filter({ hasText: 'Not saved' }).innerText({ timeout: 10000 });

  // Plans: a new plan of a new product.
  await nav('Plans');
  await h1('Plans');
  await axe('plans');
  const np = main.getByRole('region', { name: 'New plan' });
  await np.getByLabel('Product', { exact: true }).selectOption({ label: 'New product…' });
  await np.getByLabel('New product key').fill('api');
  await np.getByLabel('New product name').fill('API');
  await np.getByLabel('Plan key').fill('pro');
  await np.getByLabel('Plan name').fill('Pro');
  await np.getByLabel('Description').fill('For teams that generate a lot');
  await shot('plans');
  await np.getByRole('button', { name: 'Create draft plan' }).click();
  await page.waitForURL('**/console/plans/pro', { timeout: 10000 });
  await h1('Pro');

  // Attach with an allowance and graduated tiers; the live quote.
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
  out.secondTierStarts = await editor.getByLabel('Top-up price tier 2 first unit').inputValue();
  await editor.getByLabel('Top-up price tier 2 amount').fill('0.03');
  // A third row, then removed: the preview follows the rows as they are.
  await editor.getByRole('button', { name: 'Add top-up price tier' }).click();
  await editor.getByRole('button', { name: 'Remove top-up price tier 3' }).click();
  const total = editor.locator('dd[data-field="total"]');
  const quantity = editor.getByLabel('Preview quantity');
  // Typed key by key: one request after the last, and only its answer shown.
  const asked = [];
  page.on('request', (r) => { if (r.url().endsWith('/graphql') && (r.postData() || '').includes('quoteTopUp')) asked.push(r.postDataJSON().variables.q); });
  await quantity.pressSequentially('2500', { delay: 30 });
  await page.waitForFunction(() => document.querySelector('main dd[data-field="total"]')?.textContent, null, { timeout: 10000 });
  out.preview = {
    subtotal: await editor.locator('dd[data-field="subtotal"]').innerText(),
    tax: await editor.locator('dd[data-field="tax"]').innerText(),
    total: await total.innerText(),
    summary: await editor.getByRole('status').filter({ hasText: 'would cost' }).innerText(),
    lines: await editor.getByRole('table', { name: 'Quote by tier' }).locator('tbody tr').allInnerTexts(),
    asked: [...asked],
  };
  await axe('plan-editor');
  await shot('plan-editor');
  // Changing a tier re-quotes; changing it back restores the figure.
  await editor.getByLabel('Top-up price tier 2 amount').fill('0.04');
  await page.waitForFunction((old) => document.querySelector('main dd[data-field="total"]')?.textContent !== old, out.preview.total, { timeout: 10000 });
  out.previewAt004 = await total.innerText();
  // A bad tier: the API's message, with its field.
  await editor.getByLabel('Top-up price tier 2 first unit').fill('1200');
  out.previewRefused = await editor.getByRole('status').filter({ hasText: 'No quote' }).innerText({ timeout: 10000 });
  await editor.getByLabel('Top-up price tier 2 first unit').fill('1000');
  await editor.getByLabel('Top-up price tier 2 amount').fill('0.03');
  await page.waitForFunction((want) => document.querySelector('main dd[data-field="total"]')?.textContent === want, out.preview.total, { timeout: 10000 });
  await editor.getByRole('button', { name: 'Attach credit system' }).click();
  await main.getByRole('status').filter({ hasText: 'Credit system attached' }).waitFor({ timeout: 10000 });
  out.attached = await main.getByRole('region', { name: 'Plan credit AI tokens' }).innerText();

  // Edit it: the editor opens with the saved terms; a new allowance.
  await main.getByRole('button', { name: 'Edit AI tokens' }).click();
  const change = main.getByRole('region', { name: 'Edit AI tokens' });
  out.editorPrefilled = [await change.getByLabel('Included amount').inputValue(),
    await change.getByLabel('Top-up price tier 2 first unit').inputValue(),
    await change.getByLabel('Top-up price tier 2 amount').inputValue(), await change.getByLabel('Currency').inputValue()];
  await change.getByLabel('Included amount').fill('1200');
  await change.getByRole('button', { name: 'Save AI tokens' }).click();
  await main.getByRole('status').filter({ hasText: 'AI tokens saved' }).waitFor({ timeout: 10000 });
  out.edited = await main.getByRole('region', { name: 'Plan credit AI tokens' }).innerText();

  // A feature's credit cost, with a new feature.
  const cost = main.getByRole('region', { name: 'Set a feature\'s credit cost' });
  await cost.getByLabel('Feature', { exact: true }).selectOption({ label: 'New feature…' });
  await cost.getByLabel('New feature key').fill('image.generate');
  await cost.getByLabel('New feature name').fill('Image');
  await cost.getByLabel('New feature unit').fill('image');
  await cost.getByLabel('Credits per unit').fill('5');
  await cost.getByRole('button', { name: 'Set credit cost' }).click();
  await main.getByRole('status').filter({ hasText: 'image.generate costs 5' }).waitFor({ timeout: 10000 });
  out.costs = await main.getByRole('table', { name: 'Feature credit costs' }).locator('tbody tr').allInnerTexts();

  // Publish, confirmed.
  await main.getByRole('button', { name: 'Publish plan' }).click();
  await main.getByRole('button', { name: 'Yes, publish' }).click();
  await main.getByRole('status').filter({ hasText: 'Plan published' }).waitFor({ timeout: 10000 });
  out.published = await main.locator('dl.facts').first().innerText();
  out.focusAfterPublish = await page.evaluate(() => document.activeElement?.textContent);
  out.publishedControls = await writeControls();
  await axe('plan-published');
  await shot('plan-published');

  // Duplicate: a new DRAFT with the same credits; publish and archive it.
  const dup = main.getByRole('region', { name: 'Duplicate as a new draft' });
  await dup.getByLabel('New plan key').fill('pro-2027');
  await dup.getByLabel('New plan name').fill('Pro 2027');
  await dup.getByRole('button', { name: 'Duplicate plan' }).click();
  await page.waitForURL('**/console/plans/pro-2027', { timeout: 10000 });
  await h1('Pro 2027');
  out.duplicate = await main.locator('dl.facts').first().innerText();
  out.duplicateEditable = await main.getByRole('button', { name: 'Edit AI tokens' }).isVisible();
  await axe('plan-duplicate');
  await shot('plan-duplicate');
  await main.getByRole('button', { name: 'Publish plan' }).click();
  await main.getByRole('button', { name: 'Yes, publish' }).click();
  await main.getByRole('button', { name: 'Archive plan' }).click();
  await main.getByRole('button', { name: 'Yes, archive' }).click();
  await main.getByRole('status').filter({ hasText: 'Plan archived' }).waitFor({ timeout: 10000 });
  out.archived = await main.locator('dl.facts').first().innerText();

  // READ: the same pages, nothing to write with.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await signIn(readKey);
  out.read = {};
  for (const [path, title] of [['/console/credit-systems', 'Credit systems'], ['/console/credit-systems/tokens', 'AI tokens'],
    ['/console/plans', 'Plans'], ['/console/plans/pro', 'Pro'], ['/console/plans/draft', 'Draft']]) {
    await page.goto(new URL(path, base).href, { waitUntil: 'load' });
    await h1(title);
    await main.locator('dl.facts, table, p.muted').first().waitFor({ timeout: 10000 });
    out.read[path] = await writeControls();
    await axe(`read ${path}`);
  }
  await shot('plan-read');

  // Paging: 50 a page, then "Next page".
  await page.goto(new URL('/console/credit-systems', base).href, { waitUntil: 'load' });
  await h1('Credit systems');
  await main.locator('tbody tr').first().waitFor({ timeout: 10000 });
  const firstPage = await main.locator('tbody tr td:first-child').allInnerTexts();
  await main.getByRole('link', { name: 'Next page' }).click();
  await page.waitForURL('**/console/credit-systems?after=*', { timeout: 10000 });
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll('main tbody tr').length;
    return rows > 0 && rows < 50;
  }, null, { timeout: 10000 });
  const secondPage = await main.locator('tbody tr td:first-child').allInnerTexts();
  out.paging = { firstPage, secondPage, nextOnSecond: await main.getByRole('link', { name: 'Next page' }).count(),
    firstPageLink: await main.getByRole('link', { name: 'First page' }).getAttribute('href') };
  return out;
}, { prefix: 'catalog-' });
