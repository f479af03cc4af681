// Groups & Servers: create groups, choose the servers (and optionally the tools) each may use,
// see and change who is in it, delete with confirmation. /mcp-admin/groups/<name> opens one group.
import { api } from '../api.js';
import {
  busy, chip, confirmAction, debounce, emptyState, field, fill, fmt, h, notify, notifyError, pager, parseEmails,
} from '../ui.js';

const MEMBERS_PER_PAGE = 20;
const GROUPS_PER_PAGE = 50;

export async function render(root) {
  let groups = []; // the page of groups on show (Gatehouse searches and pages them)
  let servers = [];
  const list = { page: 1, seq: 0 };
  let openSeq = 0;
  const listArea = h('div', { class: 'group-list', id: 'group-list' });
  const listPager = h('div');
  const detail = h('section', { class: 'panel', id: 'group-detail', 'aria-labelledby': 'group-title' });
  const filter = h('input', { id: 'group-filter', type: 'search', autocomplete: 'off', placeholder: 'Filter groups' });
  filter.addEventListener('input', debounce(() => { list.page = 1; loadGroups(); }, 200));

  function selectedName() {
    const part = location.pathname.split('/').filter(Boolean)[2] ?? ''; // mcp-admin, groups, <name>
    try { return decodeURIComponent(part); } catch { return part; } // a stray % is part of a name, not a crash
  }

  async function loadGroups() {
    const seq = ++list.seq;
    try {
      const res = await api.groups(filter.value.trim(), list.page, GROUPS_PER_PAGE);
      if (seq !== list.seq) return; // a newer search is on its way
      if (!res.items.length && list.page > 1) { list.page = Math.max(1, Math.ceil(res.total / res.per_page)); await loadGroups(); return; }
      groups = res.items;
      drawList();
      fill(listPager, res.total > res.per_page
        ? pager({ page: res.page, perPage: res.per_page, total: res.total, label: 'groups', onPage: (p) => { list.page = p; loadGroups(); } })
        : null);
    } catch (error) {
      if (seq === list.seq) notifyError(error, 'load the groups');
    }
  }

  function drawList() {
    const current = selectedName();
    fill(listArea, groups.length
      ? h('ul', { class: 'select-list' }, groups.map((g) => h('li', {},
        h('button', {
          type: 'button', class: 'select-item', 'aria-current': g.name === current ? 'true' : null,
          dataset: { group: g.name }, onclick: () => openGroup(g.name),
        }, h('span', { class: 'select-name' }, g.name),
        h('span', { class: 'muted' }, `${fmt(g.member_count)} ${g.member_count === 1 ? 'member' : 'members'}${g.is_tenant ? ' · tenant' : ''}`)))))
      : emptyState(filter.value.trim() ? 'No group matches.' : 'No groups yet: create the first one below.'));
  }

  async function openGroup(name) {
    const seq = ++openSeq;
    history.replaceState(null, '', `/mcp-admin/groups/${encodeURIComponent(name)}`);
    drawList();
    let g, grants;
    try {
      [g, grants] = await Promise.all([api.group(name), api.grants(name)]);
    } catch (error) {
      if (seq === openSeq) notifyError(error, `open the group ${name}`);
      return;
    }
    if (seq !== openSeq) return; // another group was opened meanwhile
    const granted = new Map(grants.items.map((x) => [x.server, x]));
    fill(detail,
      h('div', { class: 'panel-head' },
        h('h2', { id: 'group-title', tabindex: '-1' }, g.name),
        h('button', { type: 'button', class: 'danger-outline', id: 'delete-group', onclick: (e) => deleteGroup(g, e.target) }, 'Delete group')),
      h('p', { class: 'muted' }, [g.description || 'No description.', g.is_tenant ? ' · Tenant group' : '', ` · Priority ${g.priority}`].join('')),
      serverEditor(g, granted),
      membersPanel(g));
    detail.hidden = false;
    detail.querySelector('h2').focus();
  }

  // ---- which servers and tools ----
  function serverEditor(g, granted) {
    if (!servers.length) return h('div', {}, h('h3', {}, 'Servers'), emptyState('No servers are configured in Gatehouse yet.'));
    const rows = servers.map((s) => {
      const grant = granted.get(s.id);
      const mode = grant?.tools?.allow ? 'allow' : grant?.tools?.deny ? 'deny' : 'all';
      const listed = new Set(grant?.tools?.allow ?? grant?.tools?.deny ?? []);
      const allowed = h('input', { type: 'checkbox', id: `grant-${s.id}`, dataset: { server: s.id }, checked: Boolean(grant) });
      const radios = ['all', 'allow', 'deny'].map((m) => h('label', { class: 'radio' },
        h('input', { type: 'radio', name: `mode-${s.id}`, value: m, checked: m === mode }),
        m === 'all' ? 'All its tools' : m === 'allow' ? 'Only the tools ticked below' : 'All tools except those ticked below'));
      const toolNames = [...new Set([...(s.tool_names ?? []), ...listed])].sort();
      const tools = toolNames.length
        ? h('div', { class: 'tool-grid' }, toolNames.map((t) => h('label', { class: 'check' },
          h('input', { type: 'checkbox', name: `tool-${s.id}`, value: t, checked: listed.has(t) }), t)))
        : h('p', { class: 'hint' }, 'This server\'s tools are not known yet (it starts on first use). You can still allow the whole server.');
      const toolsBox = h('fieldset', { class: 'tools', hidden: !grant },
        h('legend', {}, `Which tools of ${s.id}`), h('div', { class: 'radios' }, radios), tools);
      allowed.addEventListener('change', () => { toolsBox.hidden = !allowed.checked; });
      const row = h('div', { class: 'server-grant', dataset: { server: s.id } },
        h('label', { class: 'check big', for: allowed.id }, allowed,
          h('span', {}, h('strong', {}, s.id), s.description ? h('span', { class: 'muted' }, ` — ${s.description}`) : null)),
        toolsBox);
      row.read = () => {
        if (!allowed.checked) return null;
        const m = row.querySelector(`input[name="mode-${CSS.escape(`${s.id}`)}"]:checked`)?.value ?? 'all';
        const ticked = [...row.querySelectorAll(`input[name="tool-${CSS.escape(s.id)}"]:checked`)].map((x) => x.value);
        if (m === 'all') return { tools: null };
        return { tools: { [m]: ticked } };
      };
      return row;
    });
    const save = h('button', { type: 'submit', class: 'primary', id: 'save-grants' }, 'Save server access');
    const form = h('form', { class: 'stack', 'aria-labelledby': 'servers-title' },
      h('h3', { id: 'servers-title' }, 'Servers this group may use'),
      h('p', { class: 'hint' }, 'Members can use a server when any of their groups allows it. Changes count from their next request.'),
      rows, h('div', { class: 'actions' }, save));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const changes = [];
      for (const row of rows) {
        const server = row.dataset.server;
        const want = row.read();
        const had = granted.get(server);
        if (want && want.tools && Object.values(want.tools)[0].length === 0 && 'allow' in want.tools) {
          notify(`Tick at least one tool for ${server}, or choose “All its tools”.`, 'error');
          return;
        }
        if (want && (!had || JSON.stringify(had.tools ?? null) !== JSON.stringify(want.tools))) changes.push({ server, put: want.tools });
        if (!want && had) changes.push({ server, remove: true });
      }
      if (!changes.length) { notify('Nothing changed.', 'info'); return; }
      const removed = changes.filter((c) => c.remove).map((c) => c.server);
      if (removed.length) {
        const ok = await confirmAction({
          title: `Take away ${removed.join(', ')}?`,
          message: `Members of ${g.name} will no longer be able to use ${removed.join(', ')} (unless another of their groups allows it).`,
          confirmLabel: 'Take away access',
        });
        if (!ok) return;
      }
      let step = 0;
      try {
        await busy(save, async () => {
          for (; step < changes.length; step++) {
            const c = changes[step];
            if (c.remove) await api.deleteGrant(g.name, c.server); else await api.putGrant(g.name, c.server, c.put);
          }
        }, null);
      } catch (error) {
        // One change at a time: say which one failed and what was saved before it; then show what is saved now
        // (unless the session ended: then the page stays as it is, to sign in and save again).
        const c = changes[step];
        const saved = changes.slice(0, step).map((x) => x.server);
        const reload = error.status !== 401;
        notify(`Could not ${c.remove ? 'take away' : 'save the access to'} ${c.server}: ${error.message}`
          + `${saved.length ? ` Saved before that: ${saved.join(', ')}.` : ''}${reload ? ' The page now shows what is saved.' : ''}`, 'error');
        if (reload) openGroup(g.name);
        return;
      }
      notify(`Saved: ${g.name} may now use ${rows.filter((r) => r.read()).map((r) => r.dataset.server).join(', ') || 'no servers'}.`);
      openGroup(g.name);
    });
    return form;
  }

  // ---- members ----
  function membersPanel(g) {
    const list = h('div', { id: 'group-members' });
    const pagerArea = h('div');
    let page = 1;
    async function loadMembers() {
      try {
        const res = await api.members(g.name, page, MEMBERS_PER_PAGE);
        // The last one on the last page was removed: show the page before.
        if (!res.items.length && page > 1) { page = Math.max(1, Math.ceil(res.total / res.per_page)); loadMembers(); return; }
        fill(list, res.items.length
          ? h('ul', { class: 'plain-list' }, res.items.map((u) => h('li', {},
            h('span', {}, u.name ? `${u.name} (${u.email})` : u.email, u.disabled ? chip('Disabled', 'bad') : null),
            h('button', {
              type: 'button', class: 'danger-outline small', 'aria-label': `Remove ${u.email} from ${g.name}`,
              onclick: async (e) => {
                if (!await confirmAction({ title: `Remove ${u.email}?`, message: `${u.email} will lose what ${g.name} grants, from their next request.`, confirmLabel: 'Remove' })) return;
                if (await busy(e.target, () => api.removeMember(g.name, u.email), 'remove the member')) {
                  notify(`${u.email} was removed from ${g.name}.`);
                  loadMembers(); loadGroups();
                }
              },
            }, 'Remove'))))
          : emptyState('Nobody is in this group yet.'));
        fill(pagerArea, pager({ page: res.page, perPage: res.per_page, total: res.total, label: 'members', onPage: (p) => { page = p; loadMembers(); } }));
      } catch (error) {
        notifyError(error, 'load the members');
      }
    }
    const text = h('textarea', { id: 'group-add-emails', rows: 3, placeholder: 'one or more email addresses' });
    const add = h('button', { type: 'submit', class: 'primary', id: 'group-add-members' }, 'Add to group');
    const form = h('form', { class: 'stack' },
      field('Add people (paste one or more email addresses)', text, { wide: true }), h('div', { class: 'actions' }, add));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const emails = parseEmails(text.value);
      if (!emails.length) { notify('Type or paste at least one email address.', 'error'); text.focus(); return; }
      const res = await busy(add, () => api.addMembers(g.name, emails), `add people to ${g.name}`);
      if (!res) return;
      if (res.invalid.length) notify(`${fmt(res.added.length)} added. Not valid email addresses (fix and add again): ${res.invalid.join(', ')}`, 'error');
      else notify(`${fmt(res.added.length)} added to ${g.name}${res.already.length ? `; already members: ${fmt(res.already.length)}` : ''}.`);
      text.value = res.invalid.join('\n'); // the ones to fix stay
      page = 1;
      loadMembers(); loadGroups();
    });
    loadMembers();
    return h('div', { class: 'stack' }, h('h3', {}, 'Members'), form, list, pagerArea);
  }

  async function deleteGroup(g, button) {
    const ok = await confirmAction({
      title: `Delete the group ${g.name}?`,
      message: `Its ${fmt(g.member_count)} members lose what it grants, and its stored API keys and routes are deleted. People themselves are not deleted. This cannot be undone.`,
      confirmLabel: 'Delete group',
    });
    if (!ok) return;
    if (await busy(button, () => api.deleteGroup(g.name), 'delete the group')) {
      notify(`The group ${g.name} was deleted.`);
      history.replaceState(null, '', '/mcp-admin/groups');
      detail.hidden = true;
      loadGroups();
    }
  }

  // ---- create ----
  const name = h('input', { id: 'new-group-name', type: 'text', autocomplete: 'off', required: true, maxlength: 128, placeholder: 'e.g. Tenant-NewCompany' });
  const desc = h('input', { id: 'new-group-description', type: 'text', autocomplete: 'off' });
  const tenant = h('input', { id: 'new-group-tenant', type: 'checkbox' });
  const priority = h('input', { id: 'new-group-priority', type: 'number', value: '0', step: '1' });
  const nameField = field('Group name', name);
  const descField = field('Description (optional)', desc);
  const priorityField = field('Priority', priority, { hint: 'When someone is in several groups with their own API keys, the highest priority wins.' });
  const create = h('button', { type: 'submit', class: 'primary', id: 'create-group' }, 'Create group');
  const createForm = h('form', { class: 'panel stack', 'aria-labelledby': 'create-title', novalidate: true }, // checked below, messages under each field
    h('h2', { id: 'create-title' }, 'Create a group'),
    nameField, descField,
    h('label', { class: 'check', for: tenant.id }, tenant, 'This group is a tenant (a customer or department with its own API keys)'),
    priorityField,
    h('div', { class: 'actions' }, create));
  createForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const f of [nameField, descField, priorityField]) f.showError('');
    const body = { name: name.value.trim(), description: desc.value.trim(), is_tenant: tenant.checked, priority: Number(priority.value.trim() || '0') };
    if (!body.name) { nameField.showError('Give the group a name.'); name.focus(); return; }
    if (priority.validity.badInput || !Number.isInteger(body.priority) || Math.abs(body.priority) > 1000000) {
      priorityField.showError('The priority must be a whole number from -1,000,000 to 1,000,000.'); priority.focus(); return;
    }
    try {
      await busy(create, () => api.createGroup(body), null);
    } catch (error) {
      // Gatehouse names the field its message is about ("priority must be …").
      const about = error.data?.error?.field ?? /^(description|priority)\b/.exec(error.data?.error?.message ?? '')?.[1];
      const [where, input] = { description: [descField, desc], priority: [priorityField, priority] }[about] ?? [nameField, name];
      where.showError(error.status === 409 ? `A group named ${body.name} already exists: pick it from the list.` : error.message);
      input.focus();
      return;
    }
    notify(`The group ${body.name} was created. Now choose the servers it may use.`);
    name.value = ''; desc.value = ''; tenant.checked = false; priority.value = '0';
    filter.value = body.name; // so the new group shows in the list, wherever it sorts among thousands
    list.page = 1;
    await loadGroups();
    openGroup(body.name);
  });

  fill(root, h('div', { class: 'split' },
    h('div', { class: 'stack' },
      h('section', { class: 'panel', 'aria-labelledby': 'groups-title' },
        h('h2', { id: 'groups-title' }, 'Groups'), field('Filter', filter), listArea, listPager),
      createForm),
    detail));
  detail.hidden = true;
  try {
    [servers] = await Promise.all([api.servers().then((r) => r.items), loadGroups()]);
  } catch (error) {
    notifyError(error, 'load groups and servers');
  }
  const wanted = selectedName();
  if (wanted) openGroup(wanted);
  else fill(detail);
}
