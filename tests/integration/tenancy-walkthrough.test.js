// Multi-tenancy, part 1: the "Adding a new tenant" walk-through end to end through the management API
// (group, grants with a tool allow-list, a member, the tenant's key), then tenant credentials in depth:
// which value reaches the upstream (server-everything's `get-env` over stdio), one process per credential
// set shared by the tenant's users, group priority, key rotation on the next call, the gateway's environment
// as the fallback, the error naming a missing slot, the masked keys API — and, at the end, that no secret
// value ever appeared in an API response, the audit log, an error, or the gateway's output.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, everythingStdio, startGatehouse } from './lib/index.js';
import { request, visibleServers } from './lib/identity.js';
import {
  adminServers, callText, distinctiveSecret, isUnknownTool, makeGroup, makeUser, mcpSession, newEncryptionKey,
  putGrant, putKey, upstreamProcessesWithEnv, bearerOf,
} from './lib/tenancy.js';

const SECRETS = {
  acme: distinctiveSecret('acme'),
  newco: distinctiveSecret('newco'),
  newcoRotated: distinctiveSecret('newco-rotated'),
  weatherFromEnv: distinctiveSecret('weather-env'),
  noEncryption: distinctiveSecret('no-encryption'),
};
const ENCRYPTION_KEY = newEncryptionKey();

const SERVERS = {
  crm: everythingStdio({ env: { CRM_API_KEY: '${secret:CRM_API_KEY}' } }),
  docs: everythingStdio(),
  weather: everythingStdio({ env: { WEATHER_KEY: '${secret:WEATHER_KEY}' } }),
  billing: everythingStdio({ env: { BILLING_TOKEN: '${secret:BILLING_TOKEN}' } }),
};

const NO_SERVERS_MESSAGE = /have no MCP servers yet\. Ask .*administrator/;

function envOf(res, what) {
  return JSON.parse(callText(res, what));
}

