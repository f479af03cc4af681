// Streamable HTTP upstreams that answer every POST with one `Content-Type: application/json` body instead of an
// SSE stream (the SDK's StreamableHTTPServerTransport with `enableJsonResponse: true`, fixtures/sdk-http-server.js):
//  - `json`: a stateful upstream (it issues an Mcp-Session-Id at initialize);
//  - `stateless`: `sessionIdGenerator: undefined`, a fresh server per POST, no Mcp-Session-Id ever, GET → 405.
// Both sit behind one gateway, reached through /mcp (names prefixed, resource URIs routed back to the server
// that listed them) and /mcp/<id>. Every MCP operation is answered with the upstream's JSON answer (a
// regression once overwrote such answers with an error), 20 concurrent calls from two clients each get their
// own answer, and an upstream answering a call with HTTP 500 and a plain-text body gives -32603 naming the
// server and the status, after which the next call works.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  connectClient, listAll, mcpError, rawSession, resultText, startGatehouse, startSdkFixture, streamableHttpEntry,
} from './lib/index.js';

const UPSTREAMS = [
  { id: 'json', name: 'fixture-one', stateless: false, title: 'stateful upstream (Mcp-Session-Id)' },
  { id: 'stateless', name: 'fixture-two', stateless: true, title: 'stateless upstream (no Mcp-Session-Id)' },
];

