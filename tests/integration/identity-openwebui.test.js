// Identity, part 3: Open WebUI session tokens (HS256 with WEBUI_SECRET_KEY, claim `id`), in
// `Authorization: Bearer` and in the `token` cookie, resolved against Open WebUI's own database (run's backend)
// in both membership forms: group_member (current) and group.user_ids (older). admin → admin, user → user with
// the Open WebUI groups, pending → 403; wrong secret, expired, unknown id → 401.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { everythingStdio, startGatehouse } from './lib/index.js';
import { createOpenWebUiDb, mintWebUiToken } from './lib/openwebui.js';
import { hs256Jwt, rawJwt } from './lib/oidc.js';
import {
  assertUnauthorized, bearerHeaders, mcpInitialize, nowSeconds, request, visibleServers, whoami,
} from './lib/identity.js';

const SECRET = 'webui-secret-for-tests-0123456789';
const SERVERS = { alpha: everythingStdio(), beta: everythingStdio() };

for (const legacyUserIds of [false, true]) {
  describe(`Open WebUI tokens (${legacyUserIds ? 'older group.user_ids' : 'group_member'} form)`, () => {
    let gh;
    let webui;
    const ids = {};
    before(async () => {
      webui = await createOpenWebUiDb({ legacyUserIds });
      ids.admin = await webui.addUser({ email: 'owner@webui.test', name: 'Owner', role: 'admin' });
      ids.user = await webui.addUser({ email: 'Jo.User@webui.test', name: 'Jo User', role: 'user' });
      ids.pending = await webui.addUser({ email: 'waiting@webui.test', name: 'Waiting', role: 'pending' });
      ids.loner = await webui.addUser({ email: 'loner@webui.test', name: 'Loner', role: 'user' });
      await webui.addGroup('Engineering', [ids.user, ids.admin]);
      await webui.addGroup('Research', [ids.user]);
      await webui.addGroup('Unrelated', [ids.admin]);
      gh = await startGatehouse({
        servers: SERVERS,
        env: { WEBUI_SECRET_KEY: SECRET, OPENWEBUI_DATABASE_URL: webui.url },
      });
    });
    after(async () => {
      await gh?.stop();
      await webui?.stop();
    });

    it('an admin token (Bearer) is an Open WebUI admin: every server, the admin API', async () => {
      const token = await mintWebUiToken(SECRET, { id: ids.admin });
      const me = await whoami(gh, bearerHeaders(token));
      assert.equal(me.status, 200, me.text);
      assert.equal(me.body.email, 'owner@webui.test');
      assert.equal(me.body.is_admin, true);
      assert.equal(me.body.auth_method, 'openwebui');
      assert.deepEqual((await visibleServers(gh, bearerHeaders(token))).ids, ['alpha', 'beta']);
      assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: bearerHeaders(token) })).status, 200);
      assert.equal((await mcpInitialize(gh, bearerHeaders(token))).status, 200);
    });

    it('a user token carries the Open WebUI groups; not an admin', async () => {
      const token = await mintWebUiToken(SECRET, { id: ids.user, jti: true, iat: true });
      const me = await whoami(gh, bearerHeaders(token));
      assert.equal(me.status, 200, me.text);
      assert.equal(me.body.email.toLowerCase(), 'jo.user@webui.test');
      assert.equal(me.body.name, 'Jo User');
      assert.equal(me.body.is_admin, false);
      assert.deepEqual([...me.body.groups].sort(), ['Engineering', 'Research']);
      assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: bearerHeaders(token) })).status, 403);
      const seen = await visibleServers(gh, bearerHeaders(token));
      assert.equal(seen.status, 200, seen.text);
      assert.deepEqual(seen.ids, [], 'no grants for these groups, so no servers');
      const loner = await whoami(gh, bearerHeaders(await mintWebUiToken(SECRET, { id: ids.loner })));
      assert.deepEqual(loner.body.groups, []);
    });

    it('the same token in the `token` cookie works; a token without exp is accepted (JWT_EXPIRES_IN=-1)', async () => {
      const token = await mintWebUiToken(SECRET, { id: ids.user });
      const me = await whoami(gh, { cookie: `other=1; token=${token}; theme=dark` });
      assert.equal(me.status, 200, me.text);
      assert.equal(me.body.email.toLowerCase(), 'jo.user@webui.test');
      assert.equal(me.body.auth_method, 'openwebui');
      assert.equal((await visibleServers(gh, { cookie: `token=${token}` })).status, 200);
      const forever = await mintWebUiToken(SECRET, { id: ids.admin, exp: null });
      assert.equal((await whoami(gh, bearerHeaders(forever))).body?.email, 'owner@webui.test');
    });

    it('a write carried by the `token` cookie needs the CSRF token /auth/me gives for it; by Bearer it does not', async () => {
      // A page on another local port is same-site for the browser (the cookie goes with its requests) and its
      // loopback Origin is accepted: the token is what stops its writes.
      const token = await mintWebUiToken(SECRET, { id: ids.admin });
      const cookie = { cookie: `token=${token}` };
      const group = `Csrf-${legacyUserIds ? 'legacy' : 'current'}`;
      const me = await whoami(gh, cookie);
      assert.equal(me.status, 200, me.text);
      assert.match(me.body.csrf_token ?? '', /^[A-Za-z0-9_-]{43}$/);
      assert.equal((await whoami(gh, bearerHeaders(token))).body.csrf_token, undefined, 'no cookie, no token');
      const origin = { origin: 'http://localhost:3999' };
      for (const [what, extra] of [['none', {}], ['wrong', { 'x-csrf-token': 'x'.repeat(43) }]]) {
        const res = await request(gh, 'POST', '/mcp-admin/api/groups', { headers: { ...cookie, ...origin, ...extra }, body: { name: group } });
        assert.equal(res.status, 403, `${what}: ${res.text}`);
        assert.equal(res.body.error.code, 'csrf');
        const call = await request(gh, 'POST', '/openapi/alpha/echo', { headers: { ...cookie, ...origin, ...extra }, body: { message: 'hi' } });
        assert.equal(call.status, 403, `OpenAPI call, ${what}: ${call.text}`);
      }
      assert.equal((await request(gh, 'GET', `/mcp-admin/api/groups/${group}`, { headers: bearerHeaders(token) })).status, 404, 'nothing was created');
      const ok = await request(gh, 'POST', '/mcp-admin/api/groups', { headers: { ...cookie, 'x-csrf-token': me.body.csrf_token }, body: { name: group } });
      assert.equal(ok.status, 201, ok.text);
      const call = await request(gh, 'POST', '/openapi/alpha/echo', { headers: { ...cookie, 'x-csrf-token': me.body.csrf_token }, body: { message: 'hi' } });
      assert.equal(call.status, 200, call.text);
      const bearer = await request(gh, 'POST', '/openapi/alpha/echo', { headers: bearerHeaders(token), body: { message: 'hi' } });
      assert.equal(bearer.status, 200, bearer.text);
    });

    it('a pending user is refused with 403, by Bearer and by cookie', async () => {
      const token = await mintWebUiToken(SECRET, { id: ids.pending });
      assert.equal((await visibleServers(gh, bearerHeaders(token))).status, 403);
      assert.equal((await mcpInitialize(gh, bearerHeaders(token))).status, 403);
      assert.equal((await visibleServers(gh, { cookie: `token=${token}` })).status, 403);
    });

    it('wrong secret, expired, unknown id, alg none, tampered payload → 401 (Bearer and cookie)', async () => {
      const now = nowSeconds();
      const good = await mintWebUiToken(SECRET, { id: ids.admin });
      const [h, , s] = good.split('.');
      const tampered = `${h}.${Buffer.from(JSON.stringify({ id: ids.admin, exp: now + 3600, role: 'admin' })).toString('base64url')}.${s}`;
      const bad = {
        'wrong secret': await mintWebUiToken('not-the-secret', { id: ids.admin }),
        expired: await mintWebUiToken(SECRET, { id: ids.admin, exp: now - 3600 }),
        'unknown id': await mintWebUiToken(SECRET, { id: '00000000-0000-4000-8000-000000000000' }),
        'alg none': rawJwt({ alg: 'none', typ: 'JWT' }, { id: ids.admin, exp: now + 3600 }),
        'HS512 header': hs256Jwt({ alg: 'HS512' }, { id: ids.admin, exp: now + 3600 }, SECRET),
        tampered,
        'not a JWT': 'eyJhbGciOiJIUzI1NiJ9.garbage',
      };
      for (const [what, token] of Object.entries(bad)) {
        assertUnauthorized(gh, await request(gh, 'GET', '/servers', { headers: bearerHeaders(token) }), `${what} (Bearer)`);
        assertUnauthorized(gh, await request(gh, 'GET', '/servers', { headers: { cookie: `token=${token}` } }), `${what} (cookie)`);
      }
    });
  });
}

describe('Open WebUI database unavailable for a moment', () => {
  it('a token seen while its database was unavailable (503) works as soon as the database is back', async (t) => {
    const webui = await createOpenWebUiDb({ t });
    const id = await webui.addUser({ email: 'blip@webui.test', name: 'Blip', role: 'user' });
    const gh = await startGatehouse({ servers: {}, env: { WEBUI_SECRET_KEY: SECRET, OPENWEBUI_DATABASE_URL: webui.url } });
    t.after(() => gh.stop());
    const token = await mintWebUiToken(SECRET, { id, jti: true });
    await webui.exec('ALTER TABLE "user" RENAME TO user_moved');
    const during = await whoami(gh, bearerHeaders(token));
    assert.equal(during.status, 503, during.text);
    await webui.exec('ALTER TABLE user_moved RENAME TO "user"');
    const back = await whoami(gh, bearerHeaders(token));
    assert.equal(back.status, 200, `the outage's 503 was remembered: ${back.text}`);
  });
});