describe('multi-tenancy: adding a new tenant', () => {
  let gh;
  const collected = []; // every API / MCP answer (except get-env results, which show the upstream's own env)
  const users = {};
  const api = async (method, path, body) => {
    const res = await gh.api(method, path, body);
    collected.push(`${method} ${path} → ${res.status} ${res.text}`);
    return res;
  };
  const record = ({ path, method, params, text }) => {
    if (method === 'tools/call' && /get-env$/.test(params?.name ?? '') && !/"error"/.test(text)) return;
    collected.push(`${path} ${method} ${JSON.stringify(params ?? {})} → ${text}`);
  };
  const session = (user, path = '/mcp') => mcpSession(gh, user ? user.headers : {}, path, { record });

  before(async () => {
    gh = await startGatehouse({
      servers: SERVERS,
      env: { ENCRYPTION_KEY, WEATHER_KEY: SECRETS.weatherFromEnv, STDIO_IDLE_TIMEOUT_S: '600' },
    });
    // An existing tenant, set up the same way: Tenant-Acme grants crm, stores its own key, has bob.
    await makeGroup(gh, 'Tenant-Acme', { priority: 5, isTenant: true });
    await putGrant(gh, 'Tenant-Acme', 'crm', null);
    const acmeKey = await putKey(gh, 'Tenant-Acme', 'crm', 'CRM_API_KEY', SECRETS.acme);
    collected.push(acmeKey.text);
    assert.equal(acmeKey.status, 201, acmeKey.text);
    users.bob = await makeUser(gh, 'bob@acme.example', { groups: ['Tenant-Acme'] });
    users.nobody = await makeUser(gh, 'nobody@nowhere.example');
  });
  after(() => gh?.stop());

  it('walk-through: create Tenant-NewCompany, grant crm and docs (allow-list), add a user, store the key', async () => {
    const group = await api('POST', '/groups', {
      name: 'Tenant-NewCompany', description: 'NewCompany Ltd', priority: 10, is_tenant: true,
    });
    assert.equal(group.status, 201, group.text);

    const crm = await api('PUT', '/groups/Tenant-NewCompany/servers/crm', { tools: null });
    assert.equal(crm.status, 201, crm.text);
    assert.equal(crm.body.group, 'Tenant-NewCompany');
    assert.equal(crm.body.server, 'crm');
    assert.equal(crm.body.tools, null);
    const docs = await api('PUT', '/groups/Tenant-NewCompany/servers/docs', { tools: { allow: ['echo', 'get-sum'] } });
    assert.equal(docs.status, 201, docs.text);
    assert.deepEqual(docs.body.tools, { allow: ['echo', 'get-sum'] });
    const grants = await api('GET', '/groups/Tenant-NewCompany/servers');
    assert.equal(grants.status, 200, grants.text);
    assert.deepEqual(grants.body.items.map((g) => [g.group, g.server, g.tools]).sort(), [
      ['Tenant-NewCompany', 'crm', null],
      ['Tenant-NewCompany', 'docs', { allow: ['echo', 'get-sum'] }],
    ]);
    for (const item of grants.body.items) assert.ok('updated_at' in item, `updated_at in ${JSON.stringify(item)}`);

    const members = await api('POST', '/groups/Tenant-NewCompany/members', { emails: ['alice@newcompany.example'] });
    assert.equal(members.status, 200, members.text);
    assert.deepEqual(members.body.added, ['alice@newcompany.example']);
    const key = await api('POST', '/apikeys', { user_email: 'alice@newcompany.example', name: 'laptop' });
    assert.equal(key.status, 201, key.text);
    users.alice = { email: 'alice@newcompany.example', headers: bearerOf(key.body.key) };

    const stored = await api('PUT', '/tenants/Tenant-NewCompany/keys/crm/CRM_API_KEY', { value: SECRETS.newco });
    assert.equal(stored.status, 201, stored.text);
    assert.equal(stored.body.value, `••••${SECRETS.newco.slice(-4)}`);
    assert.equal(stored.body.slot, 'CRM_API_KEY');
    assert.equal(stored.body.server, 'crm');

    // Alice sees exactly what her tenant grants…
    const visible = await visibleServers(gh, users.alice.headers);
    collected.push(visible.text);
    assert.deepEqual(visible.ids, ['crm', 'docs']);
    const mcp = await session(users.alice);
    assert.equal(mcp.status, 200, mcp.text);
    const tools = await mcp.tools();
    assert.deepEqual(tools.filter((n) => n.startsWith('docs__')), ['docs__echo', 'docs__get-sum']);
    assert.ok(tools.includes('crm__get-env') && tools.includes('crm__echo'), tools.join(', '));
    assert.deepEqual(tools.filter((n) => !/^(crm|docs)__/.test(n)), [], 'nothing from weather or billing');
    // …and her calls reach crm with her tenant's key.
    const env = envOf(await mcp.call('crm__get-env'), 'alice crm__get-env');
    assert.equal(env.CRM_API_KEY, SECRETS.newco);
    assert.match(callText(await mcp.call('docs__echo', { message: 'hello newco' })), /hello newco/);
    assert.ok(isUnknownTool(await mcp.call('docs__get-env')), 'docs__get-env is not on the allow-list');
    const perServer = await session(users.alice, '/mcp/docs');
    assert.equal(perServer.status, 200, perServer.text);
    assert.deepEqual(await perServer.tools(), ['echo', 'get-sum']);
    assert.ok(isUnknownTool(await perServer.call('get-env')));
    const notGranted = await session(users.alice, '/mcp/billing');
    assert.equal(notGranted.status, 404, notGranted.text);
    assert.match(notGranted.text, /Unknown MCP server/);

    // A user of the other tenant reaches the same server with that tenant's own key.
    const bob = await session(users.bob);
    assert.equal(envOf(await bob.call('crm__get-env'), 'bob crm__get-env').CRM_API_KEY, SECRETS.acme);
    assert.ok(isUnknownTool(await bob.call('docs__echo', { message: 'x' })), 'Acme does not grant docs');

    // A user in no group sees nothing, and is told why.
    const none = await visibleServers(gh, users.nobody.headers);
    collected.push(none.text);
    assert.equal(none.status, 200, none.text);
    assert.deepEqual(none.body.servers, []);
    assert.match(none.body.message, NO_SERVERS_MESSAGE);
    const nobody = await session(users.nobody);
    assert.equal(nobody.status, 200, nobody.text);
    assert.match(nobody.initResult.instructions, NO_SERVERS_MESSAGE);
    assert.deepEqual(await nobody.tools(), []);
    assert.ok(isUnknownTool(await nobody.call('crm__get-env')));
    assert.equal((await session(users.nobody, '/mcp/crm')).status, 404);
  });

  it('two users of one tenant share one upstream process; the other tenant has its own', async () => {
    users.carol = await makeUser(gh, 'carol@newcompany.example', { groups: ['Tenant-NewCompany'] });
    const carol = await session(users.carol);
    assert.equal(envOf(await carol.call('crm__get-env'), 'carol').CRM_API_KEY, SECRETS.newco);
    const alice = await session(users.alice);
    assert.equal(envOf(await alice.call('crm__get-env'), 'alice again').CRM_API_KEY, SECRETS.newco);

    assert.equal(upstreamProcessesWithEnv(gh, 'CRM_API_KEY', SECRETS.newco).length, 1, 'one crm process for NewCompany');
    assert.equal(upstreamProcessesWithEnv(gh, 'CRM_API_KEY', SECRETS.acme).length, 1, 'one crm process for Acme');
    assert.equal(upstreamProcessesWithEnv(gh, 'CRM_API_KEY').length, 2, 'no other crm process');
    const servers = await adminServers(gh);
    collected.push(JSON.stringify(servers));
    assert.equal(servers.crm.tenant_connections, 2, JSON.stringify(servers.crm));
    assert.deepEqual(servers.crm.slots, ['CRM_API_KEY']);
    assert.deepEqual(servers.docs.slots, []);
    for (const field of ['id', 'transport', 'state', 'tools', 'calls', 'errors', 'avg_us', 'slots', 'tool_names']) {
      assert.ok(field in servers.crm, `servers item lacks ${field}: ${JSON.stringify(servers.crm)}`);
    }
  });

  it('the highest-priority group with a value wins; a changed value takes effect on the next call', async () => {
    // dave is in both tenants: NewCompany (priority 10) beats Acme (priority 5).
    users.dave = await makeUser(gh, 'dave@both.example', { groups: ['Tenant-Acme', 'Tenant-NewCompany'] });
    const dave = await session(users.dave);
    assert.equal(envOf(await dave.call('crm__get-env'), 'dave').CRM_API_KEY, SECRETS.newco);
    const raised = await api('PATCH', '/groups/Tenant-Acme', { priority: 20 });
    assert.equal(raised.status, 200, raised.text);
    assert.equal(envOf(await dave.call('crm__get-env'), 'dave after Acme priority 20').CRM_API_KEY, SECRETS.acme);

    // Rotating NewCompany's key: an open session of alice gets the new value on its next call.
    const alice = await session(users.alice);
    assert.equal(envOf(await alice.call('crm__get-env'), 'alice before').CRM_API_KEY, SECRETS.newco);
    const rotated = await api('PUT', '/tenants/Tenant-NewCompany/keys/crm/CRM_API_KEY', { value: SECRETS.newcoRotated });
    assert.equal(rotated.status, 200, rotated.text);
    assert.equal(rotated.body.value, `••••${SECRETS.newcoRotated.slice(-4)}`);
    assert.equal(envOf(await alice.call('crm__get-env'), 'alice after rotation').CRM_API_KEY, SECRETS.newcoRotated);
  });

  it('no tenant value: the gateway environment fills the slot; nothing at all: an error naming the slot', async () => {
    await putGrant(gh, 'Tenant-NewCompany', 'weather', null);
    await putGrant(gh, 'Tenant-NewCompany', 'billing', null);
    const alice = await session(users.alice);
    assert.equal(envOf(await alice.call('weather__get-env'), 'weather').WEATHER_KEY, SECRETS.weatherFromEnv);
    const billing = await alice.call('billing__get-env');
    assert.equal(billing.status, 200, billing.text);
    assert.ok(billing.error, `billing__get-env without BILLING_TOKEN must fail: ${billing.text.slice(0, 300)}`);
    assert.equal(typeof billing.error.code, 'number');
    assert.match(billing.error.message, /BILLING_TOKEN/);

    // Deleting Acme's key: bob has no value and the gateway has no CRM_API_KEY → the error names the slot.
    const deleted = await api('DELETE', '/tenants/Tenant-Acme/keys/crm/CRM_API_KEY');
    assert.equal(deleted.status, 204, deleted.text);
    const bob = await session(users.bob);
    const refused = await bob.call('crm__get-env');
    assert.ok(refused.error, `bob without a key: ${refused.text.slice(0, 300)}`);
    assert.match(refused.error.message, /CRM_API_KEY/);
  });

  it('keys API: masked list, 400 for a slot the server lacks, 404 for unknown group or server; audited', async () => {
    const list = await api('GET', '/tenants/Tenant-NewCompany/keys');
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.body.items.map((k) => [k.server, k.slot, k.value]),
      [['crm', 'CRM_API_KEY', `••••${SECRETS.newcoRotated.slice(-4)}`]]);
    assert.deepEqual((await api('GET', '/tenants/Tenant-Acme/keys')).body.items, []);

    // A short value shows no characters at all.
    const short = await api('PUT', '/tenants/Tenant-Acme/keys/crm/CRM_API_KEY', { value: 'k9z7q2' });
    assert.equal(short.status, 201, short.text);
    assert.equal(short.body.value, '••••');
    assert.equal((await api('DELETE', '/tenants/Tenant-Acme/keys/crm/CRM_API_KEY')).status, 204);

    const badSlot = await api('PUT', '/tenants/Tenant-NewCompany/keys/crm/NOT_A_SLOT', { value: 'whatever-1234' });
    assert.equal(badSlot.status, 400, badSlot.text);
    const noSlots = await api('PUT', '/tenants/Tenant-NewCompany/keys/docs/CRM_API_KEY', { value: 'whatever-1234' });
    assert.equal(noSlots.status, 400, noSlots.text);
    assert.equal((await api('PUT', '/tenants/Tenant-NewCompany/keys/nosuch/CRM_API_KEY', { value: 'x-1234' })).status, 404);
    assert.equal((await api('PUT', '/tenants/No-Such-Group/keys/crm/CRM_API_KEY', { value: 'x-1234' })).status, 404);
    assert.equal((await api('GET', '/tenants/No-Such-Group/keys')).status, 404);
    assert.equal((await api('DELETE', '/tenants/Tenant-Acme/keys/crm/CRM_API_KEY')).status, 404, 'already deleted');

    // A non-admin may not read or write keys.
    const asUser = await request(gh, 'GET', '/mcp-admin/api/tenants/Tenant-NewCompany/keys', { headers: users.alice.headers });
    collected.push(asUser.text);
    assert.equal(asUser.status, 403, asUser.text);
    const putAsUser = await request(gh, 'PUT', '/mcp-admin/api/tenants/Tenant-NewCompany/keys/crm/CRM_API_KEY', {
      headers: users.alice.headers, body: { value: 'stolen-by-alice-0000' },
    });
    assert.equal(putAsUser.status, 403, putAsUser.text);

    const audit = await api('GET', '/audit?per_page=500');
    assert.equal(audit.status, 200, audit.text);
    const actions = audit.body.items.map((e) => e.action);
    for (const action of ['grant.create', 'tenant_key.create', 'tenant_key.replace', 'tenant_key.delete']) {
      assert.ok(actions.includes(action), `audit has ${action}: ${[...new Set(actions)].join(', ')}`);
    }
  });

  it('without ENCRYPTION_KEY a value cannot be stored: 409 encryption_key_missing', async (t) => {
    const plain = await startGatehouse({ servers: { crm: SERVERS.crm }, t });
    await makeGroup(plain, 'Tenant-X', { isTenant: true });
    const res = await putKey(plain, 'Tenant-X', 'crm', 'CRM_API_KEY', SECRETS.noEncryption);
    collected.push(res.text);
    assert.equal(res.status, 409, res.text);
    assert.equal(res.body.error.code, 'encryption_key_missing');
    const audit = await plain.api('GET', '/audit?per_page=500');
    collected.push(audit.text);
    await plain.stop();
    const output = [...plain.logs, ...plain.stdout].join('\n');
    assert.ok(!output.includes(SECRETS.noEncryption), 'the refused value is not in the logs');
  });

  it('no secret value appears in any API response, the audit log, an error, or the gateway output', async () => {
    // Everything an admin can read back.
    for (const path of ['/audit?per_page=500', '/tenants/Tenant-NewCompany/keys', '/tenants/Tenant-Acme/keys',
      '/servers', '/servers/crm', '/groups/Tenant-NewCompany', '/groups/Tenant-NewCompany/servers', '/users?per_page=500']) {
      const res = await api('GET', path);
      assert.equal(res.status, 200, `${path}: ${res.text}`);
    }
    const health = await request(gh, 'GET', '/gateway/health');
    collected.push(health.text);
    const output = [...gh.logs, ...gh.stdout].join('\n');
    assert.ok(collected.length > 40, `collected ${collected.length} answers`);
    assert.ok(output.length > 0);
    const texts = { 'API and MCP answers': collected.join('\n'), 'gateway logs and stdout': output };
    for (const [label, secret] of Object.entries(SECRETS)) {
      for (const [where, text] of Object.entries(texts)) {
        assert.ok(!text.includes(secret), `the ${label} secret appears in the ${where}`);
      }
    }
    // The mask is there (so the check above looked at the right answers).
    assert.ok(collected.join('\n').includes(`••••${SECRETS.newcoRotated.slice(-4)}`));
  });
});

