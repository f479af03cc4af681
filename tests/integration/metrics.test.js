// /metrics (docs/operations.md): Prometheus text format that a strict parser accepts (written here: HELP/TYPE,
// names, labels and escapes, numbers, cumulative histogram buckets ending in +Inf == _count, every sample's
// family declared), no authentication, no user identities, and the documented families after real traffic:
// requests by route and status, an upstream call by server/tool/outcome, a rate-limited count, auth refusals.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  MCP_HEADERS, connectClient, everythingStdio, fixtureStdio, rawRequest, rawSession, rpc, startGatehouse, waitFor, withAuth,
} from './lib/index.js';
import { burst, grantServer, makeUser, parsePrometheus, send } from './lib/ops.js';

const HISTOGRAMS = ['gatehouse_http_request_duration_seconds', 'gatehouse_upstream_call_duration_seconds'];
const COUNTERS = [
  'gatehouse_rate_limited_total', 'gatehouse_auth_refused_total', 'gatehouse_analytics_dropped_total',
  'gatehouse_analytics_written_total', 'gatehouse_analytics_failed_batches_total',
  'gatehouse_analytics_catch_up_batches_total', 'gatehouse_analytics_checkpoints_total', 'gatehouse_rate_limit_fallbacks_total',
  'gatehouse_http_connections_refused_total', 'gatehouse_upstream_answers_refused_total', 'gatehouse_sessions_resumed_total',
];
const GAUGES = [
  'gatehouse_sessions', 'gatehouse_upstream_processes', 'gatehouse_upstream_connections', 'gatehouse_users',
  'gatehouse_http_connections', 'gatehouse_analytics_queue', 'gatehouse_rate_limit_keys', 'gatehouse_upstream_answer_bytes',
];

describe('the strict Prometheus parser (self-check)', () => {
  it('accepts a well-formed exposition and refuses broken ones', () => {
    const good = [
      '# HELP x_seconds A histogram.', '# TYPE x_seconds histogram',
      'x_seconds_bucket{a="q\\"\\\\\\n",le="0.1"} 1', 'x_seconds_bucket{a="q\\"\\\\\\n",le="+Inf"} 2',
      'x_seconds_sum{a="q\\"\\\\\\n"} 0.5', 'x_seconds_count{a="q\\"\\\\\\n"} 2',
      '# TYPE c_total counter', 'c_total 3', '# TYPE g gauge', 'g -1.5e-3', '',
    ].join('\n');
    const parsed = parsePrometheus(good);
    assert.equal(parsed.value('x_seconds_count', { a: 'q"\\\n' }), 2);
    const broken = {
      'no TYPE': 'y 1\n',
      'bad escape': '# TYPE g gauge\ng{a="\\t"} 1\n',
      'not cumulative': '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      'no +Inf': '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
      '+Inf != count': '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
      'bad value': '# TYPE g gauge\ng 1,5\n',
      'bad label name': '# TYPE g gauge\ng{1a="x"} 1\n',
      'split family': '# TYPE g gauge\ng{a="1"} 1\n# TYPE c counter\nc 1\ng{a="2"} 1\n',
      'duplicate series': '# TYPE g gauge\ng 1\ng 2\n',
      'no final newline': '# TYPE g gauge\ng 1',
      'two TYPEs': '# TYPE g gauge\n# TYPE g counter\ng 1\n',
    };
    for (const [what, text] of Object.entries(broken)) assert.throws(() => parsePrometheus(text), undefined, what);
  });
});

