// Identity, part 2: the management API under /mcp-admin/api — admins only (401 without credentials, 403 for
// every path to a non-admin, unknown paths included), users with search and paging, groups with bulk member
// adds and renames, disabling a user, the audit log with actors, the CLI on the same store, and (PostgreSQL)
// changes made through one gateway seen by a second gateway on the same database.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TEST_BACKEND, everythingStdio, startGatehouse } from './lib/index.js';
import {
  assertUnauthorized, bearerHeaders, eventually, request, visibleServers, whoami,
} from './lib/identity.js';

const SERVERS = { alpha: everythingStdio() };

function assertError(res, status, what) {
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status} ${res.text.slice(0, 300)}`);
  assert.ok(res.body && typeof res.body.error === 'object', `${what}: error body ${res.text.slice(0, 300)}`);
  assert.equal(typeof res.body.error.code, 'string', `${what}: error.code in ${res.text.slice(0, 300)}`);
  assert.equal(typeof res.body.error.message, 'string', `${what}: error.message in ${res.text.slice(0, 300)}`);
}

async function makeUser(gh, email, { isAdmin = false, name } = {}) {
  const created = await gh.api('POST', '/users', { email, name: name ?? email.split('@')[0], is_admin: isAdmin });
  assert.equal(created.status, 201, `POST /users ${email}: ${created.text}`);
  const key = await gh.api('POST', '/apikeys', { user_email: email, name: 'test' });
  assert.equal(key.status, 201, `POST /apikeys ${email}: ${key.text}`);
  return { email, key: key.body.key, keyId: key.body.id, headers: bearerHeaders(key.body.key) };
}

describe('management API', () => {
  let gh;
  let pat; // a non-admin with a key
  before(async () => {
    gh = await startGatehouse({ servers: SERVERS });
    pat = await makeUser(gh, 'pat@example.com', { name: 'Pat' });
  });
  after(() => gh?.stop());

  const ROUTES = [
    ['GET', '/users'], ['POST', '/users', { email: 'x@example.com' }], ['GET', '/users/pat%40example.com'],
    ['PATCH', '/users/pat%40example.com', { is_admin: true }], ['DELETE', '/users/admin%40localhost'],
    ['GET', '/groups'], ['POST', '/groups', { name: 'Sneaky' }], ['GET', '/groups/Anything'],
    ['PATCH', '/groups/Anything', { name: 'Other' }], ['DELETE', '/groups/Anything'],
    ['GET', '/groups/Anything/members'], ['POST', '/groups/Anything/members', { emails: ['pat@example.com'] }],
    ['PUT', '/groups/Anything/members/pat%40example.com'], ['DELETE', '/groups/Anything/members/pat%40example.com'],
    ['GET', '/apikeys'], ['POST', '/apikeys', { user_email: 'pat@example.com', name: 'more' }], ['DELETE', '/apikeys/some-id'],
    ['GET', '/audit'], ['GET', '/no-such-thing'], ['POST', '/no/such/thing', {}], ['GET', '/'],
  ];

  it('without credentials: 401 on every path', async () => {
    for (const [method, path, body] of ROUTES) {
      const res = await request(gh, method, `/mcp-admin/api${path}`, { body });
      assert.equal(res.status, 401, `${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`);
    }
  });

  it('a non-admin gets 403 on every path, unknown ones included, and changes nothing', async () => {
    for (const [method, path, body] of ROUTES) {
      const res = await request(gh, method, `/mcp-admin/api${path}`, { headers: pat.headers, body });
      assertError(res, 403, `${method} /mcp-admin/api${path} as a non-admin`);
    }
    const me = await gh.api('GET', '/users/pat%40example.com');
    assert.equal(me.status, 200, me.text);
    assert.equal(me.body.is_admin, false);
    assert.equal((await gh.api('GET', '/users/admin%40localhost')).status, 200);
    assert.equal((await gh.api('GET', '/groups/Sneaky')).status, 404);
    assert.equal((await gh.api('GET', '/users/x%40example.com')).status, 404);
  });

  it('users: create, 409 on a duplicate, 400 on a bad email, 404 on an unknown one; search and paging', async () => {
    assertError(await gh.api('POST', '/users', { email: 'pat@example.com', name: 'again' }), 409, 'duplicate user');
    assertError(await gh.api('POST', '/users', { email: 'not-an-email', name: 'x' }), 400, 'bad email');
    assertError(await gh.api('GET', '/users/nobody%40example.com'), 404, 'unknown user');
    for (let i = 0; i < 23; i++) {
      const n = String(i).padStart(2, '0');
      const res = await gh.api('POST', '/users', { email: `pager${n}@paging.test`, name: `Pager Person ${n}`, is_admin: false });
      assert.equal(res.status, 201, res.text);
    }
    const seen = [];
    for (let page = 1; page <= 3; page++) {
      const res = await gh.api('GET', `/users?q=paging.test&page=${page}&per_page=10`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.total, 23);
      assert.equal(res.body.page, page);
      assert.equal(res.body.per_page, 10);
      assert.equal(res.body.items.length, page < 3 ? 10 : 3, `page ${page}`);
      for (const user of res.body.items) {
        for (const field of ['email', 'name', 'is_admin', 'disabled', 'source', 'created_at', 'last_seen_at', 'groups']) {
          assert.ok(field in user, `user ${user.email} lacks ${field}`);
        }
      }
      seen.push(...res.body.items.map((u) => u.email));
    }
    const expected = Array.from({ length: 23 }, (_, i) => `pager${String(i).padStart(2, '0')}@paging.test`);
    assert.deepEqual(seen, expected, 'every match once, ordered by email');
    // Search is case-insensitive and looks at names too.
    const byName = await gh.api('GET', '/users?q=PERSON%2017');
    assert.equal(byName.status, 200, byName.text);
    assert.deepEqual(byName.body.items.map((u) => u.email), ['pager17@paging.test']);
    assert.equal(byName.body.total, 1);
    const none = await gh.api('GET', '/users?q=zzz-nothing-matches');
    assert.equal(none.body.total, 0);
    assert.deepEqual(none.body.items, []);
  });

  it('groups: create (201, 409 again), bulk add members (added/already/invalid; unknown emails become users)', async () => {
    const made = await gh.api('POST', '/groups', { name: 'MCP-GitHub', description: 'GitHub tools', priority: 5, is_tenant: false });
    assert.equal(made.status, 201, made.text);
    assertError(await gh.api('POST', '/groups', { name: 'MCP-GitHub' }), 409, 'duplicate group');
    const bulk = await gh.api('POST', '/groups/MCP-GitHub/members', {
      emails: ['pat@example.com', 'newcomer@example.com', 'not an email', 'pager01@paging.test'],
    });
    assert.equal(bulk.status, 200, bulk.text);
    assert.deepEqual([...bulk.body.added].sort(), ['newcomer@example.com', 'pager01@paging.test', 'pat@example.com']);
    assert.deepEqual(bulk.body.already, []);
    assert.deepEqual(bulk.body.invalid, ['not an email']);
    const again = await gh.api('POST', '/groups/MCP-GitHub/members', { emails: ['pat@example.com', 'another@example.com'] });
    assert.deepEqual(again.body.added, ['another@example.com']);
    assert.deepEqual(again.body.already, ['pat@example.com']);

    const newcomer = await gh.api('GET', '/users/newcomer%40example.com');
    assert.equal(newcomer.status, 200, 'an unknown email got a user');
    assert.deepEqual(newcomer.body.groups, ['MCP-GitHub']);
    const members = await gh.api('GET', '/groups/MCP-GitHub/members');
    assert.equal(members.status, 200, members.text);
    const memberEmails = (members.body.items ?? members.body.members ?? members.body).map((m) => m.email ?? m).sort();
    assert.deepEqual(memberEmails, ['another@example.com', 'newcomer@example.com', 'pager01@paging.test', 'pat@example.com']);

    // One at a time.
    assert.ok([200, 201, 204].includes((await gh.api('PUT', '/groups/MCP-GitHub/members/pager02%40paging.test')).status));
    assert.ok([200, 204].includes((await gh.api('DELETE', '/groups/MCP-GitHub/members/another%40example.com')).status));
    const after = await gh.api('GET', '/users/pager02%40paging.test');
    assert.deepEqual(after.body.groups, ['MCP-GitHub']);
    assert.deepEqual((await gh.api('GET', '/users/another%40example.com')).body.groups, []);
    // The member sees their own groups.
    const me = await whoami(gh, pat.headers);
    assert.deepEqual(me.body.groups, ['MCP-GitHub']);
  });

  it('renaming a group keeps its members; the old name is gone', async () => {
    assert.equal((await gh.api('POST', '/groups', { name: 'Team-Old', description: 'before', priority: 1, is_tenant: true })).status, 201);
    const added = await gh.api('POST', '/groups/Team-Old/members', { emails: ['pat@example.com', 'pager03@paging.test'] });
    assert.equal(added.body.added.length, 2, added.text);
    const renamed = await gh.api('PATCH', '/groups/Team-Old', { name: 'Team-New', description: 'after' });
    assert.equal(renamed.status, 200, renamed.text);
    assertError(await gh.api('GET', '/groups/Team-Old'), 404, 'old name');
    const group = await gh.api('GET', '/groups/Team-New');
    assert.equal(group.status, 200, group.text);
    assert.equal(group.body.description, 'after');
    assert.equal(group.body.is_tenant, true);
    const me = await whoami(gh, pat.headers);
    assert.deepEqual(me.body.groups, ['MCP-GitHub', 'Team-New']);
    assert.deepEqual((await gh.api('GET', '/users/pager03%40paging.test')).body.groups, ['Team-New']);
    assertError(await gh.api('PATCH', '/groups/Team-New', { name: 'MCP-GitHub' }), 409, 'rename onto an existing group');
  });

  it('a disabled user is refused (403) on their next request; enabled again, they are back', async () => {
    const sam = await makeUser(gh, 'sam@example.com');
    assert.equal((await visibleServers(gh, sam.headers)).status, 200);
    const disabled = await gh.api('PATCH', '/users/sam%40example.com', { disabled: true });
    assert.equal(disabled.status, 200, disabled.text);
    assert.equal((await visibleServers(gh, sam.headers)).status, 403);
    assert.equal((await whoami(gh, sam.headers)).status, 403);
    assert.equal((await gh.api('GET', '/users/sam%40example.com')).body.disabled, true);
    assert.equal((await gh.api('PATCH', '/users/sam%40example.com', { disabled: false })).status, 200);
    assert.equal((await visibleServers(gh, sam.headers)).status, 200);

    // The CLI does the same on the shared store; the running gateway follows (bounded).
    const off = gh.cli(['users', 'disable', 'sam@example.com']);
    assert.equal(off.code, 0, `${off.stdout}\n${off.stderr}`);
    await eventually('the CLI disable to reach the gateway', async () => (await visibleServers(gh, sam.headers)).status === 403);
    const on = gh.cli(['users', 'enable', 'sam@example.com']);
    assert.equal(on.code, 0, `${on.stdout}\n${on.stderr}`);
    await eventually('the CLI enable to reach the gateway', async () => (await visibleServers(gh, sam.headers)).status === 200);
  });

  it('making a user admin gives their key the admin API and every server; deleting the user kills the key', async () => {
    const lee = await makeUser(gh, 'lee@example.com');
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: lee.headers })).status, 403);
    assert.equal((await gh.api('PATCH', '/users/lee%40example.com', { is_admin: true })).status, 200);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: lee.headers })).status, 200);
    assert.deepEqual((await visibleServers(gh, lee.headers)).ids, ['alpha']);
    assert.ok([200, 204].includes((await gh.api('DELETE', '/users/lee%40example.com')).status));
    assertUnauthorized(gh, await request(gh, 'GET', '/servers', { headers: lee.headers }), 'key of a deleted user');
    assertError(await gh.api('GET', '/users/lee%40example.com'), 404, 'deleted user');
  });

  it('the audit log records admin changes with their actor, filterable by actor, action and target', async () => {
    const ops = await makeUser(gh, 'ops@example.com', { isAdmin: true });
    const made = await request(gh, 'POST', '/mcp-admin/api/groups', {
      headers: ops.headers, body: { name: 'Audited', description: 'by ops', priority: 0, is_tenant: false },
    });
    assert.equal(made.status, 201, made.text);
    const byOps = await gh.api('GET', '/audit?actor=ops%40example.com');
    assert.equal(byOps.status, 200, byOps.text);
    assert.ok(byOps.body.total >= 1, byOps.text);
    assert.ok(byOps.body.items.every((e) => e.actor === 'ops@example.com'), byOps.text);
    const entry = byOps.body.items.find((e) => e.target === 'Audited');
    assert.ok(entry, `no entry for the group made by ops: ${byOps.text}`);
    assert.match(entry.action, /group/);
    for (const field of ['id', 'timestamp', 'actor', 'action', 'target', 'details']) assert.ok(field in entry, `audit entry lacks ${field}`);

    const byAdmin = await gh.api('GET', '/audit?actor=admin%40localhost');
    const actions = byAdmin.body.items.map((e) => `${e.action} ${e.target}`);
    assert.ok(byAdmin.body.items.every((e) => e.actor === 'admin@localhost'));
    assert.ok(byAdmin.body.items.some((e) => e.target === 'Team-New' || e.target === 'Team-Old'), actions.join('\n'));
    assert.ok(byAdmin.body.items.some((e) => e.target === 'sam@example.com'), `disable of sam not audited:\n${actions.join('\n')}`);

    const byTarget = await gh.api(`GET`, `/audit?target=${encodeURIComponent('Audited')}&action=${encodeURIComponent(entry.action)}`);
    assert.equal(byTarget.status, 200);
    assert.ok(byTarget.body.items.length >= 1 && byTarget.body.items.every((e) => e.target === 'Audited' && e.action === entry.action), byTarget.text);
    // Nothing secret in the log: no key values.
    const all = await gh.api('GET', '/audit');
    assert.ok(!all.text.includes(ops.key) && !all.text.includes(pat.key), 'an API key value in the audit log');
  });

  it('the CLI lists users and manages groups on the same store', async () => {
    const list = gh.cli(['users', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /pat@example\.com/);
    const show = gh.cli(['users', 'show', 'pat@example.com']);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /MCP-GitHub/);
    assert.equal(gh.cli(['groups', 'create', 'From-CLI']).code, 0);
    assert.equal(gh.cli(['groups', 'add-member', 'From-CLI', 'pat@example.com']).code, 0);
    assert.match(gh.cli(['groups', 'list']).stdout, /From-CLI/);
    await eventually('the CLI membership to reach the gateway', async () => (await whoami(gh, pat.headers)).body?.groups?.includes('From-CLI'));
    assert.equal(gh.cli(['groups', 'remove-member', 'From-CLI', 'pat@example.com']).code, 0);
    await eventually('the CLI removal to reach the gateway', async () => {
      const groups = (await whoami(gh, pat.headers)).body?.groups;
      return Array.isArray(groups) && !groups.includes('From-CLI');
    });
    const unknown = gh.cli(['users', 'show', 'nobody@example.com']);
    assert.notEqual(unknown.code, 0, 'showing an unknown user fails');
  });
});

describe('two gateways on one PostgreSQL database', { skip: TEST_BACKEND !== 'postgres' ? 'PostgreSQL backend only (LISTEN/NOTIFY between instances)' : false }, () => {
  it('users, keys, groups and disabling made through one are seen by the other within about a second', async (t) => {
    const one = await startGatehouse({ servers: SERVERS, t });
    const two = await startGatehouse({ servers: SERVERS, database: one.databaseUrl, t });
    assert.equal(two.freshStore, false);
    assert.equal((await visibleServers(two, bearerHeaders(one.adminKey))).status, 200, 'the bootstrap key works on both');
    const within = { timeoutMs: 2000, intervalMs: 50 };

    const made = await one.api('POST', '/users', { email: 'shared@example.com', name: 'Shared', is_admin: false });
    assert.equal(made.status, 201, made.text);
    const key = await one.api('POST', '/apikeys', { user_email: 'shared@example.com', name: 'k' });
    const headers = bearerHeaders(key.body.key);
    await eventually('the new key to work on the second gateway', async () => (await whoami(two, headers)).status === 200, within);

    assert.equal((await one.api('POST', '/groups', { name: 'Shared-Group' })).status, 201);
    assert.equal((await one.api('POST', '/groups/Shared-Group/members', { emails: ['shared@example.com'] })).status, 200);
    await eventually('the membership on the second gateway', async () => {
      const me = await whoami(two, headers);
      return me.status === 200 && me.body.groups.includes('Shared-Group');
    }, within);

    assert.equal((await one.api('PATCH', '/users/shared%40example.com', { disabled: true })).status, 200);
    await eventually('the disabled user refused by the second gateway', async () => (await whoami(two, headers)).status === 403, within);

    assert.ok([200, 204].includes((await two.api('DELETE', `/apikeys/${key.body.id}`)).status));
    assert.equal((await one.api('PATCH', '/users/shared%40example.com', { disabled: false })).status, 200);
    await eventually('the key revoked on the second gateway refused by the first', async () => (await whoami(one, headers)).status === 401, within);
  });
});
