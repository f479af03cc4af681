// Sessions across instances: a session's id carries what any instance on the same store needs to serve it
// (SESSION_MAX_AGE_S), so a client behind a load balancer that spreads its requests, or a gateway restarted
// under it, keeps its session; a session its client ended stays ended everywhere.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  connectClient, everythingStdio, listAll, rawRequest, rawSession, resultText, rpc, startGatehouse, waitFor, withAuth,
} from './lib/index.js';
import { makeUser } from './lib/ops.js';
import { withPg } from './lib/store.js';

const servers = { everything: everythingStdio() };

// An SDK client whose requests go to each gateway in turn, as through a round-robin load balancer.
async function roundRobinClient(gateways, { capabilities = {}, sessionId } = {}) {
  let next = 0;
  const served = gateways.map(() => 0);
  const fetchRoundRobin = (url, init) => {
    const i = next++ % gateways.length;
    served[i] += 1;
    const u = new URL(url);
    u.port = String(gateways[i].port);
    return fetch(u, init);
  };
  const headers = withAuth(gateways[0].mcpUrl, {});
  const transport = new StreamableHTTPClientTransport(new URL(gateways[0].mcpUrl), {
    requestInit: { headers }, fetch: fetchRoundRobin, sessionId,
  });
  const client = new Client({ name: 'round-robin', version: '1.0.0' }, { capabilities });
  await client.connect(transport);
  return { client, transport, served };
}

// Renames the store's record of ended sessions (away) and back, in either backend: its writes and reads fail meanwhile.
async function moveSessionEnds(gh, away) {
  const [from, to] = away ? ['mcp_session_ends', 'mcp_session_ends_away'] : ['mcp_session_ends_away', 'mcp_session_ends'];
  if (gh.database.backend === 'sqlite') {
    // The instances write to the file meanwhile (analytics, audit): wait for the write lock as they do.
    execFileSync('sqlite3', ['-cmd', '.timeout 10000', gh.database.file, `ALTER TABLE ${from} RENAME TO ${to}`]);
  } else {
    await withPg((c) => c.query(`ALTER TABLE mcp_proxy.${from} RENAME TO ${to}`), gh.databaseUrl);
  }
}

const echo = async (client, message) =>
  resultText(await client.callTool({ name: 'everything__echo', arguments: { message } }, undefined, { timeout: 30000 }));

// A request in the session from outside the SDK (another instance, another user, a changed id).
const ping = (url, sessionId, headers = {}) => rawRequest(url, {
  headers: withAuth(url, { 'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-session-id': sessionId, ...headers }),
  body: rpc('ping', {}),
});

