// Customers: search and create (WRITE and ADMIN, as the API allows), and a
// customer's page with its wallets (the widgets),
// each wallet's grants, the customer's subscriptions, and the actions its
// role allows: WRITE and ADMIN edit its name and email; ADMIN grants, adjusts, voids, subscribes and cancels; WRITE
// (and ADMIN) refunds usage, allocates to a child and creates customer
// tokens; READ sees no write control. Every write carries an idempotency
// key kept while the inputs stay the same (a retry after a lost answer
// applies once) and renewed when an input changes or the write succeeds.

import { h, gql, go, table, num, date, link, seg, facts, idempotencyKey, viewer, PAGE } from './ui.js';

const GRANTS = 20;

export async function customers([externalId]) {
  if (externalId !== undefined) return customer(externalId);
  const params = new URLSearchParams(location.search);
  const search = params.get('q') || '';
  const after = params.get('after');
  const data = await gql(`query($n: Int!, $q: String, $a: String) { customers(first: $n, search: $q, after: $a) {
    pageInfo { hasNextPage endCursor } nodes { externalId name email parent { externalId } createdAt } } }`,
  { n: PAGE, q: search || null, a: after });
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
  const next = new URLSearchParams({ ...(search ? { q: search } : {}), after: list.pageInfo.endCursor || '' });
  const role = viewer().role;
  const writer = role === 'ADMIN' || role === 'WRITE';
  return [h('h1', { text: 'Customers' }), form,
    writer ? newCustomerForm() : null,
    table(search ? `Customers matching ${search}` : 'Customers',
      ['External id', 'Name', 'Email', 'Parent', 'Created'],
      list.nodes.map((c) => [link(`/console/customers/${seg(c.externalId)}`, c.externalId), c.name, c.email,
        c.parent ? link(`/console/customers/${seg(c.parent.externalId)}`, c.parent.externalId) : '—', date(c.createdAt)]),
      search ? 'No customer matches.' : 'No customers yet.'),
    list.pageInfo.hasNextPage ? h('p', {}, link(`/console/customers?${next}`, 'Next page')) : null];
}

const GRANT_FIELDS = 'id category amount remaining expiresAt effectiveAt voidedAt live reason';
const SUBSCRIPTIONS = 'subscriptions { id status startedAt currentPeriodEnd cancelAt plan { key name } }';
// What the page needs to show the widgets: read first, alone, so the
// widgets start their own queries at once.
const CUSTOMER_HEAD = `query($c: String!) {
  customer(externalId: $c) { externalId name email createdAt parent { externalId name }
    wallets { id creditSystem { key name } } ${SUBSCRIPTIONS} } }`;
// The rest (grants, recent usage for the refund form): read beside the
// widgets' queries, and again after each write.
const CUSTOMER = `query($c: String!, $g: Int!) {
  customer(externalId: $c) { externalId name email createdAt parent { externalId name }
    wallets { id creditSystem { key name }
      grants(first: $g) { pageInfo { hasNextPage endCursor } nodes { ${GRANT_FIELDS} } }
      entries(first: 20, filter: {types: [USAGE]}) { nodes { id amount createdAt description feature } } }
    ${SUBSCRIPTIONS} } }`;
const NOTHING_YET = { pageInfo: { hasNextPage: false }, nodes: [] };

