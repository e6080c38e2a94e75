// Operations (ADMIN keys: the API answers these reads to ADMIN only):
// webhook endpoints (create, enable/disable, delete) and their deliveries
// with their attempts and Redeliver; email deliveries; jobs and their
// recent runs; API keys (create, revoke).

import { h, gql, go, table, num, date, link, seg, facts, viewer, PAGE } from './ui.js';
import { secretBox } from './customers.js';

const EVENTS = ['credits.granted', 'credits.consumed', 'credits.expired', 'credits.expiring_soon', 'grant.voided',
  'wallet.balance_low', 'wallet.balance_depleted', 'wallet.balance_recovered', 'wallet.usage_threshold_crossed',
  'topup.paid', 'topup.failed', 'topup.requested', 'topup.refunded', 'allowance.reset'];

/** Pages only ADMIN keys may read: said plainly to the others. */
function adminOnly(title) {
  if (viewer().role === 'ADMIN') return null;
  return [h('h1', { text: title }),
    h('p', { role: 'status', text: `${title} are shown to ADMIN keys only; this key is ${viewer().role}.` })];
}

const params = () => new URLSearchParams(location.search);
const nextLink = (path, pageInfo, keep = {}) => {
  const after = params().get('after');
  const q = (more) => { const s = new URLSearchParams({ ...keep, ...more }).toString(); return s ? `${path}?${s}` : path; };
  return h('p', { class: 'pager' },
    after ? link(q({}), 'First page') : null,
    pageInfo.hasNextPage ? link(q({ after: pageInfo.endCursor }), 'Next page') : null);
};

function status(el, cls, text) {
  el.className = cls;
  el.textContent = text;
}

// ---------------------------------------------------------------- webhooks

export async function webhooks([id]) {
  const denied = adminOnly('Webhooks');
  if (denied) return denied;
  if (id !== undefined) return endpointPage(id);
  const data = await gql(`query($n: Int!, $a: String) { webhookEndpoints(first: $n, after: $a) { pageInfo { hasNextPage endCursor }
    nodes { id url description events enabled consecutiveFailures disabledAt createdAt } } }`, { n: PAGE, a: params().get('after') });
  const out = h('p', { role: 'status', 'aria-live': 'polite' });
  const list = data.webhookEndpoints;
  const rows = list.nodes.map((w) => [link(`/console/webhooks/${seg(w.id)}`, w.url), w.description || '—',
    w.events.join(', '), w.enabled ? 'yes' : `no${w.disabledAt ? ` (since ${date(w.disabledAt)})` : ''}`,
    w.consecutiveFailures, date(w.createdAt),
    h('span', { class: 'row-actions' },
      h('button', { type: 'button', class: 'secondary small', text: w.enabled ? 'Disable' : 'Enable',
        'aria-label': `${w.enabled ? 'Disable' : 'Enable'} ${w.url}`,
        onclick: (ev) => setEnabled(w, !w.enabled, ev.currentTarget, out) }),
      h('button', { type: 'button', class: 'secondary small danger', text: 'Delete', 'aria-label': `Delete ${w.url}`,
        onclick: (ev) => deleteEndpoint(w, ev.currentTarget, out) }))]);
  return [h('h1', { text: 'Webhooks' }),
    createEndpointForm(),
    h('h2', { text: 'Endpoints' }), out,
    table('Webhook endpoints', ['URL', 'Description', 'Events', 'Enabled', num('Failures in a row'), 'Created', 'Actions'],
      rows, 'No webhook endpoints yet.'),
    nextLink('/console/webhooks', list.pageInfo),
    h('h2', { text: 'Recent deliveries' }),
    await deliveries(null),
    h('p', {}, link('/console/emails', 'Email deliveries'))];
}

async function setEnabled(w, enabled, button, out) {
  button.disabled = true;
  try {
    await gql('mutation($i: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $i) { endpoint { enabled } } }',
      { i: { endpoint: w.id, enabled } });
    go(location.pathname + location.search, { replace: true });
  } catch (e) {
    button.disabled = false;
    status(out, 'error', `Not ${enabled ? 'enabled' : 'disabled'}: ${e.message}`);
  }
}

async function deleteEndpoint(w, button, out) {
  // eslint-disable-next-line no-alert
  if (!confirm(`Delete the endpoint ${w.url} and its delivery log? This can't be undone.`)) return;
  button.disabled = true;
  try {
    await gql('mutation($e: ID!) { deleteWebhookEndpoint(input: {endpoint: $e}) { endpoint { id } } }', { e: w.id });
    go('/console/webhooks', { replace: true });
  } catch (e) {
    button.disabled = false;
    status(out, 'error', `Not deleted: ${e.message}`);
  }
}

