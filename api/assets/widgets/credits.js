// Drop-in customer widgets: standard custom elements, no framework, no
// build step. Load this module from the API and place an element:
//
//   <script type="module" src="https://API/assets/widgets/credits.js"></script>
//   <credits-balance endpoint="https://API" token="ct_…" customer="acme"
//                    credit-system="tokens"></credits-balance>
//
// Attributes (every element): `endpoint` (the API's origin; empty = this
// page's), `token` (a customer token, `createCustomerToken`), `customer`
// (the token's customer, by external id: a token can't ask who it is),
// `credit-system` (a credit system key). `<credits-history>` and
// `<credits-children>` also take `page-size` (1–100, default 20).
// `<credits-children>` needs a token minted with `includeDescendants: true`.
// `<credits-usage>` takes `months` (1–24, default 4).
//
// Theme with CSS custom properties on the element or any ancestor:
// --credits-font, --credits-accent, --credits-fg, --credits-bg,
// --credits-muted, --credits-border, --credits-error, --credits-radius;
// the usage bars: --credits-healthy, --credits-watch, --credits-critical,
// --credits-track.
//
// Amounts are the API's exact decimal strings, shown as they come: never
// parsed into floating point.

const CSS = `
:host { display: block; font-family: var(--credits-font, system-ui, sans-serif);
  color: var(--credits-fg, #1b1f24); background: var(--credits-bg, #fff);
  border: 1px solid var(--credits-border, #d0d7de); border-radius: var(--credits-radius, 8px);
  padding: 1rem; }
:host([hidden]) { display: none; }
h2 { font-size: 1rem; margin: 0 0 .75rem; }
dl { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .75rem; margin: 0; }
dl div { border-left: 4px solid var(--credits-accent, #0b5cad); padding-left: .5rem; }
dt { font-size: .8rem; color: var(--credits-muted, #57606a); }
dd { margin: 0; font-size: 1.25rem; font-weight: 600; font-variant-numeric: tabular-nums; }
dd small { font-size: .8rem; font-weight: 400; }
.live { font-size: .75rem; color: var(--credits-muted, #57606a); margin: .5rem 0 0; }
.error { color: var(--credits-error, #b42318); border: 1px solid currentColor; border-radius: 4px;
  padding: .5rem; margin: .5rem 0 0; font-weight: 600; }
.error:empty { display: none; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; margin-bottom: .5rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--credits-border, #d0d7de); }
td.num, th.num { text-align: right; }
form { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; margin-bottom: .75rem; }
label { display: flex; flex-direction: column; font-size: .8rem; gap: .2rem; }
input, select { font: inherit; padding: .25rem; }
button { font: inherit; padding: .35rem .8rem; border-radius: 4px; cursor: pointer;
  border: 1px solid var(--credits-accent, #0b5cad); background: var(--credits-accent, #0b5cad); color: #fff; }
button[disabled] { opacity: .6; cursor: default; }
.bar { display: flex; align-items: center; gap: .5rem; }
.track { flex: 1; min-width: 5rem; height: .6rem; background: var(--credits-track, #eaeef2); border-radius: .3rem; overflow: hidden; }
.fill { height: 100%; width: 0; }
.HEALTHY .fill { background: var(--credits-healthy, #1a7f37); }
.WATCH .fill { background: var(--credits-watch, #bc4c00); }
.CRITICAL .fill { background: var(--credits-critical, #cf222e); }
.status-label { font-size: .8rem; white-space: nowrap; }
ol.months { list-style: none; padding: 0; margin: 0 0 1rem; display: grid; grid-template-columns: repeat(auto-fit, minmax(8rem, 1fr)); gap: .75rem; }
ol.months li { border: 1px solid var(--credits-border, #d0d7de); border-radius: 6px; padding: .5rem; }
ol.months li.current { border-color: var(--credits-accent, #0b5cad); border-width: 2px; }
.usage-bar .fill { background: var(--credits-accent, #0b5cad); }
`;

let sheet = null;
function style(root) {
  // A constructed sheet: no inline <style>, so a page whose CSP forbids
  // inline styles still shows the widgets styled.
  try {
    sheet ??= new CSSStyleSheet();
    if (!sheet.cssRules.length) sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } catch {
    const el = document.createElement('style');
    el.textContent = CSS;
    root.append(el);
  }
}

