// What a client meets at the protocol's edges: tools that depend on the client's capabilities, task-augmented
// calls where tasks are not offered, a cancellation that arrives before the call was sent upstream, list cursors,
// logging levels, and what a reload announces.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  connectClient, delay, everythingStdio, fixtureStdio, getJson, listAll, rawSession, resultText, rpc, startGatehouse, waitFor,
  withAuth,
} from './lib/index.js';
import { grantServer, makeUser } from './lib/ops.js';

const cleanAll = async (cleanups) => { for (const fn of cleanups.reverse()) { try { await fn(); } catch { /* keep cleaning */ } } };

// server-everything offers get-roots-list only to a client that declared roots.
describe('tools that depend on the client capabilities', () => {
  const rootsClient = (gh, cleanups) => connectClient(gh.mcpUrl, {
    t: (fn) => cleanups.push(fn),
    capabilities: { roots: { listChanged: true } },
    handlers: { 'roots/list': async () => ({ roots: [{ uri: 'file:///edge-root', name: 'edge-root' }] }) },
  });
  for (const order of ['alone', 'after a client without roots listed']) {
    it(`a client with roots sees and calls everything__get-roots-list (${order})`, async () => {
      const cleanups = [];
      try {
        const gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { everything: everythingStdio() } });
        if (order !== 'alone') {
          const plain = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
          assert.ok(!(await listAll(plain, 'tools')).items.some((x) => x.name === 'everything__get-roots-list'));
        }
        const client = await rootsClient(gh, cleanups);
        const names = (await listAll(client, 'tools')).items.map((x) => x.name);
        assert.ok(names.includes('everything__get-roots-list'), `missing: ${names.join(',')}`);
        const r = await client.callTool({ name: 'everything__get-roots-list', arguments: {} }, undefined, { timeout: 20000 });
        assert.match(resultText(r), /edge-root/);
      } finally { await cleanAll(cleanups); }
    });
  }
  it('a client without roots is not offered it after a client with roots listed', async () => {
    const cleanups = [];
    try {
      const gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { everything: everythingStdio() } });
      const client = await rootsClient(gh, cleanups);
      assert.ok((await listAll(client, 'tools')).items.some((x) => x.name === 'everything__get-roots-list'));
      const plain = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
      const names = (await listAll(plain, 'tools')).items.map((x) => x.name);
      assert.ok(names.includes('everything__echo'), names.join(','));
      assert.ok(!names.includes('everything__get-roots-list'), names.join(','));
    } finally { await cleanAll(cleanups); }
  });
});

describe('catalogs of sessions with upstream sessions of their own', () => {
  it('a session past the cap sees the shared catalog; one with its own session the catalog listed through one like it', async () => {
    const cleanups = [];
    try {
      const gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { c: fixtureStdio('caps-catalog.js') } });
      const names = async (s) => (await s.request('tools/list', {})).json.result.tools.map((x) => x.name).sort();
      // 32 sessions of one user with their own upstream sessions: the user's cap.
      const fillers = [];
      for (let i = 0; i < 32; i++) {
        const s = await rawSession(gh.mcpUrl, { capabilities: { sampling: {} } });
        assert.match((await s.request('tools/call', { name: 'c__ping', arguments: {} })).text, /called ping/);
        fillers.push(s);
      }
      const capped = await rawSession(gh.mcpUrl, { capabilities: { roots: {} } });
      assert.deepEqual(await names(capped), ['c__ping']);  // it shares the upstream session (no roots declared there)
      for (const s of fillers) await s.remove();
      // A roots client with a session of its own is not given what the capped one saw.
      const own = await rawSession(gh.mcpUrl, { capabilities: { roots: {} } });
      assert.deepEqual(await names(own), ['c__ping', 'c__roots-tool']);
      assert.match((await own.request('tools/call', { name: 'c__roots-tool', arguments: {} })).text, /called roots-tool roots=true/);
    } finally { await cleanAll(cleanups); }
  });

  it('clients declaring the same capabilities differently share one catalog (no listing per client)', async () => {
    const cleanups = [];
    const count = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gh-edges-')), 'count');
    fs.writeFileSync(count, '');
    const listings = () => fs.readFileSync(count, 'utf8').split('\n').filter(Boolean).length;
    try {
      const gh = await startGatehouse({ t: (fn) => cleanups.push(fn),
        servers: { c: fixtureStdio('caps-catalog.js', { env: { COUNT_FILE: count } }) } });
      const sessions = [];
      for (let i = 0; i < 70; i++) {
        const s = await rawSession(gh.mcpUrl, { capabilities: { sampling: { variant: i } } });
        assert.deepEqual((await s.request('tools/list', {})).json.result.tools.map((x) => x.name), ['c__ping']);
        sessions.push(s);
      }
      // One listing through a session of its own (32 have one), one through the shared session (the rest).
      assert.ok(listings() <= 2, `${listings()} listings`);
      const before = listings();
      for (const s of sessions) assert.match((await s.request('tools/call', { name: 'c__ping', arguments: {} })).text, /called ping/);
      for (const s of sessions) await s.request('tools/list', {});
      assert.equal(listings() - before, 0, 'nothing changed upstream: no listing');
    } finally { await cleanAll(cleanups); }
  });
});

