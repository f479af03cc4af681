// Identity, part 1: the bootstrap admin key, authentication required on /mcp, /mcp/<server> and /servers
// (401 + WWW-Authenticate pointing at the protected-resource metadata), and gateway API keys made by the CLI
// and by the admin API: they work, a revoked key and an expired key get 401, and so does a session signed in
// with a key that was revoked since.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  connectClient, createTestDatabase, everythingStdio, listAll, startGatehouse,
} from './lib/index.js';
import {
  assertUnauthorized, bearerHeaders, eventually, mcpInitialize, nowSeconds, request, visibleServers, whoami,
} from './lib/identity.js';

const SERVERS = {
  alpha: everythingStdio({ description: 'first' }),
  beta: everythingStdio({ description: 'second' }),
};

describe('bootstrap admin and authentication on the MCP routes', () => {
  let gh;
  before(async () => { gh = await startGatehouse({ servers: SERVERS }); });
  after(() => gh?.stop());

  it('prints the admin key once on stdout, and the key is an admin that sees every server', async () => {
    const lines = gh.stdout.filter((l) => l.startsWith('Admin API key (shown once): '));
    assert.equal(lines.length, 1, `stdout:\n${gh.stdout.join('\n')}`);
    assert.match(gh.adminKey, /^gh_[A-Za-z0-9_-]{16,}$/);
    const seen = await visibleServers(gh, bearerHeaders(gh.adminKey));
    assert.equal(seen.status, 200, seen.text);
    assert.deepEqual(seen.ids, ['alpha', 'beta']);
    const me = await whoami(gh, bearerHeaders(gh.adminKey));
    assert.equal(me.status, 200, me.text);
    assert.equal(me.body.email, 'admin@localhost');
    assert.equal(me.body.is_admin, true);
    assert.equal(me.body.auth_method, 'apikey');
  });

  it('the SDK client (default harness credentials) lists and calls tools on /mcp and /mcp/<server>', async (t) => {
    const client = await connectClient(gh.mcpUrl, { t });
    const names = (await listAll(client, 'tools')).items.map((tool) => tool.name);
    assert.ok(names.includes('alpha__echo') && names.includes('beta__echo'), names.join(', '));
    const one = await connectClient(`${gh.mcpUrl}/beta`, { t });
    const result = await one.callTool({ name: 'echo', arguments: { message: 'hi' } });
    assert.match(JSON.stringify(result.content), /hi/);
  });

  for (const [what, send] of [
    ['GET /servers', (g, h) => request(g, 'GET', '/servers', { headers: h })],
    ['POST /mcp initialize', (g, h) => mcpInitialize(g, h)],
    ['POST /mcp/alpha initialize', (g, h) => mcpInitialize(g, h, '/mcp/alpha')],
  ]) {
    it(`${what}: no credentials or a wrong key → 401 with the resource-metadata challenge`, async () => {
      for (const [label, headers] of [
        ['no credentials', {}],
        ['unknown gh_ key', bearerHeaders(`gh_${'x'.repeat(40)}`)],
        ['the admin key with one character changed', bearerHeaders(`${gh.adminKey.slice(0, -1)}${gh.adminKey.endsWith('a') ? 'b' : 'a'}`)],
        ['Basic scheme', { authorization: `Basic ${Buffer.from(`admin@localhost:${gh.adminKey}`).toString('base64')}` }],
        ['empty bearer', { authorization: 'Bearer ' }],
      ]) {
        const res = await send(gh, headers);
        assertUnauthorized(gh, res, `${what}, ${label}`);
        if (what.includes('/mcp')) {
          const body = res.json ?? JSON.parse(res.text);
          assert.equal(body.jsonrpc, '2.0', `${what}, ${label}: JSON-RPC error body: ${res.text}`);
          assert.ok(body.error && Number.isInteger(body.error.code), `${what}, ${label}: ${res.text}`);
        }
      }
    });
  }

  it('/gateway/health needs no credentials; /.well-known/oauth-protected-resource describes the resource', async () => {
    const health = await request(gh, 'GET', '/gateway/health');
    assert.equal(health.status, 200);
    const meta = await request(gh, 'GET', '/.well-known/oauth-protected-resource');
    assert.equal(meta.status, 200, meta.text);
    assert.match(meta.headers.get('content-type') ?? '', /application\/json/);
    assert.ok(typeof meta.body.resource === 'string' && meta.body.resource.startsWith(gh.url), meta.text);
    assert.deepEqual(meta.body.bearer_methods_supported, ['header']);
    assert.deepEqual(meta.body.authorization_servers ?? [], [], 'no OIDC issuer configured, none advertised');
    assert.equal((await request(gh, 'GET', '/.well-known/oauth-protected-resource/mcp')).status, 200, 'RFC 9728: a path below');
    assert.equal((await request(gh, 'GET', '/.well-known/oauth-protected-resourceZZZ')).status, 404, 'not a prefix');
  });

  it('POST /auth/session takes JSON only (a form from another page cannot sign a browser in)', async () => {
    const made = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', name: 'form' });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const res = await request(gh, 'POST', '/auth/session', {
        headers: { 'content-type': type }, body: JSON.stringify({ api_key: made.body.key }),
      });
      assert.equal(res.status, 415, `${type}: ${res.text}`);
      assert.equal(res.headers.get('set-cookie'), null);
    }
  });

  it('an API key made by the admin API works; listed without its secret; revoked → 401', async () => {
    const created = await gh.api('POST', '/users', { email: 'kim@example.com', name: 'Kim', is_admin: false });
    assert.equal(created.status, 201, created.text);
    const made = await gh.api('POST', '/apikeys', { user_email: 'kim@example.com', name: 'laptop' });
    assert.equal(made.status, 201, made.text);
    const { id, key, prefix } = made.body;
    assert.ok(id && key && prefix, made.text);
    assert.match(key, /^gh_/);
    assert.ok(key.startsWith(prefix), `prefix ${prefix} of ${key}`);

    const me = await whoami(gh, bearerHeaders(key));
    assert.equal(me.status, 200, me.text);
    assert.equal(me.body.email, 'kim@example.com');
    assert.equal(me.body.is_admin, false);
    assert.equal(me.body.auth_method, 'apikey');
    const seen = await visibleServers(gh, bearerHeaders(key));
    assert.equal(seen.status, 200, seen.text);
    assert.deepEqual(seen.ids, [], 'a user in no group sees no server');
    assert.equal((await mcpInitialize(gh, bearerHeaders(key))).status, 200);

    const listed = await gh.api('GET', '/apikeys?user=kim%40example.com');
    assert.equal(listed.status, 200, listed.text);
    assert.ok(JSON.stringify(listed.body).includes(id), listed.text);
    assert.ok(!listed.text.includes(key), 'the key value is shown once, never listed');

    const revoked = await gh.api('DELETE', `/apikeys/${encodeURIComponent(id)}`);
    assert.ok([200, 204].includes(revoked.status), revoked.text);
    assertUnauthorized(gh, await request(gh, 'GET', '/servers', { headers: bearerHeaders(key) }), 'revoked key on /servers');
    assertUnauthorized(gh, await mcpInitialize(gh, bearerHeaders(key)), 'revoked key on /mcp');
    // Other keys are unaffected.
    assert.equal((await visibleServers(gh, bearerHeaders(gh.adminKey))).status, 200);
  });

  it('on one keep-alive connection, every change to a key or its user counts from the next request', async () => {
    // The gateway remembers the API key it last accepted on a connection; this checks that what it remembers
    // never outlives a change: admin rights, disabling, another key on the same connection, revocation.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set();
    const me = (key) => new Promise((resolve, reject) => {
      const req = http.request(`${gh.url}/auth/me`, { agent, headers: { authorization: `Bearer ${key}` } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { text += c; });
        res.on('end', () => resolve({ status: res.statusCode, text, body: text ? JSON.parse(text) : null }));
      });
      req.on('socket', (socket) => sockets.add(socket));
      req.on('error', reject);
      req.end();
    });
    try {
      for (const email of ['lee@example.com', 'max@example.com'])
        assert.equal((await gh.api('POST', '/users', { email, name: email })).status, 201);
      const lee = (await gh.api('POST', '/apikeys', { user_email: 'lee@example.com', name: 'one' })).body;
      const max = (await gh.api('POST', '/apikeys', { user_email: 'max@example.com', name: 'two' })).body;
      const expect = async (key, status, email, isAdmin, what) => {
        const res = await me(key);
        assert.equal(res.status, status, `${what}: ${res.text}`);
        if (status === 200) assert.deepEqual([res.body.email, res.body.is_admin], [email, isAdmin], what);
      };
      await expect(lee.key, 200, 'lee@example.com', false, 'first request');
      await expect(lee.key, 200, 'lee@example.com', false, 'same key again');
      assert.equal((await gh.api('PATCH', '/users/lee%40example.com', { is_admin: true })).status, 200);
      await expect(lee.key, 200, 'lee@example.com', true, 'after being made admin');
      await expect(max.key, 200, 'max@example.com', false, 'another key on the same connection');
      await expect(lee.key, 200, 'lee@example.com', true, 'the first key again');
      assert.equal((await gh.api('PATCH', '/users/lee%40example.com', { disabled: true })).status, 200);
      await expect(lee.key, 403, null, null, 'after the user was disabled');
      assert.equal((await gh.api('PATCH', '/users/lee%40example.com', { disabled: false })).status, 200);
      await expect(lee.key, 200, 'lee@example.com', true, 'enabled again');
      const revoked = await gh.api('DELETE', `/apikeys/${encodeURIComponent(lee.id)}`);
      assert.ok([200, 204].includes(revoked.status), revoked.text);
      assert.equal(sockets.size, 1, 'every request so far went over one connection');
      await expect(lee.key, 401, null, null, 'after revocation');
    } finally {
      agent.destroy();
    }
  });

  it('a session signed in with an API key ends with the key: it never outlives the expiry, and revoking ends it', async () => {
    assert.equal((await gh.api('POST', '/users', { email: 'portal.user@example.com', name: 'Lee' })).status, 201);
    const expiresAt = nowSeconds() + 600;
    const made = await gh.api('POST', '/apikeys', { user_email: 'portal.user@example.com', name: 'portal', expires_at: expiresAt });
    assert.equal(made.status, 201, made.text);
    const signIn = await request(gh, 'POST', '/auth/session', {
      headers: { 'content-type': 'application/json' }, body: JSON.stringify({ api_key: made.body.key }),
    });
    assert.equal(signIn.status, 200, signIn.text);
    const session = /gatehouse_session=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')?.[1];
    assert.ok(session, `no session cookie: ${signIn.headers.get('set-cookie')}`);
    const claims = JSON.parse(Buffer.from(session.split('.')[1], 'base64url').toString());
    assert.ok(claims.exp <= expiresAt, `the session expires at ${claims.exp}, after its key (${expiresAt})`);
    const cookie = { cookie: `gatehouse_session=${session}` };
    const me = await whoami(gh, cookie);
    assert.equal(me.status, 200, me.text);
    assert.equal(me.body.email, 'portal.user@example.com');
    const revoked = await gh.api('DELETE', `/apikeys/${encodeURIComponent(made.body.id)}`);
    assert.ok([200, 204].includes(revoked.status), revoked.text);
    await eventually('the session to end with its key', async () => (await whoami(gh, cookie)).status === 401,
      { timeoutMs: 5000, intervalMs: 100 });
  });

  it('an API key with an expiry works until then, and gets 401 after', async () => {
    const expiresAt = nowSeconds() + 3;
    const made = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', name: 'short', expires_at: expiresAt });
    assert.equal(made.status, 201, made.text);
    const headers = bearerHeaders(made.body.key);
    assert.equal((await visibleServers(gh, headers)).status, 200, 'works before it expires');
    await eventually('the expired key to be refused', async () => {
      const res = await request(gh, 'GET', '/servers', { headers });
      if (res.status === 200) {
        assert.ok(nowSeconds() <= expiresAt + 1, `still accepted ${nowSeconds() - expiresAt} s after expires_at`);
        return false;
      }
      assertUnauthorized(gh, res, 'expired key');
      return true;
    }, { timeoutMs: 10000, intervalMs: 250 });
  });

  it('a key made with an expiring admin key expires with it at the latest (a short-lived key mints no lasting ones)', async () => {
    const expiresAt = nowSeconds() + 600;
    const short = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', name: 'short-admin', expires_at: expiresAt });
    assert.equal(short.status, 201, short.text);
    const headers = bearerHeaders(short.body.key);
    const made = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', name: 'minted' }, { headers });
    assert.equal(made.status, 201, made.text);
    assert.equal(made.body.expires_at, expiresAt, 'no expiry asked: the maker\'s');
    const sooner = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', expires_at: expiresAt - 60 }, { headers });
    assert.equal(sooner.status, 201, sooner.text);
    assert.equal(sooner.body.expires_at, expiresAt - 60);
    const later = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', expires_at: expiresAt + 60 }, { headers });
    assert.equal(later.status, 403, later.text);
    // A key that never expires makes keys as it is asked to.
    const lasting = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', name: 'lasting' });
    assert.equal(lasting.body.expires_at, null, lasting.text);
  });

  it('the CLI makes keys (`apikey create --user`, `--admin`) the running gateway accepts', async () => {
    const plain = gh.cli(['apikey', 'create', '--user', 'cli-user@example.com']);
    assert.equal(plain.code, 0, `${plain.stdout}\n${plain.stderr}`);
    assert.match(plain.lastLine, /^gh_\S+$/, plain.stdout);
    const admin = gh.cli(['apikey', 'create', '--user', 'cli-admin@example.com', '--admin']);
    assert.equal(admin.code, 0, `${admin.stdout}\n${admin.stderr}`);
    assert.match(admin.lastLine, /^gh_\S+$/, admin.stdout);

    // Another process wrote the store: the gateway picks the change up (bounded).
    const me = await eventually('the CLI-made key to be accepted', async () => {
      const res = await whoami(gh, bearerHeaders(plain.lastLine));
      return res.status === 200 ? res : null;
    });
    assert.equal(me.body.email, 'cli-user@example.com');
    assert.equal(me.body.is_admin, false);
    assert.deepEqual((await visibleServers(gh, bearerHeaders(plain.lastLine))).ids, []);
    const adminSeen = await eventually('the CLI-made admin key to be accepted', async () => {
      const res = await visibleServers(gh, bearerHeaders(admin.lastLine));
      return res.status === 200 ? res : null;
    });
    assert.deepEqual(adminSeen.ids, ['alpha', 'beta']);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: bearerHeaders(admin.lastLine) })).status, 200);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: bearerHeaders(plain.lastLine) })).status, 403);
  });
});

describe('the bootstrap key is shown once and survives a restart on the same store', () => {
  it('second start: no new key line, the first key still works', async (t) => {
    const db = await createTestDatabase({ t });
    const first = await startGatehouse({ servers: SERVERS, database: db, t });
    const key = first.adminKey;
    await first.stop();
    const second = await startGatehouse({ servers: SERVERS, database: db, t });
    assert.equal(second.freshStore, false);
    assert.deepEqual(second.stdout.filter((l) => l.includes('Admin API key')), [], 'the key is shown once only');
    assert.equal(second.adminKey, key, 'the harness carries the key over');
    const seen = await visibleServers(second, bearerHeaders(key));
    assert.equal(seen.status, 200, seen.text);
    assert.deepEqual(seen.ids, ['alpha', 'beta']);
    const migrate = second.cli(['migrate']);
    assert.equal(migrate.code, 0, `${migrate.stdout}\n${migrate.stderr}`);
  });
});
