// Rate limits (docs/operations.md "Rate limits"): exact under concurrency, 429s with Retry-After and RateLimit-*
// headers, a JSON-RPC error (-32029) on /mcp that the SDK client surfaces, the per-IP limit for callers without
// credentials counted apart from users, RATE_LIMIT_GROUPS raising a group's limit, RATE_LIMIT_ENABLED=false.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  MCP_HEADERS, connectClient, delay, everythingStdio, initializeMessage, rawSession, rpc, startGatehouse,
} from './lib/index.js';
import { eventually, whoami } from './lib/identity.js';
import { allowedBound, assertRateLimited, burst, grantServer, makeUser, send } from './lib/ops.js';

const PER_MINUTE = 30;
const PER_IP = 20;
const BIG = 600;

describe('rate limits (in-process)', () => {
  let gh;
  let alice; let bob; let carol; let dave; let erin;
  before(async () => {
    gh = await startGatehouse({
      servers: { everything: everythingStdio() },
      env: {
        RATE_LIMIT_PER_MINUTE: String(PER_MINUTE),
        RATE_LIMIT_PER_IP: String(PER_IP),
        // The bootstrap admin (group MCP-Admin) sets the test up without being limited itself.
        RATE_LIMIT_GROUPS: `MCP-Admin=1000000,Big-Tenant=${BIG}`,
      },
    });
    alice = await makeUser(gh, 'alice@example.com');
    bob = await makeUser(gh, 'bob@example.com', { groups: ['Big-Tenant'] });
    carol = await makeUser(gh, 'carol@example.com');
    dave = await makeUser(gh, 'dave@example.com', { groups: ['Echoers'] });
    erin = await makeUser(gh, 'erin@example.com');
    await grantServer(gh, 'Echoers', 'everything');
    await eventually('bob to be a member of Big-Tenant', async () => (await whoami(gh, bob.headers)).body?.groups?.includes('Big-Tenant'));
  });
  after(() => gh?.stop());

  it(`100 parallel requests from one user: exactly ${PER_MINUTE} pass, every other one is a 429 with the headers`, async () => {
    const { results, elapsedMs, byStatus } = await burst(100, () => ({ url: `${gh.url}/servers`, headers: alice.headers }));
    const ok = byStatus[200] ?? 0;
    const bound = allowedBound(PER_MINUTE, elapsedMs);
    assert.deepEqual(Object.keys(byStatus).sort(), ['200', '429'], `statuses: ${JSON.stringify(byStatus)}`);
    assert.ok(ok >= PER_MINUTE && ok <= bound,
      `${ok} requests passed in ${elapsedMs} ms; expected ${PER_MINUTE}..${bound}: ${JSON.stringify(byStatus)}`);
    for (const res of results.filter((r) => r.status === 429)) {
      const { retryAfter, reset } = assertRateLimited(res, { limit: PER_MINUTE, what: 'GET /servers over the limit' });
      assert.ok(retryAfter <= 60 && reset >= retryAfter, `Retry-After ${retryAfter}, RateLimit-Reset ${reset}`);
      const body = JSON.parse(res.text);
      assert.equal(body.error?.code, 'rate_limited', res.text);
      assert.match(body.error?.message ?? '', /Rate limit exceeded: 30 requests per minute; retry in \d+ s/);
    }
    // Another user is not affected by alice's refusals.
    assert.equal((await send(`${gh.url}/servers`, { headers: erin.headers })).status, 200);
  });

  it('Retry-After is kept: after waiting that long the next request passes', async () => {
    const refused = await send(`${gh.url}/servers`, { headers: alice.headers });
    const { retryAfter } = assertRateLimited(refused, { limit: PER_MINUTE, what: 'alice, still over her limit' });
    // One request comes free every 60/30 = 2 s: the wait is never longer than that.
    assert.ok(retryAfter <= Math.ceil(60 / PER_MINUTE), `Retry-After ${retryAfter} for ${PER_MINUTE}/min`);
    await delay(retryAfter * 1000 + 50); // waiting as told is what a client does; the assertion is the answer after
    const res = await send(`${gh.url}/servers`, { headers: alice.headers });
    assert.equal(res.status, 200, `after waiting Retry-After (${retryAfter} s): ${res.status} ${res.text}`);
    assertRateLimited(await send(`${gh.url}/servers`, { headers: alice.headers }), { limit: PER_MINUTE, what: 'the one after it' });
  });

  it('on /mcp a refusal is a JSON-RPC error -32029 with the same headers', async () => {
    const { results, elapsedMs, byStatus } = await burst(45, () => ({
      url: `${gh.url}/mcp`, method: 'POST', headers: { ...MCP_HEADERS, ...carol.headers }, body: initializeMessage(),
    }));
    const ok = byStatus[200] ?? 0;
    assert.ok(ok >= PER_MINUTE && ok <= allowedBound(PER_MINUTE, elapsedMs), `${JSON.stringify(byStatus)} in ${elapsedMs} ms`);
    assert.equal(ok + (byStatus[429] ?? 0), 45, JSON.stringify(byStatus));
    const refused = results.filter((r) => r.status === 429);
    assert.ok(refused.length > 0);
    for (const res of refused) {
      assertRateLimited(res, { limit: PER_MINUTE, what: 'POST /mcp over the limit' });
      assert.match(String(res.headers['content-type']), /application\/json/);
      const body = JSON.parse(res.text);
      assert.equal(body.jsonrpc, '2.0', res.text);
      assert.ok('id' in body, `JSON-RPC error without id: ${res.text}`);
      assert.equal(body.error?.code, -32029, res.text);
      assert.match(body.error.message, /^Rate limit exceeded: 30 requests per minute; retry in \d+ s$/);
    }
  });

  it('the MCP SDK client gets the rate-limit error from a call', async (t) => {
    const client = await connectClient(gh.mcpUrl, { headers: dave.headers, t });
    await client.listTools(); // works while under the limit
    // Use up the rest of dave's burst, then call at once. One refill every 2 s could let the call through on a
    // slow machine: try a few times (bounded).
    let failure = null;
    for (let attempt = 0; attempt < 5 && !failure; attempt++) {
      for (let i = 0; i < 60; i++) {
        if ((await send(`${gh.url}/servers`, { headers: dave.headers })).status === 429) break;
      }
      try {
        await client.callTool({ name: 'everything__echo', arguments: { message: 'hi' } });
      } catch (error) {
        failure = error;
      }
    }
    assert.ok(failure, 'the call went through every time although the limit was used up');
    const text = `${failure.message} ${JSON.stringify(failure.data ?? '')}`;
    assert.match(text, /Rate limit exceeded|-32029|429/, `the SDK error does not say why: ${text}`);
    assert.match(text, /Rate limit exceeded: 30 requests per minute; retry in \d+ s/, `the gateway's message is lost: ${text}`);
  });

  it(`callers without credentials are limited by IP (${PER_IP}/min), apart from users on the same IP`, async () => {
    // A user's traffic from this IP does not use the IP's allowance…
    const userFirst = await burst(10, () => ({ url: `${gh.url}/servers`, headers: erin.headers }));
    assert.deepEqual(userFirst.byStatus, { 200: 10 });
    // …so exactly PER_IP anonymous requests get through to authentication (401), the rest are 429.
    const anon = await burst(50, () => ({ url: `${gh.url}/servers` }));
    const passed = anon.byStatus[401] ?? 0;
    assert.deepEqual(Object.keys(anon.byStatus).sort(), ['401', '429'], JSON.stringify(anon.byStatus));
    assert.ok(passed >= PER_IP && passed <= allowedBound(PER_IP, anon.elapsedMs),
      `${passed} anonymous requests passed in ${anon.elapsedMs} ms: ${JSON.stringify(anon.byStatus)}`);
    for (const res of anon.results.filter((r) => r.status === 429)) assertRateLimited(res, { limit: PER_IP, what: 'anonymous' });
    // A bad key is no user: it counts against the IP too.
    const badKey = await send(`${gh.url}/servers`, { headers: { authorization: 'Bearer gh_not_a_real_key' } });
    assert.equal(badKey.status, 429, `a bad key once the IP is limited: ${badKey.status} ${badKey.text}`);
    // …and the IP being limited does not limit a user on it.
    const userAfter = await burst(5, () => ({ url: `${gh.url}/servers`, headers: erin.headers }));
    assert.deepEqual(userAfter.byStatus, { 200: 5 });
  });

  it(`RATE_LIMIT_GROUPS gives a member of Big-Tenant ${BIG}/min`, async () => {
    const { byStatus, results } = await burst(100, () => ({ url: `${gh.url}/servers`, headers: bob.headers }));
    assert.deepEqual(byStatus, { 200: 100 }, `bob (Big-Tenant=${BIG}): ${JSON.stringify(byStatus)} ${results.find((r) => r.status !== 200)?.text ?? ''}`);
    // alice, in no such group, is still limited: a burst of hers as large is refused past her 30/min. (Not
    // "still refused since her first burst": on a slow machine the tests between give her a token back.)
    const hers = await burst(100, () => ({ url: `${gh.url}/servers`, headers: alice.headers }));
    assert.ok((hers.byStatus[200] ?? 0) < PER_MINUTE && (hers.byStatus[429] ?? 0) > 0, `alice: ${JSON.stringify(hers.byStatus)}`);
    assertRateLimited(hers.results.find((r) => r.status === 429), { limit: PER_MINUTE, what: 'alice in her burst' });
  });
});