async function customer(externalId) {
  const role = viewer().role;
  const admin = role === 'ADMIN';
  const writer = admin || role === 'WRITE';
  const [data, lists] = await Promise.all([
    gql(CUSTOMER_HEAD, { c: externalId }),
    writer ? gql(`query($admin: Boolean!) { creditSystems(first: 100) { nodes { key name } }
      plans(first: 100, status: PUBLISHED) @include(if: $admin) { nodes { key name } } }`, { admin }) : null,
  ]);
  let c = data.customer;
  for (const w of c.wallets) Object.assign(w, { grants: NOTHING_YET, entries: NOTHING_YET, loading: true });
  const systems = lists?.creditSystems.nodes ?? [];
  const token = sessionStorage.getItem('credits.console.apiKey');
  const page = { c, admin, writer, systems };

  // ---- wallets: the widgets, and the grants table under them.
  const sections = new Map();
  const walletSection = (w) => {
    const key = w.creditSystem.key;
    const attrs = { token, customer: c.externalId, 'credit-system': key };
    const grants = h('div', { class: 'grants' });
    const section = h('section', { class: 'wallet', 'data-credit-system': key, 'aria-labelledby': `wallet-${key}` },
      h('h3', { id: `wallet-${key}`, text: `Wallet ${w.creditSystem.name}` }),
      h('credits-balance', attrs), h('credits-history', attrs),
      later('credits-usage', attrs), later('credits-children', attrs),
      h('h4', { text: `Grants of ${w.creditSystem.name}` }), grants);
    sections.set(key, { section, grants });
    showGrants(page, w, w.grants, grants);
    return section;
  };
  const wallets = h('div', {}, c.wallets.length
    ? c.wallets.map(walletSection)
    : h('p', { class: 'muted', text: 'No wallets yet: a first grant opens one.' }));
  const subscriptions = h('div');

  /** After a write: grants, subscriptions and the usage list re-read; the
   * history and usage widgets reloaded (the balance is live already). */
  page.refresh = async ({ widgets = true } = {}) => {
    c = (await gql(CUSTOMER, { c: externalId, g: GRANTS })).customer;
    page.c = c;
    for (const w of c.wallets) {
      const shown = sections.get(w.creditSystem.key);
      if (!shown) {
        wallets.querySelector(':scope > p.muted')?.remove();
        wallets.append(walletSection(w));
        continue;
      }
      showGrants(page, w, w.grants, shown.grants);
      if (!widgets) continue;
      for (const tag of ['credits-history', 'credits-usage', 'credits-children']) {
        const old = shown.section.querySelector(tag);
        if (old) old.replaceWith(old.cloneNode(false));
      }
    }
    showSubscriptions(page, subscriptions);
    page.onRefresh?.forEach((f) => f());
  };
  page.onRefresh = [];
  showSubscriptions(page, subscriptions);
  page.refresh({ widgets: false }).catch((e) => {
    for (const { grants } of sections.values()) {
      grants.replaceChildren(h('p', { class: 'error', role: 'alert', text: `Could not read the grants: ${e.message}` }));
    }
  });

  const nodes = [h('h1', { text: c.name }),
    facts([['External id', c.externalId], ['Email', c.email],
      c.parent && ['Parent', link(`/console/customers/${seg(c.parent.externalId)}`, c.parent.name)],
      ['Created', date(c.createdAt)]])];
  const actions = [];
  if (admin) {
    actions.push(grantForm(page), adjustForm(page), voidForm(page));
  }
  if (writer) actions.push(refundForm(page), allocateForm(page));
  if (admin) actions.push(subscribeForm(page, lists.plans.nodes));
  if (writer) actions.push(tokenForm(page), editCustomerForm(page));
  // What the customer has first (the balances and history are the page's
  // point), then what can be done about it.
  nodes.push(h('h2', { text: 'Wallets' }), wallets, h('h2', { text: 'Subscriptions' }), subscriptions);
  if (actions.length) nodes.push(h('h2', { text: 'Actions' }), h('div', { class: 'actions' }, actions));
  return nodes;
}

/** A widget made when it nears the viewport: the balances and histories
 * load first, without a dozen other queries competing with them. */
function later(tag, attrs) {
  const slot = h('div', { class: 'later', 'data-widget': tag });
  if (!('IntersectionObserver' in window)) {
    slot.append(h(tag, attrs));
    return slot;
  }
  const seen = new IntersectionObserver((entries) => {
    if (!entries.some((e) => e.isIntersecting)) return;
    seen.disconnect();
    slot.append(h(tag, attrs));
  }, { rootMargin: '200px' });
  seen.observe(slot);
  return slot;
}

// ------------------------------------------------------------------ tables

function grantStatus(g) {
  if (g.voidedAt) return 'voided';
  if (g.live) return 'live';
  if (g.expiresAt && new Date(g.expiresAt) <= new Date()) return 'expired';
  if (new Date(g.effectiveAt) > new Date()) return 'scheduled';
  return Number(g.remaining) === 0 ? 'spent' : 'not live';
}

