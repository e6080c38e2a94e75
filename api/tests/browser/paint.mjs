// First meaningful paint of a customer page, measured in Chromium
// (`tests/browser_console.rs` makes a customer with 3 wallets × 20 grants
// × 20 usage entries):
//
//   node paint.mjs BASE ADMIN_KEY EXTERNAL_ID SCREENSHOT_DIR
//
// An init script checks every animation frame whether each wallet's
// <credits-balance> shows its available balance and each <credits-history>
// its first rows; the first frame where all do is the paint, recorded as
// `performance.now()` (milliseconds since navigation start) and as the
// performance mark `customer-painted`. The first load after signing in
// (`cold`), then 7 reloads (`paints`). Prints the figures; the Rust test
// asserts they were measured, not a threshold.
import { run } from './harness.mjs';

const [base, adminKey, externalId, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node paint.mjs BASE ADMIN_KEY EXTERNAL_ID SCREENSHOT_DIR');
  process.exit(2);
}
const RELOADS = 7;

await run(base, shots, async ({ page, axe, shot }) => {
  await page.addInitScript(() => {
    if (!location.pathname.startsWith('/console/customers/')) return;
    const ready = () => {
      const balances = [...document.querySelectorAll('credits-balance')];
      const histories = [...document.querySelectorAll('credits-history')];
      return balances.length > 0 && balances.length === histories.length
        && balances.every((b) => b.shadowRoot?.querySelector('dd[data-field="available"]'))
        && histories.every((x) => x.shadowRoot?.querySelector('tbody tr[data-entry]'));
    };
    const frame = () => {
      if (ready()) {
        performance.mark('customer-painted');
        window.__painted = performance.now();
        return;
      }
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  });
  const url = new URL(`/console/customers/${encodeURIComponent(externalId)}`, base).href;
  const painted = async () => {
    await page.waitForFunction(() => window.__painted, null, { timeout: 20000, polling: 50 }).catch(async (e) => {
      const state = await page.evaluate(() => [...document.querySelectorAll('credits-balance, credits-history')]
        .map((w) => `${w.localName}: ${w.shadowRoot?.textContent.slice(0, 80)}`));
      throw new Error(`${e.message}; the widgets: ${JSON.stringify(state)}`);
    });
    return page.evaluate(() => Math.round(window.__painted * 10) / 10);
  };
  await page.goto(url, { waitUntil: 'load' });
  await page.getByLabel('API key').fill(adminKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // Signed in (the key stored) once the customer's page shows.
  await page.locator('main h1').filter({ hasNotText: 'Sign in' }).waitFor({ timeout: 20000 });
  await page.locator('credits-balance').first().waitFor({ timeout: 20000 });
  // The first load after signing in: a full navigation (assets from the
  // HTTP cache as a browser would have them after the sign-in page).
  await page.goto(url, { waitUntil: 'load' });
  const cold = await painted();
  const paints = [];
  for (let i = 0; i < RELOADS; i++) {
    await page.reload({ waitUntil: 'load' });
    paints.push(await painted());
  }
  // The grants tables come after the paint, beside the widgets' queries.
  await page.waitForFunction(() => !document.querySelector('main .grants [role="status"]'), null, { timeout: 20000 });
  const shown = await page.evaluate(() => ({
    balances: document.querySelectorAll('credits-balance').length,
    grantRows: document.querySelectorAll('main .grants tbody tr').length,
    historyRows: Math.min(...[...document.querySelectorAll('credits-history')]
      .map((x) => x.shadowRoot.querySelectorAll('tbody tr[data-entry]').length)),
    mark: performance.getEntriesByName('customer-painted').length,
  }));
  // The last reload's waterfall: where the time goes.
  const waterfall = await page.evaluate(() => performance.getEntriesByType('resource')
    .map((r) => `${Math.round(r.startTime)}-${Math.round(r.responseEnd)} ${r.name.replace(location.origin, '')}`));
  await shot('customer-big');
  await axe('customer-big');
  return { cold, paints, shown, waterfall };
}, { prefix: 'console-' });