function createEndpointForm() {
  const url = h('input', { id: 'endpoint-url', type: 'url', required: true, maxlength: '2000', placeholder: 'https://',
    autocomplete: 'off', spellcheck: 'false' });
  const description = h('input', { id: 'endpoint-description', maxlength: '500' });
  const boxes = EVENTS.map((e) => h('input', { type: 'checkbox', id: `event-${e}`, value: e, checked: e !== 'credits.consumed' }));
  const events = h('fieldset', { class: 'events' }, h('legend', { text: 'Events' }),
    boxes.map((b) => h('label', { for: b.id, class: 'check' }, b, ` ${b.value}`)));
  const button = h('button', { type: 'submit', text: 'Create endpoint' });
  const out = h('p', { role: 'status', 'aria-live': 'polite' });
  const secret = h('div');
  const form = h('form', {
    'aria-labelledby': 'endpoint-title',
    onsubmit: async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      status(out, '', 'Creating…');
      secret.replaceChildren();
      try {
        const data = await gql(`mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) {
          endpoint { id url } secret } }`, { i: { url: url.value.trim(), description: description.value.trim(),
          events: boxes.filter((b) => b.checked).map((b) => b.value) } });
        const made = data.createWebhookEndpoint;
        status(out, 'ok', `Endpoint created for ${made.endpoint.url}. Copy its signing secret now: it is not shown again.`);
        secret.append(secretBox('endpoint-secret', 'Signing secret', made.secret),
          h('p', {}, h('button', { type: 'button', class: 'secondary', text: 'Done, show the endpoints',
            onclick: () => go('/console/webhooks', { replace: true }) })));
        form.reset();
      } catch (e) {
        status(out, 'error', `Not created: ${e.message}`);
      } finally {
        button.disabled = false;
      }
    },
  }, h('div', { class: 'field' }, h('label', { for: 'endpoint-url', text: 'URL' }), url),
  h('div', { class: 'field' }, h('label', { for: 'endpoint-description', text: 'Description' }), description),
  events, button);
  return h('section', { class: 'panel', 'aria-labelledby': 'endpoint-title' },
    h('h2', { id: 'endpoint-title', text: 'New webhook endpoint' }), form, out, secret);
}

async function endpointPage(id) {
  const data = await gql(`{ webhookEndpoints(first: 100) { nodes { id url description events enabled
    consecutiveFailures disabledAt previousSecretExpiresAt createdAt } } }`);
  const w = data.webhookEndpoints.nodes.find((e) => e.id === id);
  if (!w) return [h('h1', { text: 'Not found' }), h('p', { role: 'alert', text: `No webhook endpoint ${id}.` })];
  return [h('h1', { text: `Endpoint ${w.url}` }),
    h('p', {}, link('/console/webhooks', 'All endpoints')),
    facts([['Id', w.id], ['Description', w.description || '—'], ['Events', w.events.join(', ')],
      ['Enabled', w.enabled ? 'yes' : 'no'], ['Failures in a row', w.consecutiveFailures],
      ['Disabled', date(w.disabledAt)], ['Created', date(w.createdAt)]]),
    h('h2', { text: 'Deliveries' }),
    await deliveries(id, params().get('after'))];
}

function attempts(d) {
  if (!d.attempts.length) return 'none yet';
  return h('ol', { class: 'attempts' }, d.attempts.map((a) => h('li', {
    text: `#${a.number} ${date(a.attemptedAt)}: ${a.statusCode != null ? `HTTP ${a.statusCode}` : 'no answer'}`
      + ` in ${a.durationMs} ms${a.error ? ` (${a.error})` : ''}` })));
}