describe('Streamable HTTP upstreams answering with application/json (enableJsonResponse)', () => {
  let gh;
  let aggregate; // SDK client on /mcp
  const fixtures = {}; // id → fixture
  const scoped = {}; // id → SDK client on /mcp/<id>
  const cleanups = [];
  const cleanup = (fn) => cleanups.push(fn);

  before(async () => {
    for (const u of UPSTREAMS) {
      fixtures[u.id] = await startSdkFixture({ t: cleanup, jsonResponse: true, stateless: u.stateless, extras: true, name: u.name });
    }
    gh = await startGatehouse({
      t: cleanup,
      servers: Object.fromEntries(UPSTREAMS.map((u) => [u.id, streamableHttpEntry(fixtures[u.id].url)])),
    });
    aggregate = await connectClient(gh.mcpUrl, { t: cleanup, name: 'json-aggregate' });
    for (const u of UPSTREAMS) scoped[u.id] = await connectClient(`${gh.mcpUrl}/${u.id}`, { t: cleanup, name: `json-${u.id}` });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  /** What went wrong, for assertion messages: the fixture's exchanges and the gateway's last log lines. */
  async function context(id) {
    let exchanges;
    try { exchanges = (await fixtures[id].debug()).exchanges.slice(-30); } catch (error) { exchanges = String(error); }
    return `\nfixture ${id} (last exchanges): ${JSON.stringify(exchanges)}\n${gh.describe()}`;
  }

  /** Runs fn; on failure, adds the fixture's and the gateway's view to the error. */
  async function traced(id, what, fn) {
    try {
      return await fn();
    } catch (error) {
      error.message = `${what}: ${error.message}${await context(id)}`;
      throw error;
    }
  }

  const posts = async (id, since = 0) => (await fixtures[id].debug()).exchanges.filter((e) => e.http === 'POST' && e.at >= since);

  for (const u of UPSTREAMS) {
    const { id, name } = u;
    describe(`${u.title} behind /mcp and /mcp/${id}`, () => {
      it('initialize: /mcp/<id> reports the upstream\'s serverInfo and capabilities, taken from its JSON answer', async () => {
        const client = scoped[id];
        assert.deepEqual(client.getServerVersion(), { name, version: '1.0.0' });
        const caps = client.getServerCapabilities();
        for (const cap of ['tools', 'resources', 'prompts']) {
          assert.ok(caps?.[cap], `capability ${cap} missing from ${JSON.stringify(caps)}`);
        }
        const inits = (await posts(id)).filter((e) => e.rpc === 'initialize');
        assert.ok(inits.length >= 1, `the upstream saw no initialize: ${await context(id)}`);
        for (const init of inits) {
          assert.equal(init.status, 200, JSON.stringify(init));
          assert.match(String(init.contentType), /^application\/json/, `initialize was not answered with JSON: ${JSON.stringify(init)}`);
          if (u.stateless) assert.equal(init.responseSessionId, null, `a stateless upstream issued a session: ${JSON.stringify(init)}`);
          else assert.ok(init.responseSessionId, `no Mcp-Session-Id in the initialize answer: ${JSON.stringify(init)}`);
        }
      });

      it('tools/list: the upstream\'s tools, unprefixed on /mcp/<id>, prefixed on /mcp, schemas intact', async () => {
        const wanted = ['echo', 'echo-after', 'fail', 'big', 'http-500'];
        const one = (await traced(id, 'tools/list on /mcp/' + id, () => listAll(scoped[id], 'tools'))).items;
        const names = one.map((t) => t.name);
        for (const tool of wanted) assert.ok(names.includes(tool), `/mcp/${id} tools/list lacks ${tool}: ${names.join(', ')}`);
        const echo = one.find((t) => t.name === 'echo');
        assert.equal(echo.description, 'Echoes the message');
        assert.equal(echo.inputSchema?.properties?.message?.type, 'string', JSON.stringify(echo.inputSchema));

        const all = (await traced(id, 'tools/list on /mcp', () => listAll(aggregate, 'tools'))).items.map((t) => t.name);
        for (const tool of wanted) {
          assert.ok(all.includes(`${id}__${tool}`), `/mcp tools/list lacks ${id}__${tool}: ${all.join(', ')}`);
        }
        for (const other of UPSTREAMS) assert.ok(all.includes(`${other.id}__echo`), `/mcp lacks ${other.id}__echo: ${all.join(', ')}`);
      });

      it('tools/call: a result and an isError result come through as the upstream sent them', async () => {
        const viaScoped = await traced(id, 'echo on /mcp/' + id,
          () => scoped[id].callTool({ name: 'echo', arguments: { message: `hello ${id}` } }));
        assert.equal(viaScoped.isError, undefined, JSON.stringify(viaScoped));
        assert.deepEqual(viaScoped.content, [{ type: 'text', text: `Echo: hello ${id}` }]);

        const viaAggregate = await traced(id, `${id}__echo on /mcp`,
          () => aggregate.callTool({ name: `${id}__echo`, arguments: { message: `aggregate ${id}` } }));
        assert.deepEqual(viaAggregate.content, [{ type: 'text', text: `Echo: aggregate ${id}` }], JSON.stringify(viaAggregate));

        for (const [where, client, tool] of [[`/mcp/${id}`, scoped[id], 'fail'], ['/mcp', aggregate, `${id}__fail`]]) {
          const failed = await traced(id, `${tool} on ${where}`, () => client.callTool({ name: tool, arguments: { reason: where } }));
          assert.equal(failed.isError, true, `${where}: ${JSON.stringify(failed)}`);
          assert.equal(resultText(failed), `${name} failed on purpose: ${where}`);
        }
      });

      it('a 3 MB answer (one JSON body read in many pieces) arrives whole', async () => {
        const bytes = 3 * 1024 * 1024;
        const result = await traced(id, 'big', () => scoped[id].callTool({ name: 'big', arguments: { bytes } }));
        const text = resultText(result);
        assert.equal(text.length, bytes);
        assert.ok(/^x+$/.test(text), 'the text is not all "x"');
      });

      it('resources/list, resources/templates/list and resources/read (a listed URI and a template URI) on both endpoints', async () => {
        const info = `fixture://${name}/info`;
        const resources = (await traced(id, 'resources/list', () => listAll(scoped[id], 'resources'))).items;
        assert.ok(resources.some((r) => r.uri === info), `/mcp/${id} resources/list lacks ${info}: ${JSON.stringify(resources)}`);
        const templates = (await traced(id, 'resources/templates/list', () => listAll(scoped[id], 'resourceTemplates'))).items;
        assert.ok(templates.some((r) => r.uriTemplate === `fixture://${name}/items/{id}`), JSON.stringify(templates));

        for (const [where, client] of [[`/mcp/${id}`, scoped[id]], ['/mcp', aggregate]]) {
          const read = await traced(id, `resources/read ${info} on ${where}`, () => client.readResource({ uri: info }));
          assert.deepEqual(read.contents, [{ uri: info, mimeType: 'text/plain', text: `info of ${name}` }], `${where}: ${JSON.stringify(read)}`);
          const item = `fixture://${name}/items/${where.length}`;
          const readItem = await traced(id, `resources/read ${item} on ${where}`, () => client.readResource({ uri: item }));
          assert.deepEqual(readItem.contents, [{ uri: item, mimeType: 'text/plain', text: `item ${where.length} of ${name}` }],
            `${where}: ${JSON.stringify(readItem)}`);
        }
      });

      it('prompts/list and prompts/get on both endpoints', async () => {
        const prompts = (await traced(id, 'prompts/list', () => listAll(scoped[id], 'prompts'))).items;
        const greet = prompts.find((p) => p.name === 'greet');
        assert.ok(greet, `/mcp/${id} prompts/list lacks greet: ${JSON.stringify(prompts)}`);
        assert.deepEqual(greet.arguments?.map((a) => a.name), ['name'], JSON.stringify(greet));
        const all = (await listAll(aggregate, 'prompts')).items.map((p) => p.name);
        assert.ok(all.includes(`${id}__greet`), `/mcp prompts/list lacks ${id}__greet: ${all.join(', ')}`);

        for (const [where, client, prompt] of [[`/mcp/${id}`, scoped[id], 'greet'], ['/mcp', aggregate, `${id}__greet`]]) {
          const got = await traced(id, `prompts/get ${prompt} on ${where}`,
            () => client.getPrompt({ name: prompt, arguments: { name: `Ada via ${where}` } }));
          assert.deepEqual(got.messages, [{ role: 'user', content: { type: 'text', text: `Hello, Ada via ${where}, from ${name}` } }],
            `${where}: ${JSON.stringify(got)}`);
        }
      });

      it('ping on both endpoints', async () => {
        assert.deepEqual(await traced(id, 'ping on /mcp/' + id, () => scoped[id].ping()), {});
        assert.deepEqual(await traced(id, 'ping on /mcp', () => aggregate.ping()), {});
      });

      it('20 concurrent calls from two clients (/mcp and /mcp/<id>), answered out of order, each get their own answer', async () => {
        const since = Date.now();
        const calls = Array.from({ length: 20 }, (_, i) => {
          const viaScoped = i % 2 === 1;
          const client = viaScoped ? scoped[id] : aggregate;
          const tool = viaScoped ? 'echo-after' : `${id}__echo-after`;
          const message = `call-${i}-${viaScoped ? 'scoped' : 'aggregate'}`;
          const ms = (19 - i) * 20; // the last sent are answered first
          return client.callTool({ name: tool, arguments: { message, ms } }, undefined, { timeout: 30000 })
            .then((result) => ({ i, message, result }), (error) => ({ i, message, error }));
        });
        const outcomes = await Promise.all(calls);
        const wrong = outcomes.filter(({ message, result, error }) => error || result.isError
          || JSON.stringify(result.content) !== JSON.stringify([{ type: 'text', text: `${name} echo-after: ${message}` }]));
        assert.deepEqual(wrong.map(({ i, message, result, error }) => ({ i, message, got: error ? String(error) : result })), [],
          `calls answered wrongly${await context(id)}`);

        const seen = (await posts(id, since)).filter((e) => e.rpc === 'tools/call' && e.toolName === 'echo-after');
        assert.equal(seen.length, 20, `the upstream saw ${seen.length} echo-after calls: ${JSON.stringify(seen)}`);
        for (const e of seen) {
          assert.equal(e.status, 200, JSON.stringify(e));
          assert.match(String(e.contentType), /^application\/json/, JSON.stringify(e));
        }
        const overlap = Math.max(...seen.map((e) => seen.filter((o) => o.at <= e.at && o.doneAt > e.at).length));
        assert.ok(overlap > 1, `the gateway sent the 20 calls one after the other (at most ${overlap} in flight): ${JSON.stringify(seen)}`);
      });

      it('a batch on a 2025-03-26 session on /mcp/<id>: every call answered with its own id', async () => {
        const session = await rawSession(`${gh.mcpUrl}/${id}`, { protocolVersion: '2025-03-26' });
        try {
          const batch = [200, 0, 100].map((ms, k) => ({
            jsonrpc: '2.0', id: `b${k}`, method: 'tools/call', params: { name: 'echo-after', arguments: { message: `batch ${k}`, ms } },
          }));
          const res = await session.post(batch);
          assert.equal(res.status, 200, res.text);
          assert.equal(res.messages.length, 3, `want 3 answers: ${res.text}${await context(id)}`);
          for (const [k] of batch.entries()) {
            const answer = res.messages.find((m) => m?.id === `b${k}`);
            assert.ok(answer, `no answer with id b${k}: ${res.text}`);
            assert.deepEqual(answer.result?.content, [{ type: 'text', text: `${name} echo-after: batch ${k}` }], res.text);
          }
        } finally {
          await session.remove().catch(() => {});
        }
      });

      it('HTTP 500 with a plain-text body → -32603 naming the server and the status; the call is not resent; the next call works', async () => {
        for (const [where, client, prefix] of [[`/mcp/${id}`, scoped[id], ''], ['/mcp', aggregate, `${id}__`]]) {
          const before = (await fixtures[id].debug()).http500s.length;
          const error = await traced(id, `http-500 on ${where}`,
            () => mcpError(() => client.callTool({ name: `${prefix}http-500`, arguments: {} }, undefined, { timeout: 20000 })));
          assert.equal(error.code, -32603, `${where}: ${error.message}`);
          assert.ok(error.message.includes(`'${id}'`), `${where}: the error does not name the server '${id}': ${error.message}`);
          assert.match(error.message, /\b500\b/, `${where}: the error does not name the status 500: ${error.message}`);
          assert.equal((await fixtures[id].debug()).http500s.length, before + 1, `${where}: the gateway did not send the call exactly once`);

          const next = await traced(id, `echo on ${where} after the 500`,
            () => client.callTool({ name: `${prefix}echo`, arguments: { message: `after 500 on ${where}` } }));
          assert.deepEqual(next.content, [{ type: 'text', text: `Echo: after 500 on ${where}` }], JSON.stringify(next));
        }
      });

      it(u.stateless
        ? 'the upstream answered every request with application/json, and no request or answer carried an Mcp-Session-Id'
        : 'the upstream answered every request with application/json, and every later request carried the session it issued', async () => {
        const all = await posts(id);
        const answered = all.filter((e) => e.status === 200);
        assert.ok(answered.length >= 40, `only ${answered.length} POSTs answered 200`);
        for (const e of answered) assert.match(String(e.contentType), /^application\/json/, `an answer that is not JSON: ${JSON.stringify(e)}`);
        assert.ok(!all.some((e) => String(e.contentType).includes('text/event-stream')), 'an SSE answer from a JSON-response upstream');
        if (u.stateless) {
          const withSession = (await fixtures[id].debug()).exchanges.filter((e) => e.sessionId || e.responseSessionId);
          assert.deepEqual(withSession, [], 'a session id on a stateless upstream');
        } else {
          const issued = new Set(all.filter((e) => e.rpc === 'initialize').map((e) => e.responseSessionId));
          const stray = all.filter((e) => e.rpc !== 'initialize' && !issued.has(e.sessionId));
          assert.deepEqual(stray, [], `requests without a session the upstream issued (issued: ${[...issued].join(', ')})`);
        }
      });
    });
  }
});
