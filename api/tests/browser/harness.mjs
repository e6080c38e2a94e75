// What every browser script shares: Debian's Chromium launched headless,
// a context that lets only the server's own origin through (everything
// else is aborted and recorded), page errors and console errors recorded,
// axe-core, screenshots, and the one-JSON-object output the Rust side
// parses.
//
//   import { run } from './harness.mjs';
//   await run(base, shotsDir, async ({ page, seen, axe, shot }) => {
//     ...; return { whatever: 'the test asserts on' };
//   });
//
// `run` prints `{...result, ...seen}` and exits 0, or `{failed, ...seen}`
// and exits 1.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export async function run(base, shots, body, { prefix = '', viewport = { width: 1200, height: 900 } } = {}) {
  const origin = new URL(base);
  const seen = { external: [], requests: [], pageErrors: [], consoleErrors: [], axe: {} };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  let failed = false;
  try {
    const context = await browser.newContext({ viewport });
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
      document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    const page = await context.newPage();
    page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') seen.consoleErrors.push(m.text()); });

    /** axe-core on the page as it is now, recorded under `name`. */
    const axe = async (name, on = page) => {
      await on.evaluate(`${axeSource}\n;0`);
      seen.axe[name] = await on.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ['violations'] });
        return { rules: r.passes.length + r.violations.length + r.incomplete.length,
          violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help,
            targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) })) };
      });
    };
    const shot = (name, on = page) => on.screenshot({ path: `${shots}/${prefix}${name}.png`, fullPage: true });
    const result = await body({ browser, context, page, seen, axe, shot });
    seen.csp = await page.evaluate(() => window.__csp).catch(() => []);
    console.log(JSON.stringify({ ...result, ...seen }));
  } catch (e) {
    failed = true;
    console.log(JSON.stringify({ failed: String((e && e.stack) || e), ...seen }));
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}
