// The Gatehouse admin portal: sign-in, the page frame, and routing between sections
// (history API under /mcp-admin/<section>; Gatehouse answers every such path with this page).
import { api, onUnauthorized, setCsrfToken } from './api.js';
import { fill, h, notify } from './ui.js';

const BASE = '/mcp-admin';
export const SECTIONS = [
  { id: 'users', title: 'Users & Groups', module: './pages/users.js', blurb: 'Find people, see and change their groups, add many people to a group at once.' },
  { id: 'groups', title: 'Groups & Servers', module: './pages/groups.js', blurb: 'Create groups and choose which servers and tools each group may use.' },
  { id: 'keys', title: 'API Keys', module: './pages/keys.js', blurb: 'Store the credentials each group uses for a server, and manage Gatehouse API keys.' },
  { id: 'routing', title: 'Dynamic Routing', module: './pages/routing.js', blurb: 'Send a group\'s traffic for a server to that group\'s own address.' },
  { id: 'servers', title: 'Servers', module: './pages/servers.js', blurb: 'The state, tools, errors and speed of each server behind Gatehouse.' },
  { id: 'analytics', title: 'Analytics', module: './pages/analytics.js', blurb: 'Who uses what, how often, how fast, and how often it fails.' },
  { id: 'audit', title: 'Audit Log', module: './pages/audit.js', blurb: 'Every change made by administrators: who changed what, and when.' },
];

const app = document.getElementById('app');
let me = null;
let cleanup = null;
let renderToken = 0;
let reauth = null; // the "sign in again" dialog, while it is open

function sectionFromPath(pathname) {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const id = rest.split('/').filter(Boolean)[0] ?? '';
  return id;
}

/** Goes to a section (pushes history) and renders it. */
export function navigate(path, { replace = false } = {}) {
  const url = path.startsWith(BASE) ? path : `${BASE}/${path.replace(/^\//, '')}`;
  if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
  route();
}

window.addEventListener('popstate', () => route());
document.addEventListener('click', (event) => {
  const link = event.target.closest?.('a[data-route]');
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute('href'));
});

onUnauthorized(({ write } = {}) => {
  if (reauth) return; // already asking to sign in again
  // A refused change keeps the page (and what the admin typed): sign in again in a dialog, then save again.
  if (write && me && !signInShown()) { askToSignInAgain(); return; }
  me = null;
  showSignIn('Your session has ended. Sign in again to continue.');
});

async function boot() {
  let result;
  try {
    result = { ok: true, body: await api.me() };
  } catch (error) {
    result = { ok: false, error };
  }
  if (result.ok) {
    me = result.body;
    setCsrfToken(me.csrf_token);
    route();
    return;
  }
  const { error } = result;
  if (error.status === 401) {
    showSignIn(null, error.data?.sign_in);
  } else if (error.status === 403) {
    showNoAccess(null, error.message);
  } else {
    fill(app, h('main', { id: 'main', class: 'centered' },
      h('div', { class: 'card' },
        h('h1', {}, 'Gatehouse cannot be reached'),
        h('p', {}, error.message),
        h('button', { type: 'button', class: 'primary', onclick: () => boot() }, 'Try again'))));
  }
  app.removeAttribute('aria-busy');
}

function route() {
  app.removeAttribute('aria-busy');
  const id = sectionFromPath(location.pathname);
  if (!me) { showSignIn(); return; }
  if (!me.is_admin) { showNoAccess(me); return; }
  const section = SECTIONS.find((s) => s.id === id);
  if (!section) { navigate('users', { replace: true }); return; }
  renderSection(section);
}

function frame(activeId) {
  const nav = h('nav', { class: 'sidebar', 'aria-label': 'Sections' },
    h('ul', {}, SECTIONS.map((s) => h('li', {},
      h('a', { href: `${BASE}/${s.id}`, 'data-route': '', 'aria-current': s.id === activeId ? 'page' : null }, s.title)))));
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: `${BASE}/users`, 'data-route': '' }, 'Gatehouse', h('span', { class: 'brand-sub' }, ' admin')),
    h('div', { class: 'whoami' },
      h('span', { class: 'who', title: me.email }, me.name || me.email),
      h('button', { type: 'button', class: 'secondary small', onclick: signOut }, 'Sign out')));
  const main = h('main', { id: 'main', tabindex: '-1' });
  fill(app, header, h('div', { class: 'layout' }, nav, h('div', { class: 'content' }, h('div', { id: 'notice', class: 'notice-area' }), main)));
  return main;
}