describe('task-augmented calls where tasks are not offered', () => {
  let gh;
  const cleanups = [];
  before(async () => { gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { everything: everythingStdio() } }); });
  after(() => cleanAll(cleanups));

  for (const [where, prefix] of [['/mcp', 'everything__'], ['/mcp/everything', '']]) {
    it(`${where}: params.task is ignored and the call answered as usual`, async () => {
      const s = await rawSession(gh.url + where);
      assert.equal(s.initResult.capabilities.tasks, undefined);
      const r = await s.post(rpc('tools/call', { name: `${prefix}echo`, arguments: { message: 'hi' }, task: { ttl: 60000 } }));
      assert.equal(r.status, 200);
      assert.equal(r.json?.error, undefined, r.text);
      assert.equal(r.json.result.task, undefined, r.text);
      assert.match(JSON.stringify(r.json.result.content), /Echo: hi/);
    });
    it(`${where}: a tool that requires a task is not listed`, async () => {
      const s = await rawSession(gh.url + where);
      const r = await s.request('tools/list', {});
      const tools = r.json.result.tools;
      assert.ok(tools.some((t) => t.name === `${prefix}echo`), r.text.slice(0, 300));
      const required = tools.filter((t) => t.execution?.taskSupport === 'required').map((t) => t.name);
      assert.deepEqual(required, []);
    });
  }
  it('/mcp/everything with an upstream session of its own: tasks offered, and the task-required tool listed', async () => {
    const s = await rawSession(`${gh.url}/mcp/everything`, { capabilities: { sampling: {} } });
    assert.ok(s.initResult.capabilities.tasks, JSON.stringify(s.initResult.capabilities));
    const tools = (await s.request('tools/list', {})).json.result.tools;
    assert.ok(tools.some((t) => t.name === 'simulate-research-query' && t.execution?.taskSupport === 'required'),
      tools.map((t) => t.name).join(','));
  });
});

describe('a cancellation before the call reaches its upstream', () => {
  it('while the stdio server starts: the call is not carried out and gets no answer', async () => {
    const cleanups = [];
    const marks = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gh-edges-')), 'marks');
    try {
      const gh = await startGatehouse({ t: (fn) => cleanups.push(fn), env: { STDIO_IDLE_TIMEOUT_S: '1' }, servers: {
        slow: fixtureStdio('slow-start.js', { env: { START_DELAY_MS: '1500', MARK_FILE: marks } }),
      } });
      const s = await rawSession(gh.mcpUrl);
      const first = await s.post(rpc('tools/call', { name: 'slow__mark', arguments: { tag: 'warm-up' } }));
      assert.match(first.text, /marked warm-up/);
      // The idle server is stopped after 1 s (its catalog stays): the next call starts it again.
      await waitFor(async () => (await getJson(`${gh.url}/gateway/health`)).body.upstreams.slow.state === 'idle',
        { timeoutMs: 10000, what: 'the idle stop' });
      const call = s.post(rpc('tools/call', { name: 'slow__mark', arguments: { tag: 'cancelled' } }, 'c1'));
      await delay(300);
      const cancel = await s.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'c1', reason: 'user' } });
      assert.equal(cancel.status, 202);
      const answer = await call;
      assert.equal(answer.messages.filter((m) => 'id' in m).length, 0, answer.text);
      // A later call is carried out (the server did start), and the cancelled one never was.
      const later = await s.post(rpc('tools/call', { name: 'slow__mark', arguments: { tag: 'later' } }));
      assert.match(later.text, /marked later/);
      assert.deepEqual(fs.readFileSync(marks, 'utf8').split('\n').filter(Boolean), ['warm-up', 'later']);
    } finally { await cleanAll(cleanups); }
  });

  it('a client that hangs up while the server\'s catalog is first loaded: its call is not carried out', async (t) => {
    const marks = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gh-edges-')), 'marks');
    const gh = await startGatehouse({ t, servers: {
      slow: fixtureStdio('slow-start.js', { env: { START_DELAY_MS: '2000', MARK_FILE: marks } }),
    } });
    const s = await rawSession(gh.mcpUrl);
    const ac = new AbortController();
    const hungUp = fetch(gh.mcpUrl, { method: 'POST', signal: ac.signal,
      headers: withAuth(gh.mcpUrl, { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': s.sessionId }),
      body: JSON.stringify(rpc('tools/call', { name: 'slow__mark', arguments: { tag: 'abandoned' } }, 'h1')) }).catch(() => null);
    await delay(400);
    ac.abort();
    await hungUp;
    const later = await s.post(rpc('tools/call', { name: 'slow__mark', arguments: { tag: 'later' } }));
    assert.match(later.text, /marked later/);
    await delay(300);
    assert.deepEqual(fs.readFileSync(marks, 'utf8').split('\n').filter(Boolean), ['later']);
  });

  it('while the server\'s catalog is first loaded: honoured, and another session\'s call with the same id is not', async () => {
    const cleanups = [];
    try {
      const gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { everything: everythingStdio() } });
      const a = await rawSession(gh.mcpUrl);
      const b = await rawSession(gh.mcpUrl);
      const call = (s, steps) => s.post(rpc('tools/call', {
        name: 'everything__trigger-long-running-operation', arguments: { duration: 2, steps }, _meta: { progressToken: 'same' },
      }, 42));
      const pa = call(a, 4);
      const pb = call(b, 2);
      await delay(300);  // both wait for the catalog (server-everything takes longer than this to start)
      const c = await b.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 42 } });
      assert.equal(c.status, 202);
      const [ra, rb] = await Promise.all([pa, pb]);
      assert.ok(ra.json?.result, `a's call was answered: ${ra.text.slice(-300)}`);
      assert.equal(ra.messages.filter((m) => m.method === 'notifications/progress').length, 4, ra.text.slice(0, 500));
      assert.equal(rb.messages.filter((m) => 'id' in m).length, 0, `b's cancelled call got no answer: ${rb.text.slice(-300)}`);
    } finally { await cleanAll(cleanups); }
  });
});