/** One element with text (never HTML: API strings are never markup). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children);
  return el;
}

export const EXPIRED_MESSAGE =
  'Your access has expired or was refused. Reload the page to get a fresh link.';

class Refused extends Error {}

/** POSTs a query with the token; throws `Refused` on 401/UNAUTHENTICATED/FORBIDDEN. */
async function gql(endpoint, token, query, variables) {
  const res = await fetch(`${endpoint}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const code = body?.errors?.[0]?.extensions?.code;
  if (res.status === 401 || res.status === 403 || code === 'UNAUTHENTICATED' || code === 'FORBIDDEN') {
    throw new Refused(code || `HTTP ${res.status}`);
  }
  if (body?.errors?.length) throw new Error(body.errors[0].message);
  if (!res.ok || !body?.data) throw new Error(`HTTP ${res.status}`);
  return body.data;
}

/** `1 photo`, `2 photos`: the credit system's unit labels. */
function units(amount, system) {
  if (!system) return '';
  return /^-?1(\.0*)?$/.test(amount) ? system.unitSingular : system.unitPlural;
}

function amount(value, system) {
  const u = units(value, system);
  return u ? [value, ' ', h('small', { text: u })] : [value];
}

class CreditsElement extends HTMLElement {
  static observedAttributes = ['endpoint', 'token', 'customer', 'credit-system', 'page-size'];

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    style(this.root);
  }

  get endpoint() { return (this.getAttribute('endpoint') || '').replace(/\/+$/, ''); }
  get token() { return this.getAttribute('token') || ''; }
  get customer() { return this.getAttribute('customer') || ''; }
  get creditSystem() { return this.getAttribute('credit-system') || ''; }

  connectedCallback() { this.schedule(); }
  disconnectedCallback() { this.stop?.(); }
  attributeChangedCallback() { if (this.isConnected) this.schedule(); }

  /** One restart per task, however many attributes changed. */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    queueMicrotask(() => {
      this.pending = false;
      this.stop?.();
      const missing = ['token', 'customer', 'credit-system'].filter((a) => !this.getAttribute(a));
      if (missing.length) return this.fail(`Missing attribute: ${missing.join(', ')}.`);
      this.start();
    });
  }

  query(q, vars) { return gql(this.endpoint, this.token, q, vars); }

  /** Shows an error in the element's alert region. */
  fail(message) {
    if (!this.alert) {
      this.root.replaceChildren(this.alert = h('p', { class: 'error', role: 'alert' }));
    }
    this.alert.textContent = message;
  }

  handle(err) {
    this.fail(err instanceof Refused ? EXPIRED_MESSAGE : `Could not load: ${err.message}`);
  }
}

// ----------------------------------------------------------- <credits-balance>

const BALANCE = `query($c: String!, $s: String!) {
  customer(externalId: $c) { name wallet(creditSystem: {key: $s}) {
    id creditSystem { name unitSingular unitPlural }
    balance { available pending scheduled debt expiringSoon(days: 30) } } } }`;

const SUBSCRIBE = `subscription($c: String!, $s: String!) {
  walletUpdated(customer: {externalId: $c}, creditSystem: {key: $s}) { walletId available pending debt at } }`;

class CreditsBalance extends CreditsElement {
  start() {
    let stopped = false;
    let socket = null;
    let retry = null;
    let refetching = null;
    this.stop = () => {
      stopped = true;
      clearTimeout(retry);
      socket?.close(1000);
    };
    this.alert = null;
    const load = async () => {
      try {
        const data = await this.query(BALANCE, { c: this.customer, s: this.creditSystem });
        if (!stopped) this.render(data.customer);
        return true;
      } catch (err) {
        if (!stopped) this.handle(err);
        return !(err instanceof Refused);
      }
    };
    // Changes re-read the whole balance (expiring soon and scheduled are
    // not in the update); several updates while a read runs: one more read.
    const refetch = () => {
      if (refetching) { refetching.again = true; return; }
      refetching = { again: false };
      load().finally(() => {
        const again = refetching.again;
        refetching = null;
        if (again && !stopped) refetch();
      });
    };
    const connect = (attempt) => {
      const url = new URL(`${this.endpoint}/graphql/ws`, location.href);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      socket = new WebSocket(url, 'graphql-transport-ws');
      socket.onopen = () => socket.send(JSON.stringify({
        type: 'connection_init', payload: { Authorization: `Bearer ${this.token}` },
      }));
      socket.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === 'connection_ack') {
          attempt = 0;
          this.live(true);
          socket.send(JSON.stringify({
            id: '1', type: 'subscribe',
            payload: { query: SUBSCRIBE, variables: { c: this.customer, s: this.creditSystem } },
          }));
        } else if (msg.type === 'next') {
          const update = msg.payload?.data?.walletUpdated;
          if (update) { this.update(update); refetch(); }
          else if (msg.payload?.errors) {
            const e = msg.payload.errors[0];
            const code = e.extensions?.code;
            this.handle(code === 'FORBIDDEN' || code === 'UNAUTHENTICATED' ? new Refused(code) : new Error(e.message));
          }
        } else if (msg.type === 'error') {
          const code = msg.payload?.[0]?.extensions?.code;
          this.handle(code === 'FORBIDDEN' || code === 'UNAUTHENTICATED' ? new Refused(code) : new Error(msg.payload?.[0]?.message));
        } else if (msg.type === 'ping') {
          socket.send(JSON.stringify({ type: 'pong' }));
        }
      };
      socket.onclose = (ev) => {
        if (stopped) return;
        this.live(false);
        if (ev.code === 4401 || ev.code === 4403) {
          stopped = true;
          if (this.status) this.status.textContent = 'Not updating: the figures above may be out of date.';
          this.handle(new Refused(String(ev.code)));
          return;
        }
        // Anything else (a restart, the network): reconnect, backing off.
        retry = setTimeout(() => { if (!stopped) { refetch(); connect(attempt + 1); } },
          Math.min(30000, 500 * 2 ** attempt));
      };
    };
    load().then((ok) => { if (ok && !stopped) connect(0); });
  }

  render(customer) {
    const wallet = customer.wallet;
    const system = wallet?.creditSystem;
    const b = wallet?.balance ?? { available: '0', pending: '0', scheduled: '0', debt: '0', expiringSoon: '0' };
    const figure = (label, key, value) => h('div', {},
      h('dt', { text: label }), h('dd', { 'data-field': key }, ...amount(value, system)));
    const list = h('dl', {},
      figure('Available', 'available', b.available),
      figure('Pending (held)', 'pending', b.pending),
      figure('Expiring within 30 days', 'expiringSoon', b.expiringSoon),
      figure('Scheduled', 'scheduled', b.scheduled));
    if (b.debt && !/^0(\.0*)?$/.test(b.debt)) list.append(figure('Debt', 'debt', b.debt));
    this.system = system;
    this.status = h('p', { class: 'live', text: this.isLive ? 'Live' : 'Connecting…' });
    this.alert = h('p', { class: 'error', role: 'alert' });
    this.root.replaceChildren(
      h('section', { 'aria-label': `${system?.name ?? this.creditSystem} balance` },
        h('h2', { text: `${system?.name ?? this.creditSystem} · ${customer.name}` }),
        h('div', { role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' }, list),
        this.status, this.alert));
  }

  /** A pushed balance, shown at once. */
  update(u) {
    for (const key of ['available', 'pending']) {
      const dd = this.root.querySelector(`dd[data-field="${key}"]`);
      if (dd) dd.replaceChildren(...amount(u[key], this.system));
    }
  }

  live(on) {
    this.isLive = on;
    if (this.status) this.status.textContent = on ? 'Live' : 'Reconnecting…';
  }
}

// ----------------------------------------------------------- <credits-history>

const HISTORY = `query($c: String!, $s: String!, $n: Int!, $after: String, $f: EntryFilter) {
  customer(externalId: $c) { wallet(creditSystem: {key: $s}) {
    creditSystem { name unitSingular unitPlural }
    entries(first: $n, after: $after, filter: $f) {
      pageInfo { hasNextPage endCursor }
      nodes { id type amount balanceAfter description createdAt } } } } }`;

const TYPE_LABELS = {
  GRANT: 'Grant', USAGE: 'Usage', EXPIRY: 'Expiry', VOID: 'Void', REFUND: 'Refund',
  ADJUSTMENT: 'Adjustment', TRANSFER_OUT: 'Transfer out', TRANSFER_IN: 'Transfer in',
  HOLD: 'Hold', RELEASE: 'Release', INVOICE: 'Invoice',
};

/** `2026-01-31` (a date input's value) → the instant that day starts, UTC. */
function dayStart(value, plusDays = 0) {
  const [y, m, d] = value.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + plusDays)).toISOString();
}

let uid = 0;

class CreditsHistory extends CreditsElement {
  get pageSize() {
    const n = Number.parseInt(this.getAttribute('page-size') || '20', 10);
    return Number.isFinite(n) ? Math.min(100, Math.max(1, n)) : 20;
  }

  start() {
    const id = `credits-history-${++uid}`;
    let generation = 0;
    this.stop = () => { generation++; };
    this.alert = h('p', { class: 'error', role: 'alert' });
    const from = h('input', { type: 'date', id: `${id}-from`, name: 'from' });
    const to = h('input', { type: 'date', id: `${id}-to`, name: 'to' });
    const tbody = h('tbody');
    const caption = h('caption', { text: 'Credit history' });
    const more = h('button', { type: 'button', text: 'Load more', hidden: true });
    const status = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' });
    let cursor = null;
    const filter = () => {
      const f = {};
      if (from.value) f.from = dayStart(from.value);
      if (to.value) f.to = dayStart(to.value, 1); // through the whole day
      return f;
    };
    const page = async (reset) => {
      const mine = ++generation;
      if (reset) { cursor = null; }
      more.disabled = true;
      status.textContent = 'Loading…';
      try {
        const data = await this.query(HISTORY, {
          c: this.customer, s: this.creditSystem, n: this.pageSize, after: cursor, f: filter(),
        });
        if (mine !== generation) return;
        const wallet = data.customer.wallet;
        const system = wallet?.creditSystem;
        if (system) caption.textContent = `${system.name} history`;
        const conn = wallet?.entries ?? { nodes: [], pageInfo: { hasNextPage: false } };
        if (reset) tbody.replaceChildren();
        for (const e of conn.nodes) {
          const when = new Date(e.createdAt);
          tbody.append(h('tr', { 'data-entry': e.id },
            h('td', { text: TYPE_LABELS[e.type] ?? e.type }),
            h('td', { class: 'num' }, ...amount(e.amount, system)),
            h('td', { class: 'num' }, ...amount(e.balanceAfter, system)),
            h('td', { text: e.description ?? '' }),
            h('td', {}, h('time', { datetime: e.createdAt, text: when.toLocaleString() }))));
        }
        cursor = conn.pageInfo.endCursor ?? null;
        more.hidden = !conn.pageInfo.hasNextPage;
        more.disabled = false;
        const rows = tbody.children.length;
        status.textContent = rows ? `${rows} ${rows === 1 ? 'entry' : 'entries'} shown` : 'No entries.';
      } catch (err) {
        if (mine !== generation) return;
        status.textContent = '';
        this.alert.textContent = err instanceof Refused ? EXPIRED_MESSAGE : `Could not load: ${err.message}`;
      }
    };
    more.addEventListener('click', () => page(false));
    const form = h('form', { onsubmit: (ev) => { ev.preventDefault(); page(true); } },
      h('label', { for: `${id}-from` }, 'From', from),
      h('label', { for: `${id}-to` }, 'To', to),
      h('button', { type: 'submit', text: 'Filter' }));
    const head = h('tr', {}, ...[['Type'], ['Amount', 'num'], ['Balance after', 'num'], ['Description'], ['Date']]
      .map(([t, c]) => h('th', { scope: 'col', class: c, text: t })));
    this.root.replaceChildren(h('section', { 'aria-label': 'Credit history' },
      form, h('table', {}, caption, h('thead', {}, head), tbody), more, status, this.alert));
    page(true);
  }
}

// ---------------------------------------------------------- <credits-children>

const CHILDREN = `query($c: String!, $s: String!, $n: Int!, $after: String) {
  customer(externalId: $c) {
    wallet(creditSystem: {key: $s}) { creditSystem { name unitSingular unitPlural } }
    children(creditSystem: {key: $s}, first: $n, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { customer { id externalId name } allocated used remaining usagePercent status } } } }`;

const STATUS_LABELS = { HEALTHY: 'Healthy', WATCH: 'Watch', CRITICAL: 'Critical' };

class CreditsChildren extends CreditsElement {
  get pageSize() {
    const n = Number.parseInt(this.getAttribute('page-size') || '20', 10);
    return Number.isFinite(n) ? Math.min(100, Math.max(1, n)) : 20;
  }

  start() {
    let generation = 0;
    this.stop = () => { generation++; };
    this.alert = h('p', { class: 'error', role: 'alert' });
    const tbody = h('tbody');
    const caption = h('caption', { text: 'Sub-accounts' });
    const more = h('button', { type: 'button', text: 'Load more', hidden: true });
    const status = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' });
    let cursor = null;
    let system = null;
    const page = async () => {
      const mine = ++generation;
      more.disabled = true;
      status.textContent = 'Loading…';
      try {
        const data = await this.query(CHILDREN, {
          c: this.customer, s: this.creditSystem, n: this.pageSize, after: cursor,
        });
        if (mine !== generation) return;
        system = data.customer.wallet?.creditSystem ?? system;
        if (system) caption.textContent = `${system.name} by sub-account`;
        const conn = data.customer.children;
        for (const row of conn.nodes) {
          // The bar's width only: the figures are shown as the API's text.
          const pct = Math.min(100, Math.max(0, Number.parseFloat(row.usagePercent) || 0));
          const fill = h('div', { class: 'fill' });
          fill.style.width = `${pct}%`;
          const label = STATUS_LABELS[row.status] ?? row.status;
          const name = row.customer?.name || row.customer?.externalId || '';
          tbody.append(h('tr', { 'data-status': row.status },
            h('th', { scope: 'row', text: name }),
            h('td', { class: 'num' }, ...amount(row.allocated, system)),
            h('td', { class: 'num' }, ...amount(row.used, system)),
            h('td', { class: 'num' }, ...amount(row.remaining, system)),
            h('td', {}, h('div', { class: `bar ${row.status}` },
              h('div', {
                class: 'track', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100',
                'aria-valuenow': String(pct), 'aria-valuetext': `${row.usagePercent}% used, ${label}`,
                'aria-label': `${name}: usage`,
              }, fill),
              h('span', { class: 'status-label', text: `${row.usagePercent}% · ${label}` })))));
        }
        cursor = conn.pageInfo.endCursor ?? cursor;
        more.hidden = !conn.pageInfo.hasNextPage;
        more.disabled = false;
        const rows = tbody.children.length;
        status.textContent = rows ? '' : 'No sub-accounts.';
      } catch (err) {
        if (mine !== generation) return;
        status.textContent = '';
        this.alert.textContent = err instanceof Refused
          ? `${EXPIRED_MESSAGE} (Sub-accounts need a token minted with includeDescendants: true.)`
          : `Could not load: ${err.message}`;
      }
    };
    more.addEventListener('click', () => page());
    const head = h('tr', {}, ...[['Name'], ['Allocated', 'num'], ['Used', 'num'], ['Remaining', 'num'], ['Usage']]
      .map(([t, c]) => h('th', { scope: 'col', class: c, text: t })));
    this.root.replaceChildren(h('section', { 'aria-label': 'Sub-accounts' },
      h('table', {}, caption, h('thead', {}, head), tbody), more, status, this.alert));
    page();
  }
}

// ------------------------------------------------------------- <credits-usage>

const USAGE_MONTHS = `query($c: String!, $s: String!, $m: Int!) {
  customer(externalId: $c) { wallet(creditSystem: {key: $s}) { creditSystem { name unitSingular unitPlural } } }
  usageSummary(customer: {externalId: $c}, creditSystem: {key: $s}, months: $m) { month startsAt credits count isCurrent } }`;

const USAGE_ROWS = `query($c: String!, $s: String!, $from: DateTime!, $to: DateTime!, $g: UsageGroupBy!) {
  usageBreakdown(customer: {externalId: $c}, creditSystem: {key: $s}, from: $from, to: $to, groupBy: $g, first: 200) {
    key credits count } }`;

const DAY_MS = 86400000;

class CreditsUsage extends CreditsElement {
  start() {
    const id = `credits-usage-${++uid}`;
    let generation = 0;
    this.stop = () => { generation++; };
    this.alert = h('p', { class: 'error', role: 'alert' });
    const months = h('ol', { class: 'months', 'aria-label': 'Credits used by month' });
    const group = h('select', { id: `${id}-group`, name: 'group' },
      h('option', { value: 'DAY', text: 'Day' }),
      h('option', { value: 'HOUR', text: 'Hour (this month)' }),
      h('option', { value: 'FEATURE', text: 'Feature' }));
    const caption = h('caption', { text: 'Credits used' });
    const keyHead = h('th', { scope: 'col', text: 'Day' });
    const tbody = h('tbody');
    const status = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' });
    let system = null;
    let range = null;
    const refusal = (err) => (err instanceof Refused ? EXPIRED_MESSAGE : `Could not load: ${err.message}`);
    const rows = async () => {
      const mine = ++generation;
      const g = group.value;
      // Ranges follow the server's months (its clock and time zone): all
      // the months shown by day or feature, the current one by hour.
      const from = g === 'HOUR' ? range.current : range.oldest;
      const to = new Date(Date.parse(range.current) + 31 * DAY_MS).toISOString();
      status.textContent = 'Loading…';
      try {
        const data = await this.query(USAGE_ROWS, { c: this.customer, s: this.creditSystem, from, to, g });
        if (mine !== generation) return;
        const list = data.usageBreakdown;
        // Periods in time order; features largest first (as they come).
        if (g !== 'FEATURE') list.sort((a, b) => (a.key ?? '').localeCompare(b.key ?? ''));
        const top = list.reduce((m, r) => Math.max(m, Math.abs(Number.parseFloat(r.credits)) || 0), 0);
        keyHead.textContent = { DAY: 'Day', HOUR: 'Hour', FEATURE: 'Feature' }[g];
        tbody.replaceChildren(...list.map((r) => {
          // The bar's length only: the figure is the API's exact text.
          const pct = top ? Math.abs(Number.parseFloat(r.credits)) / top * 100 : 0;
          const fill = h('div', { class: 'fill' });
          fill.style.width = `${pct}%`;
          return h('tr', {},
            h('th', { scope: 'row', text: r.key ?? '(none)' }),
            h('td', { class: 'num' }, ...amount(r.credits, system)),
            h('td', { class: 'num', text: String(r.count) }),
            h('td', {}, h('div', { class: 'bar usage-bar' }, h('div', { class: 'track', 'aria-hidden': 'true' }, fill))));
        }));
        status.textContent = list.length ? '' : 'No usage in this range.';
      } catch (err) {
        if (mine !== generation) return;
        status.textContent = '';
        this.alert.textContent = refusal(err);
      }
    };
    const load = async () => {
      const mine = generation;
      try {
        const n = Number.parseInt(this.getAttribute('months') || '4', 10);
        const data = await this.query(USAGE_MONTHS, {
          c: this.customer, s: this.creditSystem, m: Number.isFinite(n) ? Math.min(24, Math.max(1, n)) : 4,
        });
        if (mine !== generation) return;
        system = data.customer.wallet?.creditSystem ?? null;
        if (system) caption.textContent = `${system.name} used`;
        const list = data.usageSummary;
        months.replaceChildren(...list.map((m) => h('li', { class: m.isCurrent ? 'current' : '' },
          h('div', { class: 'live', text: m.isCurrent ? `${m.month} (this month)` : m.month }),
          h('div', { class: 'figure' }, h('strong', {}, ...amount(m.credits, system))),
          h('div', { class: 'live', text: `${m.count} ${m.count === 1 ? 'use' : 'uses'}` }))));
        const current = list.find((m) => m.isCurrent) ?? list[list.length - 1];
        range = { oldest: list[0]?.startsAt ?? current.startsAt, current: current.startsAt };
        await rows();
      } catch (err) {
        if (mine !== generation) return;
        this.alert.textContent = refusal(err);
      }
    };
    group.addEventListener('change', () => { if (range) rows(); });
    this.root.replaceChildren(h('section', { 'aria-label': 'Credit usage' },
      months,
      h('form', { onsubmit: (ev) => ev.preventDefault() },
        h('label', { for: `${id}-group` }, 'Group by', group)),
      h('table', {}, caption, h('thead', {}, h('tr', {}, keyHead,
        h('th', { scope: 'col', class: 'num', text: 'Credits' }),
        h('th', { scope: 'col', class: 'num', text: 'Uses' }),
        h('th', { scope: 'col', text: 'Share' }))), tbody),
      status, this.alert));
    load();
  }
}

customElements.get('credits-usage') || customElements.define('credits-usage', CreditsUsage);
customElements.get('credits-children') || customElements.define('credits-children', CreditsChildren);
customElements.get('credits-balance') || customElements.define('credits-balance', CreditsBalance);
customElements.get('credits-history') || customElements.define('credits-history', CreditsHistory);