describe('rate limits and MCP messages', () => {
  it('a batch is charged per request; answers, notifications and a session\'s end are never refused', async (t) => {
    // One request a minute and a burst of 10: nothing comes back during the test.
    const gh = await startGatehouse({
      t,
      servers: { everything: everythingStdio() },
      env: { RATE_LIMIT_PER_MINUTE: '1', RATE_LIMIT_BURST: '10', RATE_LIMIT_GROUPS: 'MCP-Admin=1000000' },
    });
    const user = await makeUser(gh, 'batcher@example.com', { groups: ['Batchers'] });
    await grantServer(gh, 'Batchers', 'everything');
    const s = await rawSession(gh.mcpUrl, { protocolVersion: '2025-03-26', headers: user.headers, auth: false }); // 2 of 10
    const calls = (n) => Array.from({ length: n }, () => rpc('tools/call', { name: 'everything__echo', arguments: { message: 'x' } }));
    const three = await s.post([...calls(3), { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'none' } }]);
    assert.equal(three.status, 200, three.text);
    assert.equal(three.messages.filter((m) => m.result).length, 3, three.text); // 5 of 10 (the cancellation is free)
    const eleven = await s.post(calls(11));
    assert.equal(eleven.status, 429, eleven.text);
    assert.match(eleven.json.error.message, /A batch of 11 requests is more than this rate limit allows at once \(10\): send fewer per batch/);
    const six = await s.post(calls(6));
    assert.equal(six.status, 429, `a batch of 6 with 5 left: ${six.text}`);
    assert.match(six.json.error.message, /Rate limit exceeded/);
    const five = await s.post(calls(5));
    assert.equal(five.status, 200, five.text);
    assert.equal(five.messages.filter((m) => m.result).length, 5, five.text); // 10 of 10
    const one = rpc('tools/call', { name: 'everything__echo', arguments: { message: 'x' } });
    const refused = await s.post(one);
    assert.equal(refused.status, 429, refused.text);
    assert.equal(refused.json.id, one.id);
    // At the limit: an answer to a server's request, a cancellation, the session's end — not other notifications
    // (roots/list_changed makes the gateway write to upstreams).
    for (const message of [
      { jsonrpc: '2.0', id: 77, result: {} },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 12345 } },
      [{ jsonrpc: '2.0', id: 78, result: {} }, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } }],
    ]) {
      const res = await s.post(message);
      assert.equal(res.status, 202, `${JSON.stringify(message)}: ${res.status} ${res.text}`);
    }
    assert.equal((await s.post({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' })).status, 429);
    // Past the first 16 answers or cancellations in one body, each costs one (none left: refused).
    const flood = Array.from({ length: 20 }, (_, i) => ({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: i } }));
    assert.equal((await s.post(flood)).status, 429);
    assert.equal((await s.post(flood.slice(0, 16))).status, 202);
    assert.equal((await s.remove()).status, 200);
    const after = await s.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } });
    assert.equal(after.status, 404, `the session ended: ${after.text}`);
  });
});

