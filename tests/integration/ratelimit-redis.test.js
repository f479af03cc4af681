// Shared limits through a real Redis (docs/operations.md "Shared limits"): two gateways on one store and one
// redis-server keep one limit between them; with Redis gone requests keep flowing under per-instance limits
// (no 5xx, no hang) and /gateway/stats and /metrics say so; with Redis back on the same port, one limit again.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createTestDatabase, startGatehouse } from './lib/index.js';
import { allowedBound, assertRateLimited, burst, makeUser, parsePrometheus, send, startRedis } from './lib/ops.js';
import { eventually } from './lib/identity.js';

const PER_MINUTE = 30;

async function stats(gh) {
  const res = await send(`${gh.url}/gateway/stats`, { headers: gh.authHeaders });
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.text).rate_limiter;
}

async function metrics(gh) {
  const res = await send(`${gh.url}/metrics`);
  assert.equal(res.status, 200, res.text);
  return parsePrometheus(res.text);
}

/** n requests at once, alternating between the gateways, as `user`. */
function alternate(gateways, n, user) {
  return burst(n, (i) => ({ url: `${gateways[i % gateways.length].url}/servers`, headers: user.headers }));
}

describe('shared rate limits through Redis', () => {
  it('one limit across two instances; per-instance limits while Redis is down; shared again when it is back', async (t) => {
    let redis = await startRedis({ t });
    const db = await createTestDatabase({ t });
    const env = {
      REDIS_URL: redis.url,
      RATE_LIMIT_PER_MINUTE: String(PER_MINUTE),
      RATE_LIMIT_GROUPS: 'MCP-Admin=1000000',
    };
    const a = await startGatehouse({ t, database: db, env });
    const b = await startGatehouse({ t, database: db, env });
    // Users made up front (through a, seen by b through the shared store).
    const users = {};
    for (const name of ['uma', 'vic', 'wes']) users[name] = await makeUser(a, `${name}@example.com`);
    await eventually('b to know the users', async () => (await send(`${b.url}/servers`, { headers: users.wes.headers })).status === 200,
      { timeoutMs: 10000 });
    // (that one request made wes's count 1 in Redis)

    for (const gh of [a, b]) {
      const rl = await stats(gh);
      assert.equal(rl.backend, 'redis', JSON.stringify(rl));
      assert.equal(rl.redis_up, true, JSON.stringify(rl));
      assert.equal((await metrics(gh)).value('gatehouse_redis_up'), 1);
    }

    // 1. Shared: 100 requests alternating between a and b → the limit once, not twice.
    const shared = await alternate([a, b], 100, users.uma);
    const okShared = shared.byStatus[200] ?? 0;
    assert.deepEqual(Object.keys(shared.byStatus).sort(), ['200', '429'], JSON.stringify(shared.byStatus));
    assert.ok(okShared >= PER_MINUTE && okShared <= allowedBound(PER_MINUTE, shared.elapsedMs),
      `uma through a and b: ${JSON.stringify(shared.byStatus)} in ${shared.elapsedMs} ms (one limit of ${PER_MINUTE} expected)`);
    const okVia = [0, 1].map((k) => shared.results.filter((r, i) => i % 2 === k && r.status === 200).length);
    assert.ok(okVia[0] > 0 && okVia[1] > 0, `both instances admitted some: ${okVia}`);
    for (const res of shared.results.filter((r) => r.status === 429)) assertRateLimited(res, { limit: PER_MINUTE, what: 'shared limit' });

    // 2. Redis dies: requests keep flowing, each instance limits on its own.
    await redis.kill();
    const down = await alternate([a, b], 100, users.vic);
    assert.deepEqual(Object.keys(down.byStatus).filter((s) => !['200', '429'].includes(s)), [],
      `with Redis down: ${JSON.stringify(down.byStatus)} ${down.results.find((r) => r.status >= 500)?.text ?? ''}`);
    const okDown = [0, 1].map((k) => down.results.filter((r, i) => i % 2 === k && r.status === 200).length);
    const perInstanceBound = allowedBound(PER_MINUTE, down.elapsedMs);
    for (const [k, n] of okDown.entries()) {
      assert.ok(n >= PER_MINUTE && n <= perInstanceBound,
        `instance ${k} admitted ${n} of vic's 50 with Redis down (its own limit of ${PER_MINUTE} expected): ${okDown}`);
    }
    for (const gh of [a, b]) {
      const rl = await stats(gh);
      assert.equal(rl.redis_up, false, JSON.stringify(rl));
      assert.ok(rl.fallbacks > 0, JSON.stringify(rl));
      const m = await metrics(gh);
      assert.equal(m.value('gatehouse_redis_up'), 0);
      assert.ok(m.value('gatehouse_rate_limit_fallbacks_total') > 0);
    }

    // 3. Redis back on the same port (empty): shared limits again, after a bounded wait for the reconnect.
    redis = await startRedis({ t, port: redis.port });
    for (const gh of [a, b]) {
      await eventually('the gateway to reach Redis again', async () => {
        await send(`${gh.url}/servers`, { headers: users.uma.headers }); // a decision makes it try Redis
        return (await stats(gh)).redis_up === true;
      }, { timeoutMs: 20000, intervalMs: 200 });
    }
    const again = await alternate([a, b], 100, users.wes);
    const okAgain = again.byStatus[200] ?? 0;
    assert.deepEqual(Object.keys(again.byStatus).sort(), ['200', '429'], JSON.stringify(again.byStatus));
    assert.ok(okAgain >= PER_MINUTE && okAgain <= allowedBound(PER_MINUTE, again.elapsedMs),
      `wes through a and b after Redis came back: ${JSON.stringify(again.byStatus)} in ${again.elapsedMs} ms ` +
      `(one limit of ${PER_MINUTE} expected; Redis restarted empty)`);
    for (const gh of [a, b]) assert.equal((await metrics(gh)).value('gatehouse_redis_up'), 1);
  });

  it('Redis that stops answering (SIGSTOP) costs no request; when it answers again, one limit again', async (t) => {
    const redis = await startRedis({ t });
    const db = await createTestDatabase({ t });
    const env = { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: String(PER_MINUTE), RATE_LIMIT_GROUPS: 'MCP-Admin=1000000' };
    const a = await startGatehouse({ t, database: db, env });
    const b = await startGatehouse({ t, database: db, env });
    const xia = await makeUser(a, 'xia@example.com');
    const yan = await makeUser(a, 'yan@example.com');
    await eventually('b to know the users', async () => (await send(`${b.url}/auth/me`, { headers: yan.headers })).status === 200,
      { timeoutMs: 10000 });
    let paused = false;
    t.after(() => { if (paused) process.kill(redis.pid, 'SIGCONT'); });
    process.kill(redis.pid, 'SIGSTOP');
    paused = true;
    try {
      // Every request is decided (by each instance alone) instead of waiting for Redis.
      const hung = await alternate([a, b], 60, xia);
      assert.deepEqual(Object.keys(hung.byStatus).filter((s) => !['200', '429'].includes(s)), [], JSON.stringify(hung.byStatus));
      const okVia = [0, 1].map((k) => hung.results.filter((r, i) => i % 2 === k && r.status === 200).length);
      for (const n of okVia) {
        assert.ok(n >= PER_MINUTE && n <= allowedBound(PER_MINUTE, hung.elapsedMs),
          `each instance limits on its own while Redis hangs: ${okVia} in ${hung.elapsedMs} ms`);
      }
      for (const gh of [a, b]) {
        const rl = await stats(gh);
        assert.equal(rl.redis_up, false, JSON.stringify(rl));
        assert.ok(rl.fallbacks > 0, JSON.stringify(rl));
      }
    } finally {
      process.kill(redis.pid, 'SIGCONT');
      paused = false;
    }
    for (const gh of [a, b]) {
      await eventually('the gateway to use Redis again', async () => {
        await send(`${gh.url}/servers`, { headers: xia.headers });
        return (await stats(gh)).redis_up === true;
      }, { timeoutMs: 20000, intervalMs: 200 });
    }
    // yan made one request (b's /auth/me) before the pause.
    const again = await alternate([a, b], 100, yan);
    const ok = again.byStatus[200] ?? 0;
    assert.ok(ok >= PER_MINUTE - 1 && ok <= allowedBound(PER_MINUTE, again.elapsedMs) - 1,
      `yan through a and b after Redis answered again: ${JSON.stringify(again.byStatus)} in ${again.elapsedMs} ms`);
  });

  it('Redis that turns replica (a failover) is left and connected to again; shared limits when it is a primary again', async (t) => {
    const redis = await startRedis({ t });
    const cli = (...args) => execFileSync('redis-cli', ['-p', String(redis.port), ...args], { encoding: 'utf8' }).trim();
    const gh = await startGatehouse({ t, env: { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '1000' } });
    const zed = await makeUser(gh, 'zed@example.com');
    assert.equal((await send(`${gh.url}/servers`, { headers: zed.headers })).status, 200);
    assert.equal((await stats(gh)).redis_up, true);
    const firstClient = cli('CLIENT', 'LIST', 'TYPE', 'normal');
    // A replica (of nothing reachable) refuses the limiter's writes with READONLY on the same connection.
    cli('REPLICAOF', '127.0.0.1', '1');
    t.after(() => { try { cli('REPLICAOF', 'NO', 'ONE'); } catch { /* stopped already */ } });
    // Requests for 3 s: each is decided locally; the connection is made again with a growing backoff (100 ms,
    // 200 ms, …), not at every request.
    const failedBefore = gh.logs.filter((l) => /redis connection failed/.test(l)).length;
    for (let i = 0; i < 30; i++) {
      assert.equal((await send(`${gh.url}/servers`, { headers: zed.headers })).status, 200);
      await new Promise((r) => setTimeout(r, 100));
    }
    const reconnects = gh.logs.filter((l) => /redis connection failed/.test(l)).length - failedBefore;
    assert.ok(reconnects >= 1 && reconnects <= 8, `${reconnects} connections dropped in 3 s`);
    const rl = await stats(gh);
    assert.equal(rl.redis_up, false, JSON.stringify(rl));
    assert.ok(rl.fallbacks > 0, JSON.stringify(rl));
    // The gateway dropped that connection (so that a reconnect follows the name to the new primary) …
    assert.ok(gh.logs.some((l) => /redis connection failed/.test(l) && /READONLY/.test(l)), gh.logs.slice(-10).join('\n'));
    cli('REPLICAOF', 'NO', 'ONE');
    await eventually('the gateway to use Redis again', async () => {
      await send(`${gh.url}/servers`, { headers: zed.headers });
      return (await stats(gh)).redis_up === true;
    }, { timeoutMs: 20000, intervalMs: 200 });
    // … and limits through a new one.
    // (the gateway's connections: not redis-cli's own, which is listed running CLIENT LIST)
    const ids = (list) => list.split('\n').filter((l) => !/cmd=client\|list/.test(l)).map((l) => /\bid=(\d+)/.exec(l)?.[1]);
    const now = ids(cli('CLIENT', 'LIST', 'TYPE', 'normal'));
    assert.ok(now.some((id) => !ids(firstClient).includes(id)), `${firstClient}\n---\n${cli('CLIENT', 'LIST', 'TYPE', 'normal')}`);
  });

  it('a Redis that takes connections and refuses every command (a password set): one warning, not two lines per attempt', async (t) => {
    const redis = await startRedis({ t });
    const gh = await startGatehouse({ t, env: { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '1000000' } });
    assert.equal((await send(`${gh.url}/servers`, { headers: { authorization: `Bearer ${gh.adminKey}` } })).status, 200);
    execFileSync('redis-cli', ['-p', String(redis.port), 'CONFIG', 'SET', 'requirepass', 'now-one-is-needed']);
    execFileSync('redis-cli', ['-p', String(redis.port), '-a', 'now-one-is-needed', '--no-auth-warning', 'CLIENT', 'KILL', 'TYPE', 'normal']);
    const from = gh.logs.length;
    // requests for ~12 s: several reconnection attempts (backoff up to 5 s), each refused
    const until = Date.now() + 12000;
    while (Date.now() < until) {
      assert.equal((await send(`${gh.url}/servers`, { headers: { authorization: `Bearer ${gh.adminKey}` } })).status, 200);
      await new Promise((r) => setTimeout(r, 250));
    }
    const lines = gh.logs.slice(from);
    const warned = lines.filter((l) => l.includes('redis connection failed') && l.includes('"warn"'));
    const connected = lines.filter((l) => l.includes('"redis connected"'));
    assert.ok(warned.length >= 1 && warned.length <= 2, `warnings: ${warned.length}\n${warned.join('\n')}`);
    assert.equal(connected.length, 0, `"connected" to a server that refuses every command:\n${connected.join('\n')}`);
  });

  it('/gateway/health and gatehouse_redis_up follow Redis also while no request is limited', async (t) => {
    const redis = await startRedis({ t });
    const gh = await startGatehouse({ t, env: { REDIS_URL: redis.url } });
    const health = async () => (await fetch(`${gh.url}/gateway/health`)).json();
    const up = async () => /^gatehouse_redis_up (\d)$/m.exec(await (await fetch(`${gh.url}/metrics`,
      { headers: { authorization: `Bearer ${gh.adminKey}` } })).text())?.[1];
    await eventually('redis up', async () => (await health()).redis === 'up', { timeoutMs: 15000, intervalMs: 250 });
    await redis.stop();
    // (health and metrics are not rate limited: nothing else asks Redis meanwhile)
    await eventually('health to say redis is down', async () => (await health()).redis === 'down', { timeoutMs: 15000, intervalMs: 250 });
    assert.equal(await up(), '0');
    assert.equal((await fetch(`${gh.url}/gateway/health`)).status, 200, 'still ready: limits per instance');
    await startRedis({ t, port: redis.port });
    await eventually('health to say redis is up again, with no request limited meanwhile', async () => (await health()).redis === 'up',
      { timeoutMs: 20000, intervalMs: 250 });
    assert.equal(await up(), '1');
  });
});

