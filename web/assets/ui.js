// Small DOM helpers: an element builder, messages people can read, confirmations, paging.
// Text always goes in as text (never as HTML), so names and emails cannot inject markup.
import { api } from './api.js';

/** h('button', {class: 'primary', onclick}, 'Save') → an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let idCounter = 0;
export const uid = (prefix = 'f') => `${prefix}-${++idCounter}`;

/** A labelled form field: {label, input, hint, error element}. */
export function field(label, input, { hint, wide } = {}) {
  if (!input.id) input.id = uid('field');
  const error = h('p', { class: 'field-error', id: `${input.id}-error`, role: 'alert', hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  const wrap = h('div', { class: `field${wide ? ' wide' : ''}` }, h('label', { for: input.id }, label), input, hintEl, error);
  wrap.showError = (message) => {
    error.textContent = message;
    error.hidden = !message;
    if (message) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', [hintEl?.id, error.id].filter(Boolean).join(' '));
    } else {
      input.removeAttribute('aria-invalid');
      if (hintEl) input.setAttribute('aria-describedby', hintEl.id); else input.removeAttribute('aria-describedby');
    }
  };
  return wrap;
}

// ---- messages: one live region at the top of the page ----
let noticeTimer;
/** Shows a message: kind 'success' | 'error' | 'info'. Errors stay until dismissed or replaced. */
export function notify(message, kind = 'success') {
  const region = document.getElementById('notice');
  if (!region) return;
  clearTimeout(noticeTimer);
  fill(region,
    h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      h('span', { class: 'notice-text' }, message),
      h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss message', onclick: () => fill(region) }, 'Dismiss')));
  if (kind !== 'error') noticeTimer = setTimeout(() => fill(region), 8000);
}

/** Shows an API error (or any error) as an error message. */
export function notifyError(error, doing) {
  const text = error?.message || String(error);
  notify(doing ? `Could not ${doing}: ${text}` : text, 'error');
}

/**
 * Asks before something destructive. Resolves true when confirmed.
 * @param {object} o {title, message, confirmLabel, danger}
 */
export function confirmAction({ title, message, confirmLabel = 'Confirm', danger = true }) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-message' });
    const done = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => done(false) }, 'Cancel');
    const ok = h('button', { type: 'button', class: danger ? 'danger' : 'primary', onclick: () => done(true) }, confirmLabel);
    dialog.append(
      h('h2', { id: 'confirm-title' }, title),
      h('p', { id: 'confirm-message' }, message),
      h('div', { class: 'actions' }, cancel, ok));
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** Runs fn while a button shows it is busy; reports errors. Returns fn's result (undefined on error). */
export async function busy(button, fn, doing) {
  const label = button?.textContent;
  if (button) { button.disabled = true; button.setAttribute('aria-busy', 'true'); }
  try {
    return await fn();
  } catch (error) {
    if (doing !== null) notifyError(error, doing);
    if (doing === null) throw error;
    return undefined;
  } finally {
    if (button) { button.disabled = false; button.removeAttribute('aria-busy'); button.textContent = label; }
  }
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

/** "Showing 1–25 of 15,000" with Previous / Next buttons. */
export function pager({ page, perPage, total, onPage, label = 'results' }) {
  const pages = Math.max(1, Math.ceil(total / perPage));
  page = Math.min(Math.max(1, page), pages); // a page past the end (its last entry was just removed) reads as the last
  const from = total === 0 ? 0 : (page - 1) * perPage + 1;
  const to = Math.min(total, page * perPage);
  return h('nav', { class: 'pager', 'aria-label': `Pages of ${label}` },
    h('button', { type: 'button', class: 'secondary', disabled: page <= 1, onclick: () => onPage(page - 1) }, '← Previous'),
    h('span', { class: 'pager-status', 'aria-live': 'polite' },
      total === 0 ? `No ${label}` : `Showing ${fmt(from)}–${fmt(to)} of ${fmt(total)} · page ${fmt(page)} of ${fmt(pages)}`),
    h('button', { type: 'button', class: 'secondary', disabled: page >= pages, onclick: () => onPage(page + 1) }, 'Next →'));
}

export const fmt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : String(n ?? ''));

