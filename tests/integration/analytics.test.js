// Analytics (docs/operations.md "Analytics"): one row per request in api_analytics, none lost under load
// and across a graceful restart (SIGTERM flushes the queue), rows with their columns (server_id and tool for a
// tools/call), counted in the store itself — SQLite or PostgreSQL, whichever backend this run tests. And the
// report GET /mcp-admin/api/analytics: consistent totals, callers, servers, tools, ordered percentiles.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import {
  TEST_BACKEND, connectClient, createTestDatabase, everythingStdio, rawSession, rpc, startGatehouse,
} from './lib/index.js';
import { withPg } from './lib/store.js';
import { checkpointSqlite, grantServer, makeUser, queryStore, send, waitForAnalyticsFlushed } from './lib/ops.js';

const TOTAL = Number(process.env.GATEHOUSE_ANALYTICS_REQUESTS ?? 100000);
const CONCURRENCY = 48;

/**
 * Sends `n` GET /servers to the gateway over keep-alive connections, `CONCURRENCY` at a time.
 * Every request must be answered 200 (these rows are then counted exactly). Returns {elapsedMs}.
 */
async function load(gh, n) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const headers = { ...gh.authHeaders, 'user-agent': 'ops-load/1.0' };
  let next = 0;
  const bad = [];
  const started = Date.now();
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < n && bad.length < 5) {
        next++;
        const res = await send(`${gh.url}/servers`, { headers, agent, timeoutMs: 30000 });
        if (res.status !== 200) bad.push(`${res.status} ${res.text.slice(0, 200)}`);
      }
    }));
  } finally {
    agent.destroy();
  }
  assert.deepEqual(bad, [], 'every load request is answered 200');
  return { elapsedMs: Date.now() - started };
}

describe(`analytics rows (${TEST_BACKEND})`, () => {
  it(`${TOTAL} requests are ${TOTAL} rows, across a graceful restart in the middle`, { timeout: 300000 }, async (t) => {
    const db = await createTestDatabase({ t });
    const servers = { everything: everythingStdio() };
    const first = await startGatehouse({ t, database: db, servers });
    const half = Math.floor(TOTAL / 2);
    const one = await load(first, half);
    // SIGTERM straight after the last answer: what is still queued must be written before the process exits.
    const exit = await first.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, `the first gateway's exit after SIGTERM\n${first.describe()}`);

    const second = await startGatehouse({ t, database: db, servers });
    assert.equal(second.freshStore, false);
    await grantServer(second, 'MCP-Admin', 'everything');
    const two = await load(second, TOTAL - half);
    // One tools/call through the real SDK client: its row names the server and the tool.
    const client = await connectClient(second.mcpUrl, { t });
    const echoed = await client.callTool({ name: 'everything__echo', arguments: { message: 'counted' } });
    assert.match(JSON.stringify(echoed), /counted/);
    await client.closeQuietly();
    const exit2 = await second.stop();
    assert.deepEqual(exit2, { code: 0, signal: null }, `the second gateway's exit after SIGTERM\n${second.describe()}`);
    t.diagnostic(`${TEST_BACKEND}: ${half} requests in ${one.elapsedMs} ms, ${TOTAL - half} in ${two.elapsedMs} ms ` +
      `(${Math.round((TOTAL / (one.elapsedMs + two.elapsedMs)) * 1000)} req/s with ${CONCURRENCY} keep-alive connections)`);

    const walBytes = checkpointSqlite(db);
    if (walBytes) t.diagnostic(`the stopped gateway left a ${walBytes}-byte WAL file (folded in by the CLI)`);
    const [{ n }] = await queryStore(db, "SELECT COUNT(*) AS n FROM api_analytics WHERE endpoint = '/servers' AND method = 'GET'");
    assert.equal(Number(n), TOTAL, `rows for GET /servers in api_analytics (${TEST_BACKEND})`);
    const [{ ids }] = await queryStore(db, "SELECT COUNT(DISTINCT request_id) AS ids FROM api_analytics WHERE endpoint = '/servers'");
    assert.equal(Number(ids), TOTAL, 'every row has its own request_id');

    const [row] = await queryStore(db, "SELECT * FROM api_analytics WHERE endpoint = '/servers' ORDER BY id DESC LIMIT 1");
    assert.equal(row.user_email, 'admin@localhost');
    assert.equal(row.method, 'GET');
    assert.equal(Number(row.status_code), 200);
    assert.ok(Number(row.response_time_ms) >= 0 && Number(row.response_time_ms) < 30000, `response_time_ms ${row.response_time_ms}`);
    assert.equal(row.client_ip, '127.0.0.1');
    assert.equal(row.user_agent, 'ops-load/1.0');
    assert.match(String(row.request_id), /\S/);
    assert.ok(Number(row.bytes_out) > 0, `bytes_out ${row.bytes_out}`);
    assert.ok(Number(row.timestamp) > 1.7e9, `timestamp ${row.timestamp}`);

    const calls = await queryStore(db, "SELECT * FROM api_analytics WHERE endpoint = '/mcp' AND tool IS NOT NULL AND tool <> ''");
    assert.equal(calls.length, 1, `tools/call rows: ${JSON.stringify(calls)}`);
    assert.equal(calls[0].server_id, 'everything');
    assert.equal(calls[0].tool, 'echo');
    assert.equal(calls[0].method, 'POST');
    assert.equal(Number(calls[0].status_code), 200);
    assert.ok(Number(calls[0].bytes_in) > 0 && Number(calls[0].bytes_out) > 0, JSON.stringify(calls[0]));
    // Health checks (the harness polls /gateway/health) are not user traffic.
    const [{ h }] = await queryStore(db, "SELECT COUNT(*) AS h FROM api_analytics WHERE endpoint IN ('/gateway/health', '/metrics')");
    assert.equal(Number(h), 0);
  });
});

