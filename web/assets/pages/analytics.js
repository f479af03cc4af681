// Analytics: requests over time, top users / servers / tools, error rate, latency percentiles.
// Charts come from chart.js, installed by npm in web/ and served by Gatehouse at /mcp-admin/vendor/.
import { api } from '../api.js';
import { emptyState, fill, fmt, h, notifyError } from '../ui.js';

let chartLoading;
function loadChartJs() {
  if (window.Chart) return Promise.resolve(window.Chart);
  chartLoading ??= new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = '/mcp-admin/vendor/chart.umd.js';
    s.onload = () => (window.Chart ? resolve(window.Chart) : reject(new Error('chart.js did not load')));
    s.onerror = () => { chartLoading = null; reject(new Error('the chart library is missing: run `npm ci` in web/ on the Gatehouse machine')); };
    document.head.append(s);
  });
  return chartLoading;
}

const RANGES = [
  { id: '1h', label: 'Last hour', seconds: 3600, bucket: 60 },
  { id: '24h', label: 'Last 24 hours', seconds: 86400, bucket: 1800 },
  { id: '7d', label: 'Last 7 days', seconds: 7 * 86400, bucket: 3 * 3600 },
  { id: '30d', label: 'Last 30 days', seconds: 30 * 86400, bucket: 86400 },
];
const BLUE = '#2f5fb3';
const RED = '#c0392b';

export async function render(root) {
  const charts = [];
  const range = h('select', { id: 'analytics-range' }, RANGES.map((r) => h('option', { value: r.id, selected: r.id === '24h' }, r.label)));
  const summary = h('div', { class: 'stats', id: 'analytics-summary' });
  const grid = h('div', { class: 'chart-grid' });
  range.addEventListener('change', () => load());
  fill(root,
    h('div', { class: 'toolbar' }, h('label', { for: range.id }, 'Period'), range,
      h('button', { type: 'button', class: 'secondary small', onclick: () => load() }, 'Refresh')),
    summary, grid);

  function destroy() { while (charts.length) charts.pop().destroy(); }

  function card(title, id, description) {
    const canvas = h('canvas', { id, role: 'img', 'aria-label': description });
    const table = h('div', { class: 'visually-hidden' });
    const el = h('figure', { class: 'panel chart-card' }, h('figcaption', {}, h('h2', {}, title)), h('div', { class: 'chart-box' }, canvas), table);
    return { el, canvas, table };
  }

  function barChart(Chart, target, labels, values, label, color = BLUE, empty = 'Nothing in this period.') {
    if (!labels.length) { fill(target.el.querySelector('.chart-box'), emptyState(empty)); return; }
    charts.push(new Chart(target.canvas, {
      type: 'bar',
      data: { labels, datasets: [{ label, data: values, backgroundColor: color }] },
      options: { indexAxis: 'y', responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: label === 'Milliseconds' ? undefined : 0 } } } },
    }));
    fill(target.table, h('table', {}, h('caption', {}, label), labels.map((l, i) => h('tr', {}, h('th', {}, l), h('td', {}, fmt(values[i]))))));
  }

  async function load() {
    const r = RANGES.find((x) => x.id === range.value) ?? RANGES[1];
    const until = Math.floor(Date.now() / 1000);
    let data;
    let Chart;
    try {
      [data, Chart] = await Promise.all([api.analytics({ since: until - r.seconds, until, bucket: r.bucket, top: 10 }), loadChartJs()]);
    } catch (error) {
      notifyError(error, 'load the analytics');
      return;
    }
    destroy();
    const stat = (label, value, note) => h('div', { class: 'stat' }, h('span', { class: 'stat-label' }, label), h('strong', { class: 'stat-value' }, value), note ? h('span', { class: 'muted' }, note) : null);
    fill(summary,
      stat('Requests', fmt(data.requests)),
      stat('Failed', fmt(data.errors), 'status 400 or above'),
      stat('Error rate', `${(data.error_rate * 100).toFixed(1)} %`),
      stat('Typical time (p50)', `${fmt(data.latency_ms.p50)} ms`),
      stat('Slowest 5 % (p95)', `${fmt(data.latency_ms.p95)} ms`));
    if (!data.requests) {
      fill(grid, emptyState('No requests in this period yet. Charts appear once people use Gatehouse.'));
      return;
    }
    const timeline = card('Requests over time', 'chart-timeline', 'Requests and failed requests over time');
    const latency = card('Response time', 'chart-latency', 'Response time percentiles in milliseconds');
    const users = card('Top users', 'chart-users', 'Users with the most requests');
    const servers = card('Top servers', 'chart-servers', 'Servers with the most requests');
    const tools = card('Top tools', 'chart-tools', 'Tools called most often');
    const errors = card('Error rate by server', 'chart-errors', 'Share of failed requests per server');
    timeline.el.classList.add('wide');
    fill(grid, timeline.el, latency.el, errors.el, users.el, servers.el, tools.el);
    const fmtTime = (t) => new Date(t * 1000).toLocaleString('en-GB', r.seconds > 86400 ? { month: 'short', day: 'numeric', hour: '2-digit' } : { hour: '2-digit', minute: '2-digit' });
    // Every bucket of the period, also the quiet ones (the report lists only buckets with requests).
    const step = data.bucket_s || r.bucket;
    const byStart = new Map(data.timeline.map((b) => [b.start, b]));
    const buckets = [];
    for (let t = Math.floor(data.since / step) * step; t <= data.until && buckets.length < 2000; t += step) {
      buckets.push(byStart.get(t) ?? { start: t, requests: 0, errors: 0 });
    }
    charts.push(new Chart(timeline.canvas, {
      type: 'line',
      data: {
        labels: buckets.map((b) => fmtTime(b.start)),
        datasets: [
          { label: 'Requests', data: buckets.map((b) => b.requests), borderColor: BLUE, backgroundColor: 'rgba(47,95,179,0.15)', fill: true, tension: 0.2, pointRadius: 2 },
          { label: 'Failed', data: buckets.map((b) => b.errors), borderColor: RED, backgroundColor: RED, tension: 0.2, pointRadius: 2 },
        ],
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, interaction: { mode: 'index', intersect: false }, scales: { y: { beginAtZero: true } } },
    }));
    const p = data.latency_ms;
    barChart(Chart, latency, ['p50 (typical)', 'p90', 'p95', 'p99 (slowest 1 %)'], [p.p50, p.p90, p.p95, p.p99], 'Milliseconds');
    const noServers = 'No calls to servers in this period.';
    barChart(Chart, errors, data.top_servers.map((s) => s.server || '(gateway)'),
      data.top_servers.map((s) => (s.requests ? Math.round((1000 * s.errors) / s.requests) / 10 : 0)), 'Failed, %', RED, noServers);
    barChart(Chart, users, data.top_users.map((u) => u.user || '(anonymous)'), data.top_users.map((u) => u.requests), 'Requests', BLUE, 'No signed-in users in this period.');
    barChart(Chart, servers, data.top_servers.map((s) => s.server || '(gateway)'), data.top_servers.map((s) => s.requests), 'Requests', BLUE, noServers);
    barChart(Chart, tools, data.top_tools.map((t) => `${t.server} · ${t.tool}`), data.top_tools.map((t) => t.requests), 'Calls', BLUE, 'No tool calls in this period.');
  }

  await load();
  return destroy;
}
