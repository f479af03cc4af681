// Users & Groups: server-side search as you type, paging, a person's groups, bulk add, disable/enable.
import { api } from '../api.js';
import {
  busy, chip, confirmAction, debounce, emptyState, field, fill, fmt, groupPicker, h, notify, notifyError,
  pager, parseEmails, when,
} from '../ui.js';

const PER_PAGE = 25;

export async function render(root, { me }) {
  const state = { q: '', page: 1, seq: 0 };

  // ---- search ----
  const search = h('input', { id: 'user-search', type: 'search', autocomplete: 'off', placeholder: 'Name or email, e.g. ada@ or Lovelace' });
  const count = h('p', { class: 'result-count', 'aria-live': 'polite', id: 'user-count' });
  const tableArea = h('div', { class: 'table-area' });
  const pagerArea = h('div');
  const detail = h('section', { class: 'panel', id: 'user-detail', hidden: true, 'aria-labelledby': 'user-detail-title' });

  async function load() {
    const seq = ++state.seq;
    tableArea.setAttribute('aria-busy', 'true');
    try {
      const res = await api.users(state.q, state.page, PER_PAGE);
      if (seq !== state.seq) return; // a newer search is on its way
      count.textContent = state.q
        ? `${fmt(res.total)} ${res.total === 1 ? 'person matches' : 'people match'} “${state.q}”`
        : `${fmt(res.total)} ${res.total === 1 ? 'person' : 'people'} in Gatehouse`;
      fill(tableArea, res.items.length ? usersTable(res.items) : emptyState(state.q
        ? 'Nobody matches this search. Check the spelling, or search for part of the email address.'
        : 'No users yet. People get an account when they first sign in, or when you add them to a group below.'));
      fill(pagerArea, pager({ page: res.page, perPage: res.per_page, total: res.total, label: 'people', onPage: (p) => { state.page = p; load(); } }));
    } catch (error) {
      if (seq === state.seq) notifyError(error, 'search users');
    } finally {
      if (seq === state.seq) tableArea.removeAttribute('aria-busy');
    }
  }
  const searchSoon = debounce(() => { state.q = search.value.trim(); state.page = 1; load(); }, 200);
  search.addEventListener('input', searchSoon);
  search.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); state.q = search.value.trim(); state.page = 1; load(); } });

  function usersTable(items) {
    return h('table', { class: 'data', id: 'users-table' },
      h('caption', { class: 'visually-hidden' }, 'People'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Person'), h('th', { scope: 'col' }, 'Groups'),
        h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      h('tbody', {}, items.map((u) => h('tr', { dataset: { email: u.email } },
        h('td', {}, h('div', { class: 'person' }, h('strong', {}, u.name || u.email), u.name ? h('span', { class: 'muted' }, u.email) : null)),
        h('td', {}, u.groups.length ? h('div', { class: 'chips' }, u.groups.map((g) => chip(g))) : h('span', { class: 'muted' }, 'No groups')),
        h('td', {}, u.disabled ? chip('Disabled', 'bad') : chip('Active', 'good'), u.is_admin ? chip('Admin', 'info') : null),
        h('td', { class: 'row-actions' },
          h('button', { type: 'button', class: 'secondary small', onclick: () => openDetail(u.email) , 'aria-label': `Manage ${u.email}` }, 'Manage'),
          toggleButton(u))))));
  }

  function toggleButton(u) {
    const label = u.disabled ? 'Enable' : 'Disable';
    const button = h('button', { type: 'button', class: u.disabled ? 'secondary small' : 'danger-outline small', 'aria-label': `${label} ${u.email}` }, label);
    button.addEventListener('click', async () => {
      const disabling = !u.disabled;
      const ok = await confirmAction(disabling
        ? { title: `Disable ${u.email}?`, message: 'They will be refused by Gatehouse from their next request, with every key and sign-in. You can enable them again later.', confirmLabel: 'Disable' }
        : { title: `Enable ${u.email}?`, message: 'They will be able to use Gatehouse again with their groups\' servers.', confirmLabel: 'Enable', danger: false });
      if (!ok) return;
      const updated = await busy(button, () => api.updateUser(u.email, { disabled: disabling }), disabling ? 'disable the user' : 'enable the user');
      if (updated) {
        notify(disabling ? `${u.email} is disabled.` : `${u.email} is enabled again.`);
        await load();
        if (!detail.hidden && detail.dataset.email === u.email) openDetail(u.email);
      }
    });
    return button;
  }

  // ---- one person's groups ----
  async function openDetail(email) {
    let u;
    try { u = await api.user(email); } catch (error) { notifyError(error, 'open this person'); return; }
    detail.dataset.email = email;
    detail.hidden = false;
    const pickField = groupPicker('Add to a group', { id: 'detail-add-group', placeholder: 'Choose a group to add…', exclude: (g) => u.groups.includes(g) });
    const select = pickField.select;
    const addBtn = h('button', { type: 'submit', class: 'primary' }, 'Add to group');
    const form = h('form', { class: 'inline-form' }, pickField, addBtn);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!select.value) { notify('Choose a group first.', 'error'); select.focus(); return; }
      const g = select.value;
      if (await busy(addBtn, () => api.addMember(g, email), `add ${email} to ${g}`)) {
        notify(`${email} is now in ${g}.`);
        await Promise.all([openDetail(email), load()]);
      }
    });
    fill(detail,
      h('div', { class: 'panel-head' },
        h('h2', { id: 'user-detail-title', tabindex: '-1' }, u.name ? `${u.name} (${u.email})` : u.email),
        h('button', { type: 'button', class: 'link', onclick: () => { detail.hidden = true; search.focus(); } }, 'Close')),
      h('p', { class: 'muted' }, `Status: ${u.disabled ? 'disabled' : 'active'}${u.is_admin ? ' · administrator' : ''} · account since ${when(u.created_at)} · last seen ${when(u.last_seen_at)}`),
      h('h3', {}, 'Groups'),
      u.groups.length
        ? h('ul', { class: 'plain-list', id: 'user-groups' }, u.groups.map((g) => h('li', {}, h('span', {}, g),
          h('button', {
            type: 'button', class: 'danger-outline small', 'aria-label': `Remove ${email} from ${g}`,
            onclick: async (e) => {
              const ok = await confirmAction({ title: `Remove from ${g}?`, message: `${email} will lose the servers ${g} grants, from their next request.`, confirmLabel: 'Remove' });
              if (!ok) return;
              if (await busy(e.target, () => api.removeMember(g, email), `remove ${email} from ${g}`)) {
                notify(`${email} was removed from ${g}.`);
                await Promise.all([openDetail(email), load()]);
              }
            },
          }, 'Remove'))))
        : emptyState('Not in any group yet, so they cannot use any server.'),
      form);
    detail.querySelector('h2').focus();
  }

  // ---- add many people to a group ----
  const bulkField = groupPicker('Group', { id: 'bulk-group' });
  const bulkGroup = bulkField.select;
  const bulkText = h('textarea', { id: 'bulk-emails', rows: 5, placeholder: 'ada@example.com, grace@example.com\nlinus@example.com' });
  const bulkBtn = h('button', { type: 'submit', class: 'primary' }, 'Add these people');
  const bulkResult = h('div', { id: 'bulk-result', 'aria-live': 'polite' });
  const bulkForm = h('form', { class: 'panel stack', 'aria-labelledby': 'bulk-title' },
    h('h2', { id: 'bulk-title' }, 'Add many people to a group'),
    h('p', { class: 'hint' }, 'Paste email addresses separated by commas, spaces or new lines (a list copied from a spreadsheet or an email works). People who have no account yet get one.'),
    h('div', { class: 'form-grid' }, bulkField, field('Email addresses', bulkText, { wide: true })),
    h('div', { class: 'actions' }, bulkBtn), bulkResult);
  bulkForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const g = bulkGroup.value;
    const emails = parseEmails(bulkText.value);
    if (!g) { notify('Choose the group to add people to.', 'error'); bulkGroup.focus(); return; }
    if (!emails.length) { notify('Paste at least one email address.', 'error'); bulkText.focus(); return; }
    const res = await busy(bulkBtn, () => api.addMembers(g, emails), `add people to ${g}`);
    if (!res) return;
    fill(bulkResult, h('div', { class: `notice ${res.invalid.length ? 'info' : 'success'}`, role: 'status' },
      h('p', {}, `${fmt(res.added.length)} added to ${g}; already members: ${fmt(res.already.length)}.`),
      res.invalid.length ? h('p', {}, `Not added, because they are not valid email addresses: ${res.invalid.join(', ')}. Fix them and add them again.`) : null));
    notify(`${fmt(res.added.length)} ${res.added.length === 1 ? 'person' : 'people'} added to ${g}.`);
    if (!res.invalid.length) bulkText.value = '';
    load();
  });

  // ---- add one person ----
  const newEmail = h('input', { id: 'new-user-email', type: 'email', autocomplete: 'off', required: true });
  const newName = h('input', { id: 'new-user-name', type: 'text', autocomplete: 'off' });
  const newBtn = h('button', { type: 'submit', class: 'secondary' }, 'Create account');
  const emailField = field('Email address', newEmail);
  const newForm = h('form', { class: 'panel stack', 'aria-labelledby': 'new-user-title' },
    h('h2', { id: 'new-user-title' }, 'Create an account'),
    h('p', { class: 'hint' }, 'Usually not needed: people get an account when they first sign in. Create one to prepare groups in advance.'),
    h('div', { class: 'form-grid' }, emailField, field('Full name (optional)', newName)),
    h('div', { class: 'actions' }, newBtn));
  newForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    emailField.showError('');
    try {
      await busy(newBtn, () => api.createUser({ email: newEmail.value.trim(), name: newName.value.trim() }), null);
      notify(`Account created for ${newEmail.value.trim()}.`);
      newEmail.value = ''; newName.value = '';
      load();
    } catch (error) {
      emailField.showError(error.status === 409 ? 'This person already has an account: search for them above.' : error.message);
    }
  });

  fill(root,
    h('section', { class: 'panel', 'aria-labelledby': 'find-title' },
      h('h2', { id: 'find-title' }, 'Find people'),
      field('Search by name or email', search, { hint: 'Results update as you type.' }),
      count, tableArea, pagerArea),
    detail, bulkForm, newForm);

  await load();
  void me;
}
