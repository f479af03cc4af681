// Upstream recovery while downstream sessions stay open: a Streamable HTTP upstream that forgets our
// session (the SDK fixture answers 404 "Session not found"; server-everything restarted on the same port
// answers 400 "No valid session ID") gets a new upstream session and the call is resent transparently;
// a stdio upstream that died is started again by the next call.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  EVERYTHING_ENTRY, cmdline, connectClient, delay, descendantPids, everythingStdio, fixtureStdio, getJson,
  killQuietly, mcpError, pidAlive, resultText, startEverythingHttp, startGatehouse, startSdkFixture,
  streamableHttpEntry, waitFor,
} from './lib/index.js';

const RENEWAL_LOG = 'upstream session expired, re-initializing';

function logsMatching(gh, msg, server) {
  return gh.jsonLogs().filter((l) => l.msg === msg && l.server === server);
}

/** tools/call of an echo tool; any failure names the call and shows the gateway's last log lines. */
async function echo(gh, client, name, message) {
  let result;
  try {
    result = await client.callTool({ name, arguments: { message } }, undefined, { timeout: 30000 });
  } catch (error) {
    error.message = `tools/call ${name}(${JSON.stringify(message)}) failed: ${error.message}\n${gh.describe()}`;
    throw error;
  }
  assert.equal(resultText(result), `Echo: ${message}`, `${name}(${message}) → ${JSON.stringify(result)}\n${gh.describe()}`);
}

describe('streamable HTTP session renewal (SDK fixture: 404 "Session not found")', () => {
  let gh;
  let client;
  let fixture;
  const cleanups = [];

  before(async () => {
    fixture = await startSdkFixture({ t: (fn) => cleanups.push(fn) });
    gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { sdk: streamableHttpEntry(fixture.url) } });
    client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  const post = async (path) => {
    const res = await fetch(`http://127.0.0.1:${fixture.port}${path}`, { method: 'POST' });
    assert.equal(res.status, 200, `POST ${path} on the fixture → ${res.status}`);
    return res.json();
  };
  /** The fixture session the gateway uses now (the one with an open standalone GET stream). */
  const gatewaySession = async () => (await fixture.debug()).sessions.find((s) => s.openStandaloneGets > 0);
  const waitGatewaySession = (what) => waitFor(gatewaySession, { timeoutMs: 10000, what });

  it('the upstream forgot the session: the next call opens a new upstream session and succeeds', async () => {
    await echo(gh, client, 'sdk__echo', 'before forget');
    const old = await waitGatewaySession('the gateway\'s standalone GET stream on the fixture');
    const renewalsBefore = logsMatching(gh, RENEWAL_LOG, 'sdk').length;
    const { forgotten } = await post('/forget-sessions');
    assert.deepEqual(forgotten, [old.id], `the fixture had other sessions than the gateway's: ${JSON.stringify(forgotten)}`);

    await echo(gh, client, 'sdk__echo', 'after forget');
    const debug = await fixture.debug();
    assert.ok(debug.unknownSessionRequests.some((r) => r.method === 'POST' && r.sessionId === old.id),
      `the gateway never sent the forgotten session ${old.id} (so no renewal was tested): ${JSON.stringify(debug.unknownSessionRequests)}`);
    assert.equal(debug.sessions.length, 1, `want exactly one new upstream session, got ${JSON.stringify(debug.sessions)}`);
    assert.notEqual(debug.sessions[0].id, old.id);
    const renewals = logsMatching(gh, RENEWAL_LOG, 'sdk').length - renewalsBefore;
    assert.equal(renewals, 1, `want one "${RENEWAL_LOG}" log line for sdk, got ${renewals}\n${gh.describe()}`);
    await echo(gh, client, 'sdk__echo', 'still fine');
  });

  it('a call that arrives while the session is being renewed waits for the new session and succeeds', async () => {
    await echo(gh, client, 'sdk__echo', 'warm');
    await waitGatewaySession('the gateway\'s standalone GET stream on the fixture');
    const sessionlessBefore = (await fixture.debug()).sessionlessRequests.length;
    await post('/forget-sessions');
    await post('/slow-initialize?ms=1500');
    try {
      const first = echo(gh, client, 'sdk__echo', 'triggers the renewal');
      // The second call goes out only once the gateway is inside the renewal (its initialize is unanswered).
      await waitFor(async () => (await fixture.debug()).initializing > 0,
        { timeoutMs: 10000, what: 'the gateway\'s re-initialize to reach the fixture' });
      const second = echo(gh, client, 'sdk__echo', 'sent during the renewal');
      const [a, b] = await Promise.allSettled([first, second]);
      const sessionless = (await fixture.debug()).sessionlessRequests.slice(sessionlessBefore);
      const context = `requests the fixture got without Mcp-Session-Id (other than initialize): ${JSON.stringify(sessionless)}`;
      if (a.status === 'rejected') { a.reason.message += `\n${context}`; throw a.reason; }
      if (b.status === 'rejected') { b.reason.message += `\n${context}`; throw b.reason; }
      assert.deepEqual(sessionless, [], context);
    } finally {
      await post('/slow-initialize?ms=0');
    }
  });

  it('after a renewal the new upstream session gets one standalone GET stream, not two (no 409 Conflict)', async () => {
    await echo(gh, client, 'sdk__echo', 'warm');
    const old = await waitGatewaySession('the gateway\'s standalone GET stream on the fixture');
    await post('/forget-sessions'); // ends that GET stream too: the gateway reconnects it after 500 ms
    await echo(gh, client, 'sdk__echo', 'renew');
    const fresh = await waitGatewaySession('a standalone GET stream on the new session');
    assert.notEqual(fresh.id, old.id);
    // Observe the new session for a while (the old session's GET loop retries 500 ms after its stream ended):
    // the SDK allows one standalone stream per session and answers another one 409 Conflict.
    await delay(2500);
    const now = (await fixture.debug()).sessions.find((s) => s.id === fresh.id);
    const conflicts = now.statuses.filter((s) => s === 'GET 409').length;
    assert.equal(conflicts, 0,
      `the gateway made ${now.standaloneGets} standalone GET requests on the renewed upstream session ${fresh.id}, `
      + `${conflicts} answered 409 Conflict ("Only one SSE stream is allowed per session"); HTTP statuses on it: ${JSON.stringify(now.statuses)}`);
    assert.equal(now.standaloneGets, 1, `standalone GET requests on the renewed session: ${now.standaloneGets}`);
  });
});

