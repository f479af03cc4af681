// Server → client requests relayed through the gateway: sampling/createMessage and
// elicitation/create, from a stdio and a streamable-HTTP upstream.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  connectClient, everythingStdio, fixtureStdio, listAll, rawSession, resultText, rpc, startEverythingHttp, startGatehouse,
  streamableHttpEntry,
} from './lib/index.js';

describe('sampling and elicitation relayed to the downstream client', () => {
  let gh;
  let client;
  const samplingCalls = [];
  const elicitationCalls = [];
  const cleanups = [];

  before(async () => {
    const http = await startEverythingHttp('streamableHttp', { t: (fn) => cleanups.push(fn) });
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      servers: {
        everything: everythingStdio(),
        evhttp: streamableHttpEntry(http.url),
      },
    });
    client = await connectClient(gh.mcpUrl, {
      t: (fn) => cleanups.push(fn),
      capabilities: { sampling: {}, elicitation: { form: {} } },
      handlers: {
        'sampling/createMessage': async (request) => {
          samplingCalls.push(request.params);
          const asked = request.params.messages.map((m) => m.content?.text ?? '').join(' ');
          return {
            model: 'gatehouse-test-model',
            role: 'assistant',
            content: { type: 'text', text: `sampled reply #${samplingCalls.length} to <${asked}>` },
            stopReason: 'endTurn',
          };
        },
        'elicitation/create': async (request) => {
          elicitationCalls.push(request.params);
          return { action: 'accept', content: { name: `Ada Lovelace #${elicitationCalls.length}`, check: true } };
        },
      },
    });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  it('lists the capability-dependent tools for a client that declared sampling and elicitation', async () => {
    const names = (await listAll(client, 'tools')).items.map((tool) => tool.name);
    for (const id of ['everything', 'evhttp']) {
      assert.ok(names.includes(`${id}__trigger-sampling-request`), `lacks ${id}__trigger-sampling-request: ${names.join(', ')}`);
      assert.ok(names.includes(`${id}__trigger-elicitation-request`), `lacks ${id}__trigger-elicitation-request: ${names.join(', ')}`);
    }
  });

  for (const id of ['everything', 'evhttp']) {
    it(`relays sampling/createMessage from ${id} and returns the client's reply to it`, async () => {
      const before = samplingCalls.length;
      const result = await client.callTool(
        { name: `${id}__trigger-sampling-request`, arguments: { prompt: `haiku about ${id}`, maxTokens: 25 } },
        undefined, { timeout: 30000 },
      );
      assert.equal(samplingCalls.length, before + 1, 'the sampling handler ran exactly once');
      const params = samplingCalls.at(-1);
      assert.equal(params.maxTokens, 25);
      assert.equal(params.systemPrompt, 'You are a helpful test server.');
      assert.match(params.messages[0].content.text, new RegExp(`haiku about ${id}`));
      const text = resultText(result);
      assert.match(text, /LLM sampling result:/);
      assert.ok(text.includes(`sampled reply #${before + 1} to <`), `tool result lacks the handler's reply: ${text}`);
      assert.ok(text.includes('gatehouse-test-model'), text);
    });

    it(`relays elicitation/create from ${id} and returns the client's answer to it`, async () => {
      const before = elicitationCalls.length;
      const result = await client.callTool({ name: `${id}__trigger-elicitation-request`, arguments: {} },
        undefined, { timeout: 30000 });
      assert.equal(elicitationCalls.length, before + 1, 'the elicitation handler ran exactly once');
      const params = elicitationCalls.at(-1);
      assert.equal(params.message, 'Please provide inputs for the following fields:');
      assert.deepEqual(params.requestedSchema.required, ['name']);
      const text = resultText(result);
      assert.match(text, /User provided the requested information/);
      assert.ok(text.includes(`- Name: Ada Lovelace #${before + 1}`), `tool result lacks the handler's answer: ${text}`);
      assert.ok(text.includes('- Agreed to terms: true'), text);
    });
  }

  it('sends a server→client request only to the session whose call caused it', async (t) => {
    const seen = { a: 0, b: 0 };
    const make = (label) => connectClient(gh.mcpUrl, {
      t,
      capabilities: { sampling: {} },
      handlers: {
        'sampling/createMessage': async () => {
          seen[label] += 1;
          return { model: `model-${label}`, role: 'assistant', content: { type: 'text', text: `reply from ${label}` } };
        },
      },
    });
    const [a, b] = [await make('a'), await make('b')];
    for (const id of ['everything', 'evhttp']) {
      const fromB = await b.callTool({ name: `${id}__trigger-sampling-request`, arguments: { prompt: 'b', maxTokens: 5 } },
        undefined, { timeout: 30000 });
      assert.ok(resultText(fromB).includes('reply from b'), resultText(fromB));
      const fromA = await a.callTool({ name: `${id}__trigger-sampling-request`, arguments: { prompt: 'a', maxTokens: 5 } },
        undefined, { timeout: 30000 });
      assert.ok(resultText(fromA).includes('reply from a'), resultText(fromA));
    }
    assert.deepEqual(seen, { a: 2, b: 2 });
  });

  it('relays on /mcp/<server> too', async (t) => {
    let asked = 0;
    const one = await connectClient(`${gh.mcpUrl}/everything`, {
      t,
      capabilities: { sampling: {} },
      handlers: {
        'sampling/createMessage': async () => {
          asked += 1;
          return { model: 'single-server-model', role: 'assistant', content: { type: 'text', text: 'single server reply' } };
        },
      },
    });
    const result = await one.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'one', maxTokens: 5 } },
      undefined, { timeout: 30000 });
    assert.equal(asked, 1);
    assert.ok(resultText(result).includes('single server reply'), resultText(result));
  });
});

describe('a stdio server\'s request reaches the stream of the call that caused it', () => {
  // Raw HTTP, no GET stream: a stdio server's request is attributed to no call on the wire, and with no
  // standalone stream open the gateway has to find the call's own stream.
  const streamed = (url, headers, body, onMessage) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers }, (res) => {
      let buf = '';
      const messages = [];
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
          const data = buf.slice(0, i).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('\n');
          if (!data) continue;
          const m = JSON.parse(data);
          messages.push(m);
          onMessage(m);
        }
      });
      res.on('end', () => resolve(messages));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });

  it('while a quicker call made after it has already ended', async (t) => {
    const gh = await startGatehouse({ t, servers: { one: fixtureStdio('late-sample.js'), two: fixtureStdio('late-sample.js') } });
    const s = await rawSession(gh.mcpUrl, { capabilities: { sampling: {} } });
    const asked = [];
    const answer = (m) => {
      if (m.method !== 'sampling/createMessage') return;
      asked.push(m.id);
      s.post({ jsonrpc: '2.0', id: m.id, result: { model: 'm', role: 'assistant', content: { type: 'text', text: 'from the client' } } });
    };
    const slow = streamed(gh.mcpUrl, s.headers, rpc('tools/call', { name: 'one__late-sample', arguments: { ms: 1000 } }), answer);
    await new Promise((r) => setTimeout(r, 200));
    const quick = await s.post(rpc('tools/call', { name: 'two__quick', arguments: {} }));
    assert.equal(quick.json?.result?.content?.[0]?.text, 'quick', quick.text);
    const messages = await slow;
    assert.equal(asked.length, 1, JSON.stringify(messages));
    const result = messages.find((m) => m.result);
    assert.equal(result?.result?.content?.[0]?.text, 'sampled: from the client', JSON.stringify(messages));
  });
});
