// A legacy HTTP+SSE upstream (2024-11-05 transport: GET /sse for an `endpoint` event and the server's
// messages, POST /message?sessionId=… for ours), end to end through the gateway: server-everything `sse`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  connectClient, listAll, rawSession, resultText, sseEntry, startEverythingHttp, startGatehouse,
} from './lib/index.js';

describe('legacy SSE upstream end to end (server-everything sse)', () => {
  let gh;
  let sse;
  let client;  // /mcp
  let scoped;  // /mcp/evsse
  const cleanups = [];

  before(async () => {
    sse = await startEverythingHttp('sse', { t: (fn) => cleanups.push(fn) });
    gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { evsse: sseEntry(sse.url) } });
    client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
    scoped = await connectClient(`${gh.mcpUrl}/evsse`, { t: (fn) => cleanups.push(fn) });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  it('tools/call: results come back to the right caller, also for concurrent calls', async () => {
    assert.equal(resultText(await client.callTool({ name: 'evsse__echo', arguments: { message: 'over sse' } })), 'Echo: over sse');
    assert.equal(resultText(await scoped.callTool({ name: 'get-sum', arguments: { a: 40, b: 2 } })), 'The sum of 40 and 2 is 42.');
    const messages = Array.from({ length: 8 }, (_, i) => `concurrent #${i}`);
    const results = await Promise.all(messages.map((message, i) => (i % 2 ? scoped : client)
      .callTool({ name: i % 2 ? 'echo' : 'evsse__echo', arguments: { message } })));
    assert.deepEqual(results.map(resultText), messages.map((m) => `Echo: ${m}`));
    const health = await (await fetch(`${gh.url}/gateway/health`)).json();
    assert.equal(health.upstreams?.evsse?.transport, 'sse', JSON.stringify(health));
    assert.equal(health.upstreams?.evsse?.state, 'ready', JSON.stringify(health));
  });

  it('resources/list and resources/read: a static document, a templated text and a templated blob resource', async () => {
    const uris = (await listAll(client, 'resources')).items.map((r) => r.uri);
    assert.ok(uris.includes('demo://resource/static/document/instructions.md'), `resources/list: ${uris.join(', ')}`);

    const doc = await client.readResource({ uri: 'demo://resource/static/document/instructions.md' });
    assert.equal(doc.contents.length, 1, JSON.stringify(doc).slice(0, 500));
    assert.equal(doc.contents[0].uri, 'demo://resource/static/document/instructions.md');
    assert.equal(doc.contents[0].mimeType, 'text/markdown');
    assert.ok(doc.contents[0].text.length > 20, `document text: ${JSON.stringify(doc.contents[0].text)}`);

    const text = await scoped.readResource({ uri: 'demo://resource/dynamic/text/3' });
    assert.match(text.contents[0].text, /^Resource 3: This is a plaintext resource created at /);

    const blob = await client.readResource({ uri: 'demo://resource/dynamic/blob/4' });
    assert.equal(blob.contents[0].uri, 'demo://resource/dynamic/blob/4');
    assert.match(Buffer.from(blob.contents[0].blob, 'base64').toString('utf8'), /^Resource 4: This is a base64 blob created at /);
  });

  it('prompts/get', async () => {
    const prompt = await client.getPrompt({ name: 'evsse__simple-prompt' });
    assert.equal(prompt.messages[0].content.text, 'This is a simple prompt without arguments.');
  });

  for (const [label, which, name] of [['/mcp/evsse', 'scoped', 'trigger-long-running-operation'],
    ['/mcp', 'client', 'evsse__trigger-long-running-operation']]) {
    it(`progress notifications reach onprogress, in order, before the result (${label})`, async () => {
      const c = which === 'scoped' ? scoped : client;
      const progress = [];
      const result = await c.callTool({ name, arguments: { duration: 0.6, steps: 3 } }, undefined,
        { onprogress: (p) => progress.push(p), timeout: 30000 });
      assert.equal(resultText(result), 'Long running operation completed. Duration: 0.6 seconds, Steps: 3.');
      assert.deepEqual(progress.map((p) => [p.progress, p.total]), [[1, 3], [2, 3], [3, 3]],
        `progress seen: ${JSON.stringify(progress)}`);
    });
  }

  it('sampling/createMessage from the SSE upstream is relayed to the client that declared sampling', async (t) => {
    const asked = [];
    const sampler = await connectClient(`${gh.mcpUrl}/evsse`, {
      t,
      capabilities: { sampling: {} },
      handlers: {
        'sampling/createMessage': async (request) => {
          asked.push(request.params);
          return { model: 'sse-test-model', role: 'assistant', content: { type: 'text', text: 'reply relayed over sse' } };
        },
      },
    });
    const result = await sampler.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'over sse', maxTokens: 7 } },
      undefined, { timeout: 30000 });
    assert.equal(asked.length, 1, `the sampling handler ran ${asked.length} times`);
    assert.equal(asked[0].maxTokens, 7);
    assert.match(asked[0].messages[0].content.text, /over sse/);
    assert.ok(resultText(result).includes('reply relayed over sse'), resultText(result));
  });
});

describe('a legacy SSE stream whose line ending is split across reads', () => {
  it('an event whose CR and LF arrive seconds apart is read whole', async (t) => {
    let stream = null;
    const send = (message) => stream?.write(`event: message\r\ndata: ${JSON.stringify(message)}\r\n\r\n`);
    const server = http.createServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: endpoint\r');  // the LF after the pool's once-a-second check, not before
        setTimeout(() => res.write('\ndata: /messages\r\n\r\n'), 2500);
        stream = res;
        return;
      }
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        res.writeHead(202).end();
        const m = JSON.parse(body);
        if (m.id === undefined) return;
        if (m.method === 'initialize') {
          send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'split', version: '1' } } });
        } else if (m.method === 'tools/list') {
          send({ jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'ping', inputSchema: { type: 'object' } }] } });
        } else {
          send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'pong' }] } });
        }
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => { stream?.destroy(); server.closeAllConnections?.(); server.close(); });
    const gh = await startGatehouse({ t, servers: { split: { type: 'sse', url: `http://127.0.0.1:${server.address().port}/sse` } } });
    const s = await rawSession(`${gh.url}/mcp/split`);
    const res = await s.request('tools/call', { name: 'ping', arguments: {} });
    assert.equal(res.json?.result?.content?.[0]?.text, 'pong', res.text);
  });
});