/** One page of a wallet's grants; "Next page" reads the next one. */
function showGrants(page, wallet, conn, into, { after = null, previous = [] } = {}) {
  if (wallet.loading) {
    into.replaceChildren(h('p', { class: 'muted', role: 'status', text: 'Loading grants…' }));
    return;
  }
  const rows = conn.nodes.map((g) => [g.category, g.amount, g.remaining, date(g.expiresAt), grantStatus(g),
    g.reason || '—',
    page.admin && g.live
      ? h('button', { type: 'button', class: 'secondary small', 'aria-label': `Void grant ${g.id}`, text: 'Void',
        onclick: () => page.voidGrant?.(g, wallet) })
      : '']);
  const headers = ['Category', num('Amount'), num('Remaining'), 'Expires', 'Status', 'Reason', page.admin ? 'Action' : ''];
  const nav = [];
  if (previous.length) {
    nav.push(h('button', { type: 'button', class: 'secondary', text: 'Previous page',
      onclick: () => loadGrants(page, wallet, into, previous.at(-2) ?? null, previous.slice(0, -1)) }));
  }
  if (conn.pageInfo.hasNextPage) {
    nav.push(h('button', { type: 'button', class: 'secondary', text: 'Next page',
      'aria-label': `Next page of grants of ${wallet.creditSystem.name}`,
      onclick: () => loadGrants(page, wallet, into, conn.pageInfo.endCursor, [...previous, conn.pageInfo.endCursor]) }));
  }
  into.replaceChildren(table(`Grants of ${wallet.creditSystem.name}${after ? ' (later page)' : ''}`, headers, rows, 'No grants.'),
    ...(nav.length ? [h('p', { class: 'pager' }, nav)] : []));
}

async function loadGrants(page, wallet, into, after, previous) {
  try {
    const data = await gql(`query($w: ID!, $n: Int!, $a: String) { wallet(id: $w) {
      grants(first: $n, after: $a) { pageInfo { hasNextPage endCursor } nodes { ${GRANT_FIELDS} } } } }`,
    { w: wallet.id, n: GRANTS, a: after });
    showGrants(page, wallet, data.wallet.grants, into, { after, previous });
  } catch (e) {
    into.append(h('p', { class: 'error', role: 'alert', text: `Could not read the grants: ${e.message}` }));
  }
}

function showSubscriptions(page, into) {
  const subs = page.c.subscriptions;
  into.replaceChildren(table('Subscriptions', ['Plan', 'Status', 'Started', 'Current period ends', 'Cancels at', page.admin ? 'Action' : ''],
    subs.map((s) => [s.plan ? link(`/console/plans/${seg(s.plan.key)}`, s.plan.name) : '—', s.status, date(s.startedAt),
      date(s.currentPeriodEnd), date(s.cancelAt),
      page.admin && s.status !== 'CANCELED' && !s.cancelAt
        ? h('button', { type: 'button', class: 'secondary small', text: 'Cancel subscription',
          'aria-label': `Cancel subscription to ${s.plan?.name ?? s.id}`,
          onclick: (ev) => cancelSubscription(page, s, ev.currentTarget, into) })
        : '']),
    'No subscriptions.'));
}

async function cancelSubscription(page, s, button, into) {
  // eslint-disable-next-line no-alert
  if (!confirm(`Cancel the subscription to ${s.plan?.name ?? s.id} now? Its allowance stops renewing.`)) return;
  button.disabled = true;
  try {
    await gql('mutation($s: ID!) { cancelSubscription(input: {subscription: $s}) { subscription { id status } } }', { s: s.id });
    await page.refresh();
  } catch (e) {
    button.disabled = false;
    into.append(h('p', { class: 'error', role: 'alert', text: `Not canceled: ${e.message}` }));
  }
}

// ------------------------------------------------------------------- forms

const field = (id, label, input, hint) => h('div', { class: 'field' },
  h('label', { for: id, text: label }), input, hint ? h('small', { id: `${id}-hint`, class: 'muted', text: hint }) : null);
const systemSelect = (id, systems) => h('select', { id, required: true },
  systems.map((s) => h('option', { value: s.key, text: s.name })));
const amountInput = (id, signed = false) => h('input', { id, required: true, inputmode: 'decimal', maxlength: '40',
  pattern: signed ? '-?[0-9]+([.][0-9]+)?' : '[0-9]+([.][0-9]+)?', autocomplete: 'off' });