/** Adds `n` rows of the last hour to a stopped gateway's store (SQLite: written with sql.js). */
async function addRows(db, n) {
  const now = Math.floor(Date.now() / 1000);
  const select = (i) => `SELECT ${now} - 3600 + (${i} % 3000), 'u' || (${i} % 50) || '@x', 'POST', '/mcp', 200,
    (${i} * 7919) % 1000, 's' || (${i} % 7), 't' || (${i} % 30)`;
  const columns = 'timestamp, user_email, method, endpoint, status_code, response_time_ms, server_id, tool';
  if (db.backend === 'postgres') {
    await withPg((c) => c.query(`INSERT INTO mcp_proxy.api_analytics (${columns}) ${select('i::bigint')} FROM generate_series(1, ${n}) i`), db.url);  // (bigint: i * 7919 outgrows int4)
    return;
  }
  checkpointSqlite(db);
  const { default: initSqlJs } = await import('sql.js');
  const database = new (await initSqlJs()).Database(fs.readFileSync(db.file));
  try {
    // (the reports find a window's rows through these ranges of ids: migration 5)
    database.exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ${n})
      INSERT INTO api_analytics (${columns}) ${select('i')} FROM g;
      DELETE FROM api_analytics_ranges;
      INSERT INTO api_analytics_ranges SELECT MIN(id), MAX(id), MIN(timestamp), MAX(timestamp) FROM api_analytics;`);
    fs.writeFileSync(db.file, database.export());
  } finally {
    database.close();
  }
}

describe('the analytics report', () => {
  it('one report at a time: a second is answered 503 at once, and the management API is not held meanwhile', async (t) => {
    const db = await createTestDatabase({ t });
    await (await startGatehouse({ t, database: db })).stop();
    const rows = Number(process.env.GATEHOUSE_REPORT_ROWS ?? 300000);
    await addRows(db, rows);
    const gh = await startGatehouse({ t, database: db });
    // Two reports at once (over a few hundred thousand rows each takes a while), and a management call after
    // them: before, the second report waited on the blocking pool for the first, and with both pool threads
    // taken the management call waited for the first report too.
    const finished = [];
    const window = () => `since=${Math.floor(Date.now() / 1000) - 7200}&until=${Math.floor(Date.now() / 1000)}`;
    const report = (name) => gh.api('GET', `/analytics?${window()}`).then((res) => { finished.push(name); return res; });
    const reports = [report('first'), report('second')];
    const users = await gh.api('GET', '/users');
    finished.push('users');
    const [a, b] = await Promise.all(reports);
    const answered = [a, b].sort((x, y) => x.status - y.status);
    assert.deepEqual(answered.map((x) => x.status), [200, 503], `${a.text.slice(0, 200)} | ${b.text.slice(0, 200)}`);
    const [ok, busy] = answered;
    assert.ok(ok.body.requests >= rows, `the report read the rows: ${ok.body.requests}`);
    assert.equal(busy.body.error.code, 'report_busy', busy.text);
    assert.equal(busy.headers.get('retry-after'), '5');
    assert.equal(users.status, 200, users.text);
    // The management call and the refused report came back while the report that runs was still reading.
    const last = finished[finished.length - 1];
    assert.equal(finished.length, 3);
    assert.ok(finished.indexOf('users') < 2, `answered in the order ${finished.join(', ')}`);
    assert.ok(last === (a.status === 200 ? 'first' : 'second'), `answered in the order ${finished.join(', ')}`);
    // Once it is done, the next report runs.
    assert.equal((await gh.api('GET', '/analytics')).status, 200);
  });


  it('GET /mcp-admin/api/analytics: totals, errors, timeline, callers, servers, tools, percentiles', async (t) => {
    const gh = await startGatehouse({ t, servers: { everything: everythingStdio() } });
    const since = Math.floor(Date.now() / 1000) - 5;
    const rita = await makeUser(gh, 'rita@example.com', { groups: ['Callers'] });
    await grantServer(gh, 'Callers', 'everything');
    for (let i = 0; i < 20; i++) assert.equal((await send(`${gh.url}/servers`, { headers: rita.headers })).status, 200);
    for (let i = 0; i < 5; i++) assert.equal((await send(`${gh.url}/no-such-page`, { headers: rita.headers })).status, 404);
    const client = await connectClient(gh.mcpUrl, { headers: rita.headers, t });
    for (let i = 0; i < 3; i++) await client.callTool({ name: 'everything__echo', arguments: { message: `m${i}` } });
    await client.closeQuietly();
    // Calls that reach no server credit none (their rows stay): a server that does not exist, a tool it does
    // not have, and a server the caller may not use (bob has no grants).
    const bob = await makeUser(gh, 'bob@example.com');
    const phantoms = [[rita, 'payroll__export_salaries'], [rita, 'everything__no-such-tool'], [bob, 'everything__echo']];
    for (const [who, name] of phantoms) {
      const session = await rawSession(gh.mcpUrl, { headers: who.headers });
      const res = await session.post(rpc('tools/call', { name, arguments: { message: 'x' } }));
      assert.match(res.json?.error?.message ?? '', /Unknown tool/, `${name}: ${res.text.slice(0, 200)}`);
    }
    const flushed = await waitForAnalyticsFlushed(gh);

    const res = await gh.api('GET', `/analytics?since=${since}&until=${Math.floor(Date.now() / 1000) + 60}&bucket=60&top=50`);
    assert.equal(res.status, 200, res.text);
    const r = res.body;
    for (const k of ['requests', 'errors', 'error_rate', 'latency_ms', 'timeline', 'top_users', 'top_servers', 'top_tools']) {
      assert.ok(k in r, `the report lacks ${k}: ${res.text.slice(0, 500)}`);
    }
    // Everything written so far (the last stats call may not be) is in the window.
    assert.ok(r.requests >= flushed.analytics.written && r.requests <= flushed.analytics.written + 2,
      `requests ${r.requests}, rows written ${flushed.analytics.written}`);
    assert.ok(r.errors >= 5 && r.errors < r.requests, `errors ${r.errors} of ${r.requests}`);
    assert.ok(Math.abs(r.error_rate - r.errors / r.requests) < 0.01, `error_rate ${r.error_rate} vs ${r.errors}/${r.requests}`);
    const sum = r.timeline.reduce((acc, b) => ({ requests: acc.requests + b.requests, errors: acc.errors + b.errors }), { requests: 0, errors: 0 });
    assert.deepEqual(sum, { requests: r.requests, errors: r.errors }, `timeline ${JSON.stringify(r.timeline)}`);
    for (const b of r.timeline) assert.ok(b.start % 60 === 0 && b.start >= since - 60, `bucket start ${b.start}`);
    const { p50, p90, p95, p99 } = r.latency_ms;
    assert.ok(p50 >= 0 && p50 <= p90 && p90 <= p95 && p95 <= p99, `percentiles ${JSON.stringify(r.latency_ms)}`);

    const ritaRow = r.top_users.find((u) => u.user === 'rita@example.com');
    assert.ok(ritaRow, `rita is not among top_users: ${JSON.stringify(r.top_users)}`);
    // 20 + 5 plain requests, and her MCP session's requests (initialize, initialized, 3 calls, …).
    assert.ok(ritaRow.requests >= 25 + 5, `rita's requests: ${JSON.stringify(ritaRow)}`);
    assert.ok(ritaRow.errors >= 5, `rita's errors: ${JSON.stringify(ritaRow)}`);
    const admin = r.top_users.find((u) => u.user === 'admin@localhost');
    assert.ok(admin && admin.requests >= 4, `the admin's setup calls: ${JSON.stringify(r.top_users)}`);
    assert.ok(r.top_users.reduce((n, u) => n + u.requests, 0) <= r.requests);
    const server = r.top_servers.find((s) => s.server === 'everything');
    assert.ok(server && server.requests >= 3, `top_servers: ${JSON.stringify(r.top_servers)}`);
    const tool = r.top_tools.find((x) => x.server === 'everything' && x.tool === 'echo');
    assert.ok(tool, `top_tools: ${JSON.stringify(r.top_tools)}`);
    assert.equal(tool.requests, 3);
    assert.equal(tool.errors, 0);
    assert.deepEqual(r.top_servers.map((x) => x.server), ['everything'], 'only a server that was called');
    assert.deepEqual(r.top_tools.map((x) => x.tool), ['echo'], 'only a tool that was called');

    // A window before any traffic is empty.
    const empty = await gh.api('GET', `/analytics?since=${since - 7200}&until=${since - 3600}`);
    assert.equal(empty.status, 200, empty.text);
    assert.equal(empty.body.requests, 0);
    assert.deepEqual(empty.body.top_users, []);
    // Bad parameters are 400, a non-admin 403.
    assert.equal((await gh.api('GET', `/analytics?since=${since + 100}&until=${since}`)).status, 400);
    assert.equal((await gh.api('GET', '/analytics?bucket=5')).status, 400);
    assert.equal((await gh.api('GET', '/analytics?since=yesterday')).status, 400);
    // A window of more than a year, more than 2,000 buckets, or times that would overflow: 400, not a scan.
    const now = Math.floor(Date.now() / 1000);
    for (const query of [`since=0&until=${now}`, `since=${now - 30 * 86400}&until=${now}&bucket=60`,
      'since=-9223372036854775808&until=9223372036854775807', `since=${now}&until=99999999999999999`]) {
      const res = await gh.api('GET', `/analytics?${query}`);
      assert.equal(res.status, 400, `${query}: ${res.text}`);
    }
    assert.equal((await gh.api('GET', `/analytics?since=${now - 90 * 86400}&until=${now}`)).status, 200, 'the retention\'s 90 days');
    // An `until` of 0 is 1970, not an open end that would skip those limits and read every row.
    for (const query of ['since=0&until=0', 'since=0&until=0&bucket=60']) {
      const res = await gh.api('GET', `/analytics?${query}`);
      assert.equal(res.status, 200, `${query}: ${res.text}`);
      assert.equal(res.body.requests, 0, `${query}: ${res.text.slice(0, 300)}`);
      assert.deepEqual(res.body.timeline, [], query);
    }
    assert.equal((await send(`${gh.url}/mcp-admin/api/analytics`, { headers: rita.headers })).status, 403);
  });
});