describe('/metrics', () => {
  it('parses strictly and carries the documented families after traffic', async (t) => {
    const gh = await startGatehouse({
      t,
      servers: { everything: everythingStdio() },
      env: { RATE_LIMIT_PER_MINUTE: '1000', RATE_LIMIT_PER_IP: '5', RATE_LIMIT_GROUPS: 'MCP-Admin=1000000' },
    });
    const user = await makeUser(gh, 'metrics-user@example.com', { groups: ['Metered'] });
    await grantServer(gh, 'Metered', 'everything');
    // Traffic: /servers, an unknown path, an MCP session with a real tools/call, a tool error, a bad key (401),
    // and anonymous requests over the per-IP limit (429).
    for (let i = 0; i < 3; i++) assert.equal((await send(`${gh.url}/servers`, { headers: user.headers })).status, 200);
    assert.equal((await send(`${gh.url}/nowhere`, { headers: user.headers })).status, 404);
    const client = await connectClient(gh.mcpUrl, { headers: user.headers, t });
    await client.callTool({ name: 'everything__echo', arguments: { message: 'measured' } });
    const invalid = await client.callTool({ name: 'everything__echo', arguments: {} }); // a bad argument
    assert.equal(invalid.isError, true, JSON.stringify(invalid));
    assert.equal((await send(`${gh.url}/servers`, { headers: { authorization: 'Bearer gh_wrong' } })).status, 401);
    const anon = await burst(10, () => ({ url: `${gh.url}/servers` }));
    assert.ok((anon.byStatus[429] ?? 0) >= 1, JSON.stringify(anon.byStatus));

    const res = await send(`${gh.url}/metrics`); // no credentials at all
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    let m;
    try {
      m = parsePrometheus(res.text);
    } catch (error) {
      error.message += `\n--- /metrics ---\n${res.text}`;
      throw error;
    }
    for (const name of HISTOGRAMS) assert.equal(m.families.get(name)?.type, 'histogram', `${name} TYPE`);
    for (const name of COUNTERS) assert.equal(m.families.get(name)?.type, 'counter', `${name} TYPE`);
    for (const name of GAUGES) assert.equal(m.families.get(name)?.type, 'gauge', `${name} TYPE`);
    for (const name of [...HISTOGRAMS, ...COUNTERS, ...GAUGES]) assert.ok(m.families.get(name).help, `${name} HELP`);
    // Without Redis there is no Redis to be up.
    assert.equal(m.families.get('gatehouse_redis_up'), undefined);

    const req = (route, status) => m.value('gatehouse_http_request_duration_seconds_count', { route, status: String(status) });
    assert.ok(req('servers', 200) >= 3, `servers/200: ${req('servers', 200)}`);
    assert.ok(req('servers', 401) >= 1, 'servers/401');
    assert.ok(req('servers', 429) >= 1, 'servers/429');
    assert.ok(req('not_found', 404) >= 1, 'not_found/404');
    assert.ok(req('mcp', 200) >= 2, 'mcp/200');
    assert.ok(req('admin_api', 201) >= 1, 'admin_api/201');
    // Every route label is one of the documented routes.
    const routes = new Set(m.families.get('gatehouse_http_request_duration_seconds').samples.map((s) => s.labels.route));
    const known = ['mcp', 'mcp_server', 'servers', 'admin_api', 'auth', 'stats', 'health', 'metrics', 'not_found'];
    for (const route of routes) assert.ok(known.includes(route), `undocumented route label ${route}`);

    const ok = m.value('gatehouse_upstream_call_duration_seconds_count', { server: 'everything', tool: 'echo', outcome: 'ok' });
    assert.ok(ok >= 1, `upstream echo ok: ${ok}\n${res.text.split('\n').filter((l) => l.includes('upstream_call')).join('\n')}`);
    const toolError = m.value('gatehouse_upstream_call_duration_seconds_count', { server: 'everything', tool: 'echo', outcome: 'tool_error' });
    assert.ok(toolError >= 1, `echo without its argument answers isError: outcome tool_error expected, got ${toolError}`);
    const outcomes = new Set(m.families.get('gatehouse_upstream_call_duration_seconds').samples.map((s) => s.labels.outcome));
    for (const o of outcomes) assert.ok(['ok', 'error', 'tool_error', 'timeout', 'cancelled'].includes(o), `outcome ${o}`);
    assert.ok(m.value('gatehouse_rate_limited_total', { scope: 'ip' }) >= 1);
    assert.equal(m.value('gatehouse_rate_limited_total', { scope: 'user' }), 0);
    assert.ok(m.value('gatehouse_auth_refused_total', { status: '401' }) >= 1);
    assert.ok(m.value('gatehouse_sessions') >= 1);
    assert.ok(m.value('gatehouse_http_connections') >= 1);  // the one this request came on
    assert.equal(m.value('gatehouse_http_connections_refused_total'), 0);
    assert.ok(m.value('gatehouse_users') >= 2);
    assert.ok(m.value('gatehouse_upstream_processes') >= 1);

    // No identities, no secrets.
    for (const secret of [user.email, 'admin@localhost', user.key, gh.adminKey]) {
      assert.ok(!res.text.includes(secret), `/metrics contains ${secret.slice(0, 12)}…`);
    }

    // promtool, when installed, agrees (Debian's prometheus package is not a test dependency).
    const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (probe.error) {
      t.diagnostic('promtool is not installed: only the test\'s own parser checked the exposition');
    } else {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: res.text, encoding: 'utf8', timeout: 15000 });
      assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
    }
  });

  it('a call the client cancels or leaves is "cancelled" (not a timeout, not an error), the request 499; a refused Host keeps its route', async (t) => {
    const gh = await startGatehouse({ t, servers: { hang: fixtureStdio('hang.js', { timeoutMs: 60000 }) } });
    await grantServer(gh, 'MCP-Admin', 'hang');
    const s = await rawSession(gh.mcpUrl);
    const hangCalls = async () => {
      const res = await s.request('tools/call', { name: 'hang__report', arguments: {} });
      return JSON.parse(res.json.result.content[0].text).hangCalls;
    };
    const arrived = (tag) => waitFor(async () => (await hangCalls()).some((c) => c.tag === tag),
      { timeoutMs: 10000, what: `the hang call ${tag} to reach the upstream` });
    // notifications/cancelled: the call's POST ends with no answer in it.
    const call = s.post(rpc('tools/call', { name: 'hang__hang', arguments: { tag: 'cancelled' } }, 'cancel-me'));
    await arrived('cancelled');
    const note = await s.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'cancel-me' } });
    assert.equal(note.status, 202, note.text);
    assert.equal((await call).json, undefined, 'a cancelled call gets no answer');
    // A client that hangs up mid-call: nothing is sent, and no status was.
    const controller = new AbortController();
    const dropped = fetch(gh.mcpUrl, {
      method: 'POST', headers: withAuth(gh.url, { ...s.headers }), signal: controller.signal,
      body: JSON.stringify(rpc('tools/call', { name: 'hang__hang', arguments: { tag: 'dropped' } })),
    });
    dropped.catch(() => {});
    await arrived('dropped');
    controller.abort();
    // A Host the gateway does not serve: refused before anything else, counted under the route it was for.
    const refused = await rawRequest(gh.mcpUrl, { headers: { ...MCP_HEADERS, host: 'evil.example' }, body: rpc('ping') });
    assert.equal(refused.status, 403, refused.text);

    const series = (m, name, labels) => m.families.get(name.replace(/_count$/, '')).samples.filter((x) => x.name === name &&
      Object.entries(labels).every(([k, v]) => x.labels[k] === v));
    let m;
    await waitFor(async () => {
      m = parsePrometheus((await send(`${gh.url}/metrics`)).text);
      return series(m, 'gatehouse_upstream_call_duration_seconds_count', { server: 'hang', tool: 'hang' })
        .reduce((n, x) => n + x.value, 0) === 2;
    }, { timeoutMs: 10000, what: 'both hang calls to end' });
    const calls = series(m, 'gatehouse_upstream_call_duration_seconds_count', { server: 'hang', tool: 'hang' });
    assert.deepEqual(calls.map((x) => [x.labels.outcome, x.value]), [['cancelled', 2]]);
    const stats = await (await gh.fetch('/gateway/stats')).json();
    const hang = stats.upstreams.find((u) => u.id === 'hang');
    assert.equal(hang.errors, 0, `a cancelled call is no error of the server's: ${JSON.stringify(hang)}`);
    const requests = (labels) => series(m, 'gatehouse_http_request_duration_seconds_count', labels);
    await waitFor(async () => {
      m = parsePrometheus((await send(`${gh.url}/metrics`)).text);
      return requests({ route: 'mcp', status: '499' }).length > 0;
    }, { timeoutMs: 10000, what: 'the dropped request to be counted' }).catch((error) => {
      error.message += `\n${JSON.stringify(m.families.get('gatehouse_http_request_duration_seconds').samples.filter((x) => x.name.endsWith('_count')))}`;
      throw error;
    });
    assert.equal(m.value('gatehouse_http_request_duration_seconds_count', { route: 'mcp', status: '499' }), 1);
    assert.deepEqual(requests({ status: '0' }), [], 'no status 0');
    assert.equal(m.value('gatehouse_http_request_duration_seconds_count', { route: 'mcp', status: '403' }), 1);
    assert.deepEqual(requests({ route: 'not_found' }), [], 'the refused Host counted as not_found');
  });

  it('a caller\'s words do not become labels: vendor methods are "other", and the series stay bounded', async (t) => {
    const gh = await startGatehouse({ t, servers: { everything: everythingStdio() } });
    const user = await makeUser(gh, 'labels@example.com', { groups: ['Labelled'] });
    await grantServer(gh, 'Labelled', 'everything');
    const s = await rawSession(`${gh.mcpUrl}/everything`, { headers: user.headers, auth: false });
    const before = (await send(`${gh.url}/metrics`)).text.length;
    for (let i = 0; i < 40; i++) {
      const res = await s.request(`vendor/m${i}_${'A'.repeat(20000)}`, {});
      assert.equal(res.json?.error?.code, -32601, res.text.slice(0, 200));  // the server's own "method not found"
    }
    const res = await send(`${gh.url}/metrics`);
    const m = parsePrometheus(res.text);
    assert.ok(res.text.length - before < 20000, `/metrics grew by ${res.text.length - before} bytes`);
    assert.ok(!res.text.includes('AAAA'), 'a method name became a label');
    assert.equal(m.value('gatehouse_upstream_call_duration_seconds_count', { server: 'everything', tool: 'other', outcome: 'error' }), 40);
  });
});