/**
 * A form for one write. `send(key)` performs it with the idempotency key
 * and returns the success text; the key is kept while the inputs stay the
 * same (a retry) and renewed on change or success. Errors show the API's
 * message (and field). The form is a region named by its heading.
 */
function actionForm({ id, title, controls, submit, busy, failed, send, after, note, level = 'h3' }) {
  let key = idempotencyKey();
  const button = h('button', { type: 'submit', text: submit });
  const out = h('p', { role: 'status', 'aria-live': 'polite' });
  const extra = h('div', { class: 'result' });
  const form = h('form', {
    'aria-labelledby': `${id}-title`,
    oninput: () => { key = idempotencyKey(); },
    onchange: () => { key = idempotencyKey(); },
    onsubmit: async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      out.className = '';
      out.textContent = busy;
      extra.replaceChildren();
      try {
        const said = await send(key);
        key = idempotencyKey(); // the next one is a new write
        out.className = 'ok';
        out.textContent = typeof said === 'string' ? said : said.text;
        if (said.node) extra.append(said.node);
        form.reset();
      } catch (e) {
        out.className = 'error';
        out.textContent = `${failed}: ${e.message}`;
        return;
      } finally {
        button.disabled = false;
      }
      try { await after?.(); } catch (e) {
        extra.append(h('p', { class: 'error', role: 'alert', text: `Done, but the page could not be re-read: ${e.message}` }));
      }
    },
  }, controls, button);
  const section = h('section', { class: 'panel', id, 'aria-labelledby': `${id}-title` },
    h(level, { id: `${id}-title`, text: title }), note ? h('p', { class: 'muted', text: note }) : null, form, out, extra);
  return { section, form, out };
}

function grantForm(page) {
  if (!page.systems.length) {
    return h('section', { class: 'panel', 'aria-labelledby': 'grant-title' },
      h('h3', { id: 'grant-title', text: 'Grant credits' }),
      h('p', { class: 'muted', text: 'Create a credit system to grant credits.' }));
  }
  const system = systemSelect('grant-system', page.systems);
  const amount = amountInput('grant-amount');
  const category = h('select', { id: 'grant-category' },
    ['PROMOTIONAL', 'ADMIN', 'INCLUDED', 'REFUND', 'PURCHASED'].map((v) => h('option', { value: v, text: v })));
  const reason = h('input', { id: 'grant-reason', required: true, maxlength: '500' });
  return actionForm({
    id: 'grant', title: 'Grant credits', submit: 'Grant credits', busy: 'Granting…', failed: 'Not granted',
    controls: [field('grant-system', 'Credit system', system), field('grant-amount', 'Amount', amount),
      field('grant-category', 'Category', category), field('grant-reason', 'Reason', reason)],
    send: async (key) => {
      const data = await gql(`mutation($i: GrantCreditsInput!) { grantCredits(input: $i) {
        grant { id amount } entry { id balanceAfter } } }`, { i: {
        customer: { externalId: page.c.externalId }, creditSystem: { key: system.value },
        amount: amount.value.trim(), category: category.value, reason: reason.value.trim(), idempotencyKey: key } });
      const g = data.grantCredits;
      return `Granted ${g.grant.amount}${g.entry ? `; balance after: ${g.entry.balanceAfter}` : ''}.`;
    },
    after: page.refresh,
  }).section;
}

function adjustForm(page) {
  if (!page.c.wallets.length) return null;
  const system = systemSelect('adjust-system', page.systems);
  const amount = amountInput('adjust-amount', true);
  amount.setAttribute('aria-describedby', 'adjust-amount-hint');
  const reason = h('input', { id: 'adjust-reason', required: true, maxlength: '500' });
  return actionForm({
    id: 'adjust', title: 'Adjust balance', submit: 'Adjust balance', busy: 'Adjusting…', failed: 'Not adjusted',
    controls: [field('adjust-system', 'Credit system', system),
      field('adjust-amount', 'Amount', amount, 'Positive adds, negative (-50) removes.'),
      field('adjust-reason', 'Reason', reason)],
    send: async (key) => {
      const data = await gql(`mutation($i: AdjustBalanceInput!) { adjustBalance(input: $i) { entry { amount balanceAfter } } }`,
        { i: { customer: { externalId: page.c.externalId }, creditSystem: { key: system.value },
          amount: amount.value.trim(), reason: reason.value.trim(), idempotencyKey: key } });
      const e = data.adjustBalance.entry;
      return `Adjusted by ${e.amount}; balance after: ${e.balanceAfter}.`;
    },
    after: page.refresh,
  }).section;
}

