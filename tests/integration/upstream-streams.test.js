// Upstream SSE streams, against an upstream written with the real SDK (fixtures/sdk-http-server.js):
//  - SSE polling (SEP-1699): the upstream closes a call's response stream mid-call; the gateway resumes it
//    with GET + Last-Event-ID (after the priming event's `retry:`) and the downstream client still gets
//    the progress and the result;
//  - list_changed: the upstream's tool list changes, the downstream clients get
//    notifications/tools/list_changed on their GET stream and the next tools/list shows the new tool.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  connectClient, listAll, mcpError, resultText, startGatehouse, startSdkFixture, streamableHttpEntry, waitFor,
} from './lib/index.js';

const RETRY_MS = 300;

describe('upstream SSE streams (SDK fixture)', () => {
  let gh;
  let fixture;
  let client;  // /mcp
  let scoped;  // /mcp/poll
  const listChanged = { client: 0, scoped: 0 };
  const cleanups = [];

  before(async () => {
    fixture = await startSdkFixture({ t: (fn) => cleanups.push(fn), env: { RETRY_MS: String(RETRY_MS) } });
    gh = await startGatehouse({ t: (fn) => cleanups.push(fn), servers: { poll: streamableHttpEntry(fixture.url) } });
    client = await connectClient(gh.mcpUrl, {
      t: (fn) => cleanups.push(fn),
      notifications: { 'notifications/tools/list_changed': () => { listChanged.client += 1; } },
    });
    scoped = await connectClient(`${gh.mcpUrl}/poll`, {
      t: (fn) => cleanups.push(fn),
      notifications: { 'notifications/tools/list_changed': () => { listChanged.scoped += 1; } },
    });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  /** The fixture's record of the gateway's upstream session (the one that saw `tag`'s closes). */
  async function sessionWithTag(tag) {
    const { sessions } = await fixture.debug();
    const session = sessions.find((s) => s.closed.some((c) => c.tag === tag));
    assert.ok(session, `no fixture session saw a poll-then-finish call tagged ${tag}: ${JSON.stringify(sessions)}`);
    return { ...session, closed: session.closed.filter((c) => c.tag === tag) };
  }

  async function pollThenFinish(c, name, args) {
    const progress = [];
    let result;
    try {
      result = await c.callTool({ name, arguments: args }, undefined,
        { onprogress: (p) => progress.push(p), timeout: 30000 });
    } catch (error) {
      error.message = `tools/call ${name}(${JSON.stringify(args)}) failed: ${error.message}\n`
        + `fixture: ${JSON.stringify(await fixture.debug())}\n${gh.describe()}`;
      throw error;
    }
    assert.equal(result.isError, undefined, `${name} → isError: ${resultText(result)}`);
    return { result, progress };
  }

  describe('SSE polling: a response stream the upstream closes mid-call is resumed with GET + Last-Event-ID', () => {
    it('the answer is ready before the gateway comes back: progress and result are replayed (/mcp/poll)', async () => {
      const before = (await fixture.debug()).sessions.flatMap((s) => s.resumes).length;
      const { result, progress } = await pollThenFinish(scoped, 'poll-then-finish', { tag: 'replayed', closes: 1, finishAfterMs: 0 });
      assert.equal(resultText(result), 'poll-then-finish replayed: answered after 1 closed stream(s)');
      assert.deepEqual(progress.map((p) => [p.progress, p.total]), [[1, 2], [2, 2]],
        `progress seen (the second one was sent while the stream was closed): ${JSON.stringify(progress)}`);

      const session = await sessionWithTag('replayed');
      const resumes = (await fixture.debug()).sessions.flatMap((s) => s.resumes).slice(before);
      assert.equal(resumes.length, 1, `want one GET with Last-Event-ID, got ${JSON.stringify(resumes)}`);
      const [closed] = session.closed;
      assert.ok(closed.lastEventId, `the fixture did not record the last event id before the close: ${JSON.stringify(closed)}`);
      assert.equal(resumes[0].lastEventId, closed.lastEventId,
        'the gateway resumed from another event than the last one it received on the closed stream');
      assert.equal(resumes[0].status, 200, JSON.stringify(resumes[0]));
      const waited = resumes[0].at - closed.at;
      assert.ok(waited >= RETRY_MS - 50, `the gateway resumed ${waited} ms after the close, before the priming event's retry: ${RETRY_MS}`);
      assert.ok(waited < 10000, `the gateway took ${waited} ms to resume`);
    });

    it('the answer comes after the gateway is back: it arrives on the resumed stream (/mcp)', async () => {
      const finishAfterMs = 2000;
      const { result, progress } = await pollThenFinish(client, 'poll__poll-then-finish', { tag: 'live', closes: 1, finishAfterMs });
      assert.equal(resultText(result), 'poll-then-finish live: answered after 1 closed stream(s)');
      assert.deepEqual(progress.map((p) => p.progress), [1, 2], JSON.stringify(progress));
      const session = await sessionWithTag('live');
      const [closed] = session.closed;
      const resume = session.resumes.find((r) => r.lastEventId === closed.lastEventId);
      assert.ok(resume, `no GET with Last-Event-ID ${closed.lastEventId}: ${JSON.stringify(session.resumes)}`);
      assert.ok(resume.at - closed.at < finishAfterMs,
        `the gateway resumed ${resume.at - closed.at} ms after the close, after the answer (${finishAfterMs} ms) was ready`);
    });

    it('the upstream closes the resumed stream too: the gateway resumes again from the newest event id', async () => {
      const { result, progress } = await pollThenFinish(client, 'poll__poll-then-finish', { tag: 'twice', closes: 2, finishAfterMs: 0 });
      assert.equal(resultText(result), 'poll-then-finish twice: answered after 2 closed stream(s)');
      assert.deepEqual(progress.map((p) => [p.progress, p.total]), [[1, 3], [2, 3], [3, 3]], JSON.stringify(progress));
      const session = await sessionWithTag('twice');
      assert.equal(session.closed.length, 2, JSON.stringify(session.closed));
      for (const [i, closed] of session.closed.entries()) {
        assert.ok(session.resumes.some((r) => r.lastEventId === closed.lastEventId && r.status === 200),
          `close #${i + 1}: no GET with Last-Event-ID ${closed.lastEventId} (the last event before it); resumes: ${JSON.stringify(session.resumes)}`);
      }
      assert.notEqual(session.closed[0].lastEventId, session.closed[1].lastEventId);
    });

    it('several calls polled at once each get their own result and progress', async () => {
      const calls = ['p1', 'p2', 'p3'].map((tag, i) => pollThenFinish(i % 2 ? scoped : client,
        i % 2 ? 'poll-then-finish' : 'poll__poll-then-finish', { tag, closes: 1, finishAfterMs: 100 * i }));
      const results = await Promise.all(calls);
      for (const [i, { result, progress }] of results.entries()) {
        assert.equal(resultText(result), `poll-then-finish p${i + 1}: answered after 1 closed stream(s)`);
        assert.deepEqual(progress.map((p) => p.progress), [1, 2], `p${i + 1}: ${JSON.stringify(progress)}`);
      }
    });
  });

  describe('list_changed from the upstream', () => {
    it('reaches the clients of /mcp and /mcp/poll, and the next tools/list shows the new tool', async () => {
      // The notification travels on the gateway's standalone GET stream to the upstream: wait until it is open.
      await waitFor(async () => (await fixture.debug()).sessions.some((s) => s.openStandaloneGets > 0),
        { timeoutMs: 10000, what: 'the gateway\'s standalone GET stream on the fixture' });

      for (const name of ['late-tool', 'later-tool']) {
        const before = { ...listChanged };
        const toolsBefore = (await listAll(client, 'tools')).items.map((t) => t.name);
        assert.ok(!toolsBefore.includes(`poll__${name}`), `poll__${name} listed before it was added`);
        const unknown = await mcpError(() => scoped.callTool({ name, arguments: {} }));
        assert.equal(unknown.code, -32602, `calling ${name} before it exists: ${unknown.message}`);

        const added = await client.callTool({ name: 'poll__add-tool', arguments: { name } });
        assert.equal(resultText(added), `added ${name}`);

        await waitFor(() => listChanged.client > before.client && listChanged.scoped > before.scoped, {
          timeoutMs: 10000,
          what: `notifications/tools/list_changed for ${name} on both sessions (got ${JSON.stringify(listChanged)}, before ${JSON.stringify(before)})`,
        });

        const aggregate = (await listAll(client, 'tools')).items.map((t) => t.name);
        assert.ok(aggregate.includes(`poll__${name}`), `/mcp tools/list after list_changed lacks poll__${name}: ${aggregate.join(', ')}`);
        const one = (await listAll(scoped, 'tools')).items.map((t) => t.name);
        assert.ok(one.includes(name), `/mcp/poll tools/list after list_changed lacks ${name}: ${one.join(', ')}`);
        assert.equal(resultText(await client.callTool({ name: `poll__${name}`, arguments: {} })), `${name} says hello`);
        assert.equal(resultText(await scoped.callTool({ name, arguments: {} })), `${name} says hello`);
      }
      const servers = (await (await fetch(`${gh.url}/servers`, { headers: gh.authHeaders })).json()).servers;
      assert.equal(servers.find((s) => s.id === 'poll')?.tools, 5, `GET /servers: ${JSON.stringify(servers)}`);
    });
  });
});
