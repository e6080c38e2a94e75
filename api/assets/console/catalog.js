// Catalog: credit systems, products and plans. Everyone reads them; ADMIN
// keys also get the editor: new credit systems (and their labels and
// low-balance threshold), new plans (of an existing product or a new
// one), a plan's status (publish, archive, duplicate), its credit systems
// with their allowance and prices, a tier editor with a live quote, and
// feature credit costs. Draft terms only: a published plan is frozen (the
// API refuses it too); its name and description stay editable.
//
// The quote preview asks `quoteTopUp(pricing: …)` — the unsaved pricing,
// priced by the same code as a customer's quote — 250 ms after the last
// keystroke; an answer to an older request is dropped.

import { h, gql, go, table, num, date, link, seg, facts, viewer, PAGE } from './ui.js';
import { render } from './console.js';

const admin = () => viewer()?.role === 'ADMIN';

// The editor's layout, adopted once (a constructed sheet: allowed by the
// console's CSP like the widgets' own; class names start with cat-).
const sheet = new CSSStyleSheet();
sheet.replaceSync(`
.cat-editor form, .cat-stack { display: grid; gap: .75rem; align-items: start; }
.cat-group { display: flex; flex-wrap: wrap; gap: .75rem; align-items: start; }
.cat-editor fieldset { border: 1px solid var(--border); border-radius: 6px; padding: .5rem .75rem .75rem; margin: 0; min-width: 0; }
.cat-editor legend { font-weight: 600; padding: 0 .3rem; }
.field.cat-check { flex-direction: row; align-items: center; gap: .4rem; }
.cat-group .field small { max-width: 16rem; }
.cat-tiers { width: auto; }
.cat-tiers caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
.cat-tiers input { width: 8rem; }
.cat-preview { background: #eef4fb; border-radius: 6px; padding: .5rem .75rem; }
.cat-preview h3 { margin-top: 0; }
.cat-preview dd[data-field="total"] { font-weight: 700; }
.cat-actions { display: flex; flex-wrap: wrap; gap: .5rem; align-items: start; margin-top: .5rem; }
.cat-editor form > button, .cat-editor form > .field, .cat-stack > button, .cat-stack > .field { justify-self: start; }
.cat-preview input { max-width: 12rem; }
`);
document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
const after = () => new URLSearchParams(location.search).get('after');
/** "Next page" for a connection (the same route with `?after=`), and
 * "First page" past the first. */
const pager = (conn, path) => h('p', { class: 'cat-actions' },
  after() && link(path, 'First page'),
  conn.pageInfo.hasNextPage && link(`${path}?after=${seg(conn.pageInfo.endCursor)}`, 'Next page'));

// A message the page shows once, after a save re-rendered it (or
// navigated); focus goes to it, so a screen reader hears what happened
// and the keyboard starts from the top of the new page.
let flash = null;
async function reload(message) {
  flash = message;
  history.replaceState(null, '', location.pathname);
  await render();
  document.querySelector('main .cat-flash')?.focus();
}
function flashed() {
  const m = flash;
  flash = null;
  return m ? h('p', { class: 'ok cat-flash', role: 'status', tabindex: '-1', text: m }) : null;
}

// ------------------------------------------------------------ form parts

let uid = 0;
const id = () => `c${++uid}`;
/** A labelled control, with an optional hint it is described by. */
function field(label, control, hint) {
  control.id ||= id();
  const nodes = [h('label', { for: control.id, text: label }), control];
  if (hint) {
    control.setAttribute('aria-describedby', `${control.id}-hint`);
    nodes.push(h('small', { id: `${control.id}-hint`, class: 'muted', text: hint }));
  }
  return h('div', { class: 'field' }, nodes);
}
const text = (props = {}) => h('input', { maxlength: '200', autocomplete: 'off', ...props });
const dec = (value, props = {}) => h('input', { inputmode: 'decimal', maxlength: '40', autocomplete: 'off', value: value ?? '', ...props });
const check = (checked) => h('input', { type: 'checkbox', checked: !!checked });
/** A checkbox with its label after it. */
function checkField(label, box, hint) {
  const el = field(label, box, hint);
  el.classList.add('cat-check');
  el.prepend(box);
  return el;
}
function select(options, value, props = {}) {
  return h('select', props, options.map((o) => {
    const [v, t] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, text: t, selected: v === value });
  }));
}
/** Trimmed text, or null when empty. */
const val = (el) => el.value.trim() || null;
/** Shows `box` only while `when()` holds, rechecked when `on` changes. */
function toggles(on, box, when = () => on.checked) {
  // `hidden`, and display (a `.field`'s own display would show it).
  const sync = () => {
    box.hidden = !when();
    box.style.display = box.hidden ? 'none' : '';
  };
  on.addEventListener('change', sync);
  sync();
  return box;
}

