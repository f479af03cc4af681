// Idle timeouts: STDIO_IDLE_TIMEOUT_S stops an unused stdio upstream, SESSION_IDLE_TIMEOUT_S drops
// an unused downstream session. Slow by nature (the gateway sweeps periodically), so in a file of their own.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import {
  cmdline, connectClient, descendantPids, everythingStdio, pidAlive, rawSession, resultText, startGatehouse,
  waitFor,
} from './lib/index.js';

it('STDIO_IDLE_TIMEOUT_S stops an idle stdio upstream; the next call starts it again', async (t) => {
  const gh = await startGatehouse({ t, env: { STDIO_IDLE_TIMEOUT_S: '1' }, servers: { everything: everythingStdio() } });
  const client = await connectClient(gh.mcpUrl, { t });
  assert.equal(resultText(await client.callTool({ name: 'everything__echo', arguments: { message: 'one' } })), 'Echo: one');
  const everything = () => descendantPids(gh.pid).filter((pid) => cmdline(pid).includes('server-everything'));
  const first = everything();
  assert.ok(first.length >= 1, 'no server-everything process after a call');
  await waitFor(() => first.every((pid) => !pidAlive(pid)),
    { timeoutMs: 8000, intervalMs: 100, what: 'the idle stdio upstream to be stopped' });
  assert.equal(resultText(await client.callTool({ name: 'everything__echo', arguments: { message: 'two' } })), 'Echo: two');
  const second = everything();
  assert.ok(second.length >= 1 && second.every((pid) => !first.includes(pid)), `restarted: ${first} → ${second}`);
});

it('SESSION_IDLE_TIMEOUT_S drops an unused session: opened again from its id by its next request, or 404 with SESSION_MAX_AGE_S=0', async (t) => {
  const resumable = await startGatehouse({ t, env: { SESSION_IDLE_TIMEOUT_S: '10' }, servers: {} });
  const local = await startGatehouse({ t, env: { SESSION_IDLE_TIMEOUT_S: '10', SESSION_MAX_AGE_S: '0' }, servers: {} });
  const sessions = [await rawSession(resumable.mcpUrl), await rawSession(local.mcpUrl)];
  const started = Date.now();
  // Any request would keep a session alive, so nothing polls them: wait for the gateways to log the
  // expiry (a hint to finish early), bounded to well past the timeout, then ask.
  await waitFor(() => [resumable, local].every((gh, i) =>
    gh.logs.some((line) => line.includes(sessions[i].sessionId) && /expire|idle/i.test(line))),
  { timeoutMs: 16000, intervalMs: 100, what: 'the sessions to expire' }).catch(() => {});
  assert.ok(Date.now() - started >= 9000, `the sessions were dropped after ${Date.now() - started} ms, before 10 s`);
  assert.ok(resumable.logs.some((line) => line.includes(sessions[0].sessionId) && /expire/i.test(line)), 'not dropped');
  const again = await sessions[0].request('ping', {});
  assert.equal(again.status, 200, again.text);
  await waitFor(() => resumable.logs.some((line) => line.includes('session resumed') && line.includes(sessions[0].sessionId)),
    { timeoutMs: 5000, what: 'the log line' });
  const res = await sessions[1].request('ping', {});
  assert.equal(res.status, 404, res.text);
  assert.equal(res.json?.error?.code, -32001, res.text);
});