/** Stops the section on show (its timers; answers still on their way are ignored) before the page changes. */
function leaveSection() {
  ++renderToken;
  if (typeof cleanup === 'function') { try { cleanup(); } catch { /* ignore */ } }
  cleanup = null;
}

async function renderSection(section) {
  leaveSection();
  const token = renderToken;
  const main = frame(section.id);
  document.title = `${section.title} · Gatehouse admin`;
  const heading = h('h1', { tabindex: '-1' }, section.title);
  const body = h('div', { class: 'section-body' }, h('p', { class: 'loading' }, 'Loading…'));
  fill(main, h('div', { class: 'page-head' }, heading, h('p', { class: 'lede' }, section.blurb)), body);
  if (document.activeElement === document.body || document.activeElement?.closest?.('.sidebar')) heading.focus({ preventScroll: true });
  try {
    const mod = await import(section.module);
    if (token !== renderToken) return;
    const done = await mod.render(body, { me, navigate, section });
    if (token !== renderToken) { if (typeof done === 'function') done(); return; }
    cleanup = done;
  } catch (error) {
    if (token !== renderToken) return;
    fill(body, h('div', { class: 'notice error', role: 'alert' }, `This section could not be shown: ${error.message}`));
  }
}

async function signOut() {
  leaveSection();
  await api.signOut();
  me = null;
  setCsrfToken('');
  showSignIn('You are signed out.');
}

// ---- sign-in ----
let signInOptions = null;

const signInShown = () => Boolean(document.getElementById('api-key'));
/** Where to go after signing in: ?next= when it is a portal page (never another site, never sign-in itself). */
function nextPage() {
  const next = new URLSearchParams(location.search).get('next');
  return next && next.startsWith(`${BASE}/`) && !next.startsWith(`${BASE}/sign-in`) ? next : null;
}
/** The provider's sign-in link, coming back to `back`. */
const loginUrl = (opts, back) => (opts.login_url || '/auth/login?return_to=/mcp-admin')
  .replace(/([?&]return_to=)[^&]*/, `$1${encodeURIComponent(back)}`);

async function showSignIn(message, options) {
  leaveSection();
  if (signInShown()) return; // already shown: keep what is being typed there
  if (options) signInOptions = options;
  if (!signInOptions) {
    try { await api.me(); } catch (error) { signInOptions = error.data?.sign_in ?? { oidc: false }; }
  }
  if (signInShown()) return;
  if (sectionFromPath(location.pathname) !== 'sign-in') {
    const here = location.pathname + location.search; // keys?group=X comes back to that group
    const next = sectionFromPath(location.pathname) ? `?next=${encodeURIComponent(here)}` : '';
    history.replaceState(null, '', `${BASE}/sign-in${next}`);
  }
  document.title = 'Sign in · Gatehouse admin';
  const opts = signInOptions ?? {};
  const keyInput = h('input', { id: 'api-key', name: 'api_key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'gh_…' });
  const error = h('p', { class: 'field-error', id: 'api-key-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: opts.oidc ? 'secondary' : 'primary' }, 'Sign in with the key');
  const form = h('form', { class: 'stack', 'aria-labelledby': 'key-heading' },
    h('h2', { id: 'key-heading' }, 'Admin API key'),
    h('p', { class: 'hint' }, 'No sign-in provider? Paste an administrator\'s Gatehouse API key (it starts with gh_). Gatehouse printed the first one when it started for the first time.'),
    h('div', { class: 'field' }, h('label', { for: 'api-key' }, 'API key'), keyInput, error),
    submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    keyInput.removeAttribute('aria-invalid');
    const value = keyInput.value.trim();
    if (!value) { error.textContent = 'Paste the API key first.'; error.hidden = false; keyInput.focus(); return; }
    submit.disabled = true;
    try {
      me = await api.signInWithKey(value);
      setCsrfToken(me.csrf_token);
      navigate(nextPage() ?? 'users', { replace: true });
    } catch (err) {
      error.textContent = err.status === 401
        ? 'That key was not accepted: it may be mistyped, revoked or expired. Check it and try again.'
        : err.message;
      error.hidden = false;
      keyInput.setAttribute('aria-invalid', 'true');
      keyInput.setAttribute('aria-describedby', 'api-key-error');
      keyInput.focus();
    } finally {
      submit.disabled = false;
    }
  });
  const providerName = opts.provider_name || 'your organisation';
  const oidc = opts.oidc
    ? h('div', { class: 'stack' },
      h('a', { class: 'button primary big', href: loginUrl(opts, nextPage() ?? BASE) }, `Sign in with ${providerName}`),
      h('p', { class: 'divider' }, h('span', {}, 'or')))
    : null;
  fill(app, h('main', { id: 'main', class: 'centered' },
    h('div', { class: 'card signin' },
      h('h1', {}, 'Sign in to Gatehouse'),
      h('p', { class: 'lede' }, 'Manage who can use which AI tools and servers.'),
      message ? h('div', { class: 'notice info', role: 'status' }, message) : null,
      oidc, form)));
  app.removeAttribute('aria-busy');
  (opts.oidc ? app.querySelector('a.button') : keyInput)?.focus();
}

// ---- signed in, but not an administrator ----
function showNoAccess(who, message) {
  leaveSection();
  document.title = 'No access · Gatehouse admin';
  fill(app, h('main', { id: 'main', class: 'centered' },
    h('div', { class: 'card noaccess', role: 'alert' },
      h('h1', {}, 'No access'),
      h('p', {}, who
        ? `You are signed in as ${who.email}, but this portal is for Gatehouse administrators only.`
        : (message || 'Your account may not use this portal.')),
      h('p', {}, 'If you need to manage users, groups or servers, ask a Gatehouse administrator to make you an administrator (or add you to the MCP-Admin group).'),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: signOut }, 'Sign out and use another account')))));
  app.removeAttribute('aria-busy');
}

