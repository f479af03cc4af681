// Servers: each upstream's state, tools, calls, errors and mean latency; refreshes every 10 s.
import { api } from '../api.js';
import { chip, emptyState, fill, fmt, h, notifyError } from '../ui.js';

const STATE_WORDS = {
  ready: ['Working', 'good'], idle: ['Idle (starts on first use)', 'info'], connecting: ['Starting', 'info'],
  starting: ['Starting', 'info'], failed: ['Failing', 'bad'], backoff: ['Failing, retrying', 'bad'],
  disabled: ['Turned off', 'muted'], closed: ['Stopped', 'muted'],
};

export async function render(root) {
  const area = h('div', { id: 'servers-area' });
  const stamp = h('p', { class: 'muted', 'aria-live': 'off' });
  const refresh = h('button', { type: 'button', class: 'secondary small', onclick: () => load() }, 'Refresh');
  fill(root, h('div', { class: 'toolbar' }, stamp, refresh), area);

  async function load() {
    let items;
    try { items = (await api.servers()).items; } catch (error) { notifyError(error, 'load the servers'); return; }
    stamp.textContent = `Updated ${new Date().toLocaleTimeString('en-GB')}`;
    if (!items.length) { fill(area, emptyState('No servers are configured. Add them to the servers file (MCP_SERVERS_FILE) and reload Gatehouse.')); return; }
    fill(area, h('table', { class: 'data', id: 'servers-table' },
      h('caption', { class: 'visually-hidden' }, 'Servers'),
      h('thead', {}, h('tr', {}, ['Server', 'State', 'Tools', 'Calls', 'Errors', 'Average time', 'Latest problem'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, items.map((s) => {
        const [word, kind] = STATE_WORDS[s.state] ?? [s.state, ''];
        const errorRate = s.calls ? (100 * s.errors) / s.calls : 0;
        return h('tr', { dataset: { server: s.id } },
          h('th', { scope: 'row' }, h('div', { class: 'person' }, h('strong', {}, s.id),
            h('span', { class: 'muted' }, [s.description, s.transport].filter(Boolean).join(' · ')))),
          h('td', {}, chip(word, kind), s.tenant_connections ? h('div', { class: 'muted' }, `${fmt(s.tenant_connections)} tenant connections`) : null),
          h('td', {}, (s.tool_names ?? []).length
            ? h('details', {}, h('summary', {}, `${fmt(s.tool_names.length)} tools`), h('ul', { class: 'tool-names' }, s.tool_names.map((t) => h('li', {}, h('code', {}, t)))))
            : h('span', { class: 'muted' }, s.tools === null ? 'Not known yet' : '0')),
          h('td', { class: 'num' }, fmt(s.calls)),
          h('td', { class: 'num' }, fmt(s.errors), s.calls ? h('span', { class: errorRate > 5 ? 'bad-text' : 'muted' }, ` (${errorRate.toFixed(1)} %)`) : null),
          h('td', { class: 'num' }, s.calls ? `${(s.avg_us / 1000).toFixed(1)} ms` : '—'),
          h('td', {}, s.last_error ? h('span', { class: 'bad-text' }, s.last_error) : h('span', { class: 'muted' }, 'None')));
      }))));
  }
  await load();
  const timer = setInterval(() => { if (document.visibilityState === 'visible') load(); }, 10000);
  return () => clearInterval(timer);
}