/** An endpoint's deliveries (or every endpoint's), newest first, paged. */
async function deliveries(endpoint, after = null) {
  const n = endpoint ? PAGE : 20;
  const data = await gql(`query($e: ID, $n: Int!, $a: String) { webhookDeliveries(endpoint: $e, first: $n, after: $a) {
    pageInfo { hasNextPage endCursor }
    nodes { id eventId eventType status nextAttemptAt createdAt finishedAt
      attempts { number attemptedAt statusCode durationMs error } } } }`, { e: endpoint, n, a: after });
  const out = h('p', { role: 'status', 'aria-live': 'polite' });
  const list = data.webhookDeliveries;
  const box = h('div', { class: 'deliveries' }, out,
    table(endpoint ? 'Deliveries of this endpoint' : 'Recent deliveries',
      ['Created', 'Event', 'Event id', 'Status', 'Attempts', 'Next attempt', 'Action'],
      list.nodes.map((d) => [date(d.createdAt), d.eventType, d.eventId, d.status, attempts(d), date(d.nextAttemptAt),
        h('button', { type: 'button', class: 'secondary small', text: 'Redeliver',
          'aria-label': `Redeliver ${d.eventType} ${d.id}`,
          onclick: (ev) => redeliver(d, ev.currentTarget, out, box, endpoint) })]),
      'No deliveries yet.'),
    endpoint ? nextLink(`/console/webhooks/${seg(endpoint)}`, list.pageInfo) : null);
  return box;
}

async function redeliver(d, button, out, box, endpoint) {
  button.disabled = true;
  status(out, '', 'Sending again…');
  try {
    const data = await gql('mutation($d: ID!) { redeliverWebhook(input: {delivery: $d}) { delivery { id status } } }', { d: d.id });
    const fresh = await deliveries(endpoint);
    box.replaceWith(fresh);
    status(fresh.querySelector('[role="status"]'), 'ok',
      `Redelivery queued: a new delivery ${data.redeliverWebhook.delivery.id} (${data.redeliverWebhook.delivery.status}) of event ${d.eventId}.`);
  } catch (e) {
    button.disabled = false;
    status(out, 'error', `Not redelivered: ${e.message}`);
  }
}

// ------------------------------------------------------------------ emails

const EMAIL_STATUSES = ['PENDING', 'SENT', 'FAILED'];

export async function emails() {
  const denied = adminOnly('Email deliveries');
  if (denied) return denied;
  const p = params();
  const st = p.get('status') || '';
  const data = await gql(`query($n: Int!, $s: String, $a: String) { emailDeliveries(first: $n, status: $s, after: $a) {
    pageInfo { hasNextPage endCursor }
    nodes { id kind to subject status lastError createdAt sentAt attempts { number } } } }`,
  { n: PAGE, s: st || null, a: p.get('after') });
  const select = h('select', { id: 'email-status' }, h('option', { value: '', text: 'All' }),
    EMAIL_STATUSES.map((s) => h('option', { value: s, text: s, selected: s === st })));
  const list = data.emailDeliveries;
  return [h('h1', { text: 'Email deliveries' }),
    h('form', { role: 'search', 'aria-label': 'Filter',
      onsubmit: (ev) => { ev.preventDefault(); go(select.value ? `/console/emails?status=${seg(select.value)}` : '/console/emails'); } },
    h('div', { class: 'field' }, h('label', { for: 'email-status', text: 'Status' }), select),
    h('button', { type: 'submit', class: 'secondary', text: 'Filter' })),
    table('Email deliveries', ['Created', 'Kind', 'To', 'Subject', 'Status', num('Attempts'), 'Last error', 'Sent'],
      list.nodes.map((m) => [date(m.createdAt), m.kind, m.to, m.subject, m.status, m.attempts.length, m.lastError, date(m.sentAt)]),
      'No emails yet.'),
    nextLink('/console/emails', list.pageInfo, st ? { status: st } : {})];
}

// -------------------------------------------------------------------- jobs

export async function jobs() {
  const denied = adminOnly('Jobs');
  if (denied) return denied;
  const runs = Math.min(200, Math.max(1, Number.parseInt(params().get('runs') || '10', 10) || 10));
  const data = await gql(`query($r: Int!) { jobs { name lastSuccessAt
    recentRuns(first: $r) { status startedAt finishedAt processed error } } }`, { r: runs });
  const failing = (j) => ['FAILED', 'ABANDONED'].includes(j.recentRuns[0]?.status);
  return [h('h1', { text: 'Jobs' }),
    table('Jobs', ['Job', 'Last success', 'Last run', 'Last status', 'Error'],
      data.jobs.map((j) => {
        const r = j.recentRuns[0];
        return [h('a', { href: `#job-${j.name}`, text: j.name }), date(j.lastSuccessAt), date(r?.startedAt), r?.status, r?.error];
      }), 'No jobs.'),
    ...data.jobs.map((j) => h('section', { 'aria-labelledby': `job-${j.name}` },
      h('h2', { id: `job-${j.name}`, class: failing(j) ? 'error' : null,
        text: `${j.name}: recent runs${failing(j) ? ` (last run ${j.recentRuns[0].status})` : ''}` }),
      table(`Recent runs of ${j.name}`, ['Started', 'Finished', 'Status', num('Processed'), 'Error'],
        j.recentRuns.map((r) => [date(r.startedAt), date(r.finishedAt), r.status, r.processed, r.error]),
        'No runs yet.'))),
    runs < 200 && data.jobs.some((j) => j.recentRuns.length >= runs)
      ? h('p', { class: 'pager' }, link(`/console/jobs?runs=${Math.min(200, runs * 5)}`, `Show more runs (${Math.min(200, runs * 5)} per job)`))
      : null];
}

