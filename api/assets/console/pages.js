// The console's pages: each route takes the path's parts after its own
// segment and the viewer, reads what it shows through GraphQL, and
// returns the nodes of <main>. Lists are bounded (first: 50 / 100).

import { h, gql, go } from './console.js';

const PAGE = 50;

/** A table with a caption (its accessible name) and text cells. */
function table(caption, headers, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'muted', text: empty });
  const cell = (v, i) => {
    const num = headers[i]?.num;
    return h('td', { class: num ? 'num' : null }, v instanceof Node ? v : String(v ?? '—'));
  };
  return h('table', {},
    h('caption', { class: 'visually-hidden', text: caption }),
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null, text: c.label ?? c })))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map(cell)))));
}
const num = (label) => ({ label, num: true });
const more = (conn) => conn.pageInfo?.hasNextPage
  ? h('p', { class: 'muted', text: `Showing the first ${conn.nodes.length}.` }) : null;
const date = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+/, '').replace(/(\+00:00|Z)$/, ' UTC') : '—');
const link = (href, text) => h('a', { href, text });
const seg = encodeURIComponent;
function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v instanceof Node ? v : String(v ?? '—'))]));
}

/** 16 random bytes as hex (crypto.randomUUID needs a secure context). */
function idempotencyKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return `console-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

// ------------------------------------------------------------ customers

async function customers([externalId]) {
  if (externalId !== undefined) return customer(externalId);
  const search = new URLSearchParams(location.search).get('q') || '';
  const data = await gql(`query($n: Int!, $q: String) { customers(first: $n, search: $q) {
    pageInfo { hasNextPage } nodes { externalId name email parent { externalId } createdAt } } }`,
  { n: PAGE, q: search || null });
  const field = h('input', { id: 'customer-search', type: 'search', value: search, maxlength: '200' });
  const form = h('form', {
    role: 'search',
    onsubmit: (ev) => {
      ev.preventDefault();
      const q = field.value.trim();
      go(q ? `/console/customers?q=${seg(q)}` : '/console/customers');
    },
  }, h('div', { class: 'field' }, h('label', { for: 'customer-search', text: 'Search customers (external id, name or email)' }), field),
  h('button', { type: 'submit', text: 'Search' }));
  const list = data.customers;
  return [h('h1', { text: 'Customers' }), form,
    table(search ? `Customers matching ${search}` : 'Customers',
      ['External id', 'Name', 'Email', 'Parent', 'Created'],
      list.nodes.map((c) => [link(`/console/customers/${seg(c.externalId)}`, c.externalId), c.name, c.email,
        c.parent ? link(`/console/customers/${seg(c.parent.externalId)}`, c.parent.externalId) : '—', date(c.createdAt)]),
      search ? 'No customer matches.' : 'No customers yet.'),
    more(list)];
}

async function customer(externalId) {
  const data = await gql(`query($c: String!) {
    customer(externalId: $c) { externalId name email createdAt parent { externalId name }
      wallets { id creditSystem { key name } } }
    creditSystems(first: 100) { nodes { key name } } }`, { c: externalId });
  const c = data.customer;
  const widgets = (key) => {
    const attrs = { token: sessionStorage.getItem('credits.console.apiKey'), customer: c.externalId, 'credit-system': key };
    return h('section', { class: 'wallet', 'data-credit-system': key, 'aria-label': `Wallet ${key}` },
      h('credits-balance', attrs), h('credits-history', attrs), h('credits-children', attrs));
  };
  const wallets = h('div', {}, c.wallets.length
    ? c.wallets.map((w) => widgets(w.creditSystem.key))
    : h('p', { class: 'muted', text: 'No wallets yet: a first grant opens one.' }));
  const nodes = [h('h1', { text: c.name }),
    facts([['External id', c.externalId], ['Email', c.email],
      c.parent && ['Parent', link(`/console/customers/${seg(c.parent.externalId)}`, c.parent.name)],
      ['Created', date(c.createdAt)]])];
  if (session().role === 'ADMIN') nodes.push(grantForm(c, data.creditSystems.nodes, wallets, widgets));
  nodes.push(h('h2', { text: 'Wallets' }), wallets);
  return nodes;
}

function grantForm(c, systems, wallets, widgets) {
  let key = idempotencyKey();
  const f = (id, label, input) => h('div', { class: 'field' }, h('label', { for: id, text: label }), input);
  const system = h('select', { id: 'grant-system', required: true },
    systems.map((s) => h('option', { value: s.key, text: s.name })));
  const amount = h('input', { id: 'grant-amount', required: true, inputmode: 'decimal', maxlength: '40', pattern: '[0-9]+([.][0-9]+)?' });
  const category = h('select', { id: 'grant-category' },
    ['PROMOTIONAL', 'ADMIN', 'INCLUDED', 'REFUND', 'PURCHASED'].map((v) => h('option', { value: v, text: v })));
  const reason = h('input', { id: 'grant-reason', required: true, maxlength: '500' });
  const button = h('button', { type: 'submit', text: 'Grant credits' });
  const out = h('p', { role: 'status', 'aria-live': 'polite' });
  const form = h('form', {
    'aria-labelledby': 'grant-title',
    // Changed inputs are a new grant; the same inputs sent again (a retry
    // after a lost answer) keep the key, so they grant once.
    oninput: () => { key = idempotencyKey(); },
    onchange: () => { key = idempotencyKey(); },
    onsubmit: async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      out.className = '';
      out.textContent = 'Granting…';
      try {
        const data = await gql(`mutation($i: GrantCreditsInput!) { grantCredits(input: $i) {
          grant { id amount } entry { id balanceAfter } } }`, { i: {
          customer: { externalId: c.externalId }, creditSystem: { key: system.value },
          amount: amount.value.trim(), category: category.value, reason: reason.value.trim(), idempotencyKey: key } });
        key = idempotencyKey(); // the next grant is a new one
        out.className = 'ok';
        out.textContent = `Granted ${data.grantCredits.grant.amount}${data.grantCredits.entry ? `; balance after: ${data.grantCredits.entry.balanceAfter}` : ''}.`;
        amount.value = '';
        reason.value = '';
        // The balance updates live; the history reloads. A new wallet: shown.
        const shown = wallets.querySelector(`section[data-credit-system="${CSS.escape(system.value)}"]`);
        if (shown) {
          const old = shown.querySelector('credits-history');
          const fresh = old.cloneNode(false);
          old.replaceWith(fresh);
        } else {
          wallets.querySelector('p.muted')?.remove();
          wallets.append(widgets(system.value));
        }
      } catch (e) {
        out.className = 'error';
        out.textContent = `Not granted: ${e.message}`;
      } finally {
        button.disabled = false;
      }
    },
  }, f('grant-system', 'Credit system', system), f('grant-amount', 'Amount', amount),
  f('grant-category', 'Category', category), f('grant-reason', 'Reason', reason), button);
  if (!systems.length) return h('p', { class: 'muted', text: 'Create a credit system to grant credits.' });
  return h('section', { class: 'panel', 'aria-labelledby': 'grant-title' },
    h('h2', { id: 'grant-title', text: 'Grant credits' }), form, out);
}

// ------------------------------------------------------------ catalog

async function plans([key]) {
  if (key !== undefined) return plan(key);
  const data = await gql(`query($n: Int!) { plans(first: $n) { pageInfo { hasNextPage }
    nodes { key name status billingInterval credits { creditSystem { name } } } } }`, { n: PAGE });
  return [h('h1', { text: 'Plans' }),
    table('Plans', ['Key', 'Name', 'Status', 'Billing', 'Credit systems'],
      data.plans.nodes.map((p) => [link(`/console/plans/${seg(p.key)}`, p.key), p.name, p.status, p.billingInterval,
        p.credits.map((x) => x.creditSystem?.name).join(', ') || '—']), 'No plans yet.'),
    more(data.plans)];
}

const PRICE = 'pricingType model packageSize currency taxRate tiers { firstUnit lastUnit amount base }';

function priceTable(title, price) {
  return [h('h3', { text: title }),
    facts([['Pricing', `${price.pricingType} · ${price.model}`], price.packageSize && ['Package size', price.packageSize],
      ['Currency', price.currency], ['Tax rate', price.taxRate]]),
    table(`${title}: tiers`, [num('First unit'), num('Last unit'), num('Amount'), num('Base')],
      price.tiers.map((t) => [t.firstUnit, t.lastUnit ?? '∞', t.amount, t.base ?? '—']), 'No tiers.')];
}

async function plan(key) {
  const data = await gql(`query($k: String!) { plan(key: $k) { key name description status billingInterval
    createdAt publishedAt product { name }
    credits { creditSystem { key name unitPlural } included { amount resetInterval rolloverCap }
      pricing { commitment minQuantity maxQuantity expiration lowCreditLimit lowCreditAction mandatoryPurchase
        topUpPrice { ${PRICE} } recurringPrice { quantity price { ${PRICE} } } } } } }`, { k: key });
  const p = data.plan;
  const nodes = [h('h1', { text: p.name }),
    facts([['Key', p.key], ['Status', p.status], ['Billing', p.billingInterval], ['Product', p.product?.name],
      ['Description', p.description || '—'], ['Created', date(p.createdAt)], ['Published', date(p.publishedAt)]]),
    h('h2', { text: 'Plan credits' })];
  if (!p.credits.length) nodes.push(h('p', { class: 'muted', text: 'No credit systems attached.' }));
  for (const pc of p.credits) {
    const cs = pc.creditSystem;
    const section = h('section', { class: 'panel', 'aria-label': `Plan credit ${cs?.name}` },
      h('h3', {}, cs ? link(`/console/credit-systems/${seg(cs.key)}`, cs.name) : '—'),
      pc.included
        ? facts([['Included allowance', `${pc.included.amount} ${cs?.unitPlural ?? ''}`.trim()],
          ['Resets', pc.included.resetInterval], ['Rollover cap', pc.included.rolloverCap ?? 'none']])
        : h('p', { class: 'muted', text: 'No included allowance.' }));
    const pr = pc.pricing;
    if (pr) {
      section.append(facts([['Commitment', pr.commitment], ['Min quantity', pr.minQuantity], ['Max quantity', pr.maxQuantity],
        ['Purchased credits live', pr.expiration ?? 'forever'], ['Low-credit limit', pr.lowCreditLimit],
        ['Low-credit action', pr.lowCreditAction], ['Mandatory purchase', pr.mandatoryPurchase ? 'yes' : 'no']]));
      if (pr.topUpPrice) section.append(...priceTable('Top-up price', pr.topUpPrice));
      if (pr.recurringPrice) section.append(...priceTable(`Recurring price (${pr.recurringPrice.quantity} a cycle)`, pr.recurringPrice.price));
    }
    nodes.push(section);
  }
  return nodes;
}

async function creditSystems([key]) {
  if (key !== undefined) {
    const { creditSystem: s } = await gql(`query($k: String!) { creditSystem(key: $k) { key name description
      unitSingular unitPlural precision kind currency lowBalanceThreshold createdAt updatedAt } }`, { k: key });
    return [h('h1', { text: s.name }), facts([['Key', s.key], ['Description', s.description || '—'],
      ['Units', `${s.unitSingular} / ${s.unitPlural}`], ['Precision', s.precision], ['Kind', s.kind],
      ['Currency', s.currency], ['Low-balance threshold', s.lowBalanceThreshold], ['Created', date(s.createdAt)],
      ['Updated', date(s.updatedAt)]])];
  }
  const data = await gql(`query($n: Int!) { creditSystems(first: $n) { pageInfo { hasNextPage }
    nodes { key name unitPlural precision kind currency } } }`, { n: PAGE });
  return [h('h1', { text: 'Credit systems' }),
    table('Credit systems', ['Key', 'Name', 'Unit', num('Precision'), 'Kind', 'Currency'],
      data.creditSystems.nodes.map((s) => [link(`/console/credit-systems/${seg(s.key)}`, s.key), s.name, s.unitPlural,
        s.precision, s.kind, s.currency]), 'No credit systems yet.'),
    more(data.creditSystems)];
}

// ------------------------------------------------------------ money and operations (read-only)

async function orders() {
  const data = await gql(`query($n: Int!) { topUpOrders(first: $n) { pageInfo { hasNextPage }
    nodes { id status quantity createdAt customer { externalId } creditSystem { name } quote { total currency } } } }`, { n: PAGE });
  return [h('h1', { text: 'Orders' }),
    table('Top-up orders', ['Created', 'Customer', 'Credit system', num('Quantity'), num('Total'), 'Status'],
      data.topUpOrders.nodes.map((o) => [date(o.createdAt),
        o.customer ? link(`/console/customers/${seg(o.customer.externalId)}`, o.customer.externalId) : '—',
        o.creditSystem?.name, o.quantity, `${o.quote.total} ${o.quote.currency}`, o.status]), 'No orders yet.'),
    more(data.topUpOrders)];
}

async function webhooks() {
  const data = await gql(`query($n: Int!) { webhookEndpoints(first: $n) { pageInfo { hasNextPage }
    nodes { url description events enabled consecutiveFailures createdAt } } }`, { n: PAGE });
  return [h('h1', { text: 'Webhooks' }),
    table('Webhook endpoints', ['URL', 'Description', 'Events', 'Enabled', num('Failures in a row'), 'Created'],
      data.webhookEndpoints.nodes.map((w) => [w.url, w.description, w.events.join(', ') || 'all',
        w.enabled ? 'yes' : 'no', w.consecutiveFailures, date(w.createdAt)]), 'No webhook endpoints yet.'),
    more(data.webhookEndpoints)];
}

async function jobs() {
  const data = await gql('{ jobs { name lastSuccessAt recentRuns(first: 1) { status startedAt error } } }');
  return [h('h1', { text: 'Jobs' }),
    table('Jobs', ['Job', 'Last success', 'Last run', 'Last status', 'Error'],
      data.jobs.map((j) => { const r = j.recentRuns[0]; return [j.name, date(j.lastSuccessAt), date(r?.startedAt), r?.status, r?.error]; }),
      'No jobs.')];
}

async function apiKeys() {
  const data = await gql(`query($n: Int!) { apiKeys(first: $n) { pageInfo { hasNextPage }
    nodes { name role hint active createdAt revokedAt } } }`, { n: PAGE });
  return [h('h1', { text: 'API keys' }),
    table('API keys', ['Name', 'Role', 'Key', 'Active', 'Created', 'Revoked'],
      data.apiKeys.nodes.map((k) => [k.name, k.role, k.hint, k.active ? 'yes' : 'no', date(k.createdAt), date(k.revokedAt)]),
      'No API keys.'),
    more(data.apiKeys)];
}

import { session as s } from './console.js';
const session = () => s.viewer;

export const routes = {
  customers, plans, 'credit-systems': creditSystems, orders, webhooks, jobs, 'api-keys': apiKeys,
};
