// /gateway/stats (docs/operations.md): admins only (401 without credentials, 403 for anyone else); the rate
// limiter's allowed and limited counts move by exactly what callers saw, the most limited callers are named,
// upstream calls are counted per server, and the analytics writer reports its queue.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connectClient, everythingStdio, startGatehouse } from './lib/index.js';
import { burst, grantServer, makeUser, send } from './lib/ops.js';

const PER_MINUTE = 10;

async function stats(gh, headers = gh.authHeaders) {
  const res = await send(`${gh.url}/gateway/stats`, { headers });
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.text);
}

describe('/gateway/stats', () => {
  it('admins only; limiter counts, most limited callers, upstream calls', async (t) => {
    const gh = await startGatehouse({
      t,
      servers: { everything: everythingStdio() },
      env: { RATE_LIMIT_PER_MINUTE: String(PER_MINUTE), RATE_LIMIT_GROUPS: 'MCP-Admin=1000000' },
    });
    const noisy = await makeUser(gh, 'noisy@example.com');
    const quiet = await makeUser(gh, 'quiet@example.com');
    await grantServer(gh, 'MCP-Admin', 'everything');

    const anon = await send(`${gh.url}/gateway/stats`);
    assert.equal(anon.status, 401, anon.text);
    assert.equal(JSON.parse(anon.text).error?.code, 'unauthorized', anon.text);
    const badKey = await send(`${gh.url}/gateway/stats`, { headers: { authorization: 'Bearer gh_nope' } });
    assert.equal(badKey.status, 401, badKey.text);
    const nonAdmin = await send(`${gh.url}/gateway/stats`, { headers: quiet.headers });
    assert.equal(nonAdmin.status, 403, nonAdmin.text);
    assert.equal(JSON.parse(nonAdmin.text).error?.code, 'forbidden', nonAdmin.text);
    assert.ok(!anon.text.includes('noisy') && !nonAdmin.text.includes('noisy'));

    const before = await stats(gh);
    const rl0 = before.rate_limiter;
    assert.equal(rl0.enabled, true);
    assert.equal(rl0.backend, 'local');
    assert.equal(rl0.per_minute, PER_MINUTE);
    assert.equal(typeof rl0.per_ip, 'number');
    assert.deepEqual(rl0.most_limited, []);
    assert.equal(rl0.redis_up, undefined, 'no Redis configured: no redis_up');
    for (const k of ['upstreams', 'sessions', 'requests', 'analytics']) assert.ok(k in before, `stats lack ${k}`);

    const { byStatus } = await burst(25, () => ({ url: `${gh.url}/servers`, headers: noisy.headers }));
    const ok = byStatus[200] ?? 0;
    const limited = byStatus[429] ?? 0;
    assert.equal(ok + limited, 25, JSON.stringify(byStatus));
    assert.ok(limited >= 10, JSON.stringify(byStatus));

    const after = await stats(gh);
    const rl = after.rate_limiter;
    assert.equal(rl.allowed - rl0.allowed, ok + 1, `allowed moved by ${rl.allowed - rl0.allowed}; ${ok} passed + this stats call`);
    assert.equal(rl.limited - rl0.limited, limited, `limited moved by ${rl.limited - rl0.limited}; callers saw ${limited} 429s`);
    assert.ok(rl.keys_tracked >= 3, `keys_tracked ${rl.keys_tracked}`);
    assert.ok(Array.isArray(rl.most_limited) && rl.most_limited.length >= 1, JSON.stringify(rl));
    assert.ok(rl.most_limited[0].key.includes('noisy@example.com'), `most_limited: ${JSON.stringify(rl.most_limited)}`);
    assert.equal(rl.most_limited[0].limited, limited);
    assert.ok(after.requests > before.requests);

    // Upstream calls.
    const up0 = before.upstreams.find((u) => (u.id ?? u.name ?? u.server) === 'everything');
    assert.ok(up0, `no 'everything' in upstreams: ${JSON.stringify(before.upstreams)}`);
    for (const k of ['state', 'tools', 'calls', 'errors', 'avg_us']) {
      assert.ok(k in up0, `upstream entry lacks ${k}: ${JSON.stringify(up0)}`);
    }
    assert.equal(typeof up0.tenant_connections, 'number');
    assert.ok(up0.last_error === null || typeof up0.last_error === 'string', 'last_error: null or the reason');
    const client = await connectClient(gh.mcpUrl, { t });
    for (let i = 0; i < 3; i++) await client.callTool({ name: 'everything__echo', arguments: { message: `s${i}` } });
    const final = await stats(gh);
    const up = final.upstreams.find((u) => (u.id ?? u.name ?? u.server) === 'everything');
    assert.ok(up.calls - up0.calls >= 3, `calls ${up0.calls} → ${up.calls}`);
    assert.equal(up.errors, up0.errors);
    assert.ok(up.avg_us > 0, `avg_us ${up.avg_us}`);
    assert.equal(typeof up.state, 'string');
    assert.ok(up.tools > 0, `tools ${up.tools} once the upstream has been used`);
    assert.ok(final.sessions >= 1, `sessions ${final.sessions}`);
    const a = final.analytics;
    for (const k of ['recorded', 'written', 'queued', 'dropped', 'failed_batches', 'catch_up_batches', 'checkpoints']) assert.equal(typeof a[k], 'number', `analytics.${k}`);
    assert.ok(a.recorded >= 25 && a.written <= a.recorded && a.dropped === 0 && a.failed_batches === 0, JSON.stringify(a));
    await client.closeQuietly();
  });
});

describe('audit log filters', () => {
  it('actor, action, target, since and until narrow the list', async (t) => {
    const gh = await startGatehouse({ t });
    const t0 = Math.floor(Date.now() / 1000);
    await makeUser(gh, 'audited@example.com', { groups: ['Audit-Team'] });
    assert.equal((await gh.api('PATCH', '/groups/Audit-Team', { description: 'changed' })).status, 200);
    const all = await gh.api('GET', `/audit?since=${t0}`);
    assert.equal(all.status, 200, all.text);
    const actions = all.body.items.map((e) => `${e.action} ${e.target}`);
    assert.ok(all.body.items.every((e) => e.timestamp >= t0), actions.join('\n'));
    assert.ok(all.body.items.some((e) => e.action === 'group.create' && e.target === 'Audit-Team'), actions.join('\n'));
    assert.ok(all.body.items.some((e) => e.action === 'group.member.add'), actions.join('\n'));
    for (let i = 1; i < all.body.items.length; i++) {
      assert.ok(all.body.items[i - 1].timestamp >= all.body.items[i].timestamp, 'newest first');
    }
    const filtered = await gh.api('GET', `/audit?actor=admin%40localhost&action=group.create&target=Audit-Team&since=${t0}`);
    assert.equal(filtered.status, 200, filtered.text);
    assert.equal(filtered.body.total, 1, filtered.text);
    assert.equal(filtered.body.items[0].actor, 'admin@localhost');
    const future = await gh.api('GET', `/audit?since=${t0 + 3600}`);
    assert.equal(future.body.total, 0, future.text);
    const past = await gh.api('GET', `/audit?until=${t0 - 1}`);
    assert.ok(past.body.items.every((e) => e.timestamp <= t0 - 1), past.text);
    assert.ok(!past.body.items.some((e) => e.target === 'Audit-Team'), past.text);
    assert.equal((await gh.api('GET', '/audit?since=yesterday')).status, 400);
    // Reading the audit log changes nothing in it.
    const again = await gh.api('GET', `/audit?since=${t0}`);
    assert.equal(again.body.total, all.body.total);
  });
});
