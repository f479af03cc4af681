// The management API's guards, found by review (docs/admin-api.md, docs/tenancy.md): control characters in a
// path or a value (PostgreSQL would cut a NUL short: "admin@localhost\0x" named admin@localhost), the last
// administrator, MCP-Admin itself, a group rename that must carry its sealed credentials along, a PATCH that
// fails half-way, tenant endpoints written as numeric IPv4 forms, accounts made by a bulk add (audited), and
// invisible characters in emails. Runs on the run's backend (SQLite, or PostgreSQL in the second pass).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import pg from 'pg';
import { everythingStdio, startEverythingHttp, startGatehouse, streamableHttpEntry } from './lib/index.js';
import { GATEHOUSE_BIN } from './lib/gatehouse.js';
import { createOpenWebUiDb, mintWebUiToken } from './lib/openwebui.js';
import { eventually } from './lib/identity.js';
import { withPg } from './lib/store.js';
import {
  callText, distinctiveSecret, makeGroup, makeUser, mcpSession, newEncryptionKey, putGrant, putKey,
} from './lib/tenancy.js';

const ME = 'admin@localhost';  // the bootstrap administrator (gh.api's key)

/** A request with a path exactly as given (fetch would normalise it). */
function rawRequest(gh, method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gh.port, method, path, headers: { ...gh.authHeaders, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    if (body !== undefined) {
      req.setHeader('content-type', 'application/json');
      req.write(JSON.stringify(body));
    }
    req.end();
  });
}

/** A gateway with a `crm` server whose CRM_API_KEY is a tenant secret, and tenant group `group` granted it. */
async function crmTenantGateway(t, group) {
  const gh = await startGatehouse({
    t,
    servers: { crm: everythingStdio({ env: { CRM_API_KEY: '${secret:CRM_API_KEY}' } }) },
    env: { ENCRYPTION_KEY: newEncryptionKey() },
  });
  await makeGroup(gh, group, { isTenant: true });
  await putGrant(gh, group, 'crm');
  return gh;
}