export function when(unix) {
  if (!unix) return '—';
  return new Date(unix * 1000).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}

export function chip(text, kind = '') { return h('span', { class: `chip ${kind}` }, text); }

const PICKER_MATCHES = 50;
const groupLabel = (g) => g.name + (g.is_tenant ? ' (tenant)' : '');

/**
 * Choosing one of any number of groups: a select of the first matches and a search box under it (Gatehouse
 * searches as you type; Enter picks the match). Returns the labelled field: field.select is the <select> (its
 * value is the chosen group; it fires `change`), field.ready settles once `value` is checked and the first
 * matches are shown. `value` stays chosen even when it is not among them; `exclude(name)` leaves groups out.
 */
export function groupPicker(label, { id, placeholder = 'Choose a group…', value = '', exclude = () => false } = {}) {
  const given = value ? h('option', { value, selected: true }, value) : null;
  const select = h('select', { id: id ?? uid('group') }, h('option', { value: '' }, placeholder), given);
  const search = h('input', {
    type: 'search', id: `${select.id}-search`, autocomplete: 'off', placeholder: 'Not listed? Type part of its name',
    'aria-label': `${label}: search`, 'aria-controls': select.id,
  });
  const status = h('p', { class: 'hint', id: `${select.id}-status`, 'aria-live': 'polite' });
  const wrap = field(label, select);
  select.after(search, status);
  let seq = 0;
  async function load() {
    const mine = ++seq;
    const q = search.value.trim();
    let res;
    try { res = await api.groups(q, 1, PICKER_MATCHES); } catch (error) { if (mine === seq) notifyError(error, 'search the groups'); return null; }
    if (mine !== seq) return null; // a newer search is on its way
    const items = res.items.filter((g) => !exclude(g.name));
    const chosen = select.selectedOptions[0];
    fill(select, h('option', { value: '' }, placeholder),
      chosen?.value && !items.some((g) => g.name === chosen.value) ? h('option', { value: chosen.value }, chosen.textContent) : null,
      items.map((g) => h('option', { value: g.name }, groupLabel(g))));
    select.value = chosen?.value ?? '';
    status.textContent = res.total > res.items.length
      ? `The first ${fmt(res.items.length)} of ${fmt(res.total)} ${q ? `groups matching “${q}”` : 'groups'} are listed: type to find others.`
      : q ? `${fmt(res.total)} ${res.total === 1 ? 'group matches' : 'groups match'} “${q}”.` : '';
    return items;
  }
  search.addEventListener('input', debounce(load, 200));
  search.addEventListener('keydown', async (e) => {
    if (e.key !== 'Enter') return;
    e.preventDefault(); // not the surrounding form's submit
    const items = await load();
    const typed = search.value.trim().toLowerCase();
    const pick = items?.find((g) => g.name.toLowerCase() === typed) ?? (items?.length === 1 ? items[0] : null);
    if (pick && pick.name !== select.value) { select.value = pick.name; select.dispatchEvent(new Event('change')); }
  });
  wrap.select = select;
  wrap.ready = (async () => {
    // The given group may be anywhere among thousands: ask for it by name (and drop it when there is no such group).
    if (given) { try { given.textContent = groupLabel(await api.group(value)); } catch { given.remove(); } }
    await load();
  })();
  return wrap;
}

export function emptyState(text) { return h('p', { class: 'empty' }, text); }

/** Splits pasted text into email-looking tokens (commas, semicolons, spaces, new lines; "Name <a@b>" too). */
export function parseEmails(text) {
  const out = [];
  const seen = new Set();
  // "Ada Lovelace <ada@example.com>" (as copied from a mail client) → the address only
  const plain = text.replace(/[^,;\n<>]*<([^<>]+)>/g, ' $1 ');
  for (let token of plain.split(/[\s,;]+/)) {
    token = token.trim().replace(/^<|>$/g, '').replace(/^mailto:/i, '');
    if (!token) continue;
    const key = token.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(token);
  }
  return out;
}
