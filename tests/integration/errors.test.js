// Bad input on the MCP endpoints (raw HTTP, not the SDK) and broken upstreams (fixtures/):
// each gets the documented HTTP status / JSON-RPC error, and the gateway stays healthy.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  LATEST_PROTOCOL, MCP_HEADERS, connectClient, listAll, everythingStdio, fixtureStdio, getJson, initializeMessage,
  assertServing, mcpError, rawRequest, rawSession, resultText, rpc, startGatehouse, waitFor,
} from './lib/index.js';

describe('error handling', () => {
  let gh;
  const cleanups = [];

  before(async () => {
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      env: { MAX_BODY_BYTES: '2048', LOG_LEVEL: 'debug' },
      servers: {
        everything: everythingStdio(),
        crashy: fixtureStdio('crash.js'),
        hangy: fixtureStdio('hang.js', { timeoutMs: 500 }),
        noisy: fixtureStdio('garbage.js'),
        ghost: { command: '/nonexistent/gatehouse-ghost-server', args: [] },
      },
    });
  });

  afterEach(async () => {
    await assertServing(gh);
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  const post = (body, headers = MCP_HEADERS, path = '/mcp') => rawRequest(`${gh.url}${path}`, { headers, body });

  describe('malformed requests', () => {
    it('body that is not JSON → 400, -32700', async () => {
      const res = await post('{"jsonrpc": "2.0", "id": 1, "method": ');
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json?.error?.code, -32700, res.text);
      assert.equal(res.json?.jsonrpc, '2.0');
    });

    it('JSON that is not a JSON-RPC message → 400, -32600', async () => {
      const res = await post({ hello: 'world' });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json?.error?.code, -32600, res.text);
    });

    it('Content-Type not application/json → 415, -32600', async () => {
      const res = await post(initializeMessage(), { ...MCP_HEADERS, 'content-type': 'text/plain' });
      assert.equal(res.status, 415, res.text);
      assert.equal(res.json?.error?.code, -32600, res.text);
      // A list whose first type is text/plain: a browser sends it cross-site without asking first.
      const listed = await post(initializeMessage(), { ...MCP_HEADERS, 'content-type': 'text/plain; charset=utf-8, application/json' });
      assert.equal(listed.status, 415, listed.text);
      const cased = await post(initializeMessage(), { ...MCP_HEADERS, 'content-type': 'Application/JSON; charset=utf-8' });
      assert.equal(cased.status, 200, cased.text);
    });

    it('no Accept header, or one without application/json and text/event-stream → 406', async () => {
      const missing = await post(initializeMessage(), { 'content-type': 'application/json' });
      assert.equal(missing.status, 406, missing.text);
      assert.equal(missing.json?.error?.code, -32600, missing.text);
      const html = await post(initializeMessage(), { 'content-type': 'application/json', accept: 'text/html' });
      assert.equal(html.status, 406, html.text);
    });

    it('no MCP-Session-Id on a non-initialize request → 400, -32600', async () => {
      const res = await post(rpc('tools/list', {}), { ...MCP_HEADERS, 'mcp-protocol-version': LATEST_PROTOCOL });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json?.error?.code, -32600, res.text);
    });

    it('unknown session → 404, -32001', async () => {
      const res = await post(rpc('tools/list', {}), {
        ...MCP_HEADERS, 'mcp-protocol-version': LATEST_PROTOCOL, 'mcp-session-id': 'no-such-session-0123456789abcdef',
      });
      assert.equal(res.status, 404, res.text);
      assert.equal(res.json?.error?.code, -32001, res.text);
    });

    it('a deleted session is gone → 404', async () => {
      const session = await rawSession(gh.mcpUrl);
      const ok = await session.request('ping', {});
      assert.equal(ok.status, 200, ok.text);
      const deleted = await session.remove();
      assert.ok(deleted.status === 200 || deleted.status === 204, `DELETE → ${deleted.status} ${deleted.text}`);
      const gone = await session.request('ping', {});
      assert.equal(gone.status, 404, gone.text);
    });

    it('unsupported MCP-Protocol-Version → 400, -32600', async () => {
      const session = await rawSession(gh.mcpUrl);
      const res = await session.post(rpc('tools/list', {}), { 'mcp-protocol-version': '1999-01-01' });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json?.error?.code, -32600, res.text);
    });

    it('body over MAX_BODY_BYTES → 413', async () => {
      const res = await post(initializeMessage({ padding: 'x'.repeat(5000) }));
      assert.equal(res.status, 413, res.text);
      assert.equal(res.json?.error?.code, -32600, res.text);
      const small = await post(initializeMessage());
      assert.equal(small.status, 200, `a body under the limit still works: ${small.text}`);
    });

    it('bad Host → 403; localhost is allowed', async () => {
      const evil = await post(initializeMessage(), { ...MCP_HEADERS, host: 'evil.example.com' });
      assert.equal(evil.status, 403, evil.text);
      assert.equal(evil.json?.error?.code, -32600, evil.text);
      const evilWithPort = await post(initializeMessage(), { ...MCP_HEADERS, host: `evil.example.com:${gh.port}` });
      assert.equal(evilWithPort.status, 403, evilWithPort.text);
      const local = await post(initializeMessage(), { ...MCP_HEADERS, host: `localhost:${gh.port}` });
      assert.equal(local.status, 200, local.text);
    });

    it('bad Origin → 403', async () => {
      const res = await post(initializeMessage(), { ...MCP_HEADERS, origin: 'http://evil.example.com' });
      assert.equal(res.status, 403, res.text);
      assert.equal(res.json?.error?.code, -32600, res.text);
    });

    it('unknown server in /mcp/<server> → 404', async () => {
      const res = await post(initializeMessage(), MCP_HEADERS, '/mcp/no-such-server');
      assert.equal(res.status, 404, res.text);
      assert.equal(res.json?.error?.code, -32600, res.text);
    });

    it('a batch on a 2025-11-25 session → 400; on a 2025-03-26 session it is answered', async () => {
      const modern = await rawSession(gh.mcpUrl, { protocolVersion: '2025-11-25' });
      assert.equal(modern.protocolVersion, '2025-11-25');
      const refused = await modern.post([rpc('ping', {}), rpc('ping', {})]);
      assert.equal(refused.status, 400, refused.text);
      assert.equal(refused.json?.error?.code, -32600, refused.text);

      const old = await rawSession(gh.mcpUrl, { protocolVersion: '2025-03-26' });
      assert.equal(old.protocolVersion, '2025-03-26');
      const ids = [`b-${Date.now()}-1`, `b-${Date.now()}-2`];
      const answered = await old.post([rpc('ping', {}, ids[0]), rpc('ping', {}, ids[1])]);
      assert.equal(answered.status, 200, answered.text);
      const answeredIds = answered.messages.filter((m) => m && 'result' in m).map((m) => m.id).sort();
      assert.deepEqual(answeredIds, ids.sort(), answered.text);
    });
  });

  describe('JSON-RPC errors on a session', () => {
    let session;
    before(async () => { session = await rawSession(gh.mcpUrl); });

    it('keeps the request id type and value', async () => {
      for (const id of [0, 42, 'string-id', '7']) {
        const res = await session.post(rpc('ping', {}, id));
        assert.equal(res.status, 200, res.text);
        assert.deepEqual(res.json?.result, {}, res.text);
        assert.equal(res.json?.id, id, `id ${JSON.stringify(id)} came back as ${JSON.stringify(res.json?.id)}`);
      }
    });

    it('no MCP-Protocol-Version header after initialize is accepted (assumed 2025-03-26)', async () => {
      const headers = { ...session.headers };
      delete headers['mcp-protocol-version'];
      const res = await rawRequest(gh.mcpUrl, { headers, body: rpc('ping', {}) });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json?.result, {}, res.text);
    });

    it('unknown method → 200, -32601', async () => {
      const res = await session.request('no/such/method', {});
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json?.error?.code, -32601, res.text);
    });

    it('unknown tool → 200, -32602', async () => {
      for (const name of ['everything__no-such-tool', 'no-such-server__echo', 'echo']) {
        const res = await session.request('tools/call', { name, arguments: {} });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json?.error?.code, -32602, `${name}: ${res.text}`);
      }
    });

    it('bad cursor → 200, -32602', async () => {
      const res = await session.request('tools/list', { cursor: 'definitely-not-a-cursor-%%%' });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json?.error?.code, -32602, res.text);
    });

    it('resource URI no server knows → 200, -32002', async () => {
      const res = await session.request('resources/read', { uri: 'nowhere://nothing/here' });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json?.error?.code, -32002, res.text);
    });
  });

  describe('broken upstreams', () => {
    let client;
    let healthy;
    before(async () => {
      client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
      healthy = await connectClient(`${gh.mcpUrl}/everything`, { t: (fn) => cleanups.push(fn) });
      // Warm the healthy server up so "meanwhile" measures the gateway, not a cold start.
      assert.equal(resultText(await healthy.callTool({ name: 'echo', arguments: { message: 'warm' } })), 'Echo: warm');
    });

    const echoMeanwhile = async (label) => {
      const result = await healthy.callTool({ name: 'echo', arguments: { message: label } });
      assert.equal(resultText(result), `Echo: ${label}`);
      return Date.now();
    };

    it('an upstream that crashes mid-call → -32603 naming the server; another session keeps working', async () => {
      // The crashing server works until it is asked to crash.
      assert.equal(resultText(await client.callTool({ name: 'crashy__echo', arguments: { message: 'alive' } })), 'Echo: alive');
      const [crash] = await Promise.all([
        mcpError(() => client.callTool({ name: 'crashy__crash', arguments: {} }, undefined, { timeout: 20000 })),
        echoMeanwhile('during crash'),
      ]);
      assert.equal(crash.code, -32603, crash.message);
      assert.match(crash.message, /crashy/, `the error does not name the server: ${crash.message}`);
      await echoMeanwhile('after crash');
    });

    it('an upstream that hangs → -32001 after its timeoutMs, notifications/cancelled sent upstream; others unaffected', async () => {
      const started = Date.now();
      let hangErrorAt = 0;
      const [hang, echoedAt] = await Promise.all([
        mcpError(() => client.callTool({ name: 'hangy__hang', arguments: { tag: 'timeout-me' } }, undefined, { timeout: 20000 }))
          .finally(() => { hangErrorAt = Date.now(); }),
        echoMeanwhile('during hang'),
      ]);
      assert.equal(hang.code, -32001, hang.message);
      assert.match(hang.message, /timed? ?out|timeout|did not answer .*within \d+ ?ms/i, `the error does not name the timeout: ${hang.message}`);
      assert.ok(hangErrorAt - started >= 400, `timed out after ${hangErrorAt - started} ms, before timeoutMs 500`);
      assert.ok(hangErrorAt - started < 10000, `timed out after ${hangErrorAt - started} ms`);
      assert.ok(echoedAt <= hangErrorAt, 'the healthy call waited for the hanging one');

      const report = async () => JSON.parse(resultText(await client.callTool({ name: 'hangy__report', arguments: {} })));
      const call = (await report()).hangCalls.find((c) => c.tag === 'timeout-me');
      assert.ok(call, 'the hang call reached the upstream');
      await waitFor(async () => (await report()).cancelled.some((c) => c.requestId === call.id),
        { timeoutMs: 5000, what: `notifications/cancelled for upstream request ${JSON.stringify(call.id)}` });
    });

    it('an upstream that fails to start → -32603 naming the server; the other servers still list', async () => {
      const ghost = await rawSession(`${gh.mcpUrl}/ghost`);
      const listed = await ghost.request('tools/list', {});
      assert.equal(listed.status, 200, listed.text);
      assert.equal(listed.json?.error?.code, -32603, listed.text);
      assert.match(listed.json.error.message, /ghost/, listed.text);

      const names = (await listAll(client, 'tools')).items.map((tool) => tool.name);
      assert.ok(names.includes('everything__echo'), `aggregate tools/list with a dead upstream: ${names.join(', ')}`);
      assert.ok(!names.some((name) => name.startsWith('ghost__')));
      const health = await getJson(`${gh.url}/gateway/health`, { auth: false });
      assert.ok(['failed', 'backoff'].includes(health.body.upstreams?.ghost?.state), JSON.stringify(health.body));
      assert.deepEqual(Object.keys(health.body.upstreams.ghost).sort(), ['state', 'transport'],
        'the public health answer carries no error text');
      const servers = await getJson(`${gh.url}/servers`);
      const ghostEntry = servers.body.servers.find((x) => x.id === 'ghost');
      assert.match(ghostEntry?.last_error ?? '', /./, `/servers says why: ${JSON.stringify(ghostEntry)}`);
    });

    it('garbage lines from an upstream are skipped and logged; its answers still arrive', async () => {
      const names = (await listAll(client, 'tools')).items.map((tool) => tool.name);
      assert.ok(names.includes('noisy__echo'), `tools: ${names.join(', ')}`);
      for (const message of ['one', 'two', 'three']) {
        const result = await client.callTool({ name: 'noisy__echo', arguments: { message } });
        assert.equal(resultText(result), `Echo: ${message}`);
      }
      const mentions = gh.jsonLogs().filter((entry) => JSON.stringify(entry).includes('noisy'));
      assert.ok(mentions.some((entry) => /json|pars|invalid|malformed|garbage|skip/i.test(JSON.stringify(entry))),
        `no log line about noisy's garbage output:\n${mentions.map((e) => JSON.stringify(e)).join('\n')}`);
    });
  });
});