describe('management API guards', () => {
  it('a control character in a path segment or a value is refused (400), and nothing changes', async (t) => {
    const gh = await startGatehouse({ t });
    const other = await makeUser(gh, 'other@example.com', { isAdmin: true });
    for (const [method, path, body] of [
      ['PATCH', `/mcp-admin/api/users/${encodeURIComponent(ME)}%00x`, { is_admin: false, disabled: true }],
      ['DELETE', '/mcp-admin/api/users/other%40example.com%00', undefined],
      ['GET', '/mcp-admin/api/groups/MCP-Admin%0a', undefined],
      // not UTF-8 (PostgreSQL refused such text as a store failure, 503; SQLite stored it)
      ['PUT', '/mcp-admin/api/groups/MCP-Admin/members/%FF%40x.io', undefined],
      ['GET', '/mcp-admin/api/users/%C3', undefined],
      ['GET', '/mcp-admin/api/users?q=%FF', undefined],
      ['GET', '/mcp-admin/api/audit?actor=%C3%28', undefined],
    ]) {
      const res = await rawRequest(gh, method, path, body);
      assert.equal(res.status, 400, `${method} ${path}: ${res.text}`);
    }
    const me = await gh.api('GET', `/users/${encodeURIComponent(ME)}`);
    assert.equal(me.body.is_admin, true);
    assert.equal(me.body.disabled, false);
    assert.equal((await gh.api('GET', '/users/other%40example.com', undefined, { headers: other.headers })).status, 200);

    await gh.api('POST', '/users', { email: 'k@example.com' });
    for (const [path, body] of [
      ['/users', { email: 'nul@example.com', name: 'a\u0000b' }],
      ['/users', { email: 'big@example.com', name: 'x'.repeat(100_000) }],
      ['/groups', { name: 'NulGroup', description: 'x\u0000y' }],
      ['/apikeys', { user_email: 'k@example.com', name: 'n\u0000' }],
      ['/users', { email: `${ME}\u200b` }],  // reads as the administrator's address
      ['/users', { email: '\u202emoc.live@x.com' }],
      ['/groups', { name: 'MCP-Admin\u200b' }],  // reads as the administrators' group
      ['/groups', { name: 'a\u202eb' }],
      ['/groups', { name: '.' }],
      ['/groups', { name: '..' }],
    ]) {
      const res = await gh.api('POST', path, body);
      assert.equal(res.status, 400, `POST ${path} ${JSON.stringify(body).slice(0, 80)}: ${res.text}`);
    }
    assert.equal((await gh.api('GET', '/users/nul%40example.com')).status, 404);
    assert.equal((await gh.api('GET', '/groups/NulGroup')).status, 404);
    const described = await gh.api('POST', '/groups', { name: 'Multi', description: 'line one\nline two\twith a tab' });
    assert.equal(described.status, 201, 'line breaks and tabs are fine in a description');
    // Names that differ in letter case only read as one group.
    assert.equal((await gh.api('POST', '/groups', { name: 'mcp-admin' })).status, 409);
    assert.equal((await gh.api('POST', '/groups', { name: 'MULTI' })).status, 409);
    assert.equal((await gh.api('POST', '/groups', { name: 'Other' })).status, 201);
    assert.equal((await gh.api('PATCH', '/groups/Other', { name: 'multi' })).status, 409);
    assert.equal((await gh.api('PATCH', '/groups/Multi', { name: 'MULTI' })).status, 200, 'a group may change its own case');
  });

  it('the last administrator stays: no one removes their own rights, MCP-Admin is neither renamed nor deleted', async (t) => {
    const secret = 'webui-secret-for-the-guards-0123456789';
    const webui = await createOpenWebUiDb({ t });
    const owner = await webui.addUser({ email: 'owner@webui.test', role: 'admin' });
    const gh = await startGatehouse({ t, env: { WEBUI_SECRET_KEY: secret, OPENWEBUI_DATABASE_URL: webui.url } });
    const b = await makeUser(gh, 'b@example.com', { groups: ['MCP-Admin'] });  // an administrator through the group only
    const asB = (method, path, body) => gh.api(method, path, body, { headers: b.headers });

    let res = await asB('DELETE', '/groups/MCP-Admin/members/b%40example.com');
    assert.equal(res.status, 400, `removing oneself from MCP-Admin: ${res.text}`);
    res = await asB('PATCH', '/groups/MCP-Admin', { name: 'Renamed' });
    assert.equal(res.status, 400, res.text);
    assert.equal((await asB('DELETE', '/groups/MCP-Admin')).status, 400);
    assert.equal((await asB('DELETE', `/users/${encodeURIComponent(ME)}`)).status, 204, 'b stays: fine');
    res = await asB('PATCH', '/users/b%40example.com', { is_admin: false });
    assert.equal(res.status, 200, `still an administrator through MCP-Admin: ${res.text}`);

    // An Open WebUI administrator is an administrator here without being one in Gatehouse's own records:
    // it may not take away the only one there is.
    const webuiAdmin = { authorization: `Bearer ${await mintWebUiToken(secret, { id: owner })}` };
    const asOwner = (method, path, body) => gh.api(method, path, body, { headers: webuiAdmin, auth: false });
    assert.equal((await asOwner('GET', '/users')).status, 200);
    for (const [method, path, body] of [
      ['DELETE', '/groups/MCP-Admin/members/b%40example.com'],
      ['DELETE', '/users/b%40example.com'],
      ['PATCH', '/users/b%40example.com', { disabled: true }],
    ]) {
      res = await asOwner(method, path, body);
      assert.equal(res.status, 409, `${method} ${path}: ${res.text}`);
      assert.equal(res.body.error.code, 'last_admin');
    }
    assert.equal((await asB('GET', '/users')).status, 200, 'b is still an administrator');
    // With a second one, the first can go.
    assert.equal((await asB('POST', '/users', { email: 'c@example.com', is_admin: true })).status, 201);
    assert.equal((await asOwner('DELETE', '/groups/MCP-Admin/members/b%40example.com')).status, 204);
    assert.equal((await asB('GET', '/users')).status, 403);
  });

  it('a renamed group keeps its stored credentials (they are sealed with its name)', async (t) => {
    const secret = distinctiveSecret('rename');
    const gh = await crmTenantGateway(t, 'Tenant-Old');
    assert.equal((await putKey(gh, 'Tenant-Old', 'crm', 'CRM_API_KEY', secret)).status, 201);
    const user = await makeUser(gh, 'ren@example.com', { groups: ['Tenant-Old'] });
    assert.equal((await gh.api('PATCH', '/groups/Tenant-Old', { name: 'Tenant-New' })).status, 200);
    const keys = await gh.api('GET', '/tenants/Tenant-New/keys');
    assert.equal(keys.body.items[0].value, `••••${secret.slice(-4)}`, JSON.stringify(keys.body));
    const s = await mcpSession(gh, user.headers);
    assert.equal(JSON.parse(callText(await s.call('crm__get-env'), 'get-env')).CRM_API_KEY, secret);
    // The command line too.
    const cli = await gh.cli(['groups', 'rename', 'Tenant-New', 'Tenant-Newer']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal((await gh.api('GET', '/tenants/Tenant-Newer/keys')).body.items[0].value, `••••${secret.slice(-4)}`);
  });

  it('the command line stores a tenant value given on stdin, audited; a command that fails writes nothing', async (t) => {
    const secret = distinctiveSecret('cli');
    const gh = await crmTenantGateway(t, 'Tenant-Cli');
    const set = gh.cli(['keys', 'set', 'Tenant-Cli', 'crm', 'CRM_API_KEY'], { input: `${secret}\n` });
    assert.equal(set.code, 0, set.stderr);
    assert.ok(!set.stdout.includes(secret), set.stdout);
    assert.equal((await gh.api('GET', '/tenants/Tenant-Cli/keys')).body.items[0].value, `••••${secret.slice(-4)}`);
    const audit = await gh.api('GET', '/audit?actor=cli&action=tenant_key.replace');
    assert.equal(audit.body.items.length, 1, JSON.stringify(audit.body));
    assert.ok(!JSON.stringify(audit.body).includes(secret));
    const user = await makeUser(gh, 'cli@example.com', { groups: ['Tenant-Cli'] });
    const s = await mcpSession(gh, user.headers);
    assert.equal(JSON.parse(callText(await s.call('crm__get-env'), 'get-env')).CRM_API_KEY, secret);

    // A group command that fails part-way (the second email is not one): the first member is not added either.
    const add = gh.cli(['groups', 'add-member', 'Tenant-Cli', 'first@example.com', 'not an email']);
    assert.notEqual(add.code, 0, add.stdout);
    const members = await gh.api('GET', '/groups/Tenant-Cli/members');
    assert.deepEqual(members.body.items.map((m) => m.email).sort(), ['cli@example.com'], JSON.stringify(members.body));
    assert.equal((await gh.api('GET', '/users/first%40example.com')).status, 404);
  });

  it('a command line listing read slowly (a pager) does not hold the store: the gateway\'s changes go on', async (t) => {
    const gh = await startGatehouse({ t });
    await makeGroup(gh, 'Many');
    const emails = Array.from({ length: 1500 }, (_, i) => `person-${String(i).padStart(5, '0')}@a-rather-long-domain-name.example.com`);
    const added = await gh.api('POST', '/groups/Many/members', { emails });
    assert.equal(added.status, 200, added.text);
    // The listing (~100 KB) goes into a pipe nobody reads for 20 s.
    const pager = spawn('sh', ['-c', `"${GATEHOUSE_BIN}" users list --limit 100000 | sleep 20`], {
      cwd: gh.dir, env: { ...process.env, DATABASE_URL: gh.databaseUrl }, stdio: 'ignore', detached: true,
    });
    t.after(() => { try { process.kill(-pager.pid, 'SIGKILL'); } catch { /* gone */ } });
    await new Promise((r) => setTimeout(r, 1500));
    const res = await gh.api('POST', '/users', { email: 'meanwhile@example.com' });
    assert.equal(res.status, 201, res.text);
  });

  it('a user\'s own API keys (/auth/apikeys): made after a sign-in, not with a key; names checked; at most 50 active', async (t) => {
    const secret = 'webui-secret-for-own-keys-0123456789';
    const webui = await createOpenWebUiDb({ t });
    const id = await webui.addUser({ email: 'own@example.com', role: 'user' });
    const gh = await startGatehouse({ t, env: { WEBUI_SECRET_KEY: secret, OPENWEBUI_DATABASE_URL: webui.url } });
    const user = { headers: { authorization: `Bearer ${await mintWebUiToken(secret, { id })}` } };
    const post = (body, headers = user.headers) => fetch(`${gh.url}/auth/apikeys`, {
      method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const first = await fetch(`${gh.url}/auth/me`, { headers: user.headers }); // the first sign-in makes the user
    assert.equal(first.status, 200, await first.text());
    // A key makes no keys (one without expiry would outlive it), nor does a session signed in with one.
    const made = await gh.api('POST', '/apikeys', { user_email: 'own@example.com', name: 'short', expires_at: Math.floor(Date.now() / 1000) + 60 });
    assert.equal(made.status, 201, made.text);
    const withKey = await post({ name: 'forever' }, { authorization: `Bearer ${made.body.key}` });
    const text = await withKey.text();
    assert.equal(withKey.status, 403, text);
    assert.equal(JSON.parse(text).error.code, 'interactive_sign_in_required');
    const signIn = await fetch(`${gh.url}/auth/session`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ api_key: made.body.key }),
    });
    assert.equal(signIn.status, 200, await signIn.text());
    const session = /gatehouse_session=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')?.[1];
    const me = await (await fetch(`${gh.url}/auth/me`, { headers: { cookie: `gatehouse_session=${session}` } })).json();
    const bySession = await post({ name: 'forever' }, { cookie: `gatehouse_session=${session}`, 'x-csrf-token': me.csrf_token });
    assert.equal(bySession.status, 403, await bySession.text());
    for (const name of ['x'.repeat(201), 'a\u0001b', 'nul\u0000', 42]) {
      const res = await post({ name });
      assert.equal(res.status, 400, `${JSON.stringify(name).slice(0, 40)}: ${await res.text()}`);
    }
    // The admin's key is one; 49 more, then the 51st is refused until one is revoked.
    const ids = [];
    for (let i = 0; i < 49; i++) {
      const res = await post({ name: `key ${i}` });
      const text = await res.text();
      assert.equal(res.status, 201, text);
      ids.push(JSON.parse(text).id);
    }
    const refused = await post({ name: 'one too many' });
    const why = await refused.text();
    assert.equal(refused.status, 409, why);
    assert.equal(JSON.parse(why).error.code, 'too_many_keys');
    const revoked = await fetch(`${gh.url}/auth/apikeys/${ids[0]}`, { method: 'DELETE', headers: user.headers });
    assert.equal(revoked.status, 204, await revoked.text());
    assert.equal((await post({ name: 'now there is room' })).status, 201);
    const audit = await gh.api('GET', `/audit?actor=own%40example.com&action=apikey.create&per_page=100`);
    assert.equal(audit.body.total, 50, 'each key made is audited; the refused ones are not');
  });

  it('a PATCH refused for its name changes nothing', async (t) => {
    const gh = await startGatehouse({ t });
    await makeGroup(gh, 'G1', { description: 'orig', priority: 1 });
    await makeGroup(gh, 'G2');
    for (const [body, status] of [
      [{ description: 'CHANGED', priority: 999, is_tenant: true, name: 'a/b' }, 400],
      [{ description: 'CHANGED-AGAIN', name: 'G2' }, 409],
      [{ priority: -5, name: 42 }, 400],
    ]) {
      assert.equal((await gh.api('PATCH', '/groups/G1', body)).status, status, JSON.stringify(body));
    }
    const g = (await gh.api('GET', '/groups/G1')).body;
    assert.deepEqual([g.description, g.priority, g.is_tenant], ['orig', 1, false]);
  });

  it('tenant endpoints written as numeric IPv4 forms other than a.b.c.d are refused', async (t) => {
    const up = await startEverythingHttp('streamableHttp', { t });
    const gh = await startGatehouse({ t, servers: { remote: streamableHttpEntry(up.url) } });
    await makeGroup(gh, 'T', { isTenant: true });
    for (const url of ['http://169.254.169.254/latest', 'http://2852039166/latest', 'http://0xa9fea9fe/latest',
      'http://169.254.43518/latest', 'http://0251.0376.0251.0376/latest', `http://2130706433:${up.port ?? 80}/mcp`]) {
      const res = await gh.api('PUT', '/tenants/T/endpoints/remote', { url });
      assert.equal(res.status, 400, `${url}: ${res.text}`);
    }
    assert.equal((await gh.api('PUT', '/tenants/T/endpoints/remote', { url: up.url })).status, 201);
  });

  it('a deleted group\'s or user\'s audit entry names what went with it (grants, credentials, endpoints, API keys), no secret', async (t) => {
    const up = await startEverythingHttp('streamableHttp', { t });
    const gh = await startGatehouse({
      t, env: { ENCRYPTION_KEY: newEncryptionKey() },
      servers: { remote: streamableHttpEntry(up.url, { headers: { 'X-Key': '${secret:REMOTE_KEY}' } }) },
    });
    const secret = distinctiveSecret('deleted-with-group');
    await makeGroup(gh, 'Gone', { isTenant: true });
    await putGrant(gh, 'Gone', 'remote');
    assert.equal((await putKey(gh, 'Gone', 'remote', 'REMOTE_KEY', secret)).status, 201);
    assert.equal((await gh.api('PUT', '/tenants/Gone/endpoints/remote', { url: up.url })).status, 201);
    await makeUser(gh, 'gone@example.com', { groups: ['Gone'] });
    const key = await gh.api('POST', '/apikeys', { user_email: 'gone@example.com', name: 'gone-key' });
    assert.equal((await gh.api('DELETE', '/groups/Gone')).status, 204);
    assert.equal((await gh.api('DELETE', '/users/gone%40example.com')).status, 204);
    const entries = (await gh.api('GET', '/audit?per_page=100')).body.items;
    const group = entries.find((e) => e.action === 'group.delete').details.before;
    assert.deepEqual(group.grants.map((g) => g.server), ['remote']);
    assert.deepEqual(group.credentials, [{ server: 'remote', slot: 'REMOTE_KEY' }]);
    assert.deepEqual(group.endpoints.map((e) => e.url), [up.url]);
    assert.equal(group.member_count, 1);
    const user = entries.find((e) => e.action === 'user.delete').details.before;
    assert.ok(user.api_keys.some((k) => k.id === key.body.id && k.name === 'gone-key'), JSON.stringify(user.api_keys));
    const text = JSON.stringify(entries);
    assert.ok(!text.includes(secret) && !text.includes(key.body.key), 'a secret in the audit log');
  });

  it('people added to a group by a bulk add are created with an audit entry each', async (t) => {
    const gh = await startGatehouse({ t });
    await makeGroup(gh, 'Bulk');
    const res = await gh.api('POST', '/groups/Bulk/members', { emails: ['new1@example.com', 'new2@example.com', 7, 'bad'] });
    assert.deepEqual(res.body.added, ['new1@example.com', 'new2@example.com']);
    assert.equal((await gh.api('PUT', '/groups/Bulk/members/new3%40example.com')).status, 201);
    const audit = (await gh.api('GET', '/audit?action=user.create&per_page=100')).body.items.map((e) => e.target).sort();
    assert.deepEqual(audit, ['new1@example.com', 'new2@example.com', 'new3@example.com']);

    // Existing members are "already", a repeated address counts once; thousands at once (several statements).
    const many = Array.from({ length: 1200 }, (_, i) => `m${i}@example.com`);
    const big = await gh.api('POST', '/groups/Bulk/members', { emails: ['NEW1@example.com', ...many, 'm0@example.com', 'admin@localhost'] });
    assert.equal(big.status, 200, big.text);
    assert.deepEqual(big.body.already, ['new1@example.com']);
    assert.deepEqual(big.body.added, [...many, 'admin@localhost']);
    assert.equal((await gh.api('GET', '/groups/Bulk')).body.member_count, 1204);
    const created = await gh.api('GET', '/audit?action=user.create&per_page=1');
    assert.equal(created.body.total, 1203, 'one user.create entry for each user created (not the administrator)');
    assert.equal((await gh.api('GET', '/users/m1199%40example.com')).body.groups.includes('Bulk'), true);
  });
});

