// Dynamic Routing: a group's own endpoint per HTTP server, validated by Gatehouse and shown inline.
import { api } from '../api.js';
import {
  busy, confirmAction, emptyState, field, fill, groupPicker, h, notify, notifyError, when,
} from '../ui.js';

export async function render(root) {
  let servers = [];
  try {
    servers = (await api.servers()).items;
  } catch (error) {
    notifyError(error, 'load the servers');
  }
  const routable = servers.filter((s) => s.transport !== 'stdio');
  const local = servers.filter((s) => s.transport === 'stdio');
  const pickField = groupPicker('Group', { id: 'routing-group', value: new URLSearchParams(location.search).get('group') ?? '' });
  const pick = pickField.select;
  const area = h('div', { id: 'routing-area' });
  pick.addEventListener('change', () => {
    history.replaceState(null, '', `/mcp-admin/routing${pick.value ? `?group=${encodeURIComponent(pick.value)}` : ''}`);
    load();
  });

  async function load() {
    const g = pick.value;
    if (!g) { fill(area, emptyState('Choose a group to see where its traffic goes.')); return; }
    let rows;
    try { rows = (await api.endpoints(g)).items; } catch (error) { notifyError(error, 'load the routes'); return; }
    const byServer = new Map(rows.map((r) => [r.server, r]));
    fill(area,
      routable.length ? h('div', { class: 'stack' }, routable.map((s) => routeForm(g, s, byServer.get(s.id))))
        : emptyState('No HTTP servers are configured, so there is nothing to route.'),
      local.length ? h('p', { class: 'hint' }, `Not routable (they run as local processes on the Gatehouse machine): ${local.map((s) => s.id).join(', ')}.`) : null);
  }

  function routeForm(g, s, current) {
    const input = h('input', { type: 'url', id: `endpoint-${s.id}`, autocomplete: 'off', spellcheck: 'false', value: current?.url ?? '', placeholder: 'https://mcp.customer.example.com/mcp' });
    const f = field(`Address for ${s.id}`, input, { hint: current ? `Routed since ${when(current.updated_at)}. Leave as is, or change it and save.` : 'Empty: this group uses the server\'s normal address.' });
    const save = h('button', { type: 'submit', class: 'primary' }, current ? 'Save new address' : 'Route to this address');
    const remove = current ? h('button', {
      type: 'button', class: 'danger-outline',
      onclick: async (e) => {
        if (!await confirmAction({ title: `Stop routing ${g} for ${s.id}?`, message: `Members of ${g} will use ${s.id}'s normal address from their next call.`, confirmLabel: 'Stop routing' })) return;
        if (await busy(e.target, () => api.deleteEndpoint(g, s.id), 'remove the route')) { notify(`${g} now uses ${s.id}'s normal address.`); load(); }
      },
    }, 'Stop routing') : null;
    const form = h('form', { class: 'panel route', dataset: { server: s.id } },
      h('h3', {}, s.id, s.description ? h('span', { class: 'muted' }, ` — ${s.description}`) : null),
      f, h('div', { class: 'actions' }, save, remove));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      f.showError('');
      const url = input.value.trim();
      if (!url) { f.showError('Type the address (it starts with https:// or http://), or use “Stop routing”.'); input.focus(); return; }
      try {
        await busy(save, () => api.putEndpoint(g, s.id, url), null);
      } catch (error) {
        f.showError(error.code === 'invalid_url' ? `${error.message}. Check the address and try again.` : error.message);
        input.focus();
        return;
      }
      notify(`${g}'s calls to ${s.id} now go to ${url}.`);
      load();
    });
    input.addEventListener('input', () => f.showError(''));
    return form;
  }

  fill(root, h('section', { class: 'panel stack', 'aria-labelledby': 'routing-title' },
    h('h2', { id: 'routing-title' }, 'Route a group to its own server'),
    h('p', { class: 'hint' }, 'A customer (tenant) can run their own copy of a server. Route their group there and their members\' calls go to that address, with everything else unchanged.'),
    pickField, area));
  pickField.ready.then(load);
}