describe('two instances on one store', () => {
  let a, b;
  before(async () => {
    a = await startGatehouse({ servers });
    b = await startGatehouse({ servers, database: a.database });
  });
  after(async () => { await b?.stop(); await a?.stop(); });

  it('a client whose requests alternate between them keeps one session; ending it ends it on both', async () => {
    const { client, transport, served } = await roundRobinClient([a, b]);
    try {
      const sessionId = transport.sessionId;
      assert.ok(sessionId, 'no session id');
      for (let i = 0; i < 6; i += 1) assert.equal(await echo(client, `m${i}`), `Echo: m${i}`);
      const tools = (await listAll(client, 'tools')).items.map((t) => t.name);
      assert.ok(tools.includes('everything__echo'), tools.join(','));
      assert.ok(served[0] >= 4 && served[1] >= 4, `requests per instance: ${served}`);
      await waitFor(() => [a, b].some((gh) => gh.logs.some((l) => l.includes('session resumed'))),
        { timeoutMs: 5000, what: 'an instance to log opening the session again' });
      const resumed = (text) => Number(/^gatehouse_sessions_resumed_total (\d+)$/m.exec(text)?.[1] ?? NaN);
      const counts = await Promise.all([a, b].map(async (gh) => resumed((await rawRequest(`${gh.url}/metrics`, { method: 'GET' })).text)));
      assert.deepEqual(counts, [0, 1], `gatehouse_sessions_resumed_total on a and b: ${counts}`);
      // Both instances hold it now; the client ends it through one of them.
      assert.equal((await ping(a.mcpUrl, sessionId)).status, 200);
      assert.equal((await ping(b.mcpUrl, sessionId)).status, 200);
      await transport.terminateSession();
      const ender = served[0] > served[1] ? a : b; // the DELETE went to the instance whose turn it was
      const other = ender === a ? b : a;
      assert.equal((await ping(ender.mcpUrl, sessionId)).status, 404, 'the instance that ended it still serves it');
      await waitFor(async () => (await ping(other.mcpUrl, sessionId)).status === 404,
        { timeoutMs: 15000, intervalMs: 250, what: 'the other instance to close its copy of the ended session' });
      await waitFor(() => other.logs.some((l) => l.includes('session ended on another instance')),
        { timeoutMs: 5000, what: 'the log line' });
    } finally {
      await client.close().catch(() => {});
    }
  });

  it('once DELETE is answered, no instance opens the session again (not even at once)', async () => {
    for (let i = 0; i < 5; i += 1) {
      const s = await rawSession(a.mcpUrl);
      assert.equal((await s.remove()).status, 200);
      const res = await ping(b.mcpUrl, s.sessionId);
      assert.equal(res.status, 404, `round ${i}: ${res.text}`);
    }
  });

  it('a DELETE that cannot be recorded is 503 and ends nothing; a store that cannot be read opens nothing', async () => {
    const s = await rawSession(a.mcpUrl);
    await moveSessionEnds(a, true);
    try {
      const res = await s.remove();
      assert.equal(res.status, 503, res.text);
      assert.match(res.text, /could not be recorded/);
      assert.equal((await ping(a.mcpUrl, s.sessionId)).status, 200, 'still open where it was');
      assert.equal((await ping(b.mcpUrl, s.sessionId)).status, 404, 'b cannot tell whether it ended: not opened');
      // a DELETE through b, which does not hold it: 503 too (a 404 would tell the client it is gone already)
      const del = await rawRequest(b.mcpUrl, { method: 'DELETE', headers: { 'mcp-session-id': s.sessionId } });
      assert.equal(del.status, 503, del.text);
    } finally {
      await moveSessionEnds(a, false);
    }
    assert.equal((await ping(b.mcpUrl, s.sessionId)).status, 200);
    assert.equal((await s.remove()).status, 200);
    assert.equal((await ping(a.mcpUrl, s.sessionId)).status, 404);
    // b holds a copy now: closed by its next reading of the ends.
    await waitFor(async () => (await ping(b.mcpUrl, s.sessionId)).status === 404,
      { timeoutMs: 15000, intervalMs: 250, what: 'b to close its copy' });
  });

  it('an end read from the store is remembered: asking about the session again costs no store query', async () => {
    const s = await rawSession(a.mcpUrl);
    assert.equal((await s.remove()).status, 200);
    assert.equal((await ping(b.mcpUrl, s.sessionId)).status, 404); // b reads the end
    await moveSessionEnds(a, true); // now a read would fail (and be logged)
    try {
      const from = b.logs.length;
      for (let i = 0; i < 3; i += 1) assert.equal((await ping(b.mcpUrl, s.sessionId)).status, 404);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(!b.logs.slice(from).some((l) => l.includes('cannot tell whether a session was ended')),
        b.logs.slice(from).join('\n'));
    } finally {
      await moveSessionEnds(a, false);
    }
  });

  it('an instance that never held the session opens it: for its user only, on its endpoint only, not when changed', async () => {
    const s = await rawSession(a.mcpUrl);
    assert.equal((await ping(b.mcpUrl, s.sessionId)).status, 200);
    const other = await makeUser(b, `resume-other-${Date.now()}@example.com`);
    const fresh = await rawSession(a.mcpUrl); // not yet held by b
    const asOther = await ping(b.mcpUrl, fresh.sessionId, other.headers);
    assert.equal(asOther.status, 404, asOther.text);
    assert.equal(asOther.json?.error?.code, -32001);
    assert.equal((await ping(`${b.mcpUrl}/everything`, fresh.sessionId)).status, 404, 'opened on another endpoint');
    const [payload, mac] = fresh.sessionId.split('.');
    const changed = `${payload.slice(0, -2)}${payload.at(-2) === 'A' ? 'B' : 'A'}${payload.at(-1)}.${mac}`;
    assert.equal((await ping(b.mcpUrl, changed)).status, 404, 'a changed id');
    await waitFor(() => b.logs.some((l) => l.includes('session not resumed') && l.includes('opened by another user')),
      { timeoutMs: 5000, what: 'the log line saying why' });
    // After all that, its own user still gets it.
    assert.equal((await ping(b.mcpUrl, fresh.sessionId)).status, 200);
  });

  it('what the client declared goes with the session: tools offered only to clients with roots', async () => {
    const withRoots = await rawSession(a.mcpUrl, { capabilities: { roots: { listChanged: true } } });
    const without = await rawSession(a.mcpUrl);
    const names = async (s) => {
      const res = await rawRequest(b.mcpUrl, { headers: s.headers, body: rpc('tools/list', {}) });
      assert.equal(res.status, 200, res.text);
      return res.json.result.tools.map((t) => t.name);
    };
    const rootsTools = await names(withRoots);
    assert.ok(rootsTools.includes('everything__get-roots-list'), rootsTools.join(','));
    assert.ok(!(await names(without)).includes('everything__get-roots-list'));
  });

  it('a session of its own upstream on /mcp/<server> gets one on the instance that opens it again (tasks there)', async () => {
    const url = (gh) => `${gh.mcpUrl}/everything`;
    const s = await rawSession(url(a), { capabilities: { sampling: {} } });
    assert.ok(s.initResult.capabilities.tasks, `tasks offered: ${JSON.stringify(s.initResult.capabilities)}`);
    const res = await rawRequest(url(b), { headers: s.headers, body: rpc('tasks/list', {}) });
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.json?.result?.tasks), res.text); // b's own upstream session: none of a's tasks
  });
});