describe('streamable HTTP: maxConnections is for calls', () => {
  it('with maxConnections 1 the standalone GET stream takes no call\'s connection: calls answer at once', async (t) => {
    const fixture = await startSdkFixture({ t });
    const gh = await startGatehouse({ t, servers: { sdk: streamableHttpEntry(fixture.url, { maxConnections: 1, timeoutMs: 8000 }) } });
    const client = await connectClient(gh.mcpUrl, { t });
    await echo(gh, client, 'sdk__echo', 'first');
    await waitFor(async () => (await fixture.debug()).sessions.some((s) => s.openStandaloneGets > 0),
      { timeoutMs: 10000, what: 'the gateway\'s standalone GET stream on the fixture' });
    for (let i = 0; i < 3; i += 1) {
      const started = Date.now();
      await echo(gh, client, 'sdk__echo', `call ${i}`);
      assert.ok(Date.now() - started < 4000, `call ${i} took ${Date.now() - started} ms`);
    }
  });
});

describe('streamable HTTP session renewal (server-everything restarted on the same port: 400 "No valid session ID")', () => {
  /** server-everything over streamable HTTP, a gateway in front, a client on /mcp and one on /mcp/evhttp. */
  async function setup(t) {
    const state = { http: await startEverythingHttp('streamableHttp') };
    t.after(() => state.http.stop()); // whichever process is current at the end
    state.gh = await startGatehouse({ t, servers: { evhttp: streamableHttpEntry(state.http.url) } });
    state.client = await connectClient(state.gh.mcpUrl, { t });
    state.scoped = await connectClient(`${state.gh.mcpUrl}/evhttp`, { t });
    /** Kills server-everything and starts a new one on the same port (it knows no sessions). */
    state.restart = async () => {
      const old = state.http;
      await old.stop();
      assert.equal(pidAlive(old.proc.pid), false, 'the old server-everything process is still alive');
      state.http = await startEverythingHttp('streamableHttp', { port: old.port });
      assert.equal(state.http.url, old.url);
      // The new process has never seen the gateway's session: it answers 400 "No valid session ID".
      const probe = await fetch(state.http.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': '00000000-0000-4000-8000-000000000000',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
      });
      const text = await probe.text();
      assert.equal(probe.status, 400, `restarted upstream answered an unknown session with ${probe.status} ${text}`);
      assert.match(text, /No valid session ID/, text);
      return state.http;
    };
    return state;
  }

  it('the next tools/call succeeds on the downstream sessions that stayed open', async (t) => {
    const { gh, client, scoped, restart } = await setup(t);
    await echo(gh, client, 'evhttp__echo', 'before restart');
    await echo(gh, scoped, 'echo', 'before restart (scoped)');

    const fresh = await restart();
    await echo(gh, client, 'evhttp__echo', 'after restart');
    await echo(gh, scoped, 'echo', 'after restart (scoped)');

    const renewals = logsMatching(gh, RENEWAL_LOG, 'evhttp');
    assert.equal(renewals.length, 1, `want one "${RENEWAL_LOG}" log line for evhttp, got ${renewals.length}\n${gh.describe()}`);
    assert.ok(fresh.logs.some((l) => /Session initialized with ID/.test(l)),
      `the restarted upstream never saw a new initialize:\n${fresh.logs.join('\n')}`);
    const health = await getJson(`${gh.url}/gateway/health`);
    assert.equal(health.body.upstreams?.evhttp?.state, 'ready', JSON.stringify(health.body));
  });

  it('with several idle keep-alive connections in the gateway\'s pool: concurrent calls all succeed through one re-initialization', async (t) => {
    const { gh, client, scoped, restart } = await setup(t);
    // Concurrent calls leave several idle keep-alive connections to the upstream in the gateway's pool.
    await Promise.all(['w1', 'w2', 'w3', 'w4'].map((label) => echo(gh, client, 'evhttp__echo', `warm ${label}`)));

    const fresh = await restart();
    await Promise.all([
      ...['c1', 'c2', 'c3', 'c4', 'c5'].map((label) => echo(gh, client, 'evhttp__echo', `concurrent ${label}`)),
      echo(gh, scoped, 'echo', 'concurrent scoped'),
    ]);
    const sum = await client.callTool({ name: 'evhttp__get-sum', arguments: { a: 19, b: 23 } });
    assert.equal(resultText(sum), 'The sum of 19 and 23 is 42.');

    const renewals = logsMatching(gh, RENEWAL_LOG, 'evhttp').length;
    assert.equal(renewals, 1, `six concurrent calls after the restart caused ${renewals} re-initializations (want 1)\n${gh.describe()}`);
    const inits = fresh.logs.filter((l) => /Session initialized with ID/.test(l));
    assert.equal(inits.length, 1, `the restarted upstream saw ${inits.length} sessions initialized (want 1):\n${fresh.logs.join('\n')}`);
  });
});

