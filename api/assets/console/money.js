// Money: top-up orders and invoices.

import { h, gql, table, num, more, date, link, seg, PAGE } from './ui.js';

export async function orders() {
  const data = await gql(`query($n: Int!) { topUpOrders(first: $n) { pageInfo { hasNextPage }
    nodes { id status quantity createdAt customer { externalId } creditSystem { name } quote { total currency } } } }`, { n: PAGE });
  return [h('h1', { text: 'Orders' }),
    table('Top-up orders', ['Created', 'Customer', 'Credit system', num('Quantity'), num('Total'), 'Status'],
      data.topUpOrders.nodes.map((o) => [date(o.createdAt),
        o.customer ? link(`/console/customers/${seg(o.customer.externalId)}`, o.customer.externalId) : '—',
        o.creditSystem?.name, o.quantity, `${o.quote.total} ${o.quote.currency}`, o.status]), 'No orders yet.'),
    more(data.topUpOrders)];
}