describe('list cursors', () => {
  it('a cursor belongs to its list: another list refuses it with -32602, its own goes on', async () => {
    const cleanups = [];
    try {
      const gh = await startGatehouse({ t: (fn) => cleanups.push(fn), env: { LIST_PAGE_SIZE: '3' },
        servers: { everything: everythingStdio() } });
      const s = await rawSession(gh.mcpUrl);
      const first = await s.request('tools/list', {});
      assert.equal(first.json.result.tools.length, 3, first.text.slice(0, 300));
      const cursor = first.json.result.nextCursor;
      assert.equal(typeof cursor, 'string');
      for (const other of ['prompts/list', 'resources/list', 'resources/templates/list']) {
        const r = await s.request(other, { cursor });
        assert.equal(r.json?.error?.code, -32602, `${other}: ${r.text}`);
      }
      const second = await s.request('tools/list', { cursor });
      const names = (r) => r.json.result.tools.map((t) => t.name);
      assert.equal(second.json.result.tools.length, 3, second.text.slice(0, 300));
      assert.ok(names(second).every((n) => !names(first).includes(n)), `${names(first)} / ${names(second)}`);
    } finally { await cleanAll(cleanups); }
  });
});

describe('logging/setLevel', () => {
  let gh;
  const cleanups = [];
  before(async () => { gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { everything: everythingStdio() } }); });
  after(() => cleanAll(cleanups));
  for (const params of [{ level: 'bogus' }, {}, { level: 3 }]) {
    it(`refuses ${JSON.stringify(params)} with -32602`, async () => {
      const s = await rawSession(gh.mcpUrl);
      const r = await s.request('logging/setLevel', params);
      assert.equal(r.json?.error?.code, -32602, r.text);
    });
  }
  it('accepts a level of RFC 5424', async () => {
    const s = await rawSession(gh.mcpUrl);
    const r = await s.request('logging/setLevel', { level: 'warning' });
    assert.deepEqual(r.json?.result, {}, r.text);
  });
});

