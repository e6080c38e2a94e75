// Operations: webhook endpoints and deliveries, email deliveries, jobs,
// API keys.

import { h, gql, table, num, more, date, PAGE } from './ui.js';

export async function webhooks() {
  const data = await gql(`query($n: Int!) { webhookEndpoints(first: $n) { pageInfo { hasNextPage }
    nodes { url description events enabled consecutiveFailures createdAt } } }`, { n: PAGE });
  return [h('h1', { text: 'Webhooks' }),
    table('Webhook endpoints', ['URL', 'Description', 'Events', 'Enabled', num('Failures in a row'), 'Created'],
      data.webhookEndpoints.nodes.map((w) => [w.url, w.description, w.events.join(', ') || 'all',
        w.enabled ? 'yes' : 'no', w.consecutiveFailures, date(w.createdAt)]), 'No webhook endpoints yet.'),
    more(data.webhookEndpoints)];
}

export async function jobs() {
  const data = await gql('{ jobs { name lastSuccessAt recentRuns(first: 1) { status startedAt error } } }');
  return [h('h1', { text: 'Jobs' }),
    table('Jobs', ['Job', 'Last success', 'Last run', 'Last status', 'Error'],
      data.jobs.map((j) => { const r = j.recentRuns[0]; return [j.name, date(j.lastSuccessAt), date(r?.startedAt), r?.status, r?.error]; }),
      'No jobs.')];
}

export async function apiKeys() {
  const data = await gql(`query($n: Int!) { apiKeys(first: $n) { pageInfo { hasNextPage }
    nodes { name role hint active createdAt revokedAt } } }`, { n: PAGE });
  return [h('h1', { text: 'API keys' }),
    table('API keys', ['Name', 'Role', 'Key', 'Active', 'Created', 'Revoked'],
      data.apiKeys.nodes.map((k) => [k.name, k.role, k.hint, k.active ? 'yes' : 'no', date(k.createdAt), date(k.revokedAt)]),
      'No API keys.'),
    more(data.apiKeys)];
}

