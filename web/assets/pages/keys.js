// API Keys: tenant credentials (per group, server and slot; write-only, shown masked) and Gatehouse API keys
// (list, create — the new key is shown once —, revoke).
import { api } from '../api.js';
import {
  busy, chip, confirmAction, emptyState, field, fill, groupPicker, h, notify, notifyError, pager, when,
} from '../ui.js';

const KEYS_PER_PAGE = 50;

export async function render(root) {
  let servers = [];
  try {
    servers = (await api.servers()).items;
  } catch (error) {
    notifyError(error, 'load the servers');
  }
  const withSlots = servers.filter((s) => (s.slots ?? []).length);

  // ---- tenant credentials ----
  const groupField = groupPicker('Group', { id: 'keys-group', value: new URLSearchParams(location.search).get('group') ?? '' });
  const groupPick = groupField.select;
  const credArea = h('div', { id: 'tenant-keys' });
  groupPick.addEventListener('change', () => {
    history.replaceState(null, '', `/mcp-admin/keys${groupPick.value ? `?group=${encodeURIComponent(groupPick.value)}` : ''}`);
    loadCreds();
  });

  async function loadCreds() {
    const g = groupPick.value;
    if (!g) { fill(credArea, emptyState('Choose a group to see and change the credentials its members use.')); return; }
    if (!withSlots.length) {
      fill(credArea, emptyState('No server asks for credentials. A server asks for one when its configuration uses ${secret:NAME} in its env or headers.'));
      return;
    }
    let stored;
    try { stored = (await api.tenantKeys(g)).items; } catch (error) { notifyError(error, 'load the stored keys'); return; }
    const byKey = new Map(stored.map((k) => [`${k.server}\u0000${k.slot}`, k]));
    fill(credArea, h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, `Credentials for ${g}`),
      h('thead', {}, h('tr', {}, ['Server', 'Credential', 'Stored value', 'New value', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, withSlots.flatMap((s) => s.slots.map((slot) => credRow(g, s, slot, byKey.get(`${s.id}\u0000${slot}`)))))));
  }

  function credRow(g, s, slot, stored) {
    const input = h('input', {
      type: 'password', autocomplete: 'new-password', spellcheck: 'false', id: `cred-${s.id}-${slot}`,
      dataset: { server: s.id, slot }, 'aria-label': `New value for ${slot} of ${s.id}`,
      placeholder: stored ? 'Type a new value to replace it' : 'Type or paste the value',
    });
    const save = h('button', { type: 'button', class: 'primary small' }, stored ? 'Replace' : 'Store');
    save.addEventListener('click', async () => {
      const value = input.value;
      if (!value.trim()) { notify(`Type the value for ${slot} first.`, 'error'); input.focus(); return; }
      if (stored && !await confirmAction({
        title: `Replace ${slot} for ${g}?`,
        message: `Members of ${g} will use the new value for ${s.id} from their next call. The old value cannot be recovered.`,
        confirmLabel: 'Replace', danger: false,
      })) return;
      const res = await busy(save, () => api.putTenantKey(g, s.id, slot, value), `store ${slot}`);
      if (res) {
        input.value = '';
        notify(`${slot} for ${s.id} is stored for ${g} (${res.value}). Members of ${g} use it from their next call.`);
        loadCreds();
      }
    });
    const del = stored ? h('button', {
      type: 'button', class: 'danger-outline small', 'aria-label': `Delete ${slot} of ${s.id} for ${g}`,
      onclick: async (e) => {
        if (!await confirmAction({
          title: `Delete ${slot} for ${g}?`,
          message: `Members of ${g} will fall back to Gatehouse's default for ${slot} (if there is one); otherwise ${s.id} will refuse their calls until a value is stored again.`,
          confirmLabel: 'Delete value',
        })) return;
        if (await busy(e.target, () => api.deleteTenantKey(g, s.id, slot), `delete ${slot}`)) {
          notify(`${slot} for ${s.id} was deleted for ${g}.`);
          loadCreds();
        }
      },
    }, 'Delete') : null;
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); save.click(); } });
    return h('tr', { dataset: { server: s.id, slot } },
      h('th', { scope: 'row' }, s.id),
      h('td', {}, h('code', {}, slot)),
      h('td', { class: 'masked' }, stored ? h('span', {}, h('code', {}, stored.value), h('span', { class: 'muted' }, ` · changed ${when(stored.updated_at)}`)) : h('span', { class: 'muted' }, 'Not stored (Gatehouse\'s default is used)')),
      h('td', {}, input),
      h('td', { class: 'row-actions' }, save, del));
  }

  // ---- Gatehouse API keys ----
  const keyFilter = h('input', { id: 'apikey-user-filter', type: 'search', autocomplete: 'off', placeholder: 'someone@example.com' });
  const keyList = h('div', { id: 'apikey-list' });
  const keyPager = h('div');
  const showFilter = h('button', { type: 'submit', class: 'secondary' }, 'Show keys');
  const filterForm = h('form', { class: 'inline-form' }, field('Whose keys (email; empty for everyone\'s)', keyFilter), showFilter);
  filterForm.addEventListener('submit', (e) => { e.preventDefault(); keyPage = 1; loadKeys(); });
  let keyPage = 1;
  let keySeq = 0;

  // Newest first, KEYS_PER_PAGE at a time (with thousands of people there are thousands of keys).
  async function loadKeys() {
    const seq = ++keySeq;
    let res;
    try { res = await api.apiKeys(keyFilter.value.trim(), keyPage, KEYS_PER_PAGE); } catch (error) { if (seq === keySeq) notifyError(error, 'load the API keys'); return; }
    if (seq !== keySeq) return;
    if (!res.items.length && keyPage > 1) { keyPage = Math.max(1, Math.ceil(res.total / res.per_page)); loadKeys(); return; }
    const { items } = res;
    fill(keyPager, res.total > res.per_page
      ? pager({ page: res.page, perPage: res.per_page, total: res.total, label: 'API keys', onPage: (p) => { keyPage = p; loadKeys(); } })
      : null);
    fill(keyList, items.length ? h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, 'Gatehouse API keys'),
      h('thead', {}, h('tr', {}, ['Person', 'Name', 'Key starts with', 'Created', 'Last used', 'Expires', 'Status', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, items.map((k) => h('tr', { dataset: { id: k.id } },
        h('td', {}, k.user_email), h('td', {}, k.name || '—'), h('td', {}, h('code', {}, `${k.prefix}…`)),
        h('td', {}, when(k.created_at)), h('td', {}, when(k.last_used_at)), h('td', {}, k.expires_at ? when(k.expires_at) : 'Never'),
        h('td', {}, k.revoked_at ? chip('Revoked', 'bad') : k.expires_at && k.expires_at * 1000 < Date.now() ? chip('Expired', 'bad') : chip('Active', 'good')),
        h('td', {}, k.revoked_at ? null : h('button', {
          type: 'button', class: 'danger-outline small', 'aria-label': `Revoke key ${k.prefix} of ${k.user_email}`,
          onclick: async (e) => {
            if (!await confirmAction({ title: `Revoke the key ${k.prefix}…?`, message: `Anything using this key for ${k.user_email} stops working at once. This cannot be undone.`, confirmLabel: 'Revoke key' })) return;
            if (await busy(e.target, () => api.revokeApiKey(k.id), 'revoke the key')) { notify(`The key ${k.prefix}… is revoked.`); loadKeys(); }
          },
        }, 'Revoke')))))) : emptyState('No API keys found.'));
  }

  const newUser = h('input', { id: 'new-key-user', type: 'email', autocomplete: 'off', required: true, placeholder: 'someone@example.com' });
  const newName = h('input', { id: 'new-key-name', type: 'text', autocomplete: 'off', placeholder: 'e.g. Claude Desktop on laptop' });
  const newDays = h('select', { id: 'new-key-expiry' },
    h('option', { value: '' }, 'Never'), h('option', { value: '30' }, 'In 30 days'), h('option', { value: '90' }, 'In 90 days'), h('option', { value: '365' }, 'In a year'));
  const userField = field('For (email)', newUser);
  const createBtn = h('button', { type: 'submit', class: 'primary', id: 'create-api-key' }, 'Create key');
  const created = h('div', { id: 'new-key-result', 'aria-live': 'polite' });
  const createForm = h('form', { class: 'stack' },
    h('div', { class: 'form-grid' }, userField, field('Name (to recognise it later)', newName), field('Expires', newDays)),
    h('div', { class: 'actions' }, createBtn), created);
  createForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    userField.showError('');
    const days = Number(newDays.value);
    const body = { user_email: newUser.value.trim(), name: newName.value.trim() };
    if (days) body.expires_at = Math.floor(Date.now() / 1000) + days * 86400;
    let res;
    try { res = await busy(createBtn, () => api.createApiKey(body), null); } catch (error) {
      userField.showError(error.status === 404 ? 'Nobody with this email has an account. Create the account (Users & Groups) or check the spelling.' : error.message);
      return;
    }
    const keyBox = h('input', { type: 'text', readonly: true, value: res.key, id: 'new-key-value', class: 'secret', 'aria-label': 'The new API key' });
    const copy = h('button', {
      type: 'button', class: 'secondary small', onclick: async () => {
        try { await navigator.clipboard.writeText(res.key); notify('Copied to the clipboard.'); } catch { keyBox.select(); notify('Press Ctrl+C (or ⌘C) to copy the selected key.', 'info'); }
      },
    }, 'Copy');
    fill(created, h('div', { class: 'notice success', role: 'status' },
      h('p', {}, h('strong', {}, `New key for ${res.user_email}. `), 'Copy it now: it is shown only this once. Give it to them through a safe channel.'),
      h('div', { class: 'inline-form' }, keyBox, copy)));
    keyBox.focus(); keyBox.select();
    keyFilter.value = res.user_email;
    keyPage = 1; // (the newest first: the new key is at the top)
    loadKeys();
  });

  fill(root,
    h('section', { class: 'panel stack', 'aria-labelledby': 'tenant-title' },
      h('h2', { id: 'tenant-title' }, 'Credentials per group'),
      h('p', { class: 'hint' }, 'Some servers need a credential (for example a customer\'s own API key). Store one per group: members of the group use it when they call the server. Values can only be written — Gatehouse shows the last four characters, never the whole value.'),
      groupField, credArea),
    h('section', { class: 'panel stack', 'aria-labelledby': 'gh-keys-title' },
      h('h2', { id: 'gh-keys-title' }, 'Gatehouse API keys'),
      h('p', { class: 'hint' }, 'A Gatehouse API key lets a person\'s AI app (an MCP client) connect as them, with their groups\' servers.'),
      h('h3', {}, 'Create a key'), createForm,
      h('h3', {}, 'Existing keys'), filterForm, keyList, keyPager));
  groupField.ready.then(loadCreds);
  loadKeys();
}
