// GraphiQL in headless Chromium with the network to the outside blocked:
// the page at BASE/graphql loads, the API key goes into GraphiQL's headers
// editor, `{ viewer { role } }` runs from the UI and its answer shows.
//
//   node graphiql.mjs BASE KEY SCREENSHOT
//
// Every request whose host is not the server's is aborted and recorded; the
// run fails if there was any, if the page reports a Content-Security-Policy
// violation or a script error, or if the answer does not show. Prints one
// JSON line with what it saw.
import { chromium } from 'playwright-core';

const [base, key, screenshot] = process.argv.slice(2);
if (!base || !key || !screenshot) {
  console.error('usage: node graphiql.mjs BASE KEY SCREENSHOT');
  process.exit(2);
}
const origin = new URL(base);
const seen = { external: [], requests: [], cspViolations: [], pageErrors: [], consoleErrors: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Root in CI containers: Chromium's sandbox needs user namespaces.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let failure = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.host === origin.host) {
      seen.requests.push(url.pathname);
      return route.continue();
    }
    seen.external.push(url.href);
    return route.abort('blockedbyclient');
  });
  // WebSockets bypass `route`: any to another host counts as external too.
  await context.routeWebSocket(/.*/, (ws) => {
    const url = new URL(ws.url());
    if (url.host === origin.host) {
      ws.connectToServer();
    } else {
      seen.external.push(url.href);
      ws.close();
    }
  });
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') seen.consoleErrors.push(m.text());
  });

  const response = await page.goto(new URL('/graphql', base).href, { waitUntil: 'load' });
  if (response.status() !== 200) throw new Error(`GET /graphql: HTTP ${response.status()}`);
  await page.locator('.graphiql-container').waitFor({ timeout: 15000 });

  // The query, typed into the query editor (replacing the default text).
  const queryEditor = page.locator('.graphiql-query-editor .CodeMirror').first();
  await queryEditor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.insertText('{ viewer { role } }');

  // The key, in the headers editor.
  await page.getByRole('button', { name: 'Headers' }).click();
  const headersEditor = page.locator('.graphiql-editor-tool .CodeMirror:visible').first();
  await headersEditor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${key}` }));

  await page.getByRole('button', { name: /Execute query/ }).click();
  const result = page.locator('.result-window');
  await result.getByText('"ADMIN"').waitFor({ timeout: 15000 });
  seen.result = (await result.innerText()).replace(/\s+/g, ' ').trim();

  // The policy lets the page open a WebSocket to its own origin (GraphiQL's
  // subscriptions go to /graphql/ws).
  seen.websocket = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const url = new URL('/graphql/ws', location.href);
        url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
        const ws = new WebSocket(url, 'graphql-transport-ws');
        ws.onopen = () => {
          ws.close();
          resolve('open');
        };
        ws.onerror = () => resolve('error');
        setTimeout(() => resolve('timeout'), 5000);
      }),
  );

  // A dialog (settings) adds a <style> element: the policy allows it.
  await page.getByRole('button', { name: 'Open settings dialog' }).click();
  await page.getByRole('dialog').waitFor({ timeout: 5000 });
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'detached', timeout: 5000 });

  seen.cspViolations = await page.evaluate(() => window.__csp);
  await page.screenshot({ path: screenshot });
  seen.screenshot = screenshot;
} catch (e) {
  failure = e;
} finally {
  await browser.close();
}

console.log(JSON.stringify(seen));
const problems = [];
if (failure) problems.push(`the run failed: ${failure.message}`);
if (seen.external.length) problems.push(`requests to other hosts: ${seen.external.join(', ')}`);
if (seen.cspViolations.length) problems.push(`CSP violations: ${seen.cspViolations.join('; ')}`);
if (seen.pageErrors.length) problems.push(`script errors: ${seen.pageErrors.join('; ')}`);
if (!failure && seen.websocket !== 'open') problems.push(`WebSocket to /graphql/ws: ${seen.websocket}`);
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