it('a session outlives a restart of the gateway', async () => {
  const first = await startGatehouse({ servers });
  const client = await connectClient(first.mcpUrl);
  assert.equal(await echo(client, 'before'), 'Echo: before');
  const sessionId = client.transport.sessionId;
  assert.ok(sessionId, 'no session id');
  const ended = await rawSession(first.mcpUrl);
  assert.equal((await ended.remove()).status, 200);
  // The next process on the same store (started first: the harness drops a store when its last user stops).
  const second = await startGatehouse({ servers, database: first.database });
  await first.stop();
  try {
    const { client: again } = await roundRobinClient([second], { sessionId });
    assert.equal(await echo(again, 'after'), 'Echo: after');
    await again.close();
    // The one its client ended stays ended.
    const res = await ping(second.mcpUrl, ended.sessionId);
    assert.equal(res.status, 404, res.text);
    await waitFor(() => second.logs.some((l) => l.includes('session not resumed') && l.includes('"ended"')),
      { timeoutMs: 5000, what: 'the log line saying why' });
  } finally {
    await second.stop();
  }
});

it('a DELETE through an instance with MAX_SESSIONS open still ends the session everywhere', async () => {
  const a = await startGatehouse({ servers: {} });
  const b = await startGatehouse({ servers: {}, database: a.database, env: { MAX_SESSIONS: '1' } });
  try {
    await rawSession(b.mcpUrl); // b is full
    const s = await rawSession(a.mcpUrl);
    assert.equal((await ping(b.mcpUrl, s.sessionId)).status, 503, 'b cannot open another');
    const res = await rawRequest(b.mcpUrl, { method: 'DELETE', headers: s.headers });
    assert.equal(res.status, 200, res.text);
    await waitFor(async () => (await ping(a.mcpUrl, s.sessionId)).status === 404,
      { timeoutMs: 15000, intervalMs: 250, what: 'a to close the session ended through b' });
  } finally {
    await b.stop();
    await a.stop();
  }
});

it('while an instance shuts down, a session it could open is 503 (try another), an id it could not is 404', async () => {
  const a = await startGatehouse({ servers, env: { SHUTDOWN_GRACE_MS: '8000' } });
  const b = await startGatehouse({ servers: {}, database: a.database });
  try {
    const elsewhere = await rawSession(b.mcpUrl);
    const client = await connectClient(a.mcpUrl);
    let signalled;
    const call = client.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 4, steps: 4 } },
      undefined, { timeout: 30000, onprogress: () => { if (!signalled) { signalled = true; a.signal('SIGTERM'); } } });
    await waitFor(async () => (await rawRequest(`${a.url}/gateway/health`, { method: 'GET' })).status === 503,
      { timeoutMs: 10000, what: 'a to drain' });
    const res = await ping(a.mcpUrl, elsewhere.sessionId);
    assert.equal(res.status, 503, res.text);
    assert.match(res.text, /shutting down/);
    assert.equal((await ping(a.mcpUrl, 'deadbeef'.repeat(4))).status, 404, 'not an id of ours');
    await call.catch(() => {});
  } finally {
    await b.stop();
    await a.stop();
  }
});

it('SESSION_MAX_AGE_S=0: random ids, a session lives only where it was opened', async () => {
  const env = { SESSION_MAX_AGE_S: '0' };
  const a = await startGatehouse({ servers: {}, env });
  const b = await startGatehouse({ servers: {}, env, database: a.database });
  try {
    const s = await rawSession(a.mcpUrl);
    assert.match(s.sessionId, /^[0-9a-f]{32}$/);
    assert.equal((await ping(a.mcpUrl, s.sessionId)).status, 200);
    assert.equal((await ping(b.mcpUrl, s.sessionId)).status, 404);
  } finally {
    await b.stop();
    await a.stop();
  }
});