describe('stdio restart', () => {
  let gh;
  let client;
  const cleanups = [];

  before(async () => {
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      servers: { everything: everythingStdio(), crashy: fixtureStdio('crash.js') },
    });
    client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  const stdioPids = (marker) => descendantPids(gh.pid).filter((pid) => cmdline(pid).includes(marker));

  it('an upstream that crashed mid-call is started again by the next call, which succeeds', async () => {
    await echo(gh, client, 'crashy__echo', 'alive');
    const [firstPid] = stdioPids('crash.js');
    assert.ok(firstPid, `no crash.js process under the gateway (pid ${gh.pid})`);

    const crash = await mcpError(() => client.callTool({ name: 'crashy__crash', arguments: {} }, undefined, { timeout: 20000 }));
    assert.equal(crash.code, -32603, crash.message);
    assert.match(crash.message, /crashy/, crash.message);

    // Straight away: the restart waits out the short backoff (250 ms after a crash of a good process).
    const started = Date.now();
    await echo(gh, client, 'crashy__echo', 'restarted');
    const took = Date.now() - started;
    assert.ok(took < 10000, `the call after the crash took ${took} ms`);
    const [secondPid] = stdioPids('crash.js');
    assert.ok(secondPid && secondPid !== firstPid, `crash.js was not started again: pid before ${firstPid}, now ${secondPid}`);
    assert.equal(pidAlive(firstPid), false, `the crashed process ${firstPid} is still alive`);
  });

  it('a stdio server killed from outside between calls: the next call starts a new process and succeeds', async () => {
    await echo(gh, client, 'everything__echo', 'before kill');
    const pids = stdioPids(EVERYTHING_ENTRY);
    assert.equal(pids.length, 1, `want exactly one server-everything stdio process, got ${JSON.stringify(pids)}`);
    const failedBefore = logsMatching(gh, 'upstream failed', 'everything').length;
    killQuietly(pids[0], 'SIGKILL');

    // Wait until the gateway saw the exit, so the next call is not racing the crash.
    await waitFor(() => logsMatching(gh, 'upstream failed', 'everything').length > failedBefore,
      { timeoutMs: 10000, what: 'an "upstream failed" log line for everything after SIGKILL' });
    const health = await getJson(`${gh.url}/gateway/health`);
    assert.equal(health.body.upstreams?.everything?.state, 'backoff', JSON.stringify(health.body));

    await echo(gh, client, 'everything__echo', 'after kill');
    const now = stdioPids(EVERYTHING_ENTRY);
    assert.equal(now.length, 1, `want one new server-everything process, got ${JSON.stringify(now)}`);
    assert.notEqual(now[0], pids[0]);
    const ready = await getJson(`${gh.url}/gateway/health`);
    assert.equal(ready.body.upstreams?.everything?.state, 'ready', JSON.stringify(ready.body));
  });
});