/**
 * A panel with a form: `send` runs on submit; its failure shows the API's
 * message (and field). `send` navigates or reloads on success.
 */
function panel(title, controls, label, send) {
  const hid = id();
  const out = h('p', { role: 'status' });
  const button = h('button', { type: 'submit', text: label });
  const form = h('form', {
    'aria-labelledby': hid,
    onsubmit: async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      out.className = '';
      out.textContent = 'Saving…';
      try {
        out.textContent = (await send()) || '';
        out.className = 'ok';
      } catch (e) {
        out.className = 'error';
        out.textContent = `Not saved: ${e.message}`;
      } finally {
        button.disabled = false;
      }
    },
  }, controls, button);
  return h('section', { class: 'panel', 'aria-labelledby': hid }, h('h2', { id: hid, text: title }), form, out);
}

/** A button that asks first ("Yes, …" / "Cancel"), then runs `act`. */
function confirming(label, question, yes, act) {
  const box = h('div', { role: 'group', 'aria-label': `Confirm: ${label}`, hidden: true });
  const out = h('p', { role: 'status' });
  const button = h('button', {
    type: 'button',
    class: 'secondary',
    'aria-expanded': 'false',
    text: label,
    onclick: () => {
      const no = h('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: () => { box.hidden = true; button.setAttribute('aria-expanded', 'false'); button.focus(); } });
      const yesButton = h('button', {
        type: 'button',
        text: yes,
        onclick: async () => {
          yesButton.disabled = true;
          out.className = '';
          out.textContent = 'Working…';
          try {
            await act();
          } catch (e) {
            out.className = 'error';
            out.textContent = `Not done: ${e.message}`;
            yesButton.disabled = false;
          }
        },
      });
      box.replaceChildren(h('p', { text: question }), yesButton, ' ', no);
      box.hidden = false;
      button.setAttribute('aria-expanded', 'true');
      yesButton.focus();
    },
  });
  return h('div', { class: 'confirming' }, button, box, out);
}

// ---------------------------------------------------------- credit systems

export async function creditSystems([key]) {
  if (key !== undefined) return creditSystem(key);
  const data = await gql(`query($n: Int!, $a: String) { creditSystems(first: $n, after: $a) {
    pageInfo { hasNextPage endCursor } nodes { key name unitPlural precision kind currency lowBalanceThreshold } } }`,
  { n: PAGE, a: after() });
  return [h('h1', { text: 'Credit systems' }), flashed(), admin() && newCreditSystem(),
    table('Credit systems', ['Key', 'Name', 'Unit', num('Precision'), 'Kind', 'Currency', num('Low-balance threshold')],
      data.creditSystems.nodes.map((s) => [link(`/console/credit-systems/${seg(s.key)}`, s.key), s.name, s.unitPlural,
        s.precision, s.kind, s.currency, s.lowBalanceThreshold]), 'No credit systems yet.'),
    pager(data.creditSystems, '/console/credit-systems')];
}

const UPDATE_SYSTEM = `mutation($i: UpdateCreditSystemInput!) { updateCreditSystem(input: $i) { creditSystem { key } } }`;

function newCreditSystem() {
  const key = text({ required: true, maxlength: '64', spellcheck: 'false' });
  const name = text({ required: true });
  const description = text({ maxlength: '1000' });
  const singular = text({ required: true });
  const plural = text({ required: true });
  const precision = h('input', { type: 'number', min: '0', max: '6', step: '1', value: '0', required: true });
  const kind = select([['UNITS', 'Units'], ['MONETARY', 'Monetary']], 'UNITS');
  const currency = text({ maxlength: '3', spellcheck: 'false' });
  const threshold = dec('');
  const money = toggles(kind, field('Currency', currency, 'ISO 4217, e.g. EUR'), () => kind.value === 'MONETARY');
  return panel('New credit system', [field('Key', key, 'a-z 0-9 _ . - ; fixed'), field('Name', name),
    field('Description', description), field('Unit (singular)', singular), field('Unit (plural)', plural),
    field('Precision', precision, 'Decimal places, 0–6; fixed'), field('Kind', kind), money,
    field('Low-balance threshold', threshold, 'Optional')], 'Create credit system', async () => {
    const k = key.value.trim();
    await gql(`mutation($i: CreateCreditSystemInput!) { createCreditSystem(input: $i) { creditSystem { key } } }`, { i: {
      key: k, name: name.value.trim(), description: description.value.trim(), unitSingular: singular.value.trim(),
      unitPlural: plural.value.trim(), precision: Number(precision.value), kind: kind.value,
      currency: kind.value === 'MONETARY' ? val(currency) : null } });
    if (val(threshold)) {
      await gql(UPDATE_SYSTEM, { i: { creditSystem: { key: k }, lowBalanceThreshold: val(threshold) } });
    }
    flash = `Credit system ${k} created.`;
    go(`/console/credit-systems/${seg(k)}`);
  });
}

async function creditSystem(key) {
  const { creditSystem: s } = await gql(`query($k: String!) { creditSystem(key: $k) { key name description
    unitSingular unitPlural precision kind currency lowBalanceThreshold createdAt updatedAt } }`, { k: key });
  const nodes = [h('h1', { text: s.name }), flashed(), facts([['Key', s.key], ['Description', s.description || '—'],
    ['Units', `${s.unitSingular} / ${s.unitPlural}`], ['Precision (fixed)', s.precision], ['Kind (fixed)', s.kind],
    ['Currency (fixed)', s.currency], ['Low-balance threshold', s.lowBalanceThreshold ?? 'none'],
    ['Created', date(s.createdAt)], ['Updated', date(s.updatedAt)]])];
  if (!admin()) return nodes;
  const name = text({ required: true, value: s.name });
  const description = text({ maxlength: '1000', value: s.description });
  const singular = text({ required: true, value: s.unitSingular });
  const plural = text({ required: true, value: s.unitPlural });
  const threshold = dec(s.lowBalanceThreshold);
  nodes.push(panel('Edit credit system', [field('Name', name), field('Description', description),
    field('Unit (singular)', singular), field('Unit (plural)', plural),
    field('Low-balance threshold', threshold, 'Empty: none')], 'Save credit system', async () => {
    await gql(UPDATE_SYSTEM, { i: { creditSystem: { key: s.key }, name: name.value.trim(),
      description: description.value.trim(), unitSingular: singular.value.trim(), unitPlural: plural.value.trim(),
      lowBalanceThreshold: val(threshold) } });
    await reload('Credit system saved.');
  }));
  return nodes;
}

// ----------------------------------------------------------------- plans

export async function plans([key]) {
  if (key !== undefined) return plan(key);
  const data = await gql(`query($n: Int!, $a: String) { plans(first: $n, after: $a) { pageInfo { hasNextPage endCursor }
    nodes { key name status billingInterval product { name } credits { creditSystem { name } } } }
    ${admin() ? 'products(first: 100) { nodes { key name } }' : ''} }`, { n: PAGE, a: after() });
  return [h('h1', { text: 'Plans' }), flashed(), admin() && newPlan(data.products.nodes),
    table('Plans', ['Key', 'Name', 'Product', 'Status', 'Billing', 'Credit systems'],
      data.plans.nodes.map((p) => [link(`/console/plans/${seg(p.key)}`, p.key), p.name, p.product?.name, p.status,
        p.billingInterval, p.credits.map((x) => x.creditSystem?.name).join(', ') || '—']), 'No plans yet.'),
    pager(data.plans, '/console/plans')];
}

function newPlan(products) {
  const NEW = '\u0000new';
  const product = select([...products.map((p) => [p.key, p.name]), [NEW, 'New product…']], products[0]?.key ?? NEW);
  const productKey = text({ maxlength: '64', spellcheck: 'false' });
  const productName = text();
  const fresh = toggles(product, h('div', { class: 'cat-group' },
    field('New product key', productKey), field('New product name', productName)), () => product.value === NEW);
  const key = text({ required: true, maxlength: '64', spellcheck: 'false' });
  const name = text({ required: true });
  const description = text({ maxlength: '1000' });
  const billing = select([['MONTHLY', 'Monthly'], ['ANNUALLY', 'Annually']], 'MONTHLY');
  return panel('New plan', [field('Product', product), fresh, field('Plan key', key), field('Plan name', name),
    field('Description', description), field('Billing interval', billing)], 'Create draft plan', async () => {
    let pk = product.value;
    if (pk === NEW) {
      pk = productKey.value.trim();
      await gql(`mutation($i: CreateProductInput!) { createProduct(input: $i) { product { key } } }`,
        { i: { key: pk, name: productName.value.trim() } });
    }
    const k = key.value.trim();
    await gql(`mutation($i: CreatePlanInput!) { createPlan(input: $i) { plan { key } } }`, { i: {
      product: { key: pk }, key: k, name: name.value.trim(), description: description.value.trim(),
      billingInterval: billing.value } });
    flash = `Draft plan ${k} created: attach a credit system, then publish it.`;
    go(`/console/plans/${seg(k)}`);
  });
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
    createdAt publishedAt product { name } copiedFrom { key name }
    credits { id creditSystem { key name unitPlural } included { amount resetInterval rolloverCap } usageAlertPercents
      pricing { commitment minQuantity maxQuantity expiration lowCreditLimit lowCreditAction mandatoryPurchase
        autoTopUp { below quantity } topUpPrice { ${PRICE} } recurringPrice { quantity price { ${PRICE} } } } }
    entitlements { feature { key name unit } creditSystem { key name } creditCost } }
    ${admin() ? 'creditSystems(first: 100) { nodes { key name } } features(first: 100) { nodes { key name unit } }' : ''} }`,
  { k: key });
  const p = data.plan;
  const edit = admin() && p.status === 'DRAFT';
  const nodes = [h('h1', { text: p.name }), flashed(),
    facts([['Key', p.key], ['Status', p.status], ['Billing', p.billingInterval], ['Product', p.product?.name],
      p.copiedFrom && ['Copied from', link(`/console/plans/${seg(p.copiedFrom.key)}`, p.copiedFrom.name)],
      ['Description', p.description || '—'], ['Created', date(p.createdAt)], ['Published', date(p.publishedAt)]])];
  if (admin()) nodes.push(statusPanel(p));
  nodes.push(h('h2', { text: 'Plan credits' }));
  if (!p.credits.length) nodes.push(h('p', { class: 'muted', text: 'No credit systems attached.' }));
  for (const pc of p.credits) nodes.push(planCredit(p, pc, edit));
  if (edit) {
    const attached = new Set(p.credits.map((pc) => pc.creditSystem?.key));
    const free = data.creditSystems.nodes.filter((s) => !attached.has(s.key));
    nodes.push(free.length ? creditEditor(p, null, free)
      : h('p', { class: 'muted', text: 'Every credit system is attached (create one under Credit systems to add it).' }));
  }
  nodes.push(...entitlements(p, edit, data));
  if (admin()) nodes.push(renamePanel(p), duplicatePanel(p));
  return nodes;
}

function statusPanel(p) {
  const hid = id();
  const hint = {
    DRAFT: 'A draft: its terms can change; customers can\'t subscribe yet.',
    PUBLISHED: 'Published: customers can subscribe; its terms are frozen (duplicate it to change them).',
    ARCHIVED: 'Archived: no new subscriptions; existing subscribers keep it.',
  }[p.status];
  return h('section', { class: 'panel', 'aria-labelledby': hid }, h('h2', { id: hid, text: 'Plan status' }),
    h('p', { class: 'muted', text: hint }),
    p.status === 'DRAFT' && confirming('Publish plan', 'Publishing freezes this plan\'s terms (credits, prices, feature costs) and lets customers subscribe. Publish it?',
      'Yes, publish', async () => {
        await gql('mutation($k: String!) { publishPlan(input: { plan: { key: $k } }) { plan { status } } }', { k: p.key });
        await reload('Plan published: its terms are frozen.');
      }),
    p.status === 'PUBLISHED' && confirming('Archive plan', 'Archiving stops new subscriptions; existing subscribers keep the plan. Archive it?',
      'Yes, archive', async () => {
        await gql('mutation($k: String!) { archivePlan(input: { plan: { key: $k } }) { plan { status } } }', { k: p.key });
        await reload('Plan archived.');
      }));
}

function duplicatePanel(p) {
  const key = text({ required: true, maxlength: '64', spellcheck: 'false', value: `${p.key}-v2` });
  const name = text({ required: true, value: `${p.name} (copy)` });
  return panel('Duplicate as a new draft', [field('New plan key', key), field('New plan name', name)], 'Duplicate plan', async () => {
    const k = key.value.trim();
    await gql('mutation($i: DuplicatePlanInput!) { duplicatePlan(input: $i) { plan { key } } }',
      { i: { plan: { key: p.key }, key: k, name: name.value.trim() } });
    flash = `Draft ${k} copied from ${p.key}.`;
    go(`/console/plans/${seg(k)}`);
  });
}

function renamePanel(p) {
  const name = text({ required: true, value: p.name });
  const description = text({ maxlength: '1000', value: p.description });
  return panel('Name and description', [field('Name', name), field('Description', description)], 'Save name and description', async () => {
    await gql('mutation($i: UpdatePlanInput!) { updatePlan(input: $i) { plan { key } } }',
      { i: { plan: { key: p.key }, name: name.value.trim(), description: description.value.trim() } });
    await reload('Plan saved.');
  });
}

function planCredit(p, pc, edit) {
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
      ['Low-credit action', pr.lowCreditAction], ['Mandatory purchase', pr.mandatoryPurchase ? 'yes' : 'no'],
      pr.autoTopUp && ['Auto top-up', `${pr.autoTopUp.quantity} below ${pr.autoTopUp.below}`]]));
    if (pr.topUpPrice) section.append(...priceTable('Top-up price', pr.topUpPrice));
    if (pr.recurringPrice) section.append(...priceTable(`Recurring price (${pr.recurringPrice.quantity} a cycle)`, pr.recurringPrice.price));
  }
  if (edit && cs) {
    let editor = null; // built when first opened
    const open = h('button', {
      type: 'button',
      class: 'secondary',
      'aria-expanded': 'false',
      text: `Edit ${cs.name}`,
      onclick: () => {
        if (!editor) {
          editor = creditEditor(p, pc, null);
          editor.hidden = true;
          section.append(editor);
        }
        editor.hidden = !editor.hidden;
        open.setAttribute('aria-expanded', String(!editor.hidden));
        if (!editor.hidden) editor.querySelector('input, select')?.focus();
      },
    });
    section.append(h('div', { class: 'cat-actions' }, open,
      confirming(`Detach ${cs.name}`, `Remove ${cs.name} (and the feature costs priced in it) from this draft?`, 'Yes, detach', async () => {
        await gql('mutation($i: DetachCreditSystemInput!) { detachCreditSystem(input: $i) { plan { key } } }',
          { i: { plan: { key: p.key }, creditSystem: { key: cs.key } } });
        await reload(`${cs.name} detached.`);
      })));
  }
  return section;
}

// ------------------------------------------------------ the price editor

const MODELS = [['PER_UNIT', 'Per unit'], ['PER_PACKAGE', 'Per package'], ['FLAT', 'Flat fee'], ['PERCENTAGE', 'Percentage of a base price']];

/** A price's inputs: type × model, package size, rows of tiers. */
function priceEditor(title, price, on, extra = null) {
  const enabled = check(on);
  const type = select([['GRADUATED', 'Graduated'], ['VOLUME', 'Volume']], price?.pricingType ?? 'GRADUATED');
  const model = select(MODELS, price?.model ?? 'PER_UNIT');
  const pkg = dec(price?.packageSize);
  const rows = h('tbody');
  const tiers = [];
  const number = () => tiers.forEach((t, i) => {
    const n = i + 1;
    t.first.setAttribute('aria-label', `${title} tier ${n} first unit`);
    t.last.setAttribute('aria-label', `${title} tier ${n} last unit`);
    t.amount.setAttribute('aria-label', `${title} tier ${n} amount`);
    t.base.setAttribute('aria-label', `${title} tier ${n} base price`);
    t.remove.setAttribute('aria-label', `Remove ${title.toLowerCase()} tier ${n}`);
    t.remove.disabled = tiers.length === 1;
  });
  const baseOn = () => tiers.forEach((t) => { t.base.disabled = model.value !== 'PERCENTAGE'; });
  const add = (t = {}) => {
    const row = {
      first: dec(t.firstUnit), last: dec(t.lastUnit, { placeholder: '∞' }),
      amount: dec(t.amount), base: dec(t.base),
    };
    row.remove = h('button', {
      type: 'button',
      class: 'secondary',
      text: 'Remove',
      onclick: () => {
        tiers.splice(tiers.indexOf(row), 1);
        row.tr.remove();
        number();
        rows.dispatchEvent(new Event('input', { bubbles: true }));
        tiers.at(-1).amount.focus();
      },
    });
    row.tr = h('tr', {}, [row.first, row.last, row.amount, row.base, row.remove].map((c) => h('td', {}, c)));
    tiers.push(row);
    rows.append(row.tr);
    number();
    baseOn();
    return row;
  };
  (price?.tiers?.length ? price.tiers : [{ firstUnit: '0' }]).forEach(add);
  model.addEventListener('change', baseOn);
  const more = h('button', {
    type: 'button',
    class: 'secondary',
    text: `Add ${title.toLowerCase()} tier`,
    onclick: () => {
      add({ firstUnit: tiers.at(-1).last.value.trim() }).last.focus();
      rows.dispatchEvent(new Event('input', { bubbles: true }));
    },
  });
  const box = toggles(enabled, h('div', { class: 'cat-stack' }, h('div', { class: 'cat-group' },
    field('Pricing type', type, 'Graduated: each tier prices its slice; volume: the tier the quantity reaches prices all of it'),
    field('Model', model), toggles(model, field('Package size', pkg), () => model.value === 'PER_PACKAGE'), extra),
    h('table', { class: 'cat-tiers' }, h('caption', { text: `${title} tiers` }),
      h('thead', {}, h('tr', {}, ['First unit', 'Last unit (empty: no end)', 'Amount', 'Base (percentage)', 'Remove'].map((c) => h('th', { scope: 'col', text: c })))),
      rows), more));
  const el = h('fieldset', { class: 'price' }, h('legend', { text: title }), checkField(`Has a ${title.toLowerCase()}`, enabled), box);
  const value = () => (enabled.checked ? {
    pricingType: type.value, model: model.value, packageSize: model.value === 'PER_PACKAGE' ? val(pkg) : null,
    tiers: tiers.map((t) => ({ firstUnit: t.first.value.trim(), lastUnit: val(t.last), amount: t.amount.value.trim(),
      base: model.value === 'PERCENTAGE' ? val(t.base) : null })),
  } : null);
  return { el, value };
}

const QUOTE = `query($cs: String!, $q: Credits!, $p: PlanPricingInput!) {
  quoteTopUp(creditSystem: { key: $cs }, quantity: $q, pricing: $p) {
    quantity subtotal tax total currency unitPrice lines { tier quantity unitAmount amount } } }`;

/** The live quote: asks the API 250 ms after the last change; older answers are dropped. */
function quotePreview(system, pricing) {
  const quantity = dec('', { placeholder: 'e.g. 2500' });
  const summary = h('p', { role: 'status', class: 'muted', text: 'Type a quantity to see what it would cost.' });
  const detail = h('div');
  let asked = 0;
  let timer = null;
  const show = (cls, message) => {
    summary.className = cls;
    summary.textContent = message;
    detail.replaceChildren();
  };
  async function ask() {
    const mine = ++asked;
    const q = quantity.value.trim();
    const p = pricing();
    if (!q) return show('muted', 'Type a quantity to see what it would cost.');
    if (!p?.topUpPrice) return show('muted', 'Give the plan credit pricing with a top-up price to preview it.');
    detail.setAttribute('aria-busy', 'true');
    try {
      const { quoteTopUp: r } = await gql(QUOTE, { cs: system(), q, p });
      if (mine !== asked) return;
      summary.className = '';
      summary.textContent = `${r.quantity} would cost ${r.total} ${r.currency} (tax included).`;
      const dd = (f, v) => h('dd', { 'data-field': f, text: v });
      detail.replaceChildren(h('dl', { class: 'facts quote' },
        h('dt', { text: `Subtotal (${r.currency})` }), dd('subtotal', r.subtotal),
        h('dt', { text: `Tax (${r.currency})` }), dd('tax', r.tax),
        h('dt', { text: `Total (${r.currency})` }), dd('total', r.total),
        h('dt', { text: 'Average unit price' }), dd('unitPrice', r.unitPrice)),
      table('Quote by tier', [num('Tier'), num('Units'), num('Unit amount'), num('Amount')],
        r.lines.map((l) => [l.tier + 1, l.quantity, l.unitAmount, l.amount]), 'No lines.'));
    } catch (e) {
      if (mine === asked) show('error', `No quote: ${e.message}`);
    } finally {
      if (mine === asked) detail.removeAttribute('aria-busy');
    }
  }
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(ask, 250);
  };
  const hid = id();
  const el = h('section', { class: 'cat-preview', 'aria-labelledby': hid }, h('h3', { id: hid, text: 'Quote preview' }),
    field('Preview quantity', quantity, 'Priced by the API as the plan would sell it; nothing is saved.'), summary, detail);
  return { el, refresh };
}

/** Attach (pc null: pick one of `systems`) or edit a plan credit. */
function creditEditor(p, pc, systems) {
  const pr = pc?.pricing;
  const first = pr?.topUpPrice ?? pr?.recurringPrice?.price;
  const system = pc ? null : select(systems.map((s) => [s.key, s.name]), systems[0].key);
  const systemKey = () => (pc ? pc.creditSystem.key : system.value);

  const included = check(pc ? pc.included : true);
  const amount = dec(pc?.included?.amount);
  const reset = select([['MONTHLY', 'Monthly'], ['DAILY', 'Daily'], ['WEEKLY', 'Weekly'], ['ANNUALLY', 'Annually']], pc?.included?.resetInterval ?? 'MONTHLY');
  const cap = dec(pc?.included?.rolloverCap);

  const priced = check(pc ? pr : true);
  const commitment = select([['PAY_AS_YOU_GO', 'Pay as you go'], ['UPFRONT', 'Upfront']], pr?.commitment ?? 'PAY_AS_YOU_GO');
  const currency = text({ maxlength: '3', spellcheck: 'false', value: first?.currency ?? '' });
  const tax = dec(first?.taxRate ?? '0');
  const min = dec(pr?.minQuantity);
  const max = dec(pr?.maxQuantity);
  const expiration = text({ maxlength: '40', spellcheck: 'false', value: pr?.expiration ?? '' });
  const low = dec(pr?.lowCreditLimit);
  const action = select([['', 'None'], ['ALERT', 'Alert'], ['BLOCK', 'Block']], pr?.lowCreditAction ?? '');
  const mandatory = check(pr?.mandatoryPurchase);
  const below = dec(pr?.autoTopUp?.below);
  const autoQty = dec(pr?.autoTopUp?.quantity);
  const topUp = priceEditor('Top-up price', pr ? pr.topUpPrice : null, pc ? !!pr?.topUpPrice : true);
  const recurringQty = dec(pr?.recurringPrice?.quantity);
  const recurring = priceEditor('Recurring price', pr?.recurringPrice?.price, !!pr?.recurringPrice,
    field('Recurring quantity', recurringQty, 'Credits granted and charged every cycle (UPFRONT only)'));
  const alerts = text({ maxlength: '100', value: pc?.usageAlertPercents == null ? '' : pc.usageAlertPercents.join(', ') || 'off' });

  const pricing = () => {
    if (!priced.checked) return null;
    const rec = recurring.value();
    return {
      commitment: commitment.value, currency: currency.value.trim(), taxRate: val(tax) ?? '0',
      topUpPrice: topUp.value(), recurringPrice: rec && { quantity: recurringQty.value.trim(), price: rec },
      minQuantity: val(min), maxQuantity: val(max), expiration: val(expiration),
      lowCreditLimit: val(low), lowCreditAction: action.value || null, mandatoryPurchase: mandatory.checked,
      autoTopUp: val(below) || val(autoQty) ? { below: below.value.trim(), quantity: autoQty.value.trim() } : null,
    };
  };
  const percents = () => {
    const a = alerts.value.trim();
    if (!a) return null;
    return a.toLowerCase() === 'off' ? [] : a.split(/[\s,%]+/).filter(Boolean);
  };
  const preview = quotePreview(systemKey, pricing);

  const name = pc ? pc.creditSystem.name : 'a credit system';
  const controls = [
    system && field('Credit system', system),
    h('fieldset', {}, h('legend', { text: 'Included allowance' }), checkField('Includes an allowance', included),
      toggles(included, h('div', { class: 'cat-group' }, field('Included amount', amount, 'Granted every reset interval'),
        field('Reset interval', reset), field('Rollover cap', cap, 'Empty: unused allowance expires')))),
    h('fieldset', {}, h('legend', { text: 'Pricing' }), checkField('Sells credits', priced),
      toggles(priced, h('div', { class: 'cat-stack' }, h('div', { class: 'cat-group' },
        field('Commitment', commitment), field('Currency', currency, 'ISO 4217, e.g. EUR'),
        field('Tax rate', tax, 'A fraction: 0.2 is 20 %'), field('Min quantity', min, 'Per purchase; optional'),
        field('Max quantity', max, 'Per purchase; optional'),
        field('Expiration', expiration, 'How long purchased credits live, ISO 8601 (P12M); empty: forever'),
        field('Low-credit limit', low, 'Optional'), field('Low-credit action', action),
        checkField('Mandatory purchase (a top-up is paid before usage)', mandatory),
        field('Auto top-up below', below, 'Optional'), field('Auto top-up quantity', autoQty)),
        topUp.el, preview.el, recurring.el))),
    field('Usage alerts (%)', alerts, 'Comma-separated, e.g. 75, 90, 100; empty: the default; "off": none'),
  ];
  const section = panel(pc ? `Edit ${name}` : 'Attach a credit system', controls, pc ? `Save ${name}` : 'Attach credit system', async () => {
    const terms = {
      included: included.checked ? { amount: amount.value.trim(), resetInterval: reset.value, rolloverCap: val(cap) } : null,
      pricing: pricing(), usageAlertPercents: percents(),
    };
    if (pc) {
      await gql('mutation($i: UpdatePlanCreditInput!) { updatePlanCredit(input: $i) { planCredit { id } } }',
        { i: { planCredit: pc.id, ...terms } });
    } else {
      await gql('mutation($i: AttachCreditSystemInput!) { attachCreditSystem(input: $i) { planCredit { id } } }',
        { i: { plan: { key: p.key }, creditSystem: { key: systemKey() }, ...terms } });
    }
    await reload(pc ? `${name} saved.` : 'Credit system attached.');
  });
  section.classList.add('cat-editor');
  // Every change (typing, a tier added or removed) asks for a new quote.
  const form = section.querySelector('form');
  form.addEventListener('input', preview.refresh);
  form.addEventListener('change', preview.refresh);
  return section;
}

// ------------------------------------------------- feature credit costs

function entitlements(p, edit, data) {
  const rows = p.entitlements.map((e) => {
    const row = [e.feature ? `${e.feature.name} (${e.feature.key})` : '—', e.feature?.unit, e.creditSystem?.name, e.creditCost];
    if (edit && e.feature) {
      row.push(confirming(`Remove ${e.feature.key}`, `Remove ${e.feature.name}'s credit cost from this draft?`, 'Yes, remove', async () => {
        await gql('mutation($i: RemoveEntitlementInput!) { removeEntitlement(input: $i) { plan { key } } }',
          { i: { plan: { key: p.key }, feature: { key: e.feature.key } } });
        await reload(`${e.feature.key} removed.`);
      }));
    }
    return row;
  });
  const nodes = [h('h2', { text: 'Feature credit costs' }),
    table('Feature credit costs', ['Feature', 'Unit', 'Credit system', num('Credits per unit'), edit && 'Actions'].filter(Boolean), rows,
      'No feature costs.')];
  if (!edit || !p.credits.length) return nodes;
  const NEW = '\u0000new';
  const features = data.features.nodes;
  const feature = select([...features.map((f) => [f.key, `${f.name} (${f.key})`]), [NEW, 'New feature…']], features[0]?.key ?? NEW);
  const fKey = text({ maxlength: '64', spellcheck: 'false' });
  const fName = text();
  const fUnit = text({ maxlength: '64' });
  const system = select(p.credits.filter((pc) => pc.creditSystem).map((pc) => [pc.creditSystem.key, pc.creditSystem.name]));
  const cost = dec('', { required: true });
  nodes.push(panel('Set a feature\'s credit cost', [field('Feature', feature),
    toggles(feature, h('div', { class: 'cat-group' }, field('New feature key', fKey, 'E.g. image.generate'),
      field('New feature name', fName), field('New feature unit', fUnit, 'E.g. image, call')), () => feature.value === NEW),
    field('Paid in', system), field('Credits per unit', cost)], 'Set credit cost', async () => {
    let fk = feature.value;
    if (fk === NEW) {
      fk = fKey.value.trim();
      await gql('mutation($i: CreateFeatureInput!) { createFeature(input: $i) { feature { key } } }',
        { i: { key: fk, name: fName.value.trim(), unit: fUnit.value.trim() } });
    }
    await gql('mutation($i: SetEntitlementInput!) { setEntitlement(input: $i) { entitlement { creditCost } } }',
      { i: { plan: { key: p.key }, feature: { key: fk }, creditSystem: { key: system.value }, creditCost: cost.value.trim() } });
    await reload(`${fk} costs ${cost.value.trim()} credits a unit.`);
  }));
  return nodes;
}
