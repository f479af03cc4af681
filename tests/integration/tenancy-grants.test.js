// Multi-tenancy, part 2: which servers and tools a caller may use. The grants API (admins only, audited,
// 201/200/204/404/400); admins see everything; a non-admin sees exactly what their groups grant, with tool
// allow/deny lists filtering tools/list and tools/call alike on /mcp and /mcp/<server>; the union across
// groups; changes (grants, memberships) applied on the caller's next request, also inside an open MCP
// session and (PostgreSQL) on a second gateway sharing the store; the `anonymous` group; META_TOOLS_MODE.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TEST_BACKEND, everythingStdio, startGatehouse } from './lib/index.js';
import { eventually, request, visibleServers } from './lib/identity.js';
import {
  addMember, callText, isUnknownTool, makeGroup, makeUser, mcpSession, putGrant, removeMember,
} from './lib/tenancy.js';

const SERVERS = { alpha: everythingStdio(), beta: everythingStdio(), gamma: everythingStdio() };

const prefixed = (server, names) => names.map((n) => `${server}__${n}`);

describe('multi-tenancy: grants', () => {
  let gh;
  let admin;
  let catalog; // server → every tool name (as the admin sees it)
  before(async () => {
    gh = await startGatehouse({ servers: SERVERS });
    admin = { headers: gh.authHeaders };
    catalog = {};
    for (const server of Object.keys(SERVERS)) {
      const s = await mcpSession(gh, admin.headers, `/mcp/${server}`);
      assert.equal(s.status, 200, s.text);
      catalog[server] = await s.tools();
      assert.ok(catalog[server].includes('echo') && catalog[server].includes('get-sum') && catalog[server].length > 5);
    }
  });
  after(() => gh?.stop());

  it('grants API: 201 new, 200 replaced, 404 unknown group or server, 400 bad tools, 204 delete; admins only; audited', async () => {
    await makeGroup(gh, 'Team-Api');
    const created = await gh.api('PUT', '/groups/Team-Api/servers/alpha', { tools: { deny: ['get-env'] } });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body.tools, { deny: ['get-env'] });
    const replaced = await gh.api('PUT', '/groups/Team-Api/servers/alpha', { tools: null });
    assert.equal(replaced.status, 200, replaced.text);
    assert.equal(replaced.body.tools, null);
    const listed = await gh.api('GET', '/groups/Team-Api/servers');
    assert.equal(listed.status, 200, listed.text);
    assert.deepEqual(listed.body.items.map((g) => [g.group, g.server, g.tools]), [['Team-Api', 'alpha', null]]);

    assert.equal((await gh.api('PUT', '/groups/No-Such-Group/servers/alpha', { tools: null })).status, 404);
    assert.equal((await gh.api('GET', '/groups/No-Such-Group/servers')).status, 404);
    assert.equal((await gh.api('PUT', '/groups/Team-Api/servers/no-such-server', { tools: null })).status, 404);
    for (const tools of [{ allow: 'echo' }, { allow: ['echo'], deny: ['x'] }, { only: ['echo'] }, 5, 'all', { allow: [7] }, { deny: [''] }]) {
      const bad = await gh.api('PUT', '/groups/Team-Api/servers/beta', { tools });
      assert.equal(bad.status, 400, `tools ${JSON.stringify(tools)}: ${bad.status} ${bad.text}`);
      assert.equal(typeof bad.body?.error?.message, 'string', bad.text);
    }
    assert.deepEqual((await gh.api('GET', '/groups/Team-Api/servers')).body.items.map((g) => g.server), ['alpha'],
      'refused PUTs stored nothing');

    const user = await makeUser(gh, 'api-user@example.com', { groups: ['Team-Api'] });
    const asUser = await request(gh, 'PUT', '/mcp-admin/api/groups/Team-Api/servers/beta', { headers: user.headers, body: { tools: null } });
    assert.equal(asUser.status, 403, asUser.text);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/groups/Team-Api/servers', { headers: user.headers })).status, 403);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/groups/Team-Api/servers')).status, 401);

    const deleted = await gh.api('DELETE', '/groups/Team-Api/servers/alpha');
    assert.equal(deleted.status, 204, deleted.text);
    assert.equal((await gh.api('DELETE', '/groups/Team-Api/servers/alpha')).status, 404);
    assert.deepEqual((await gh.api('GET', '/groups/Team-Api/servers')).body.items, []);

    const audit = await gh.api('GET', '/audit?target=Team-Api&per_page=100');
    assert.equal(audit.status, 200, audit.text);
    const actions = audit.body.items.map((e) => e.action);
    for (const action of ['grant.create', 'grant.update', 'grant.delete']) {
      assert.ok(actions.includes(action), `audit has ${action}: ${actions.join(', ')}`);
    }
    assert.ok(audit.body.items.filter((e) => e.action.startsWith('grant.')).every((e) => e.actor === 'admin@localhost'),
      JSON.stringify(audit.body.items));
  });

  it('an admin sees every server and every tool, with or without grants', async () => {
    assert.deepEqual((await visibleServers(gh, admin.headers)).ids, ['alpha', 'beta', 'gamma']);
    const s = await mcpSession(gh, admin.headers);
    const tools = await s.tools();
    const expected = Object.entries(catalog).flatMap(([server, names]) => prefixed(server, names)).sort();
    assert.deepEqual(tools, expected);
    assert.match(callText(await s.call('gamma__echo', { message: 'admin here' })), /admin here/);
    // An admin by flag (not by MCP-Admin membership) too.
    const flagged = await makeUser(gh, 'flag-admin@example.com', { isAdmin: true });
    assert.deepEqual((await visibleServers(gh, flagged.headers)).ids, ['alpha', 'beta', 'gamma']);
    assert.deepEqual(await (await mcpSession(gh, flagged.headers)).tools(), expected);
  });

  it('allow and deny lists filter tools/list and tools/call alike, on /mcp and /mcp/<server>', async () => {
    await makeGroup(gh, 'Team-Lists');
    await putGrant(gh, 'Team-Lists', 'alpha', { allow: ['echo', 'get-sum', 'no-such-tool'] });
    await putGrant(gh, 'Team-Lists', 'beta', { deny: ['get-env', 'echo'] });
    const user = await makeUser(gh, 'lists@example.com', { groups: ['Team-Lists'] });
    assert.deepEqual((await visibleServers(gh, user.headers)).ids, ['alpha', 'beta']);

    const betaAllowed = catalog.beta.filter((n) => n !== 'get-env' && n !== 'echo');
    const agg = await mcpSession(gh, user.headers);
    assert.deepEqual(await agg.tools(), [...prefixed('alpha', ['echo', 'get-sum']), ...prefixed('beta', betaAllowed)].sort());
    assert.match(callText(await agg.call('alpha__echo', { message: 'allowed' })), /allowed/);
    assert.match(callText(await agg.call('beta__get-sum', { a: 2, b: 3 })), /5/);
    for (const name of ['alpha__get-env', 'alpha__no-such-tool', 'beta__get-env', 'beta__echo', 'gamma__echo', 'gamma__get-sum']) {
      const res = await agg.call(name, { message: 'x', a: 1, b: 1 });
      assert.ok(isUnknownTool(res), `${name} must be "Unknown tool" (-32602): ${res.text.slice(0, 300)}`);
    }

    const alpha = await mcpSession(gh, user.headers, '/mcp/alpha');
    assert.equal(alpha.status, 200, alpha.text);
    assert.deepEqual(await alpha.tools(), ['echo', 'get-sum']);
    assert.match(callText(await alpha.call('get-sum', { a: 20, b: 22 })), /42/);
    assert.ok(isUnknownTool(await alpha.call('get-env')));
    const beta = await mcpSession(gh, user.headers, '/mcp/beta');
    assert.deepEqual(await beta.tools(), [...betaAllowed].sort());
    assert.ok(isUnknownTool(await beta.call('echo', { message: 'x' })));
    assert.ok(!isUnknownTool(await beta.call('get-tiny-image')));

    const gamma = await mcpSession(gh, user.headers, '/mcp/gamma');
    assert.equal(gamma.status, 404, gamma.text);
    assert.match(gamma.text, /Unknown MCP server/);
  });

  it('grants are a union across the caller\'s groups', async () => {
    await makeGroup(gh, 'Union-Echo');
    await makeGroup(gh, 'Union-Sum');
    await makeGroup(gh, 'Union-DenyEcho');
    await putGrant(gh, 'Union-Echo', 'alpha', { allow: ['echo'] });
    await putGrant(gh, 'Union-Sum', 'alpha', { allow: ['get-sum'] });
    await putGrant(gh, 'Union-Sum', 'gamma', { allow: ['get-env'] });
    await putGrant(gh, 'Union-DenyEcho', 'alpha', { deny: ['echo'] });

    const two = await makeUser(gh, 'union-two@example.com', { groups: ['Union-Echo', 'Union-Sum'] });
    assert.deepEqual((await visibleServers(gh, two.headers)).ids, ['alpha', 'gamma']);
    assert.deepEqual(await (await mcpSession(gh, two.headers)).tools(), ['alpha__echo', 'alpha__get-sum', 'gamma__get-env']);

    // allow [echo] ∪ deny [echo] = every tool.
    const all = await makeUser(gh, 'union-all@example.com', { groups: ['Union-Echo', 'Union-DenyEcho'] });
    const s = await mcpSession(gh, all.headers, '/mcp/alpha');
    assert.deepEqual(await s.tools(), catalog.alpha);
    assert.match(callText(await s.call('echo', { message: 'union' })), /union/);
    const denyOnly = await makeUser(gh, 'union-deny@example.com', { groups: ['Union-DenyEcho'] });
    const d = await mcpSession(gh, denyOnly.headers, '/mcp/alpha');
    assert.deepEqual(await d.tools(), catalog.alpha.filter((n) => n !== 'echo'));
    assert.ok(isUnknownTool(await d.call('echo', { message: 'x' })));
  });

  it('grant and membership changes apply on the next request of an already-open MCP session', async () => {
    await makeGroup(gh, 'Live-Team');
    const user = await makeUser(gh, 'live@example.com', { groups: ['Live-Team'] });
    const agg = await mcpSession(gh, user.headers);
    assert.equal(agg.status, 200, agg.text);
    assert.deepEqual(await agg.tools(), []);
    assert.ok(isUnknownTool(await agg.call('beta__echo', { message: 'x' })));

    // A new grant: listed and callable at once, in the same session.
    await putGrant(gh, 'Live-Team', 'beta', { allow: ['echo'] });
    assert.deepEqual(await agg.tools(), ['beta__echo']);
    assert.match(callText(await agg.call('beta__echo', { message: 'now allowed' })), /now allowed/);
    const perServer = await mcpSession(gh, user.headers, '/mcp/beta');
    assert.equal(perServer.status, 200, perServer.text);
    assert.deepEqual(await perServer.tools(), ['echo']);

    // The allow-list changes: the old tool is refused on the next call, the new one works.
    await putGrant(gh, 'Live-Team', 'beta', { allow: ['get-sum'] }, { expect: 200 });
    assert.deepEqual(await agg.tools(), ['beta__get-sum']);
    assert.ok(isUnknownTool(await agg.call('beta__echo', { message: 'x' })));
    assert.ok(isUnknownTool(await perServer.call('echo', { message: 'x' })));
    assert.match(callText(await perServer.call('get-sum', { a: 1, b: 2 })), /3/);

    // Removed from the group: nothing on the next request, in both open sessions.
    await removeMember(gh, 'Live-Team', user.email);
    assert.deepEqual(await agg.tools(), []);
    assert.ok(isUnknownTool(await agg.call('beta__get-sum', { a: 1, b: 2 })));
    const cut = await perServer.call('get-sum', { a: 1, b: 2 });
    assert.ok(cut.status === 404 || cut.error, `per-server session after removal must be refused: ${cut.status} ${cut.text.slice(0, 300)}`);
    assert.ok(!cut.result, 'no result after removal');
    assert.deepEqual((await visibleServers(gh, user.headers)).ids, []);

    // Added back: access returns on the next request; then the grant is deleted: gone again.
    await addMember(gh, 'Live-Team', user.email);
    assert.deepEqual(await agg.tools(), ['beta__get-sum']);
    assert.equal((await gh.api('DELETE', '/groups/Live-Team/servers/beta')).status, 204);
    assert.deepEqual(await agg.tools(), []);
    assert.ok(isUnknownTool(await agg.call('beta__get-sum', { a: 1, b: 2 })));
  });

  it('the anonymous group: unauthenticated callers get exactly its grants; without grants, 401', async () => {
    const refused = await request(gh, 'GET', '/servers');
    assert.equal(refused.status, 401, refused.text);
    assert.equal((await mcpSession(gh, {})).status, 401);

    if ((await gh.api('GET', '/groups/anonymous')).status === 404) await makeGroup(gh, 'anonymous');
    await putGrant(gh, 'anonymous', 'gamma', { allow: ['echo'] });
    const open = await visibleServers(gh, {});
    assert.equal(open.status, 200, open.text);
    assert.deepEqual(open.ids, ['gamma']);
    const anon = await mcpSession(gh, {});
    assert.equal(anon.status, 200, anon.text);
    assert.deepEqual(await anon.tools(), ['gamma__echo']);
    assert.match(callText(await anon.call('gamma__echo', { message: 'anonymous hello' })), /anonymous hello/);
    assert.ok(isUnknownTool(await anon.call('gamma__get-env')));
    assert.ok(isUnknownTool(await anon.call('alpha__echo', { message: 'x' })));
    assert.equal((await mcpSession(gh, {}, '/mcp/alpha')).status, 404);
    const perServer = await mcpSession(gh, {}, '/mcp/gamma');
    assert.equal(perServer.status, 200, perServer.text);
    assert.deepEqual(await perServer.tools(), ['echo']);
    // The management API stays closed to anonymous callers.
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/groups')).status, 401);
    // An authenticated user in no group does not inherit the anonymous grants.
    const loner = await makeUser(gh, 'loner@example.com');
    assert.deepEqual((await visibleServers(gh, loner.headers)).ids, []);

    assert.equal((await gh.api('DELETE', '/groups/anonymous/servers/gamma')).status, 204);
    assert.equal((await request(gh, 'GET', '/servers')).status, 401);
    const after = await anon.call('gamma__echo', { message: 'x' });
    assert.ok(after.status === 401 || isUnknownTool(after), `anonymous session after the grant is gone: ${after.status} ${after.text.slice(0, 200)}`);
    assert.ok(!after.result);
  });
});

