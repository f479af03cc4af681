// The admin portal in a real browser (Debian's chromium via playwright-core) against the real gateway:
// the deployment guide's "Adding a new tenant" walk-through done by clicking, then the tenant user's real
// MCP client; access control (non-admin, signed out); CSRF; a screenshot of every section.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  bearer, connectClient, everythingStdio, launchBrowser, memoryStdio, newPage, openSection, screenshot,
  signInWithKey, startEverythingHttp, startPortalGateway, tempDir, userWithKey, waitFor,
} from './lib.js';
import { createOpenWebUiDb, mintWebUiToken } from '../integration/lib/openwebui.js';

const SECTIONS = [
  ['users', 'Users & Groups'], ['groups', 'Groups & Servers'], ['keys', 'API Keys'], ['routing', 'Dynamic Routing'],
  ['servers', 'Servers'], ['analytics', 'Analytics'], ['audit', 'Audit Log'],
];

function resultText(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

/** Waits for a success message matching `pattern`; fails at once with the text of an error message. */
async function expectSuccess(page, pattern) {
  const notice = page.locator('#notice .notice');
  let last = '';
  return waitFor(async () => {
    if (await notice.count() === 0) return false;
    last = await notice.first().innerText();
    if ((await notice.first().getAttribute('class')).includes('error')) throw Object.assign(new Error(`error message: ${last}`), { fatal: true });
    return pattern.test(last) ? last : false;
  }, { timeoutMs: 15000, intervalMs: 50, what: `a message matching ${pattern} (last: ${last})` }).catch((error) => {
    throw new Error(`${error.message}; last message: ${last}`);
  });
}

describe('admin portal', () => {
  it('"Adding a new tenant" by clicking: group, servers, user, API key — the user\'s MCP client sees exactly those tools', async (t) => {
    const { dir, cleanup } = tempDir('gatehouse-portal-');
    t.after(cleanup);
    const remote = await startEverythingHttp('streamableHttp', { t });
    const gh = await startPortalGateway({
      t,
      // The gateway's own default for the slot: what callers without a tenant value (the admin here) get.
      env: { TENANT_API_KEY: 'gateway-default-value' },
      servers: {
        // TENANT_API_KEY is a credential slot: each tenant group can store its own value.
        everything: everythingStdio({ description: 'Demo tools', env: { TENANT_API_KEY: '${secret:TENANT_API_KEY}' } }),
        memory: memoryStdio(path.join(dir, 'memory.json'), { description: 'Knowledge graph' }),
        remote: { type: 'streamable-http', url: remote.url, description: 'Hosted demo tools' },
      },
    });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);

    // Sign in with the bootstrap admin key.
    await signInWithKey(page, gh.adminKey);
    await page.getByRole('heading', { level: 1, name: 'Users & Groups' }).waitFor();

    // 1. Create the tenant group.
    await openSection(page, 'Groups & Servers');
    await page.getByLabel('Group name').fill('Tenant-NewCompany');
    await page.getByLabel('Description (optional)').fill('NewCompany Ltd, onboarded by the browser test');
    await page.getByLabel(/This group is a tenant/).check();
    await page.getByRole('button', { name: 'Create group' }).click();
    await expectSuccess(page, /Tenant-NewCompany was created/);
    await page.getByRole('heading', { level: 2, name: 'Tenant-NewCompany' }).waitFor();

    // 2. Select its servers: everything (all tools), nothing else.
    await page.locator('input[data-server="everything"]').check();
    await page.getByRole('button', { name: 'Save server access' }).click();
    await expectSuccess(page, /Tenant-NewCompany may now use everything/);

    // 3. Add a user (pasted into the group's member box).
    await page.getByLabel(/Add people/).fill('Alice Example <alice@newcompany.example>');
    await page.getByRole('button', { name: 'Add to group' }).click();
    await expectSuccess(page, /1 added to Tenant-NewCompany/);
    await page.locator('#group-members').getByText('alice@newcompany.example').waitFor();
    await screenshot(page, '02-groups-and-servers');

    // 4. Store the tenant's API key for the server's credential slot (write-only, shown masked).
    await openSection(page, 'API Keys');
    await page.getByLabel('Group', { exact: true }).selectOption('Tenant-NewCompany');
    const slotInput = page.locator('input[data-server="everything"][data-slot="TENANT_API_KEY"]');
    await slotInput.fill('nc-secret-value-7781');
    await page.locator('tr[data-slot="TENANT_API_KEY"]').getByRole('button', { name: 'Store' }).click();
    await expectSuccess(page, /TENANT_API_KEY for everything is stored for Tenant-NewCompany/);
    const stored = page.locator('tr[data-slot="TENANT_API_KEY"] td.masked');
    await waitFor(async () => /7781/.test(await stored.innerText()), { what: 'the masked value in the table' });
    const shown = await page.locator('#main').innerText();
    assert.ok(!shown.includes('nc-secret-value'), 'the stored value is never shown in full');

    // 5. A Gatehouse API key for the user: shown once.
    await page.getByLabel('For (email)').fill('alice@newcompany.example');
    await page.getByLabel('Name (to recognise it later)').fill('Alice laptop');
    await page.getByRole('button', { name: 'Create key' }).click();
    const aliceKey = await page.locator('#new-key-value').inputValue();
    assert.match(aliceKey, /^gh_[A-Za-z0-9_-]{43}$/);
    await page.locator('#apikey-list').getByText('alice@newcompany.example').first().waitFor();
    await screenshot(page, '03-api-keys');

    // 6. The user's MCP client (real SDK) sees exactly the granted server's tools, with the tenant's credential.
    const admin = await connectClient(gh.mcpUrl, { t });
    const all = (await admin.listTools()).tools.map((x) => x.name);
    const expected = all.filter((n) => n.startsWith('everything__')).sort();
    assert.ok(expected.length > 3, `the admin sees everything's tools: ${all.join(', ')}`);
    assert.ok(all.some((n) => n.startsWith('memory__')) && all.some((n) => n.startsWith('remote__')), 'the admin sees the other servers');
    const alice = await connectClient(gh.mcpUrl, { t, headers: bearer(aliceKey) });
    const seen = (await alice.listTools()).tools.map((x) => x.name).sort();
    assert.deepEqual(seen, expected, 'alice sees exactly the tools of the servers her group was given');
    const env = JSON.parse(resultText(await alice.callTool({ name: 'everything__get-env', arguments: {} })));
    assert.equal(env.TENANT_API_KEY, 'nc-secret-value-7781', 'the tenant credential reached the upstream');
    await assert.rejects(alice.callTool({ name: 'memory__read_graph', arguments: {} }), /Unknown tool/);

    // 7. Dynamic routing: inline validation, then a valid route.
    await openSection(page, 'Dynamic Routing');
    await page.getByLabel('Group', { exact: true }).selectOption('Tenant-NewCompany');
    const routeInput = page.getByLabel('Address for remote');
    await routeInput.fill('http://169.254.169.254/latest');
    await page.locator('form[data-server="remote"]').getByRole('button', { name: 'Route to this address' }).click();
    const inlineError = page.locator('form[data-server="remote"] .field-error');
    await inlineError.waitFor();
    assert.match(await inlineError.innerText(), /Link-local|metadata/i);
    assert.equal(await routeInput.getAttribute('aria-invalid'), 'true');
    await screenshot(page, '04-dynamic-routing-invalid');
    await routeInput.fill(remote.url);
    await page.locator('form[data-server="remote"]').getByRole('button', { name: 'Route to this address' }).click();
    await expectSuccess(page, /now go to/);
    const route = await gh.api('GET', '/tenants/Tenant-NewCompany/endpoints/remote');
    assert.equal(route.body.url, remote.url);
    await screenshot(page, '04-dynamic-routing');

    // 8. Users & Groups: the user with her group; search finds her.
    await openSection(page, 'Users & Groups');
    await page.getByLabel('Search by name or email').fill('newcompany');
    await page.locator('#user-count').getByText('1 person matches “newcompany”').waitFor();
    await page.locator('#users-table tr[data-email="alice@newcompany.example"]').waitFor();
    await page.getByRole('button', { name: 'Manage alice@newcompany.example' }).click();
    await page.locator('#user-groups').getByText('Tenant-NewCompany').waitFor();
    await screenshot(page, '01-users-and-groups');

    // 9. The other sections show what happened.
    await openSection(page, 'Servers');
    await page.locator('#servers-table tr[data-server="everything"]').getByText('Working').waitFor();
    await screenshot(page, '05-servers');
    await openSection(page, 'Analytics');
    await page.locator('#analytics-summary').getByText('Requests').waitFor();
    await page.locator('#chart-timeline').waitFor();
    await screenshot(page, '06-analytics');
    await openSection(page, 'Audit Log');
    await page.getByLabel('What kind of change').selectOption('tenant_key.create');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('#audit-table').getByText('everything / TENANT_API_KEY').waitFor();
    const auditText = await page.locator('#audit-table').innerText();
    assert.ok(!auditText.includes('nc-secret-value'), 'the audit log shows the credential masked');
    await screenshot(page, '07-audit-log');

    // Tablet width: the navigation stays usable.
    await page.setViewportSize({ width: 820, height: 1180 });
    await openSection(page, 'Groups & Servers');
    await screenshot(page, '08-tablet-groups');

    // The one refused request is the invalid route above, shown inline.
    assert.deepEqual(page.problems, ['http 400 PUT /mcp-admin/api/tenants/Tenant-NewCompany/endpoints/remote'],
      'no console errors, no other failed requests, no requests to other origins');
  });

  it('a non-admin is refused on every page and every API route; a signed-out visitor is sent to sign in', async (t) => {
    const gh = await startPortalGateway({ t, servers: { everything: everythingStdio() } });
    const bobKey = await userWithKey(gh, 'bob@example.com', { name: 'Bob' });
    const browser = await launchBrowser(t);

    // Signed out: every section sends the visitor to the sign-in page; the API answers 401.
    const visitor = await newPage(browser, gh);
    for (const [id] of SECTIONS) {
      await visitor.goto(`/mcp-admin/${id}`);
      await visitor.getByRole('heading', { level: 1, name: 'Sign in to Gatehouse' }).waitFor();
      assert.equal(new URL(visitor.url()).pathname, '/mcp-admin/sign-in');
      assert.equal(new URL(visitor.url()).searchParams.get('next'), `/mcp-admin/${id}`);
    }
    assert.equal((await visitor.request.get('/mcp-admin/api/users')).status(), 401);
    // A wrong key is refused with a message that says what to do.
    await visitor.getByLabel('API key', { exact: true }).fill('gh_not-a-real-key');
    await visitor.getByRole('button', { name: 'Sign in with the key' }).click();
    await visitor.getByText(/That key was not accepted/).waitFor();
    await screenshot(visitor, '00-sign-in');
    // The right key brings the admin back to the page they asked for.
    await visitor.getByLabel('API key', { exact: true }).fill(gh.adminKey);
    await visitor.getByRole('button', { name: 'Sign in with the key' }).click();
    await visitor.getByRole('heading', { level: 1, name: 'Audit Log' }).waitFor();

    // A signed-in non-admin: "No access" on every page.
    const page = await newPage(browser, gh);
    await signInWithKey(page, bobKey);
    await page.getByRole('heading', { level: 1, name: 'No access' }).waitFor();
    assert.match(await page.locator('.noaccess').innerText(), /bob@example.com/);
    await screenshot(page, '09-no-access');
    for (const [id] of SECTIONS) {
      await page.goto(`/mcp-admin/${id}`);
      await page.getByRole('heading', { level: 1, name: 'No access' }).waitFor();
      assert.equal(await page.locator('nav.sidebar').count(), 0, `no navigation on ${id}`);
    }
    // … and 403 from every API route, reads and writes, with his session cookie (and the CSRF token) or his key.
    const me = await (await page.request.get('/auth/me')).json();
    assert.equal(me.is_admin, false);
    assert.ok(me.csrf_token);
    const routes = [
      ['GET', '/users'], ['GET', '/users?q=a&page=2'], ['GET', '/users/admin@localhost'], ['PATCH', '/users/admin@localhost', { disabled: true }],
      ['DELETE', '/users/admin@localhost'], ['POST', '/users', { email: 'x@example.com' }],
      ['GET', '/groups'], ['POST', '/groups', { name: 'Bobs' }], ['GET', '/groups/MCP-Admin'], ['DELETE', '/groups/MCP-Admin'],
      ['GET', '/groups/MCP-Admin/members'], ['POST', '/groups/MCP-Admin/members', { emails: ['bob@example.com'] }],
      ['PUT', '/groups/MCP-Admin/members/bob@example.com'], ['GET', '/groups/MCP-Admin/servers'],
      ['PUT', '/groups/MCP-Admin/servers/everything', { tools: null }], ['GET', '/servers'], ['GET', '/servers/everything'],
      ['GET', '/tenants/MCP-Admin/keys'], ['PUT', '/tenants/MCP-Admin/keys/everything/X', { value: 'v' }],
      ['GET', '/tenants/MCP-Admin/endpoints'], ['PUT', '/tenants/MCP-Admin/endpoints/everything', { url: 'http://127.0.0.1:1/' }],
      ['GET', '/apikeys'], ['POST', '/apikeys', { user_email: 'bob@example.com' }], ['GET', '/audit'], ['GET', '/analytics'],
      ['GET', '/no-such-thing'],
    ];
    const admins = (await gh.api('GET', '/users/admin@localhost')).body;
    for (const [method, route, body] of routes) {
      const viaCookie = await page.request.fetch(`/mcp-admin/api${route}`, {
        method, headers: { 'X-CSRF-Token': me.csrf_token, ...(body ? { 'content-type': 'application/json' } : {}) },
        data: body ? JSON.stringify(body) : undefined,
      });
      assert.equal(viaCookie.status(), 403, `${method} ${route} with bob's session`);
      const viaKey = await gh.api(method, route, body, { headers: bearer(bobKey) });
      assert.equal(viaKey.status, 403, `${method} ${route} with bob's key`);
    }
    assert.deepEqual((await gh.api('GET', '/users/admin@localhost')).body, admins, 'nothing changed');
    assert.equal((await gh.api('GET', '/groups/Bobs')).status, 404);
    assert.deepEqual(page.problems.filter((p) => !/^http 403 /.test(p)), []);
  });

  it('destructive actions ask first (Cancel changes nothing), work from the keyboard, and say what happened', async (t) => {
    const gh = await startPortalGateway({ t });
    await gh.api('POST', '/groups', { name: 'Old-Team' });
    await gh.api('POST', '/groups/Old-Team/members', { emails: ['carol@example.com', 'dave@example.com'] });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey);

    // Disable a user: the dialog opens with focus on Cancel; Escape cancels; Enter on "Disable" confirms.
    await page.getByLabel('Search by name or email').fill('carol');
    await page.locator('#user-count').getByText('1 person matches').waitFor();
    await page.getByRole('button', { name: 'Disable carol@example.com' }).click();
    const dialog = page.getByRole('dialog', { name: 'Disable carol@example.com?' });
    await dialog.waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel', 'the safe choice has the focus');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    assert.equal((await gh.api('GET', '/users/carol@example.com')).body.disabled, false, 'cancelled: nothing changed');
    await page.getByRole('button', { name: 'Disable carol@example.com' }).click();
    await screenshot(page, '11-confirm-disable');
    await dialog.getByRole('button', { name: 'Disable' }).focus();
    await page.keyboard.press('Enter');
    await page.locator('#notice').getByText('carol@example.com is disabled.').waitFor();
    assert.equal((await gh.api('GET', '/users/carol@example.com')).body.disabled, true);
    await page.getByRole('button', { name: 'Enable carol@example.com' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Enable' }).click();
    await page.locator('#notice').getByText('carol@example.com is enabled again.').waitFor();
    assert.equal((await gh.api('GET', '/users/carol@example.com')).body.disabled, false);

    // Bulk add with a mistake: the valid ones are added, the invalid one is named with what to do.
    await page.getByLabel('Group', { exact: true }).selectOption('Old-Team');
    await page.getByLabel('Email addresses').fill('erin@example.com; frank@example.com\nnot-an-email\ncarol@example.com');
    await page.getByRole('button', { name: 'Add these people' }).click();
    await page.locator('#bulk-result').getByText('2 added to Old-Team; already members: 1.').waitFor();
    assert.match(await page.locator('#bulk-result').innerText(), /not valid email addresses: not-an-email\. Fix them/);
    assert.equal((await gh.api('GET', '/groups/Old-Team')).body.member_count, 4);

    // Delete a group: Cancel keeps it, confirming deletes it.
    await openSection(page, 'Groups & Servers');
    await page.locator('button[data-group="Old-Team"]').click();
    await page.getByRole('button', { name: 'Delete group' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    assert.equal((await gh.api('GET', '/groups/Old-Team')).status, 200, 'cancelled: the group is still there');
    await page.getByRole('button', { name: 'Delete group' }).click();
    assert.match(await page.getByRole('dialog').innerText(), /4 members lose what it grants/);
    await page.getByRole('dialog').getByRole('button', { name: 'Delete group' }).click();
    await page.locator('#notice').getByText('The group Old-Team was deleted.').waitFor();
    assert.equal((await gh.api('GET', '/groups/Old-Team')).status, 404);

    // The sections are reachable with the keyboard alone: Tab to a link, Enter.
    await page.locator('nav.sidebar a', { hasText: 'Audit Log' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Audit Log' }).waitFor();
    await page.locator('#audit-table').getByText('group.delete').waitFor();
    assert.deepEqual(page.problems, []);
  });

  it('CSRF: a write made with the session cookie needs the page\'s token', async (t) => {
    const gh = await startPortalGateway({ t });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey);
    const me = await (await page.request.get('/auth/me')).json();
    assert.equal(me.auth_method, 'session');
    const json = { 'content-type': 'application/json' };
    const attempt = (headers, name) => page.request.post('/mcp-admin/api/groups', { headers: { ...json, ...headers }, data: JSON.stringify({ name }) });

    const without = await attempt({}, 'Forged-1');
    assert.equal(without.status(), 403);
    assert.equal((await without.json()).error.code, 'csrf');
    const wrong = await attempt({ 'X-CSRF-Token': 'x'.repeat(43) }, 'Forged-2');
    assert.equal(wrong.status(), 403);
    assert.equal((await wrong.json()).error.code, 'csrf');
    const revoke = await page.request.delete('/auth/apikeys/whatever');
    assert.equal(revoke.status(), 403, 'own API keys: a cookie write without the token');
    assert.equal((await gh.api('GET', '/groups/Forged-1')).status, 404, 'nothing was created');
    assert.equal((await gh.api('GET', '/groups/Forged-2')).status, 404, 'nothing was created');

    // A cross-site form post (what CSRF is) carries the cookie but cannot carry the header.
    const evil = await newPage(browser, gh);
    await evil.context().addCookies(await page.context().cookies());
    await evil.setContent(`<form method="POST" action="${gh.url}/mcp-admin/api/groups" enctype="text/plain">
      <input name='{"name":"Forged-3","x":"' value='"}'></form>`);
    const [response] = await Promise.all([evil.waitForResponse(/\/mcp-admin\/api\/groups/), evil.locator('form').evaluate((f) => f.submit())]);
    assert.equal(response.status(), 403);
    assert.equal((await gh.api('GET', '/groups/Forged-3')).status, 404);

    // With the token it works; reads never need it.
    const ok = await attempt({ 'X-CSRF-Token': me.csrf_token }, 'Real-Group');
    assert.equal(ok.status(), 201);
    assert.equal((await page.request.get('/mcp-admin/api/groups/Real-Group')).status(), 200);
    // A bearer-authenticated write needs no token.
    assert.equal((await gh.api('POST', '/groups', { name: 'Bearer-Group' })).status, 201);

    // Signing out is a change too: another site's form cannot do it; the portal's button does.
    const evil2 = await newPage(browser, gh);
    await evil2.context().addCookies(await page.context().cookies());
    await evil2.setContent(`<form method="POST" action="${gh.url}/auth/logout"><input name="csrf_token" value="forged"></form>`);
    const [refused] = await Promise.all([evil2.waitForResponse(/\/auth\/logout/), evil2.locator('form').evaluate((f) => f.submit())]);
    assert.equal(refused.status(), 403);
    assert.equal((await page.request.get('/auth/me')).status(), 200, 'still signed in');
    await page.goto('/mcp-admin/groups');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { level: 1, name: 'Sign in to Gatehouse' }).waitFor();
    assert.equal((await page.request.get('/auth/me')).status(), 401, 'the cookie is gone');
  });
  it('an Open WebUI admin signed in by its `token` cookie alone uses the portal; its writes carry that cookie\'s CSRF token', async (t) => {
    // The unified stack: the portal on the same origin as the chat, the browser holding Open WebUI's cookie.
    const secret = 'webui-secret-for-the-portal-0123456789';
    const webui = await createOpenWebUiDb({ t });
    const owner = await webui.addUser({ email: 'owner@webui.test', name: 'Owner', role: 'admin' });
    const gh = await startPortalGateway({ t, env: { WEBUI_SECRET_KEY: secret, OPENWEBUI_DATABASE_URL: webui.url } });
    await gh.api('POST', '/groups', { name: 'Chat-Team' });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await page.context().addCookies([{ name: 'token', value: await mintWebUiToken(secret, { id: owner }), url: gh.url }]);
    await page.goto('/mcp-admin');
    await page.locator('nav.sidebar').waitFor();
    const me = await (await page.request.get('/auth/me')).json();
    assert.equal(me.auth_method, 'openwebui');
    assert.ok(me.csrf_token, 'a CSRF token for the cookie');

    await page.getByLabel('Group', { exact: true }).selectOption('Chat-Team');
    await page.getByLabel('Email addresses').fill('gina@example.com');
    await page.getByRole('button', { name: 'Add these people' }).click();
    await waitFor(async () => (await page.locator('#bulk-result').innerText()).trim() !== '', { what: 'the bulk result' });
    assert.match(await page.locator('#bulk-result').innerText(), /^1 added to Chat-Team/);
    assert.equal((await gh.api('GET', '/groups/Chat-Team')).body.member_count, 1);
    // The same write without the header is refused.
    const forged = await page.request.post('/mcp-admin/api/groups', { headers: { 'content-type': 'application/json' }, data: JSON.stringify({ name: 'Forged' }) });
    assert.equal(forged.status(), 403);
    assert.equal((await gh.api('GET', '/groups/Forged')).status, 404);
    assert.deepEqual(page.problems.filter((p) => !p.includes('POST /mcp-admin/api/groups')), []);
  });
});