describe('multi-tenancy: a stored value the gateway cannot decrypt', () => {
  it('after ENCRYPTION_KEY changed: listed as undecryptable, calls fail naming the slot, the value never shown', async (t) => {
    const db = await createTestDatabase({ t });
    const secret = distinctiveSecret('rekey');
    const first = await startGatehouse({ servers: { crm: SERVERS.crm }, database: db, env: { ENCRYPTION_KEY: newEncryptionKey() } });
    let user;
    try {
      await makeGroup(first, 'Tenant-Rekey', { isTenant: true });
      await putGrant(first, 'Tenant-Rekey', 'crm');
      assert.equal((await putKey(first, 'Tenant-Rekey', 'crm', 'CRM_API_KEY', secret)).status, 201);
      user = await makeUser(first, 'rekey@example.com', { groups: ['Tenant-Rekey'] });
    } finally {
      await first.stop();
    }
    const second = await startGatehouse({ servers: { crm: SERVERS.crm }, database: db, env: { ENCRYPTION_KEY: newEncryptionKey() }, t });
    const keys = await second.api('GET', '/tenants/Tenant-Rekey/keys');
    assert.equal(keys.status, 200, keys.text);
    assert.equal(keys.body.items.length, 1, keys.text);
    assert.match(keys.body.items[0].value, /cannot be decrypted/);
    const s = await mcpSession(second, user.headers);
    assert.equal(s.status, 200, s.text);
    const res = await s.call('crm__get-env');
    assert.ok(res.error, `a call with an undecryptable key must fail: ${res.text.slice(0, 300)}`);
    assert.match(res.error.message, /CRM_API_KEY/);
    const everything = [keys.text, res.text, ...first.logs, ...first.stdout, ...second.logs, ...second.stdout,
      (await second.api('GET', '/audit?per_page=500')).text].join('\n');
    assert.ok(!everything.includes(secret), 'the value appears somewhere');
  });
});