function voidForm(page) {
  const grant = h('select', { id: 'void-grant', required: true });
  const fill = () => {
    const chosen = grant.value;
    grant.replaceChildren(h('option', { value: '', text: 'Choose a live grant' }),
      ...page.c.wallets.flatMap((w) => w.grants.nodes.filter((g) => g.live).map((g) => h('option', {
        value: g.id, text: `${w.creditSystem.name} · ${g.category} · ${g.remaining} of ${g.amount} left · ${g.id}` }))));
    grant.value = chosen;
  };
  fill();
  page.onRefresh.push(fill);
  const reason = h('input', { id: 'void-reason', required: true, maxlength: '500' });
  const { section } = actionForm({
    id: 'void', title: 'Void a grant', submit: 'Void grant', busy: 'Voiding…', failed: 'Not voided',
    note: 'What remains of the grant is removed; what was spent stays spent. The Void buttons in the grants tables choose here.',
    controls: [field('void-grant', 'Grant', grant), field('void-reason', 'Reason', reason)],
    send: async (key) => {
      const data = await gql(`mutation($i: VoidGrantInput!) { voidGrant(input: $i) { grant { id } entry { amount balanceAfter } } }`,
        { i: { grant: grant.value, reason: reason.value.trim(), idempotencyKey: key } });
      const e = data.voidGrant.entry;
      return `Voided ${data.voidGrant.grant.id}: ${e.amount}; balance after: ${e.balanceAfter}.`;
    },
    after: page.refresh,
  });
  page.voidGrant = (g) => {
    if (![...grant.options].some((o) => o.value === g.id)) fill();
    grant.value = g.id;
    grant.dispatchEvent(new Event('change', { bubbles: true }));
    section.scrollIntoView({ block: 'center' });
    reason.focus();
  };
  return section;
}

function refundForm(page) {
  const usage = h('select', { id: 'refund-entry' });
  const fill = () => {
    usage.replaceChildren(h('option', { value: '', text: 'Choose a usage entry (or give its id)' }),
      ...page.c.wallets.flatMap((w) => w.entries.nodes.map((e) => h('option', {
        value: e.id, text: `${w.creditSystem.name} · ${e.amount} · ${date(e.createdAt)}${e.description ? ` · ${e.description}` : ''}` }))));
  };
  fill();
  page.onRefresh.push(fill);
  const byId = h('input', { id: 'refund-entry-id', maxlength: '100', autocomplete: 'off', spellcheck: 'false' });
  const amount = h('input', { id: 'refund-amount', inputmode: 'decimal', maxlength: '40', pattern: '[0-9]+([.][0-9]+)?',
    'aria-describedby': 'refund-amount-hint' });
  const reason = h('input', { id: 'refund-reason', required: true, maxlength: '500' });
  return actionForm({
    id: 'refund', title: 'Refund usage', submit: 'Refund usage', busy: 'Refunding…', failed: 'Not refunded',
    controls: [field('refund-entry', 'Usage entry', usage), field('refund-entry-id', 'Or entry id', byId),
      field('refund-amount', 'Amount (optional)', amount, 'Empty: all that is left to refund.'),
      field('refund-reason', 'Reason', reason)],
    send: async (key) => {
      const entry = byId.value.trim() || usage.value;
      if (!entry) throw new Error('choose a usage entry or give its id (entry)');
      const data = await gql(`mutation($i: RefundUsageInput!) { refundUsage(input: $i) { entry { amount balanceAfter } } }`,
        { i: { entry, amount: amount.value.trim() || null, reason: reason.value.trim(), idempotencyKey: key } });
      const e = data.refundUsage.entry;
      return `Refunded ${e.amount}; balance after: ${e.balanceAfter}.`;
    },
    after: page.refresh,
  }).section;
}

