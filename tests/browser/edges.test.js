// The portal at its edges: more groups than one page holds, sessions that end (sign-out, expiry) while a page
// is open or a form is half filled, paging after removals, refused input shown where it belongs, slow and
// failing answers, odd addresses.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  everythingStdio, launchBrowser, memoryStdio, newPage, signInWithKey, startPortalGateway, tempDir, waitFor,
} from './lib.js';

/** The top-of-page message once it matches `pattern` (success or error alike). */
async function noticeMatching(page, pattern) {
  const notice = page.locator('#notice .notice');
  let last = '';
  return waitFor(async () => {
    if (await notice.count() === 0) return false;
    last = await notice.first().innerText();
    return pattern.test(last) ? last : false;
  }, { timeoutMs: 15000, intervalMs: 50, what: `a message matching ${pattern}` }).catch((error) => {
    throw new Error(`${error.message}; last message: ${last}`);
  });
}

const unexpected = (page, ...allowed) => page.problems.filter((p) => !allowed.some((a) => a.test(p)));

describe('admin portal at its edges', () => {
  it('with more than 500 groups every group can be found and chosen: list search and paging, pickers, ?group= links', async (t) => {
    const gh = await startPortalGateway({ t, servers: { everything: everythingStdio({ env: { TENANT_API_KEY: '${secret:TENANT_API_KEY}' } }) } });
    const names = Array.from({ length: 520 }, (_, i) => `g${String(i).padStart(3, '0')}`);
    for (let i = 0; i < names.length; i += 20) {
      const created = await Promise.all(names.slice(i, i + 20).map((name) => gh.api('POST', '/groups', { name })));
      assert.ok(created.every((r) => r.status === 201));
    }
    // Sorts after the 500 first ones (MCP-Admin, g000…g519).
    assert.equal((await gh.api('POST', '/groups', { name: 'zzz-last-tenant', is_tenant: true })).status, 201);
    const total = names.length + 2;
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey);

    // Groups & Servers: Gatehouse searches, the list pages.
    await page.goto('/mcp-admin/groups');
    await page.locator('#group-list button[data-group="g000"]').waitFor();
    await page.locator('.pager-status').getByText(`of ${total.toLocaleString('en-US')}`).waitFor();
    await page.getByLabel('Filter', { exact: true }).fill('zzz');
    await page.locator('#group-list button[data-group="zzz-last-tenant"]').waitFor();
    await page.locator('#group-list button[data-group="zzz-last-tenant"]').click();
    await page.getByRole('heading', { level: 2, name: 'zzz-last-tenant' }).waitFor();
    // A new group shows in the list at once.
    await page.getByLabel('Group name').fill('zz-fresh');
    await page.getByRole('button', { name: 'Create group' }).click();
    await noticeMatching(page, /zz-fresh was created/);
    await page.locator('#group-list button[data-group="zz-fresh"][aria-current="true"]').waitFor();

    // keys?group= and routing?group= choose the group even when it is not among the first ones.
    await page.goto('/mcp-admin/keys?group=zzz-last-tenant');
    await page.locator('#tenant-keys tr[data-slot="TENANT_API_KEY"]').waitFor();
    assert.equal(await page.locator('#keys-group').inputValue(), 'zzz-last-tenant');
    await page.goto('/mcp-admin/routing?group=zzz-last-tenant');
    await page.locator('#routing-area').getByText(/No HTTP servers/).waitFor();
    assert.equal(await page.locator('#routing-group').inputValue(), 'zzz-last-tenant');
    // The picker searches as you type; Enter picks the match.
    await page.getByLabel('Group: search', { exact: true }).fill('g51');
    await page.locator('#routing-group option[value="g519"]').waitFor({ state: 'attached' });
    assert.equal(await page.locator('#routing-group option[value="g000"]').count(), 0, 'only the matches are listed');

    // Users & Groups: bulk add to the last group, and one person to another group beyond the first 500.
    await page.goto('/mcp-admin/users');
    await page.locator('#users-table').waitFor();
    await page.getByLabel('Group: search', { exact: true }).fill('zzz-last');
    await page.getByLabel('Group: search', { exact: true }).press('Enter');
    await waitFor(async () => (await page.locator('#bulk-group').inputValue()) === 'zzz-last-tenant', { what: 'Enter to choose the one match' });
    await page.getByLabel('Email addresses').fill('late@example.com');
    await page.getByRole('button', { name: 'Add these people' }).click();
    await page.locator('#bulk-result').getByText('1 added to zzz-last-tenant').waitFor();
    await page.getByRole('button', { name: 'Manage admin@localhost' }).click();
    await page.getByLabel('Add to a group: search').fill('g519');
    await page.locator('#detail-add-group option[value="g519"]').waitFor({ state: 'attached' });
    await page.locator('#detail-add-group').selectOption('g519');
    await page.locator('#user-detail').getByRole('button', { name: 'Add to group' }).click();
    await noticeMatching(page, /admin@localhost is now in g519/);
    assert.ok((await gh.api('GET', '/users/admin@localhost')).body.groups.includes('g519'));
    assert.deepEqual(page.problems, []);
  });

  it('after signing out, or when the session ends, the Servers page stops refreshing and leaves the sign-in form alone', async (t) => {
    const gh = await startPortalGateway({ t, servers: { everything: everythingStdio() } });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await page.clock.install(); // the page's 10 s refresh, without waiting for it
    let polls = 0;
    page.on('request', (req) => { if (req.url().endsWith('/mcp-admin/api/servers')) polls++; });
    const keyField = page.getByLabel('API key', { exact: true });

    await signInWithKey(page, gh.adminKey, { path: '/mcp-admin/servers' });
    await page.locator('#servers-table').waitFor();
    await page.clock.runFor(10500);
    await waitFor(() => polls >= 2, { what: 'the page to refresh itself' });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await keyField.fill('gh_half-typed');
    const before = polls;
    await page.clock.runFor(35000);
    await page.waitForTimeout(500);
    assert.equal(polls, before, 'no refresh after signing out');
    assert.equal(await keyField.inputValue(), 'gh_half-typed', 'what was typed stays');
    assert.match(await page.locator('.signin .notice').innerText(), /You are signed out/);

    // The session ends while the page is open: its next refresh finds out; then nothing more.
    await keyField.fill(gh.adminKey);
    await page.getByRole('button', { name: 'Sign in with the key' }).click();
    await page.locator('#servers-table').waitFor();
    await page.context().clearCookies();
    await page.clock.runFor(10500);
    await page.locator('.signin').getByText('Your session has ended').waitFor();
    await keyField.fill('gh_half-typed-again');
    const after = polls;
    await page.clock.runFor(35000);
    await page.waitForTimeout(500);
    assert.equal(polls, after, 'no refresh after the session ended');
    assert.equal(await keyField.inputValue(), 'gh_half-typed-again');
    assert.deepEqual(unexpected(page, /^http 401 GET \/mcp-admin\/api\/servers$/), []);
  });

  it('when the session ends, a refused change keeps what was typed, and signing in returns to the page with its query', async (t) => {
    const gh = await startPortalGateway({ t, servers: { everything: everythingStdio({ env: { TENANT_API_KEY: '${secret:TENANT_API_KEY}' } }) } });
    await gh.api('POST', '/groups', { name: 'Tenant-A', is_tenant: true });
    const browser = await launchBrowser(t);

    // A link to one group's keys, signed out: sign in, and it is that group's keys.
    const visitor = await newPage(browser, gh);
    await visitor.goto('/mcp-admin/keys?group=Tenant-A');
    await visitor.getByRole('heading', { level: 1, name: 'Sign in to Gatehouse' }).waitFor();
    assert.equal(new URL(visitor.url()).searchParams.get('next'), '/mcp-admin/keys?group=Tenant-A');
    await visitor.getByLabel('API key', { exact: true }).fill(gh.adminKey);
    await visitor.getByRole('button', { name: 'Sign in with the key' }).click();
    await visitor.locator('#tenant-keys tr[data-slot="TENANT_API_KEY"]').waitFor();
    assert.equal(await visitor.locator('#keys-group').inputValue(), 'Tenant-A');

    // A half-filled form when the session ends: the save is refused, the form stays, signing in again in the
    // dialog lets the admin save it.
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey, { path: '/mcp-admin/groups' });
    await page.getByLabel('Group name').fill('Tenant-Important');
    await page.getByLabel('Description (optional)').fill('A long description the admin typed carefully');
    await page.context().clearCookies(); // the session is gone
    await page.getByRole('button', { name: 'Create group' }).click();
    const dialog = page.getByRole('dialog', { name: 'Your session has ended' });
    await dialog.waitFor();
    assert.equal(new URL(page.url()).pathname, '/mcp-admin/groups');
    assert.equal(await page.locator('#new-group-name').inputValue(), 'Tenant-Important');
    assert.equal(await page.locator('#new-group-description').inputValue(), 'A long description the admin typed carefully');
    await dialog.getByLabel('Admin API key').fill(gh.adminKey);
    await dialog.getByRole('button', { name: 'Sign in', exact: true }).click();
    await dialog.waitFor({ state: 'detached' });
    await noticeMatching(page, /signed in again/);
    await page.getByRole('button', { name: 'Create group' }).click();
    await noticeMatching(page, /Tenant-Important was created/);
    assert.equal((await gh.api('GET', '/groups/Tenant-Important')).body.description, 'A long description the admin typed carefully');
    assert.deepEqual(unexpected(page, /^http 401 POST \/mcp-admin\/api\/groups$/), []);
  });

  it('removing the last member on the last page of members shows the page before, not an empty page past the end', async (t) => {
    const gh = await startPortalGateway({ t });
    await gh.api('POST', '/groups', { name: 'Big-21' });
    const emails = Array.from({ length: 21 }, (_, i) => `member${String(i).padStart(2, '0')}@example.com`);
    assert.equal((await gh.api('POST', '/groups/Big-21/members', { emails })).status, 200);
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey, { path: '/mcp-admin/groups/Big-21' });
    const detail = page.locator('#group-detail');
    await detail.locator('.pager-status').getByText('page 1 of 2').waitFor();
    await detail.getByRole('button', { name: 'Next →' }).click();
    await detail.locator('.pager-status').getByText('Showing 21–21 of 21 · page 2 of 2').waitFor();
    await page.locator('#group-members button', { hasText: 'Remove' }).first().click();
    await page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
    await noticeMatching(page, /was removed from Big-21/);
    await detail.locator('.pager-status').getByText('Showing 1–20 of 20 · page 1 of 1').waitFor();
    assert.equal(await page.locator('#group-members li').count(), 20);
    assert.doesNotMatch(await page.locator('#group-members').innerText(), /Nobody is in this group/);
    assert.deepEqual(page.problems, []);
  });

  it('adding people to a group keeps the invalid addresses in the box, to fix them', async (t) => {
    const gh = await startPortalGateway({ t });
    await gh.api('POST', '/groups', { name: 'Team-5' });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey, { path: '/mcp-admin/groups/Team-5' });
    await page.locator('#group-add-emails').fill('good.one@example.com, not-an-email, another@@bad');
    await page.locator('#group-add-members').click();
    await noticeMatching(page, /1 added\. Not valid email addresses/);
    const left = await page.locator('#group-add-emails').inputValue();
    assert.match(left, /not-an-email/);
    assert.match(left, /another@@bad/);
    assert.doesNotMatch(left, /good\.one/);
    await page.locator('#group-members').getByText('good.one@example.com').waitFor();
    assert.deepEqual(page.problems, []);
  });

  it('creating a group: each refusal is shown under its own field; the priority is checked before sending', async (t) => {
    const gh = await startPortalGateway({ t });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey, { path: '/mcp-admin/groups' });
    const nameError = page.locator('#new-group-name-error');
    const descError = page.locator('#new-group-description-error');
    const priorityError = page.locator('#new-group-priority-error');
    await page.getByLabel('Group name').fill('prio-test');
    for (const bad of ['5000000', '1e9', '1.5']) {
      await page.getByLabel('Priority', { exact: true }).fill(bad);
      await page.getByRole('button', { name: 'Create group' }).click();
      await priorityError.getByText(/whole number from -1,000,000 to 1,000,000/).waitFor();
      assert.equal(await nameError.isHidden(), true, `nothing under the name for ${bad}`);
      assert.equal(await page.getByLabel('Priority', { exact: true }).getAttribute('aria-invalid'), 'true');
      assert.equal((await gh.api('GET', '/groups/prio-test')).status, 404, `not created with priority ${bad}`);
    }
    // Gatehouse refuses the description: the message goes under the description.
    await page.getByLabel('Priority', { exact: true }).fill('-7');
    await page.getByLabel('Description (optional)').fill('x'.repeat(1001));
    await page.getByRole('button', { name: 'Create group' }).click();
    await descError.getByText(/description must be text of at most 1000 characters/).waitFor();
    assert.equal(await nameError.isHidden(), true);
    assert.equal(await priorityError.isHidden(), true);
    // A name already taken: under the name.
    await page.getByLabel('Description (optional)').fill('fine');
    await page.getByLabel('Group name').fill('MCP-Admin');
    await page.getByRole('button', { name: 'Create group' }).click();
    await nameError.getByText(/already exists/).waitFor();
    assert.equal(await descError.isHidden(), true);
    await page.getByLabel('Group name').fill('prio-test');
    await page.getByRole('button', { name: 'Create group' }).click();
    await noticeMatching(page, /prio-test was created/);
    assert.equal((await gh.api('GET', '/groups/prio-test')).body.priority, -7);
    assert.deepEqual(unexpected(page, /^http (400|409) POST \/mcp-admin\/api\/groups$/), []);
  });

  it('a slow answer for one group never shows it after another group was opened', async (t) => {
    const gh = await startPortalGateway({ t });
    await gh.api('POST', '/groups', { name: 'Slow-One' });
    await gh.api('POST', '/groups', { name: 'Fast-Two' });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey, { path: '/mcp-admin/groups' });
    await page.route('**/mcp-admin/api/groups/Slow-One', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await route.continue().catch(() => {});
    });
    const slow = page.waitForResponse((r) => r.url().endsWith('/mcp-admin/api/groups/Slow-One'));
    await page.locator('#group-list button[data-group="Slow-One"]').click();
    await page.locator('#group-list button[data-group="Fast-Two"]').click();
    await page.getByRole('heading', { level: 2, name: 'Fast-Two' }).waitFor();
    await slow;
    await page.waitForTimeout(300);
    assert.equal(await page.locator('#group-title').innerText(), 'Fast-Two');
    assert.equal(await page.locator('#group-list button[aria-current="true"]').getAttribute('data-group'), 'Fast-Two');
    assert.equal(new URL(page.url()).pathname, '/mcp-admin/groups/Fast-Two');
    assert.deepEqual(page.problems, []);
  });

  it('an address with a stray % (/mcp-admin/groups/%) shows the groups and says there is no such group', async (t) => {
    const gh = await startPortalGateway({ t });
    await gh.api('POST', '/groups', { name: 'Plain' });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey);
    await page.goto('/mcp-admin/groups/%');
    await page.locator('#group-list button[data-group="Plain"]').waitFor();
    await noticeMatching(page, /Could not open the group %/);
    assert.doesNotMatch(await page.locator('#main').innerText(), /could not be shown|malformed/i);
    assert.deepEqual(unexpected(page, /^http 404 GET \/mcp-admin\/api\/groups\/%25(\/servers)?$/), []);
  });

  it('saving server access: when one change fails midway, it is named and the page shows what is really saved', async (t) => {
    const { dir, cleanup } = tempDir('gatehouse-portal-');
    t.after(cleanup);
    const gh = await startPortalGateway({
      t, servers: { everything: everythingStdio(), memory: memoryStdio(path.join(dir, 'memory.json')) },
    });
    await gh.api('POST', '/groups', { name: 'Grants-9' });
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey, { path: '/mcp-admin/groups/Grants-9' });
    await page.route('**/mcp-admin/api/groups/Grants-9/servers/memory', (route) => route.fulfill({
      status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'internal', message: 'boom' } }),
    }));
    await page.locator('input[data-server="everything"]').check();
    await page.locator('input[data-server="memory"]').check();
    await page.getByRole('button', { name: 'Save server access' }).click();
    const message = await noticeMatching(page, /Could not/);
    assert.match(message, /memory/, 'the failed change is named');
    const saved = (await gh.api('GET', '/groups/Grants-9/servers')).body.items.map((x) => x.server);
    assert.deepEqual(saved.filter((s) => s !== 'memory'), saved, 'memory was not saved');
    // The page is reloaded from Gatehouse: memory unticked, the rest as saved.
    await waitFor(async () => !(await page.locator('input[data-server="memory"]').isChecked()), { what: 'the page to show memory as not allowed' });
    assert.equal(await page.locator('input[data-server="everything"]').isChecked(), saved.includes('everything'));
    assert.deepEqual(unexpected(page, /^http 500 PUT \/mcp-admin\/api\/groups\/Grants-9\/servers\/memory$/), []);
  });

  it('the API keys list pages, newest first: every key can be reached and revoked', async (t) => {
    const gh = await startPortalGateway({ t, servers: {} });
    assert.equal((await gh.api('POST', '/users', { email: 'many@example.com', name: 'Many' })).status, 201);
    for (let i = 0; i < 60; i += 20) {
      const made = await Promise.all(Array.from({ length: 20 }, (_, k) => gh.api('POST', '/apikeys', { user_email: 'many@example.com', name: `k${i + k}` })));
      assert.ok(made.every((r) => r.status === 201));
    }
    const browser = await launchBrowser(t);
    const page = await newPage(browser, gh);
    await signInWithKey(page, gh.adminKey);
    await page.goto('/mcp-admin/keys');
    const rows = page.locator('#apikey-list tbody tr');
    await rows.first().waitFor();
    assert.equal(await rows.count(), 50, 'one page of 50');
    const status = page.locator('.pager-status').last();
    assert.match(await status.innerText(), /of 61/); // (the 60, and the admin's bootstrap key)
    const ids = async () => rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    const first = await ids();
    await page.getByRole('button', { name: 'Next' }).last().click();
    await waitFor(async () => (await rows.count()) === 11, { timeoutMs: 10000, what: 'the second page' });
    const second = await ids();
    assert.equal(new Set([...first, ...second]).size, 61, 'every key on one of the two pages');
    // a key on the second page can be revoked from there
    await rows.first().getByRole('button', { name: /Revoke key/ }).click();
    await page.getByRole('button', { name: 'Revoke key' }).last().click();
    await noticeMatching(page, /is revoked/);
    assert.equal((await gh.api('GET', `/apikeys/${encodeURIComponent(second[0])}`)).body.revoked_at > 0, true);
    assert.deepEqual(unexpected(page), []);
  });
});