// ---- the session ended while saving a change: sign in again without leaving the page ----

function askToSignInAgain() {
  const opts = signInOptions ?? {};
  const keyInput = h('input', { id: 'reauth-key', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'gh_…' });
  const error = h('p', { class: 'field-error', id: 'reauth-key-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const later = h('button', { type: 'button', class: 'secondary', onclick: () => close() }, 'Not now');
  const form = h('form', { class: 'stack' },
    h('div', { class: 'field' }, h('label', { for: keyInput.id }, 'Admin API key'), keyInput, error),
    h('div', { class: 'actions' }, later, submit));
  const providerName = opts.provider_name || 'your organisation';
  const dialog = reauth = h('dialog', { class: 'confirm', id: 'reauth', 'aria-labelledby': 'reauth-title', 'aria-describedby': 'reauth-message' },
    h('h2', { id: 'reauth-title' }, 'Your session has ended'),
    h('p', { id: 'reauth-message' }, 'Your change was not saved, but what you typed is still on the page. Sign in again here, then save once more.'),
    opts.oidc ? h('p', {},
      h('a', { href: loginUrl(opts, `${BASE}/users`), target: '_blank', rel: 'noopener' }, `Sign in with ${providerName} in a new tab`),
      ', then ', h('button', { type: 'button', class: 'link', onclick: () => attempt(() => api.me()) }, 'continue here'), '.') : null,
    form);
  function close() { dialog.close(); dialog.remove(); if (reauth === dialog) reauth = null; }
  async function attempt(signIn) {
    error.hidden = true;
    submit.disabled = true;
    try {
      const who = await signIn();
      me = who;
      setCsrfToken(who.csrf_token);
      close();
      if (!who.is_admin) { route(); return; }
      notify('You are signed in again. Save your change once more.', 'info');
    } catch (err) {
      error.textContent = err.status === 401 ? 'Not signed in: check the key (or finish signing in in the other tab) and try again.' : err.message;
      error.hidden = false;
      keyInput.focus();
    } finally {
      submit.disabled = false;
    }
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = keyInput.value.trim();
    if (!value) { error.textContent = 'Paste the API key first.'; error.hidden = false; keyInput.focus(); return; }
    attempt(() => api.signInWithKey(value));
  });
  dialog.addEventListener('cancel', (event) => { event.preventDefault(); close(); });
  document.body.append(dialog);
  dialog.showModal();
  keyInput.focus();
}

export { notify };
boot();