function allocateForm(page) {
  if (!page.c.wallets.length) return null;
  const system = systemSelect('allocate-system', page.systems);
  const to = h('input', { id: 'allocate-to', required: true, maxlength: '200', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'allocate-to-hint' });
  const amount = amountInput('allocate-amount');
  const note = h('input', { id: 'allocate-note', maxlength: '500' });
  return actionForm({
    id: 'allocate', title: 'Allocate to a child', submit: 'Allocate', busy: 'Allocating…', failed: 'Not allocated',
    controls: [field('allocate-system', 'Credit system', system),
      field('allocate-to', 'Child (external id)', to, 'A customer below this one.'),
      field('allocate-amount', 'Amount', amount), field('allocate-note', 'Note', note)],
    send: async (key) => {
      const data = await gql(`mutation($i: AllocateCreditsInput!) { allocateCredits(input: $i) { outEntry { amount balanceAfter } } }`,
        { i: { from: { externalId: page.c.externalId }, to: { externalId: to.value.trim() }, creditSystem: { key: system.value },
          amount: amount.value.trim(), note: note.value.trim() || null, idempotencyKey: key } });
      const e = data.allocateCredits.outEntry;
      return `Allocated ${e.amount.replace(/^-/, '')} to ${to.value.trim()}; balance after: ${e.balanceAfter}.`;
    },
    after: page.refresh,
  }).section;
}

function subscribeForm(page, plans) {
  if (!plans.length) {
    return h('section', { class: 'panel', 'aria-labelledby': 'subscribe-title' },
      h('h3', { id: 'subscribe-title', text: 'Subscribe to a plan' }),
      h('p', { class: 'muted', text: 'No published plan yet: publish one under Plans.' }));
  }
  const plan = h('select', { id: 'subscribe-plan', required: true }, plans.map((p) => h('option', { value: p.key, text: p.name })));
  return actionForm({
    id: 'subscribe', title: 'Subscribe to a plan', submit: 'Subscribe', busy: 'Subscribing…', failed: 'Not subscribed',
    note: 'Starts now; the plan’s included allowances are granted at once.',
    controls: [field('subscribe-plan', 'Plan', plan)],
    send: async (key) => {
      const data = await gql(`mutation($i: SubscribeInput!) { subscribe(input: $i) {
        subscription { status plan { name } } grants { amount } } }`,
      { i: { customer: { externalId: page.c.externalId }, plan: { key: plan.value }, idempotencyKey: key } });
      const s = data.subscribe;
      const granted = s.grants.map((g) => g.amount).join(', ');
      return `Subscribed to ${s.subscription.plan?.name ?? plan.value} (${s.subscription.status})${granted ? `; granted ${granted}` : ''}.`;
    },
    after: page.refresh,
  }).section;
}

const TTLS = [['900', '15 minutes'], ['3600', '1 hour'], ['28800', '8 hours'], ['86400', '24 hours']];

function tokenForm(page) {
  const ttl = h('select', { id: 'token-ttl' }, TTLS.map(([v, t]) => h('option', { value: v, text: t, selected: v === '3600' })));
  const descendants = h('input', { id: 'token-descendants', type: 'checkbox' });
  return actionForm({
    id: 'token', title: 'Create a customer token', submit: 'Create token', busy: 'Creating…', failed: 'No token',
    note: 'For the widgets in a customer’s browser: it reads this customer only. It is shown once.',
    controls: [field('token-ttl', 'Valid for', ttl),
      h('div', { class: 'field check' }, h('label', { for: 'token-descendants' }, descendants, ' Include the customers below')),
    ],
    send: async () => {
      const data = await gql(`mutation($c: CustomerRef!, $t: Int!, $d: Boolean!) {
        createCustomerToken(customer: $c, ttlSeconds: $t, includeDescendants: $d) { token expiresAt } }`,
      { c: { externalId: page.c.externalId }, t: Number(ttl.value), d: descendants.checked });
      const t = data.createCustomerToken;
      const wallet = page.c.wallets[0];
      // The widgets demo page with this token (read from the URL by the
      // page's script, never written into it by the server).
      const demo = wallet ? h('p', {}, h('a', {
        href: `/widgets/demo?${new URLSearchParams({ token: t.token, customer: page.c.externalId, creditSystem: wallet.creditSystem.key })}`,
        text: `See the widgets with this token (${wallet.creditSystem.name})` })) : null;
      return { text: `Token created; it expires ${date(t.expiresAt)}. Copy it now: it is not shown again.`,
        node: h('div', {}, secretBox('token-value', 'Customer token', t.token), demo) };
    },
  }).section;
}

