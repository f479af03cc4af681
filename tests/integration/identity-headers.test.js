// Identity, part 6: identity headers sent by a client (X-User-Email, X-User-Admin, X-User-Groups, X-User-Name,
// X-Gateway-*) never change who the caller is: not without credentials, not on top of a non-admin's key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { everythingStdio, startGatehouse } from './lib/index.js';
import {
  assertUnauthorized, bearerHeaders, mcpInitialize, request, visibleServers, whoami,
} from './lib/identity.js';

const SPOOF = {
  'X-User-Email': 'admin@localhost',
  'X-User-Admin': 'true',
  'X-User-Groups': 'MCP-Admin,Engineering',
  'X-User-Name': 'Admin',
  'X-Gateway-Validated': 'true',
  'X-Gateway-User': 'admin@localhost',
  'X-Gateway-Admin': 'true',
};

describe('spoofed identity headers', () => {
  let gh;
  let userHeaders;
  before(async () => {
    gh = await startGatehouse({ servers: { alpha: everythingStdio() } });
    assert.equal((await gh.api('POST', '/users', { email: 'plain@example.com', name: 'Plain', is_admin: false })).status, 201);
    const key = await gh.api('POST', '/apikeys', { user_email: 'plain@example.com', name: 'k' });
    assert.equal(key.status, 201, key.text);
    userHeaders = bearerHeaders(key.body.key);
  });
  after(() => gh?.stop());

  it('without credentials they do not authenticate anyone', async () => {
    assertUnauthorized(gh, await request(gh, 'GET', '/servers', { headers: SPOOF }), '/servers');
    assertUnauthorized(gh, await mcpInitialize(gh, SPOOF), '/mcp');
    assert.equal((await whoami(gh, SPOOF)).status, 401);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: SPOOF })).status, 401);
  });

  it('on top of a non-admin key they change nothing: /auth/me, servers, admin API all unchanged', async () => {
    const plain = await whoami(gh, userHeaders);
    assert.equal(plain.status, 200, plain.text);
    const spoofed = await whoami(gh, { ...userHeaders, ...SPOOF });
    assert.equal(spoofed.status, 200, spoofed.text);
    assert.deepEqual(spoofed.body, plain.body);
    assert.equal(spoofed.body.email, 'plain@example.com');
    assert.equal(spoofed.body.is_admin, false);
    assert.deepEqual(spoofed.body.groups, []);
    assert.deepEqual((await visibleServers(gh, { ...userHeaders, ...SPOOF })).ids, []);
    for (const [method, path] of [['GET', '/users'], ['GET', '/groups'], ['GET', '/audit'], ['POST', '/groups']]) {
      const res = await request(gh, method, `/mcp-admin/api${path}`, { headers: { ...userHeaders, ...SPOOF }, body: method === 'POST' ? { name: 'Spoofed' } : undefined });
      assert.equal(res.status, 403, `${method} ${path} with spoofed headers: ${res.status}`);
    }
    assert.equal((await gh.api('GET', '/groups/Spoofed')).status, 404);
  });

  it('lower-case and repeated forms change nothing either', async () => {
    const lower = Object.fromEntries(Object.entries(SPOOF).map(([k, v]) => [k.toLowerCase(), v]));
    const me = await whoami(gh, { ...userHeaders, ...lower });
    assert.equal(me.body.email, 'plain@example.com');
    assert.equal(me.body.is_admin, false);
  });

  it('an admin stays who they are (headers cannot impersonate another user)', async () => {
    const me = await whoami(gh, { ...bearerHeaders(gh.adminKey), 'X-User-Email': 'plain@example.com', 'X-User-Admin': 'false' });
    assert.equal(me.body.email, 'admin@localhost');
    assert.equal(me.body.is_admin, true);
  });
});