describe('multi-tenancy: removing a user from a group cuts access on the next request', () => {
  it('on the gateway that made the change and (PostgreSQL) on a second gateway sharing the store', async (t) => {
    const first = await startGatehouse({ servers: { alpha: SERVERS.alpha }, t });
    await makeGroup(first, 'Team-Shared');
    await putGrant(first, 'Team-Shared', 'alpha', { allow: ['echo'] });
    const user = await makeUser(first, 'shared@example.com', { groups: ['Team-Shared'] });
    const keeper = await makeUser(first, 'keeper@example.com', { groups: ['Team-Shared'] });

    const second = TEST_BACKEND === 'postgres' ? await startGatehouse({ servers: { alpha: SERVERS.alpha }, database: first.databaseUrl, t }) : null;
    const gateways = second ? [first, second] : [first];
    const sessions = [];
    for (const g of gateways) {
      const s = await mcpSession(g, user.headers);
      assert.equal(s.status, 200, s.text);
      await eventually(`${g.url}: the user's grant is visible`, async () => (await s.tools()).join() === 'alpha__echo');
      assert.match(callText(await s.call('alpha__echo', { message: 'before' })), /before/);
      sessions.push(s);
    }

    await removeMember(first, 'Team-Shared', user.email);
    // The gateway that made the change: the very next request.
    assert.deepEqual(await sessions[0].tools(), []);
    assert.ok(isUnknownTool(await sessions[0].call('alpha__echo', { message: 'after' })));
    assert.deepEqual((await visibleServers(first, user.headers)).ids, []);
    if (second) {
      // The other instance hears of it through the store (LISTEN/NOTIFY): bounded wait, then refused.
      await eventually('the second gateway drops the removed member', async () => (await sessions[1].tools()).length === 0,
        { timeoutMs: 5000 });
      assert.ok(isUnknownTool(await sessions[1].call('alpha__echo', { message: 'after' })));
      assert.deepEqual((await visibleServers(second, user.headers)).ids, []);
      // The member who stayed keeps access there.
      const k = await mcpSession(second, keeper.headers);
      assert.match(callText(await k.call('alpha__echo', { message: 'still here' })), /still here/);
    }
    const k1 = await mcpSession(first, keeper.headers);
    assert.match(callText(await k1.call('alpha__echo', { message: 'still here' })), /still here/);
  });
});