// ---------------------------------------------------------------- API keys

export async function apiKeys() {
  const denied = adminOnly('API keys');
  if (denied) return denied;
  const data = await gql(`query($n: Int!, $a: String) { apiKeys(first: $n, after: $a) { pageInfo { hasNextPage endCursor }
    nodes { id name role hint active createdAt revokedAt } } viewer { apiKeyId } }`, { n: PAGE, a: params().get('after') });
  const out = h('p', { role: 'status', 'aria-live': 'polite' });
  const list = data.apiKeys;
  const mine = data.viewer.apiKeyId;
  return [h('h1', { text: 'API keys' }),
    createKeyForm(),
    h('h2', { text: 'Keys' }), out,
    table('API keys', ['Name', 'Role', 'Key', 'Active', 'Created', 'Revoked', 'Action'],
      list.nodes.map((k) => [`${k.name || '—'}${k.id === mine ? ' (this session)' : ''}`, k.role, k.hint,
        k.active ? 'yes' : 'no', date(k.createdAt), date(k.revokedAt),
        k.active ? h('button', { type: 'button', class: 'secondary small danger', text: 'Revoke',
          'aria-label': `Revoke ${k.name || k.hint}`, onclick: (ev) => revokeKey(k, k.id === mine, ev.currentTarget, out) }) : '']),
      'No API keys.'),
    nextLink('/console/api-keys', list.pageInfo)];
}

async function revokeKey(k, mine, button, out) {
  const what = `${k.name || k.hint} (${k.role})`;
  // eslint-disable-next-line no-alert
  if (!confirm(`Revoke the API key ${what}? Every client using it is refused at once.${mine ? ' It is the key of this session: you will be signed out.' : ''}`)) return;
  button.disabled = true;
  try {
    await gql('mutation($k: ID!) { revokeApiKey(input: {id: $k}) { apiKey { id active } } }', { k: k.id });
    go(location.pathname + location.search, { replace: true });
  } catch (e) {
    button.disabled = false;
    status(out, 'error', `Not revoked: ${e.message}`);
  }
}

function createKeyForm() {
  const name = h('input', { id: 'key-name', maxlength: '100', autocomplete: 'off' });
  const role = h('select', { id: 'key-role' }, ['READ', 'WRITE', 'ADMIN'].map((r) => h('option', { value: r, text: r })));
  const button = h('button', { type: 'submit', text: 'Create key' });
  const out = h('p', { role: 'status', 'aria-live': 'polite' });
  const secret = h('div');
  const form = h('form', {
    'aria-labelledby': 'key-title',
    onsubmit: async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      status(out, '', 'Creating…');
      secret.replaceChildren();
      try {
        const data = await gql('mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { name role hint } secret } }',
          { i: { name: name.value.trim(), role: role.value } });
        const k = data.createApiKey;
        status(out, 'ok', `Key ${k.apiKey.name || k.apiKey.hint} (${k.apiKey.role}) created.`);
        secret.append(h('p', { class: 'warning', role: 'alert', text: 'Copy this key now: it is shown only once and can’t be recovered. Anyone holding it acts as this tenant.' }),
          secretBox('key-secret', 'API key secret', k.secret),
          h('p', {}, h('button', { type: 'button', class: 'secondary', text: 'Done, show the keys',
            onclick: () => go('/console/api-keys', { replace: true }) })));
        form.reset();
      } catch (e) {
        status(out, 'error', `Not created: ${e.message}`);
      } finally {
        button.disabled = false;
      }
    },
  }, h('div', { class: 'field' }, h('label', { for: 'key-name', text: 'Name' }), name),
  h('div', { class: 'field' }, h('label', { for: 'key-role', text: 'Role' }), role), button);
  return h('section', { class: 'panel', 'aria-labelledby': 'key-title' },
    h('h2', { id: 'key-title', text: 'New API key' }), form, out, secret);
}
