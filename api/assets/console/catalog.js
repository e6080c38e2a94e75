// Catalog: credit systems, products and plans.

import { h, gql, table, num, more, date, link, seg, facts, PAGE } from './ui.js';

export async function plans([key]) {
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

export async function creditSystems([key]) {
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

