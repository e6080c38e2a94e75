// Customers: search, and a customer's page with its wallets (the widgets)
// and the actions its role allows.

import { h, gql, go, table, more, date, link, seg, facts, idempotencyKey, viewer, PAGE } from './ui.js';

export async function customers([externalId]) {
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
  if (viewer().role === 'ADMIN') nodes.push(grantForm(c, data.creditSystems.nodes, wallets, widgets));
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

