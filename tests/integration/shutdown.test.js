// SIGTERM while a call is in flight: the call completes, the gateway exits 0, and the
// stdio upstream processes it started are gone.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import {
  cmdline, connectClient, descendantPids, everythingStdio, memoryStdio, pidAlive, rawRequest,
  resultText, startGatehouse, tempDir, waitFor, waitForExit,
} from './lib/index.js';

it('SIGTERM drains an in-flight call, exits 0 and stops the stdio upstreams', async (t) => {
  const data = tempDir('gatehouse-shutdown-');
  t.after(data.cleanup);
  const gh = await startGatehouse({
    t,
    env: { SHUTDOWN_GRACE_MS: '10000' },
    servers: {
      everything: everythingStdio(),
      memory: memoryStdio(`${data.dir}/memory.jsonl`),
    },
  });
  const client = await connectClient(gh.mcpUrl, { t });
  // Make sure both stdio upstreams are running.
  assert.equal(resultText(await client.callTool({ name: 'everything__echo', arguments: { message: 'x' } })), 'Echo: x');
  await client.callTool({ name: 'memory__read_graph', arguments: {} });
  const upstreamPids = descendantPids(gh.pid).filter((pid) => /server-(everything|memory)/.test(cmdline(pid)));
  assert.ok(upstreamPids.some((pid) => cmdline(pid).includes('server-everything')) &&
    upstreamPids.some((pid) => cmdline(pid).includes('server-memory')),
  `stdio upstreams under the gateway: ${upstreamPids.map(cmdline).join(' | ')}`);

  let signalled = false;
  let drainingHealth;
  const healthOutcomes = [];
  const call = client.callTool(
    { name: 'everything__trigger-long-running-operation', arguments: { duration: 2, steps: 4 } },
    undefined,
    {
      timeout: 30000,
      onprogress: () => {
        if (signalled) return;
        signalled = true;
        gh.signal('SIGTERM');
        // While draining, health answers 503 {"status":"draining"}. Polled, since the signal
        // reaches the gateway asynchronously; every outcome is kept for the failure message.
        drainingHealth = waitFor(async () => {
          try {
            const res = await rawRequest(`${gh.url}/gateway/health`, { method: 'GET', timeoutMs: 1000 });
            healthOutcomes.push(`${res.status} ${res.text.slice(0, 200)}`);
            return res.status === 200 ? null : res;
          } catch (error) {
            healthOutcomes.push(`error ${error.code ?? error.message}`);
            return null;
          }
        }, { timeoutMs: 3000, intervalMs: 25, what: 'health to answer 503 after SIGTERM' })
          .catch((error) => ({ error }));
      },
    },
  );
  const result = await call;
  assert.ok(signalled, 'no progress arrived before the call completed, so SIGTERM was never sent mid-call');
  assert.match(resultText(result), /Long running operation completed/);

  const exit = await waitForExit(gh.proc, 15000);
  assert.ok(exit, 'the gateway did not exit within 15 s of SIGTERM');
  assert.deepEqual(exit, { code: 0, signal: null }, `exit: ${JSON.stringify(exit)}\n${gh.describe()}`);

  await waitFor(() => upstreamPids.every((pid) => !pidAlive(pid)),
    { timeoutMs: 2000, what: `stdio upstreams ${upstreamPids.join(', ')} to be gone` });

  const health = await drainingHealth;
  const seen = [...new Set(healthOutcomes)].join(' | ');
  assert.ok(!health.error, `no 503 from /gateway/health while draining; saw: ${seen}`);
  assert.equal(health.status, 503, seen);
  assert.equal(JSON.parse(health.text).status, 'draining', seen);
});

it('a second SIGTERM during the grace period stops the gateway at once, its stdio upstreams with it', async (t) => {
  const gh = await startGatehouse({ t, env: { SHUTDOWN_GRACE_MS: '60000' }, servers: { everything: everythingStdio() } });
  const client = await connectClient(gh.mcpUrl, { t });
  assert.equal(resultText(await client.callTool({ name: 'everything__echo', arguments: { message: 'x' } })), 'Echo: x');
  const upstreamPids = descendantPids(gh.pid).filter((pid) => cmdline(pid).includes('server-everything'));
  assert.ok(upstreamPids.length >= 1, 'server-everything runs under the gateway');
  // A call that would hold the first SIGTERM's grace period for 30 s.
  const call = client.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
    undefined, { timeout: 60000 }).catch((error) => error);
  await new Promise((r) => setTimeout(r, 300));
  gh.signal('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(gh.proc.exitCode, null, 'still draining after the first SIGTERM');
  gh.signal('SIGTERM');
  const exit = await waitForExit(gh.proc, 5000);
  assert.deepEqual(exit, { code: 128 + 15, signal: null }, `exit: ${JSON.stringify(exit)}\n${gh.describe()}`);
  await waitFor(() => upstreamPids.every((pid) => !pidAlive(pid)), { timeoutMs: 2000, what: 'the stdio upstreams to be gone' });
  assert.ok(gh.jsonLogs().some((l) => l.msg === 'second signal: stopping now'), gh.describe());
  await call;
});

it('a call still running when the grace period ends gets an error answer, not a dropped connection', async (t) => {
  const gh = await startGatehouse({ t, env: { SHUTDOWN_GRACE_MS: '500' }, servers: { everything: everythingStdio() } });
  const client = await connectClient(gh.mcpUrl, { t });
  assert.equal(resultText(await client.callTool({ name: 'everything__echo', arguments: { message: 'x' } })), 'Echo: x');
  const call = client.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
    undefined, { timeout: 20000 }).then((r) => ({ result: r }), (error) => ({ error }));
  await new Promise((r) => setTimeout(r, 300));
  gh.signal('SIGTERM');
  const outcome = await call;
  assert.ok(outcome.error, `the call completed: ${JSON.stringify(outcome.result)}`);
  assert.equal(outcome.error.code, -32603, `${outcome.error}`);
  assert.match(outcome.error.message, /shutting down/, `${outcome.error}`);
  assert.deepEqual(await waitForExit(gh.proc, 15000), { code: 0, signal: null });
});
