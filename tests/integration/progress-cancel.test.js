// Progress notifications and cancellation across both legs (client ↔ gateway ↔ upstream).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  connectClient, everythingStdio, fixtureStdio, getJson, resultText, sseEntry,
  startEverythingHttp, startGatehouse, streamableHttpEntry, waitFor, withAuth,
} from './lib/index.js';

describe('progress and cancellation', () => {
  let gh;
  let client;
  const cleanups = [];

  before(async () => {
    const [http, sse] = await Promise.all([
      startEverythingHttp('streamableHttp', { t: (fn) => cleanups.push(fn) }),
      startEverythingHttp('sse', { t: (fn) => cleanups.push(fn) }),
    ]);
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      servers: {
        everything: everythingStdio(),
        evhttp: streamableHttpEntry(http.url),
        evsse: sseEntry(sse.url),
        hang: fixtureStdio('hang.js', { timeoutMs: 60000 }),
      },
    });
    client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  for (const id of ['everything', 'evhttp', 'evsse']) {
    it(`delivers progress notifications from ${id} to onprogress`, async () => {
      const progress = [];
      const result = await client.callTool(
        { name: `${id}__trigger-long-running-operation`, arguments: { duration: 0.8, steps: 4 } },
        undefined,
        { onprogress: (p) => progress.push(p), timeout: 30000 },
      );
      assert.match(resultText(result), /Long running operation completed\. Duration: 0\.8 seconds, Steps: 4\./);
      assert.deepEqual(progress.map((p) => p.progress), [1, 2, 3, 4], `progress seen: ${JSON.stringify(progress)}`);
      assert.ok(progress.every((p) => p.total === 4), `totals: ${JSON.stringify(progress)}`);
    });
  }

  it('aborting a call mid-flight rejects it quickly and the gateway keeps working', async () => {
    const controller = new AbortController();
    const progress = [];
    const started = Date.now();
    const call = client.callTool(
      { name: 'everything__trigger-long-running-operation', arguments: { duration: 10, steps: 20 } },
      undefined,
      {
        signal: controller.signal,
        timeout: 30000,
        onprogress: (p) => { progress.push(p); if (progress.length === 1) controller.abort(new Error('user aborted')); },
      },
    );
    await assert.rejects(call, /user aborted/);
    assert.equal(progress.length >= 1, true);
    assert.ok(Date.now() - started < 5000, 'the aborted call did not wait for the upstream to finish');

    const next = await client.callTool({ name: 'everything__echo', arguments: { message: 'after abort' } });
    assert.equal(resultText(next), 'Echo: after abort');
    const health = await getJson(`${gh.url}/gateway/health`);
    assert.equal(health.status, 200);
  });

  it('an abort reaches the upstream as notifications/cancelled with the upstream\'s request id', async () => {
    const report = async () => JSON.parse(resultText(await client.callTool({ name: 'hang__report', arguments: {} })));
    const controller = new AbortController();
    const call = client.callTool({ name: 'hang__hang', arguments: { tag: 'abort-me' } }, undefined,
      { signal: controller.signal, timeout: 30000 });
    call.catch(() => {});
    const arrived = await waitFor(async () => (await report()).hangCalls.find((c) => c.tag === 'abort-me'),
      { timeoutMs: 10000, intervalMs: 50, what: 'the hang call to reach the upstream' });
    controller.abort(new Error('abort the hang'));
    await assert.rejects(call, /abort the hang/);
    const cancelled = await waitFor(async () => (await report()).cancelled.find((c) => c.requestId === arrived.id),
      { timeoutMs: 10000, intervalMs: 50, what: `notifications/cancelled for upstream request ${JSON.stringify(arrived.id)}` });
    assert.deepEqual(cancelled.requestId, arrived.id);

    const next = await client.callTool({ name: 'hang__echo', arguments: { message: 'still here' } });
    assert.equal(resultText(next), 'Echo: still here');
  });

  it('a client that just drops the connection mid-call (no cancel notification) gets the upstream call cancelled', async () => {
    const report = async () => JSON.parse(resultText(await client.callTool({ name: 'hang__report', arguments: {} })));
    const headers = (extra = {}) => withAuth(gh.url, {
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-11-25', ...extra,
    });
    const init = await fetch(gh.mcpUrl, {
      method: 'POST', headers: headers(),
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    assert.equal(init.status, 200);
    const session = init.headers.get('mcp-session-id');
    await init.text();
    const sid = { 'mcp-session-id': session };
    const note = await fetch(gh.mcpUrl, { method: 'POST', headers: headers(sid),
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
    assert.equal(note.status, 202);

    const controller = new AbortController();
    const call = fetch(gh.mcpUrl, { method: 'POST', headers: headers(sid), signal: controller.signal,
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call',
        params: { name: 'hang__hang', arguments: { tag: 'dropped' } } }) });
    call.catch(() => {});
    const arrived = await waitFor(async () => (await report()).hangCalls.find((c) => c.tag === 'dropped'),
      { timeoutMs: 10000, intervalMs: 50, what: 'the hang call to reach the upstream' });
    controller.abort();  // closes the connection; nothing is sent
    const cancelled = await waitFor(async () => (await report()).cancelled.find((c) => c.requestId === arrived.id),
      { timeoutMs: 10000, intervalMs: 100, what: `notifications/cancelled for upstream request ${JSON.stringify(arrived.id)}` });
    assert.deepEqual(cancelled.requestId, arrived.id);
  });
});
