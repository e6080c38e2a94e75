// GraphQL-over-HTTP conformance audit of the credits API, with the
// reference suite (graphql-http's `auditServer`), once authenticated with an
// ADMIN API key and once with a customer token minted through the API.
//
//   node audit.mjs <base-url> <admin-api-key>
//   BASE_URL=http://127.0.0.1:8000 ADMIN_API_KEY=ck_live_… node audit.mjs
//
// graphql-http reports each audit as `ok`, or as a failure whose status
// follows the audit name's RFC 2119 level (lib/audits/utils.mjs `audit`):
// `error` = MUST, `warn` = SHOULD, `notice` = MAY. MUST and SHOULD failures
// count as failed; MAY ones are shown but ignored.
// Exit: 0 all MUST/SHOULD audits pass, 1 some failed, 2 setup went wrong.

import { auditServer, serverAudits } from 'graphql-http';

const base = (process.argv[2] ?? process.env.BASE_URL ?? '').replace(/\/+$/, '');
const adminKey = process.argv[3] ?? process.env.ADMIN_API_KEY ?? '';
if (!base || !adminKey) {
  console.error('usage: node audit.mjs <base-url> <admin-api-key>  (or BASE_URL, ADMIN_API_KEY)');
  process.exit(2);
}
const url = `${base}/graphql`;
const REQUEST_TIMEOUT_MS = 15_000;

/** `fetch` that sends `Authorization: Bearer <credential>` on every request. */
function bearerFetch(credential) {
  return (input, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${credential}`);
    return fetch(input, {
      ...init,
      headers,
      signal: init.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  };
}

/** A GraphQL call for the setup; throws on HTTP or GraphQL errors. */
async function gql(credential, query, variables) {
  const res = await bearerFetch(credential)(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${res.status}, not JSON: ${text.slice(0, 300)}`);
  }
  if (!res.ok || body.errors?.length) {
    throw new Error(`HTTP ${res.status}: ${JSON.stringify(body.errors ?? body).slice(0, 500)}`);
  }
  return body.data;
}

async function mintCustomerToken() {
  const externalId = `http-audit-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const created = await gql(
    adminKey,
    `mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id } } }`,
    { input: { externalId, name: 'GraphQL over HTTP audit' } },
  );
  const id = created.createCustomer.customer.id;
  const minted = await gql(
    adminKey,
    `mutation($customer: CustomerRef!) {
       createCustomerToken(customer: $customer, ttlSeconds: 3600) { token }
     }`,
    { customer: { id } },
  );
  return minted.createCustomerToken.token;
}

/** What the server answered, for the failure's reason. */
async function describe(response) {
  if (!response) return '';
  let body = '';
  try {
    body = (await response.clone().text()).replace(/\s+/g, ' ').trim();
  } catch {
    body = '<body already read>';
  }
  if (body.length > 140) body = `${body.slice(0, 140)}…`;
  const type = response.headers.get('content-type') ?? 'no content-type';
  return `got ${response.status} ${type}${body ? ` ${body}` : ''}`;
}

/** Runs the suite; a fatal (non-assertion) error fails that one audit. */
async function runAudits(credential) {
  const opts = { url, fetchFn: bearerFetch(credential) };
  try {
    return await auditServer(opts);
  } catch (err) {
    // auditServer is all-or-nothing on a fatal error: run the same audits
    // one by one to say which one it was.
    console.error(`auditServer threw (${err?.message ?? err}); running the audits one by one`);
    return Promise.all(
      serverAudits(opts).map(({ id, name, fn }) =>
        fn().catch((e) => ({
          id,
          name,
          status: name.startsWith('MUST') ? 'error' : name.startsWith('SHOULD') ? 'warn' : 'notice',
          reason: `fatal: ${e?.message ?? e}${e?.cause ? ` (${e.cause.message ?? e.cause})` : ''}`,
        })),
      ),
    );
  }
}

function level(result) {
  return result.name.split(' ', 1)[0]; // MUST | SHOULD | MAY
}

function printTable(title, rows) {
  const widths = {
    id: Math.max(2, ...rows.map((r) => r.id.length)),
    status: Math.max(6, ...rows.map((r) => r.status.length)),
    name: Math.max(4, ...rows.map((r) => r.name.length)),
  };
  const line = (id, status, name, reason) =>
    `${id.padEnd(widths.id)}  ${status.padEnd(widths.status)}  ${name.padEnd(widths.name)}  ${reason}`.trimEnd();
  console.log(`\n== ${title}`);
  console.log(line('id', 'status', 'name', 'reason'));
  console.log(line('-'.repeat(widths.id), '-'.repeat(widths.status), '-'.repeat(widths.name), '------'));
  for (const r of rows) console.log(line(r.id, r.status, r.name, r.reason));
}

const order = { error: 0, warn: 1, notice: 2, ok: 3 };
let passed = 0;
let failed = 0;
let mayNotMet = 0;

let customerToken;
try {
  // Both credentials must work at all, or every audit would fail for that.
  await gql(adminKey, '{ __typename }');
  customerToken = await mintCustomerToken();
  await gql(customerToken, '{ __typename }');
} catch (err) {
  console.error(`audit setup failed: ${err.message}`);
  process.exit(2);
}

for (const [title, credential] of [
  ['API key (ADMIN)', adminKey],
  ['customer token', customerToken],
]) {
  const results = await runAudits(credential);
  const rows = [];
  for (const r of results) {
    const reason = r.status === 'ok' ? '' : `${r.reason}${r.response ? `; ${await describe(r.response)}` : ''}`;
    rows.push({ id: r.id, name: r.name, status: r.status, reason });
    if (r.status === 'ok') passed += 1;
    else if (level(r) === 'MAY' && r.status === 'notice') mayNotMet += 1;
    else failed += 1; // error (MUST), warn (SHOULD), or anything unexpected
  }
  rows.sort((a, b) => order[a.status] - order[b.status] || a.id.localeCompare(b.id));
  printTable(`${title} — ${url}`, rows);
  const count = (s) => rows.filter((r) => r.status === s).length;
  console.log(
    `${title}: ${count('ok')} ok, ${count('error')} MUST failed, ${count('warn')} SHOULD failed, ${count('notice')} MAY not met (ignored)`,
  );
}

console.log(`\n(${mayNotMet} MAY audits not met across both credentials; not counted)`);
console.log(`audit: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