describe('what a reload announces', () => {
  it('every list to aggregate sessions, and to sessions of a server that was replaced; not to those who may use no changed server', async () => {
    const cleanups = [];
    const note = (list, what) => () => list.push(what);
    try {
      const gh = await startGatehouse({ t: (fn) => cleanups.push(fn),
        servers: { everything: everythingStdio(), still: everythingStdio() } });
      // A user who may use only `still`, which the reload leaves as it is: told nothing.
      await grantServer(gh, 'StillOnly', 'still');
      const other = await makeUser(gh, 'still-only@example.com', { groups: ['StillOnly'] });
      const otherSeen = [];
      const otherClient = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn), auth: false, headers: other.headers, notifications: {
        'notifications/tools/list_changed': note(otherSeen, 'tools'), 'notifications/prompts/list_changed': note(otherSeen, 'prompts') } });
      const seen = [], scoped = [];
      const client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn), notifications: {
        'notifications/tools/list_changed': note(seen, 'tools'), 'notifications/prompts/list_changed': note(seen, 'prompts'),
        'notifications/resources/list_changed': note(seen, 'resources') } });
      const sc = await connectClient(`${gh.url}/mcp/everything`, { t: (fn) => cleanups.push(fn), notifications: {
        'notifications/tools/list_changed': note(scoped, 'tools') } });
      await client.listPrompts();
      await sc.listTools();
      await otherClient.listTools();
      await delay(1000);  // the GET streams open; what the servers say as they start (server-everything: list_changed) is past
      otherSeen.length = 0;
      gh.writeServers({ everything: everythingStdio({ env: { CHANGED: '1' } }), still: everythingStdio(), second: everythingStdio() });
      gh.signal('SIGHUP');
      await waitFor(() => ['tools', 'prompts', 'resources'].every((k) => seen.includes(k)), { timeoutMs: 10000, what: `all three on /mcp (seen ${seen})` });
      await waitFor(() => scoped.includes('tools'), { timeoutMs: 10000, what: 'tools/list_changed on /mcp/everything' });
      const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
      assert.ok(prompts.some((n) => n.startsWith('second__')), prompts.join(','));
      await delay(500);
      assert.deepEqual(otherSeen, []);
    } finally { await cleanAll(cleanups); }
  });
});

describe('list changes an upstream announces', () => {
  it('one user\'s own upstream session saying its list changed is told to that user\'s session only', async (t) => {
    const gh = await startGatehouse({ t, servers: { poke: fixtureStdio('poke.js') } });
    await grantServer(gh, 'Pokers', 'poke');
    const mallory = await makeUser(gh, 'mallory@example.com', { groups: ['Pokers'] });
    const heard = { victim: 0, mallory: 0 };
    const victim = await connectClient(gh.mcpUrl, { t, notifications: { 'notifications/tools/list_changed': () => { heard.victim += 1; } } });
    await victim.listTools();
    // roots: mallory's session gets an upstream session of its own
    const own = await connectClient(gh.mcpUrl, { t, auth: false, headers: mallory.headers, capabilities: { roots: {} },
      handlers: { 'roots/list': async () => ({ roots: [] }) },
      notifications: { 'notifications/tools/list_changed': () => { heard.mallory += 1; } } });
    await own.listTools();
    await delay(500);
    heard.victim = 0;
    for (let i = 0; i < 3; i += 1) assert.equal(resultText(await own.callTool({ name: 'poke__poke', arguments: {} })), 'poked');
    await waitFor(() => heard.mallory > 0, { timeoutMs: 5000, what: 'mallory to hear her own list change' });
    await delay(500);
    assert.equal(heard.victim, 0, 'another user heard of mallory\'s upstream session');
  });
});

describe('the standalone GET stream', () => {
  it('GETs at once on one session: exactly one stream, the rest 409; once it closes, a new one is allowed', async (t) => {
    const gh = await startGatehouse({ t, servers: { hang: fixtureStdio('hang.js') } });
    const s = await rawSession(gh.mcpUrl);
    const headers = withAuth(gh.mcpUrl, { accept: 'text/event-stream', 'mcp-session-id': s.sessionId });
    const aborts = [];
    const open = async () => {
      const ac = new AbortController();
      aborts.push(ac);
      const res = await fetch(gh.mcpUrl, { headers, signal: ac.signal });
      return { res, ac };
    };
    const streams = await Promise.all(Array.from({ length: 20 }, open));
    try {
      const statuses = streams.map(({ res }) => res.status).sort();
      assert.deepEqual(statuses, [200, ...Array(19).fill(409)], JSON.stringify(statuses));
      streams.find(({ res }) => res.status === 200).ac.abort();
      await waitFor(async () => {
        const again = await open();
        if (again.res.status === 200) return true;
        again.ac.abort();
        return false;
      }, { timeoutMs: 5000, what: 'a new GET stream once the first closed' });
    } finally {
      for (const ac of aborts) ac.abort();
    }
  });

  it('on /mcp/<server> a request named like a notification is refused, not passed to the (shared) upstream', async (t) => {
    const gh = await startGatehouse({ t, servers: { hang: fixtureStdio('hang.js') } });
    const s = await rawSession(`${gh.url}/mcp/hang`);
    for (const method of ['notifications/cancelled', 'notifications/initialized']) {
      const res = await s.request(method, { requestId: 1 });
      assert.equal(res.json?.error?.code, -32600, `${method}: ${res.text}`);
    }
    const report = JSON.parse(resultText((await s.request('tools/call', { name: 'report', arguments: {} })).json.result));
    assert.deepEqual(report.cancelled, [], 'the upstream got a notifications/cancelled');
  });
});