describe('a store held behind a lock (PostgreSQL)', () => {
  it('an admin write waiting for a row another session holds answers 503 in seconds, not when the lock goes', async (t) => {
    const gh = await startGatehouse({ servers: {} });
    t.after(() => gh.stop());
    if (gh.database.backend !== 'postgres') return t.skip('PostgreSQL only (SQLite waits 5 s for its write lock, then 503)');
    assert.equal((await gh.api('POST', '/users', { email: 'locked@example.com', name: 'L' })).status, 201);
    const holder = new pg.Client({ connectionString: gh.databaseUrl });
    holder.on('error', () => {});  // (its database is dropped when the gateway stops)
    await holder.connect();
    t.after(() => holder.end().catch(() => {}));
    await holder.query('BEGIN');
    await holder.query("UPDATE mcp_proxy.users SET name = name WHERE email = 'locked@example.com'");
    const release = setTimeout(() => holder.query('ROLLBACK').catch(() => {}), 60000);
    t.after(() => clearTimeout(release));
    const held = await gh.api('PATCH', '/users/locked%40example.com', { name: 'New' });
    assert.equal(held.status, 503, `answered only when the lock went: ${JSON.stringify(held.body)}`);
    assert.equal((await gh.api('GET', '/users/locked%40example.com')).status, 200, 'reads go on');
    clearTimeout(release);
    await holder.query('ROLLBACK');
    assert.equal((await gh.api('PATCH', '/users/locked%40example.com', { name: 'New' })).status, 200);
  });

  it('/gateway/health and gatehouse_store_up say when the store cannot be reached, and when it is back', async (t) => {
    const gh = await startGatehouse({ servers: {} });
    t.after(() => gh.stop());
    const health = async () => (await fetch(`${gh.url}/gateway/health`)).json();
    assert.equal((await health()).store, 'ok');
    if (gh.database.backend !== 'postgres') return t.skip('PostgreSQL only (an SQLite file cannot be taken away here)');
    const name = new URL(gh.databaseUrl).pathname.slice(1);
    const admin = (sql) => withPg((c) => c.query(sql));
    await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
    t.after(() => admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`).catch(() => {}));
    await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`);
    await eventually('health to say the store is unavailable', async () => (await health()).store === 'unavailable',
      { timeoutMs: 15000, intervalMs: 250 });
    const res = await fetch(`${gh.url}/gateway/health`);
    assert.equal(res.status, 200, 'still ready: what the instance holds is served');
    assert.match(await (await fetch(`${gh.url}/metrics`, { headers: { authorization: `Bearer ${gh.adminKey}` } })).text(),
      /^gatehouse_store_up 0$/m);
    await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    await eventually('health to say the store is back', async () => (await health()).store === 'ok', { timeoutMs: 15000, intervalMs: 250 });
    assert.ok(gh.logs.some((l) => l.includes('store unreachable')) && gh.logs.some((l) => l.includes('store reachable again')));
  });
});