describe('multi-tenancy: META_TOOLS_MODE', () => {
  it('offers only the three meta tools; search shows and call allows only permitted tools', async (t) => {
    const gh = await startGatehouse({ servers: { alpha: SERVERS.alpha, beta: SERVERS.beta }, env: { META_TOOLS_MODE: 'true' }, t });
    await makeGroup(gh, 'Meta-Team');
    await putGrant(gh, 'Meta-Team', 'alpha', { allow: ['echo'] });
    const user = await makeUser(gh, 'meta@example.com', { groups: ['Meta-Team'] });
    const s = await mcpSession(gh, user.headers);
    assert.equal(s.status, 200, s.text);
    assert.deepEqual(await s.tools(), ['gatehouse__call_tool', 'gatehouse__describe_tool', 'gatehouse__search_tools']);
    const search = callText(await s.call('gatehouse__search_tools', { query: 'echo' }), 'search_tools');
    assert.match(search, /alpha__echo/);
    assert.doesNotMatch(search, /beta__/);
    const everything = await s.call('gatehouse__search_tools', { query: '', limit: 100 });
    assert.doesNotMatch(callText(everything, 'search_tools ""'), /alpha__get-env|beta__/);
    if (everything.result.structuredContent) {
      assert.deepEqual(everything.result.structuredContent.tools.map((x) => x.name), ['alpha__echo']);
    }
    const described = callText(await s.call('gatehouse__describe_tool', { name: 'alpha__echo' }), 'describe_tool alpha__echo');
    assert.match(described, /inputSchema/);
    const hidden = await s.call('gatehouse__describe_tool', { name: 'alpha__get-env' });
    assert.ok(hidden.error || hidden.result?.isError, `describe_tool of a non-permitted tool: ${hidden.text.slice(0, 300)}`);
    assert.doesNotMatch(hidden.text, /inputSchema/);
    const ok = await s.call('gatehouse__call_tool', { name: 'alpha__echo', arguments: { message: 'via meta' } });
    assert.match(callText(ok, 'call_tool alpha__echo'), /via meta/);
    for (const name of ['alpha__get-env', 'beta__echo']) {
      const refused = await s.call('gatehouse__call_tool', { name, arguments: { message: 'x' } });
      assert.ok(refused.error || refused.result?.isError, `call_tool ${name} must be refused: ${refused.text.slice(0, 300)}`);
      assert.doesNotMatch(refused.text, /"x"|TERM|PATH=/);
    }
  });
});
