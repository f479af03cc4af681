// JSON-RPC batches on a 2025-03-26 session (raw HTTP): requests, notifications and invalid messages
// mixed in one POST are answered by one JSON array (or, when progress must go first, one SSE stream)
// holding a response for every request and a -32600 error for every invalid message, nothing for the
// notifications.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { everythingStdio, rawSession, startGatehouse } from './lib/index.js';

describe('JSON-RPC batches on a 2025-03-26 session', () => {
  let gh;
  let session;
  const cleanups = [];

  before(async () => {
    gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { everything: everythingStdio() } });
    session = await rawSession(gh.mcpUrl, { protocolVersion: '2025-03-26' });
    assert.equal(session.protocolVersion, '2025-03-26');
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  const byId = (messages, id) => messages.filter((m) => m && typeof m === 'object' && m.id === id);

  it('a request, a notification and an invalid message → one JSON array: the response and a -32600 error', async () => {
    const res = await session.post([
      { jsonrpc: '2.0', id: 'batch-call', method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 'in a batch' } } },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'nothing-in-flight', reason: 'batch test' } },
      { jsonrpc: '2.0', id: 'batch-invalid', params: {} }, // neither a request (no method) nor a response
    ]);
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /^application\/json/, `content-type ${res.headers['content-type']}: ${res.text}`);
    const body = JSON.parse(res.text);
    assert.ok(Array.isArray(body), `the answer to a batch is not a JSON array: ${res.text}`);
    assert.equal(body.length, 2, `want 2 messages (the response and the error; nothing for the notification): ${res.text}`);

    const [answer] = byId(body, 'batch-call');
    assert.ok(answer, `no response with id "batch-call": ${res.text}`);
    assert.equal(answer.jsonrpc, '2.0');
    assert.deepEqual(answer.result?.content, [{ type: 'text', text: 'Echo: in a batch' }], res.text);

    const errors = body.filter((m) => m.error);
    assert.equal(errors.length, 1, res.text);
    assert.equal(errors[0].error.code, -32600, res.text);
    assert.ok(errors[0].id === 'batch-invalid' || errors[0].id === null, `error id ${JSON.stringify(errors[0].id)}: ${res.text}`);
    assert.equal(typeof errors[0].error.message, 'string');
  });

  it('an invalid member that is not even an object → -32600 with id null; the requests are all answered', async () => {
    const res = await session.post([
      42,
      { jsonrpc: '2.0', id: 7001, method: 'ping' },
      { jsonrpc: '2.0', id: 7002, method: 'tools/call', params: { name: 'everything__get-sum', arguments: { a: 1, b: 2 } } },
      { jsonrpc: '1.0', id: 7003, method: 'ping' }, // wrong version: invalid, its id is still known
      { jsonrpc: '2.0', method: 'notifications/initialized' },
    ]);
    assert.equal(res.status, 200, res.text);
    const body = JSON.parse(res.text);
    assert.ok(Array.isArray(body), res.text);
    assert.equal(body.length, 4, `want 4 messages (2 responses, 2 errors): ${res.text}`);
    assert.deepEqual(byId(body, 7001)[0]?.result, {}, res.text);
    assert.deepEqual(byId(body, 7002)[0]?.result?.content, [{ type: 'text', text: 'The sum of 1 and 2 is 3.' }], res.text);
    const errors = body.filter((m) => m.error);
    assert.deepEqual(errors.map((e) => e.error.code), [-32600, -32600], res.text);
    assert.ok(errors.some((e) => e.id === null), `no -32600 with id null for the member 42: ${res.text}`);
    assert.ok(errors.every((e) => e.id === null || e.id === 7003), res.text);
  });

  it('notifications and an invalid message only → a JSON array with just the error', async () => {
    const res = await session.post([
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', id: 'only-invalid', method: 42 },
    ]);
    assert.equal(res.status, 200, res.text);
    const body = JSON.parse(res.text);
    assert.ok(Array.isArray(body), `not an array: ${res.text}`);
    assert.equal(body.length, 1, res.text);
    assert.equal(body[0].error?.code, -32600, res.text);
  });

  it('a batch of more than 1,000 messages → 400, -32600, and none of them runs', async () => {
    const ping = (i) => ({ jsonrpc: '2.0', id: `big-${i}`, method: 'ping' });
    const res = await session.post(Array.from({ length: 1001 }, (_, i) => ping(i)));
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json?.error?.code, -32600, res.text);
    assert.match(res.json.error.message, /at most 1000 messages/);
    const fits = await session.post(Array.from({ length: 1000 }, (_, i) => ping(i)));
    assert.equal(fits.status, 200, fits.text.slice(0, 300));
    assert.equal(JSON.parse(fits.text).length, 1000);
  });

  it('notifications only → 202 with no body', async () => {
    const res = await session.post([
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'none', reason: 'batch test' } },
    ]);
    assert.equal(res.status, 202, res.text);
    assert.equal(res.text, '');
  });

  it('a batch whose request reports progress → an SSE stream with the progress, the response and the -32600 error', async () => {
    const res = await session.post([
      {
        jsonrpc: '2.0',
        id: 'batch-progress',
        method: 'tools/call',
        params: { name: 'everything__trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 }, _meta: { progressToken: 'tok-batch' } },
      },
      { jsonrpc: '2.0', id: 'batch-invalid-2' },
    ]);
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/, `content-type ${res.headers['content-type']}: ${res.text}`);
    const progress = res.messages.filter((m) => m.method === 'notifications/progress');
    assert.deepEqual(progress.map((m) => [m.params.progressToken, m.params.progress]), [['tok-batch', 1], ['tok-batch', 2], ['tok-batch', 3]], res.text);
    const [answer] = byId(res.messages, 'batch-progress');
    assert.match(answer?.result?.content?.[0]?.text ?? '', /Long running operation completed/, res.text);
    const errors = res.messages.filter((m) => m.error);
    assert.equal(errors.length, 1, res.text);
    assert.equal(errors[0].error.code, -32600, res.text);
    const last = res.messages.at(-1);
    assert.ok(!last.method, `a notification came after the responses: ${res.text}`);
  });
});
