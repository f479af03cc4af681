// Audit Log: who changed what, newest first, filterable by actor, action and target.
import { api } from '../api.js';
import { emptyState, field, fill, fmt, h, notifyError, pager, when } from '../ui.js';

const PER_PAGE = 50;
const ACTIONS = [
  ['', 'Any change'], ['user.create', 'Person created'], ['user.update', 'Person changed (disabled, admin, name)'],
  ['user.delete', 'Person deleted'], ['group.create', 'Group created'], ['group.update', 'Group changed'],
  ['group.rename', 'Group renamed'], ['group.delete', 'Group deleted'], ['group.member.add', 'Added to a group'],
  ['group.member.remove', 'Removed from a group'], ['grant.create', 'Server access given'],
  ['grant.update', 'Server access changed'], ['grant.delete', 'Server access taken away'],
  ['tenant_key.create', 'Credential stored'], ['tenant_key.replace', 'Credential replaced'],
  ['tenant_key.delete', 'Credential deleted'], ['endpoint.create', 'Route added'], ['endpoint.update', 'Route changed'],
  ['endpoint.delete', 'Route removed'], ['apikey.create', 'API key created'], ['apikey.revoke', 'API key revoked'],
];

function describe(e) {
  const d = e.details ?? {};
  const after = d.after ?? {};
  const before = d.before ?? {};
  switch (e.action) {
    case 'group.member.add': return `Added ${(after.added ?? []).length > 3 ? `${fmt(after.added.length)} people` : (after.added ?? []).join(', ')}`;
    case 'group.member.remove': return `Removed ${(before.removed ?? []).join(', ')}`;
    case 'grant.create': case 'grant.update': return `May use ${after.server}${after.tools ? ` (${Object.keys(after.tools)[0] === 'allow' ? 'only' : 'all but'} ${Object.values(after.tools)[0].join(', ')})` : ' (all tools)'}`;
    case 'grant.delete': return `No longer may use ${before.server}`;
    case 'tenant_key.create': case 'tenant_key.replace': return `${after.server} / ${after.slot} = ${after.value}`;
    case 'tenant_key.delete': return `${before.server} / ${before.slot} deleted`;
    case 'endpoint.create': case 'endpoint.update': return `${after.server} → ${after.url}`;
    case 'endpoint.delete': return `${before.server} route removed`;
    case 'user.update': {
      const changes = ['disabled', 'is_admin', 'name'].filter((k) => before[k] !== after[k]).map((k) => `${k}: ${before[k]} → ${after[k]}`);
      return changes.join(', ') || 'No visible change';
    }
    default: return '';
  }
}

export async function render(root) {
  const actor = h('input', { id: 'audit-actor', type: 'search', autocomplete: 'off', placeholder: 'admin@example.com' });
  const action = h('select', { id: 'audit-action' }, ACTIONS.map(([v, l]) => h('option', { value: v }, l)));
  const target = h('input', { id: 'audit-target', type: 'search', autocomplete: 'off', placeholder: 'group or email' });
  const apply = h('button', { type: 'submit', class: 'primary' }, 'Show');
  const clear = h('button', { type: 'button', class: 'secondary' }, 'Clear filters');
  const list = h('div', { id: 'audit-list' });
  const pagerArea = h('div');
  let page = 1;
  const form = h('form', { class: 'panel filters', 'aria-label': 'Filter the audit log' },
    h('div', { class: 'form-grid' }, field('Who made the change (email)', actor), field('What kind of change', action), field('Changed what (group or email)', target)),
    h('div', { class: 'actions' }, apply, clear));
  form.addEventListener('submit', (e) => { e.preventDefault(); page = 1; load(); });
  clear.addEventListener('click', () => { actor.value = ''; action.value = ''; target.value = ''; page = 1; load(); });

  async function load() {
    let res;
    try {
      res = await api.audit({ actor: actor.value.trim(), action: action.value, target: target.value.trim(), page, per_page: PER_PAGE });
    } catch (error) { notifyError(error, 'load the audit log'); return; }
    fill(list, res.items.length ? h('table', { class: 'data', id: 'audit-table' },
      h('caption', { class: 'visually-hidden' }, 'Changes, newest first'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'Changed', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, res.items.map((e) => h('tr', {},
        h('td', { class: 'nowrap' }, when(e.timestamp)), h('td', {}, e.actor), h('td', {}, h('code', {}, e.action)), h('td', {}, e.target),
        h('td', {}, describe(e), e.details ? h('details', {}, h('summary', {}, 'Before / after'), h('pre', {}, JSON.stringify(e.details, null, 2))) : null)))))
      : emptyState('No changes match these filters.'));
    fill(pagerArea, pager({ page: res.page, perPage: res.per_page, total: res.total, label: 'changes', onPage: (p) => { page = p; load(); } }));
  }
  fill(root, form, list, pagerArea);
  await load();
}