/** A secret shown once: read-only, selected on focus, with a Copy button. */
export function secretBox(id, label, value) {
  const input = h('input', { id, readonly: true, value, size: '60', spellcheck: 'false', autocomplete: 'off',
    onfocus: (ev) => ev.target.select() });
  const said = h('span', { role: 'status', class: 'muted' });
  const copy = h('button', { type: 'button', class: 'secondary', text: `Copy ${label.toLowerCase()}`,
    onclick: async () => {
      input.select();
      try {
        if (navigator.clipboard) await navigator.clipboard.writeText(value);
        else if (!document.execCommand('copy')) throw new Error('refused');
        said.textContent = 'Copied.';
      } catch {
        said.textContent = 'Select the text and copy it by hand.';
      }
    } });
  return h('div', { class: 'secret' }, h('label', { for: id, text: label }), h('div', { class: 'row' }, input, copy, said));
}


/** New customer (on the Customers page): `createCustomer`, then the new
 * customer's page. The API answers a repeat with the same details with the
 * same customer, so a retry after a lost answer creates one. */
function newCustomerForm() {
  const externalId = h('input', { id: 'new-customer-id', required: true, maxlength: '200', autocomplete: 'off',
    spellcheck: 'false', 'aria-describedby': 'new-customer-id-hint' });
  const name = h('input', { id: 'new-customer-name', required: true, maxlength: '200', autocomplete: 'off' });
  const email = h('input', { id: 'new-customer-email', type: 'email', maxlength: '320', autocomplete: 'off' });
  const parent = h('input', { id: 'new-customer-parent', maxlength: '200', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'new-customer-parent-hint' });
  const { section } = actionForm({
    id: 'new-customer', title: 'New customer', level: 'h2', submit: 'Create customer', busy: 'Creating…', failed: 'Not created',
    controls: [field('new-customer-id', 'External id', externalId, 'Your id for the customer; unique.'),
      field('new-customer-name', 'Name', name), field('new-customer-email', 'Email (optional)', email),
      field('new-customer-parent', 'Parent external id (optional)', parent, 'A partner or client above this one.')],
    send: async () => {
      const p = parent.value.trim();
      const data = await gql(`mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { externalId name } } }`,
        { i: { externalId: externalId.value.trim(), name: name.value.trim(), email: email.value.trim() || null,
          parent: p ? { externalId: p } : null } });
      const c = data.createCustomer.customer;
      section.dataset.created = c.externalId;
      return `Customer ${c.name} created.`;
    },
    after: () => go(`/console/customers/${seg(section.dataset.created)}`),
  });
  return section;
}

/** Edit customer (name, email) on its page: `updateCustomer`. */
function editCustomerForm(page) {
  const name = h('input', { id: 'edit-customer-name', required: true, maxlength: '200', autocomplete: 'off', value: page.c.name });
  const email = h('input', { id: 'edit-customer-email', type: 'email', maxlength: '320', autocomplete: 'off',
    value: page.c.email ?? '', 'aria-describedby': 'edit-customer-email-hint' });
  const { section, form } = actionForm({
    id: 'edit-customer', title: 'Edit customer', submit: 'Save customer', busy: 'Saving…', failed: 'Not saved',
    controls: [field('edit-customer-name', 'Name', name),
      field('edit-customer-email', 'Email', email, 'Empty removes it.')],
    send: async () => {
      const data = await gql(`mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) { customer { name email } } }`,
        { i: { customer: { externalId: page.c.externalId }, name: name.value.trim(), email: email.value.trim() || null } });
      const c = data.updateCustomer.customer;
      Object.assign(page.c, c);
      return `Saved: ${c.name}${c.email ? ` <${c.email}>` : ''}.`;
    },
    after: () => {
      // The form resets to the saved values; the heading and facts follow.
      name.defaultValue = page.c.name;
      email.defaultValue = page.c.email ?? '';
      form.reset();
      const main = section.closest('main');
      const title = main?.querySelector('h1');
      if (title) title.textContent = page.c.name;
      const dd = [...(main?.querySelectorAll('dl.facts dt') ?? [])].find((dt) => dt.textContent === 'Email')?.nextElementSibling;
      if (dd) dd.textContent = page.c.email ?? '—';
    },
  });
  return section;
}