describe('/gateway/stats most_limited', () => {
  it('still names a new abuser after 10,000 other callers were each refused once', async (t) => {
    const gh = await startGatehouse({
      t, env: { TRUSTED_PROXIES: '127.0.0.1', RATE_LIMIT_PER_IP: '1', RATE_LIMIT_BURST: '1', RATE_LIMIT_GROUPS: 'MCP-Admin=1000000' },
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    t.after(() => agent.destroy());
    const from = (ip) => ({ url: `${gh.url}/servers`, headers: { 'x-forwarded-for': ip }, agent });
    // 10,000 addresses, each allowed once (then 401) and refused once.
    for (let block = 0; block < 50; ++block) {
      const ips = Array.from({ length: 200 }, (_, i) => `10.${block}.${i >> 8}.${i & 255}`);
      const { byStatus } = await burst(400, (i) => from(ips[i >> 1]));
      assert.equal(byStatus[429], 200, JSON.stringify(byStatus));
    }
    for (let i = 0; i < 30; ++i) await send(`${gh.url}/servers`, from('198.51.100.66'));
    const stats = await (await gh.fetch('/gateway/stats')).json();
    assert.equal(stats.rate_limiter.most_limited[0]?.key, 'ip:198.51.100.66', JSON.stringify(stats.rate_limiter.most_limited));
    assert.equal(stats.rate_limiter.most_limited[0].limited, 29);
  });
});

describe('RATE_LIMIT_ENABLED=false', () => {
  it('never answers 429', async (t) => {
    const gh = await startGatehouse({
      t,
      env: { RATE_LIMIT_ENABLED: 'false', RATE_LIMIT_PER_MINUTE: '5', RATE_LIMIT_PER_IP: '5' },
    });
    const user = await burst(100, () => ({ url: `${gh.url}/servers`, headers: gh.authHeaders }));
    assert.deepEqual(user.byStatus, { 200: 100 });
    const anon = await burst(50, () => ({ url: `${gh.url}/servers` }));
    assert.deepEqual(anon.byStatus, { 401: 50 });
    const stats = await gh.fetch('/gateway/stats');
    const body = await stats.json();
    assert.equal(body.rate_limiter.enabled, false);
    assert.equal(body.rate_limiter.limited, 0);
  });
});

describe('the client IP of the per-IP limit', () => {
  it('X-Forwarded-For from an untrusted peer gives no fresh allowance', async (t) => {
    const direct = await startGatehouse({ t, env: { RATE_LIMIT_PER_IP: '5' } });
    // Without trusted proxies a caller cannot get a fresh allowance by inventing addresses.
    const spoofed = await burst(20, (i) => ({ url: `${direct.url}/servers`, headers: { 'x-forwarded-for': `198.51.100.${i + 1}` } }));
    const passed = spoofed.byStatus[401] ?? 0;
    assert.ok(passed >= 5 && passed <= allowedBound(5, spoofed.elapsedMs), `spoofed X-Forwarded-For: ${JSON.stringify(spoofed.byStatus)}`);
    assert.equal(passed + (spoofed.byStatus[429] ?? 0), 20, JSON.stringify(spoofed.byStatus));
  });

  it('behind TRUSTED_PROXIES each client address (first untrusted X-Forwarded-For hop) has its own allowance', async (t) => {
    const proxied = await startGatehouse({ t, env: { RATE_LIMIT_PER_IP: '5', TRUSTED_PROXIES: '127.0.0.1' } });
    // 4 clients × 8 requests through the proxy → 5 each get through to authentication (401), 3 each are 429.
    const clients = ['203.0.113.10', '203.0.113.11', '203.0.113.12', '203.0.113.13'];
    const many = await burst(32, (i) => ({ url: `${proxied.url}/servers`, headers: { 'x-forwarded-for': `${clients[i % 4]}, 127.0.0.1` } }));
    const seen = clients.map((ip, k) => `${ip}: ${many.results.filter((r, i) => i % 4 === k).map((r) => r.status).join(',')}`);
    for (const [k, ip] of clients.entries()) {
      const passed = many.results.filter((r, i) => i % 4 === k && r.status === 401).length;
      assert.ok(passed >= 5 && passed <= allowedBound(5, many.elapsedMs), `${ip}: ${passed} of 8 passed (5 expected)\n${seen.join('\n')}`);
    }
  });

  it('a trusted proxy that adds its own X-Forwarded-For line after the client\'s: both lines are read, in order', async (t) => {
    // HAProxy's `option forwardfor` and others append a field line instead of extending the client's one; the
    // client's line is whatever it invented. The hop the proxy saw is the last line's.
    const proxied = await startGatehouse({ t, env: { RATE_LIMIT_PER_IP: '5', TRUSTED_PROXIES: '127.0.0.1' } });
    const get = (lines) => new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxied.port, path: '/servers', headers: ['Host', `127.0.0.1:${proxied.port}`, ...lines] },
        (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
      req.on('error', reject);
      req.end();
    });
    const statuses = [];
    for (let i = 0; i < 12; i++) statuses.push(await get(['X-Forwarded-For', `198.51.100.${i + 1}`, 'X-Forwarded-For', '203.0.113.10']));
    const passed = statuses.filter((s) => s === 401).length;
    assert.ok(passed >= 5 && passed <= 6, `one real client behind the proxy: ${statuses.join(',')}`);
    assert.equal(passed + statuses.filter((s) => s === 429).length, 12, statuses.join(','));
  });

  it('an X-Forwarded-For address written with a port or brackets is still the client\'s (not the proxy\'s shared allowance)', async (t) => {
    const proxied = await startGatehouse({ t, env: { RATE_LIMIT_PER_IP: '5', TRUSTED_PROXIES: '127.0.0.1' } });
    for (const hop of ['203.0.113.20:51234', '[2001:db8:9::1]:443', '[2001:db8:8::1]', '203.0.113.21']) {
      const res = await burst(3, () => ({ url: `${proxied.url}/servers`, headers: { 'x-forwarded-for': hop } }));
      assert.equal(res.byStatus[401], 3, `${hop} has its own allowance: ${JSON.stringify(res.byStatus)}`);
    }
  });

  it('IPv6 clients are limited by their /64 (one host usually has a whole /64 to take addresses from)', async (t) => {
    const proxied = await startGatehouse({ t, env: { RATE_LIMIT_PER_IP: '5', TRUSTED_PROXIES: '127.0.0.1' } });
    const same64 = await burst(10, (i) => ({ url: `${proxied.url}/servers`, headers: { 'x-forwarded-for': `2001:db8:1:2::${(i + 1).toString(16)}` } }));
    const passed = same64.byStatus[401] ?? 0;
    assert.ok(passed >= 5 && passed <= allowedBound(5, same64.elapsedMs), `one /64: ${JSON.stringify(same64.byStatus)}`);
    const other = await burst(3, () => ({ url: `${proxied.url}/servers`, headers: { 'x-forwarded-for': '2001:db8:1:3::1' } }));
    assert.equal(other.byStatus[401], 3, `another /64 has its own allowance: ${JSON.stringify(other.byStatus)}`);
  });
});
