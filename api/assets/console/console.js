// The console for billing admins: plain JavaScript modules, no framework,
// no build step. It speaks only the public GraphQL API (`/graphql`) with
// the API key the admin signs in with, kept in `sessionStorage` (gone when
// the tab closes; never in localStorage or a cookie). Routes use the
// History API and are linkable: /console/customers/{externalId},
// /console/plans/{key}, /console/credit-systems/{key}, …
//
// API strings are always set as text, never as HTML.

import { routes } from './pages.js';

const KEY = 'credits.console.apiKey';
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');

/** One element with text children (never HTML). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}

export class Unauthenticated extends Error {}

/** POSTs a query to /graphql with the signed-in key. */
export async function gql(query, variables = {}, key = sessionStorage.getItem(KEY)) {
  const res = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const err = body?.errors?.[0];
  if (res.status === 401 || err?.extensions?.code === 'UNAUTHENTICATED') {
    throw new Unauthenticated(err?.message || 'not signed in');
  }
  if (err) {
    // The API's messages usually start with the field already.
    const f = err.extensions?.field;
    const field = f && !err.message.startsWith(f) ? ` (${f})` : '';
    throw Object.assign(new Error(`${err.message}${field}`), { code: err.extensions?.code });
  }
  if (!res.ok || !body?.data) throw new Error(`HTTP ${res.status}`);
  return body.data;
}

/** The signed-in viewer: `{ role, tenant: { name } }`, or null. */
export const session = { viewer: null, key: () => sessionStorage.getItem(KEY) };

const NAV = [
  ['Customers', '/console/customers'],
  ['Plans', '/console/plans'],
  ['Credit systems', '/console/credit-systems'],
  ['Orders', '/console/orders'],
  ['Invoices', '/console/invoices'],
  ['Webhooks', '/console/webhooks'],
  ['Emails', '/console/emails'],
  ['Jobs', '/console/jobs'],
  ['API keys', '/console/api-keys'],
];

/** Client-side navigation to a console path. */
export function go(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render().then(() => { if (!replace && !main.querySelector(':focus')) main.focus(); });
}

// Links inside the console navigate without reloading.
document.addEventListener('click', (ev) => {
  const a = ev.target.closest?.('a[href^="/console"]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  ev.preventDefault();
  go(a.getAttribute('href'));
});
addEventListener('popstate', () => render());

function signOut() {
  sessionStorage.removeItem(KEY);
  session.viewer = null;
  go('/console', { replace: true });
}

function showChrome() {
  const v = session.viewer;
  nav.hidden = !v;
  who.replaceChildren();
  if (!v) return;
  who.append(h('span', { text: `${v.tenant.name} · ${v.role}` }),
    h('button', { type: 'button', class: 'secondary', onclick: signOut, text: 'Sign out' }));
  const here = location.pathname;
  nav.replaceChildren(h('ul', {}, NAV.map(([name, href]) => h('li', {},
    h('a', { href, 'aria-current': here === href || here.startsWith(`${href}/`) ? 'page' : null, text: name })))));
}

function signInPage(message) {
  const field = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const error = h('p', { class: 'error', role: 'alert', text: message || '' });
  const button = h('button', { type: 'submit', text: 'Sign in' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const key = field.value.trim();
      if (!key) { error.textContent = 'Enter an API key.'; return; }
      button.disabled = true;
      error.textContent = '';
      try {
        const data = await gql('{ viewer { role tenant { name } } }', {}, key);
        if (data.viewer.role === 'CUSTOMER' || !data.viewer.tenant) throw new Unauthenticated();
        sessionStorage.setItem(KEY, key);
        session.viewer = data.viewer;
        const path = location.pathname.replace(/\/+$/, '');
        go(path === '/console' ? '/console/customers' : location.pathname, { replace: true });
      } catch (e) {
        error.textContent = e instanceof Unauthenticated
          ? 'That API key was not accepted: check it was copied whole and has not been revoked.'
          : `Could not sign in: ${e.message}`;
        button.disabled = false;
        field.focus();
      }
    },
  }, h('label', { for: 'api-key', text: 'API key' }), field, button);
  document.title = 'Sign in · Credits console';
  main.replaceChildren(h('div', { class: 'panel signin' },
    h('h1', { text: 'Sign in' }),
    h('p', { class: 'muted', text: 'Paste an API key of this deployment (ck_live_…). It is kept in this tab only.' }),
    form, error));
  field.focus();
}

let generation = 0;

/** Renders the page for the current URL. */
export async function render() {
  const mine = ++generation;
  if (!session.key()) { session.viewer = null; showChrome(); signInPage(); return; }
  try {
    if (!session.viewer) session.viewer = (await gql('{ viewer { role tenant { name } } }')).viewer;
  } catch (e) {
    if (e instanceof Unauthenticated) {
      sessionStorage.removeItem(KEY);
      session.viewer = null;
      showChrome();
      signInPage('Your session ended: the API key was not accepted. Sign in again.');
      return;
    }
    main.replaceChildren(h('p', { class: 'error', role: 'alert', text: `Could not reach the API: ${e.message}` }));
    return;
  }
  const path = location.pathname.replace(/\/+$/, '');
  if (path === '/console') { go('/console/customers', { replace: true }); return; }
  showChrome();
  const parts = path.split('/').slice(2).map(decodeURIComponent);
  const route = routes[parts[0]];
  main.replaceChildren(h('p', { class: 'muted', role: 'status', text: 'Loading…' }));
  try {
    const nodes = route
      ? await route(parts.slice(1), session.viewer)
      : [h('h1', { text: 'Not found' }), h('p', { text: 'No such console page.' })];
    if (mine !== generation) return;
    main.replaceChildren(...nodes.filter(Boolean));
    const title = main.querySelector('h1')?.textContent;
    document.title = title ? `${title} · Credits console` : 'Credits console';
  } catch (e) {
    if (mine !== generation) return;
    if (e instanceof Unauthenticated) { signOut(); return; }
    if (e.code === 'NOT_FOUND') {
      main.replaceChildren(h('h1', { text: 'Not found' }), h('p', { role: 'alert', text: e.message }));
      return;
    }
    main.replaceChildren(h('h1', { text: 'Something went wrong' }),
      h('p', { class: 'error', role: 'alert', text: e.message }));
  }
}

render();
