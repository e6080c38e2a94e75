// What every console page uses: tables with captions, fact lists, links,
// dates, idempotency keys and the signed-in viewer. Pages live one file per
// area (customers.js, catalog.js, money.js, operations.js); pages.js maps
// routes to them.

import { h, session as s } from './console.js';

export { h, gql, go } from './console.js';

export const PAGE = 50;

/** A table with a caption (its accessible name) and text cells. */
export function table(caption, headers, rows, empty = 'Nothing yet.') {
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
export const num = (label) => ({ label, num: true });
export const more = (conn) => conn.pageInfo?.hasNextPage
  ? h('p', { class: 'muted', text: `Showing the first ${conn.nodes.length}.` }) : null;
export const date = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+/, '').replace(/(\+00:00|Z)$/, ' UTC') : '—');
export const link = (href, text) => h('a', { href, text });
export const seg = encodeURIComponent;
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v instanceof Node ? v : String(v ?? '—'))]));
}

/** 16 random bytes as hex (crypto.randomUUID needs a secure context). */
export function idempotencyKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return `console-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

/** The signed-in viewer: `{ role, tenant }`. */
export const viewer = () => s.viewer;
