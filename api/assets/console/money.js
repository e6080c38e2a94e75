// Money: top-up orders (filtered by status, paged with the API's cursors,
// each with its page) and invoices (the same).

import { h, gql, go, table, num, date, link, seg, facts, PAGE } from './ui.js';

const ORDER_STATUSES = ['PENDING', 'PAID', 'FAILED', 'EXPIRED', 'REFUNDED', 'PARTIALLY_REFUNDED'];
const INVOICE_STATUSES = ['PENDING', 'FINALIZED', 'VOIDED'];

/** The URL's `status` and `after`, and links to the first and next pages. */
function paging(path) {
  const params = new URLSearchParams(location.search);
  const status = params.get('status') || '';
  const after = params.get('after') || null;
  const url = (more) => {
    const q = new URLSearchParams({ ...(status ? { status } : {}), ...more });
    return q.toString() ? `${path}?${q}` : path;
  };
  const pager = (pageInfo, what) => h('p', { class: 'pager' },
    after ? link(url({}), `First page of ${what}`) : null,
    pageInfo.hasNextPage ? link(url({ after: pageInfo.endCursor }), 'Next page') : null);
  return { status, after, url, pager };
}

/** A status filter: changing it goes to the first page of that status. */
function statusFilter(id, statuses, status, url) {
  const select = h('select', { id, name: 'status' },
    h('option', { value: '', text: 'All' }),
    statuses.map((s) => h('option', { value: s, text: s, selected: s === status })));
  return h('form', {
    role: 'search',
    'aria-label': 'Filter',
    onsubmit: (ev) => {
      ev.preventDefault();
      const q = select.value ? `?status=${seg(select.value)}` : '';
      go(`${url}${q}`);
    },
  }, h('div', { class: 'field' }, h('label', { for: id, text: 'Status' }), select),
  h('button', { type: 'submit', class: 'secondary', text: 'Filter' }));
}

export async function orders([id]) {
  if (id !== undefined) return order(id);
  const { status, after, pager } = paging('/console/orders');
  const data = await gql(`query($n: Int!, $s: TopUpOrderStatus, $a: String) { topUpOrders(first: $n, status: $s, after: $a) {
    pageInfo { hasNextPage endCursor }
    nodes { id status quantity createdAt customer { externalId } creditSystem { name } quote { total currency } } } }`,
  { n: PAGE, s: status || null, a: after });
  const list = data.topUpOrders;
  return [h('h1', { text: 'Orders' }),
    statusFilter('order-status', ORDER_STATUSES, status, '/console/orders'),
    table(status ? `Top-up orders, ${status}` : 'Top-up orders',
      ['Order', 'Created', 'Customer', 'Credit system', num('Quantity'), num('Total'), 'Status'],
      list.nodes.map((o) => [link(`/console/orders/${seg(o.id)}`, o.id), date(o.createdAt),
        o.customer ? link(`/console/customers/${seg(o.customer.externalId)}`, o.customer.externalId) : '—',
        o.creditSystem?.name, o.quantity, `${o.quote.total} ${o.quote.currency}`, o.status]),
      status ? `No ${status} orders.` : 'No orders yet.'),
    pager(list.pageInfo, 'orders')];
}

async function order(id) {
  const data = await gql(`query($o: ID!) { topUpOrder(id: $o) { id status quantity createdAt expiresAt paidAt
    gateway paymentId failureReason paymentIssue automatic refundedQuantity refundedAmount
    customer { externalId name } creditSystem { key name } grant { id amount remaining }
    quote { quantity subtotal tax total currency unitPrice lines { tier quantity unitAmount amount } } } }`, { o: id });
  const o = data.topUpOrder;
  const q = o.quote;
  return [h('h1', { text: `Order ${o.id}` }),
    h('p', {}, link('/console/orders', 'All orders')),
    facts([['Status', o.status],
      ['Customer', o.customer ? link(`/console/customers/${seg(o.customer.externalId)}`, o.customer.name) : '—'],
      ['Credit system', o.creditSystem ? link(`/console/credit-systems/${seg(o.creditSystem.key)}`, o.creditSystem.name) : '—'],
      ['Quantity', o.quantity], ['Total', `${q.total} ${q.currency} (subtotal ${q.subtotal}, tax ${q.tax})`],
      ['Automatic top-up', o.automatic ? 'yes' : 'no'], ['Created', date(o.createdAt)], ['Expires', date(o.expiresAt)],
      ['Paid', date(o.paidAt)], ['Gateway', o.gateway], ['Payment id', o.paymentId],
      o.failureReason && ['Failure', o.failureReason], o.paymentIssue && ['Payment issue', o.paymentIssue],
      ['Refunded', `${o.refundedQuantity} credits, ${o.refundedAmount} ${q.currency}`],
      ['Grant', o.grant ? `${o.grant.id} (${o.grant.remaining} of ${o.grant.amount} left)` : '—']]),
    h('h2', { text: 'Quote' }),
    table('Quote lines', [num('Tier'), num('Quantity'), num('Unit amount'), num('Amount')],
      q.lines.map((l) => [l.tier, l.quantity, l.unitAmount, l.amount]), 'No lines.')];
}

export async function invoices() {
  const { status, after, pager } = paging('/console/invoices');
  const data = await gql(`query($n: Int!, $f: InvoiceFilter, $a: String) { invoices(first: $n, after: $a, filter: $f) {
    pageInfo { hasNextPage endCursor }
    nodes { externalId status currency subtotal creditApplied totalDue createdAt settledAt holdsUntil customer { externalId } } } }`,
  { n: PAGE, f: status ? { status } : null, a: after });
  const list = data.invoices;
  return [h('h1', { text: 'Invoices' }),
    statusFilter('invoice-status', INVOICE_STATUSES, status, '/console/invoices'),
    table(status ? `Invoices, ${status}` : 'Invoices',
      ['Invoice', 'Customer', num('Subtotal'), num('Credit applied'), num('Total due'), 'Status', 'Holds until', 'Created', 'Settled'],
      list.nodes.map((i) => [i.externalId,
        i.customer ? link(`/console/customers/${seg(i.customer.externalId)}`, i.customer.externalId) : '—',
        `${i.subtotal} ${i.currency}`, `${i.creditApplied} ${i.currency}`, `${i.totalDue} ${i.currency}`, i.status,
        date(i.holdsUntil), date(i.createdAt), date(i.settledAt)]),
      status ? `No ${status} invoices.` : 'No invoices yet.'),
    pager(list.pageInfo, 'invoices')];
}