describe('a Redis that answers PING but refuses the limiter\'s writes (out of memory)', () => {
  it('is reported down by the probe too, with one warning and no "reachable again" between requests', async (t) => {
    const redis = await startRedis({ t });
    const gh = await startGatehouse({ t, env: { REDIS_URL: redis.url } });
    const health = async () => (await fetch(`${gh.url}/gateway/health`)).json();
    await eventually('redis up', async () => (await health()).redis === 'up', { timeoutMs: 15000, intervalMs: 250 });
    execFileSync('redis-cli', ['-p', String(redis.port), 'CONFIG', 'SET', 'maxmemory', '1']);
    const from = gh.logs.length;
    assert.equal((await send(`${gh.url}/servers`, { headers: gh.authHeaders })).status, 200, 'decided locally');
    await eventually('health to say redis is down', async () => (await health()).redis === 'down', { timeoutMs: 15000, intervalMs: 250 });
    // Two probes later (every 5 s) it still says so.
    await new Promise((r) => setTimeout(r, 11000));
    assert.equal((await health()).redis, 'down');
    const lines = gh.logs.slice(from);
    assert.equal(lines.filter((l) => l.includes('Redis reachable again')).length, 0, lines.join('\n'));
    assert.equal(lines.filter((l) => l.includes('Redis unreachable')).length, 1, lines.join('\n'));
    execFileSync('redis-cli', ['-p', String(redis.port), 'CONFIG', 'SET', 'maxmemory', '0']);
    await eventually('health to say redis is up again', async () => (await health()).redis === 'up', { timeoutMs: 15000, intervalMs: 250 });
  });
});
