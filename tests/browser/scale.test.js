// 15,000 users: searching and paging in the portal stay fast. The figures are printed (a benchmark, not a
// gate: these machines are shared); the assertion is only a generous bound (< 1000 ms per request).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { launchBrowser, newPage, screenshot, signInWithKey, startPortalGateway } from './lib.js';

const USERS = 15000;
const BOUND_MS = 1000;

function summary(label, ms) {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const line = `${label}: n=${ms.length} min=${sorted[0].toFixed(1)} ms median=${at(0.5).toFixed(1)} ms p95=${at(0.95).toFixed(1)} ms max=${sorted[sorted.length - 1].toFixed(1)} ms`;
  console.log(line);
  return line;
}

/** How long the browser waited for one response (request sent → last byte), from the Resource Timing API. */
async function browserTimings(page, pathPart) {
  return page.evaluate((part) => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes(part))
    .map((e) => ({ url: e.name, ms: e.responseEnd - e.requestStart })), pathPart);
}

it(`with ${USERS.toLocaleString('en-US')} users, search as you type and paging answer fast`, async (t) => {
  const gh = await startPortalGateway({ t });
  // Seed through the bulk members endpoint (it creates the accounts): 3 groups of 5,000.
  const seedStart = performance.now();
  for (let g = 0; g < 3; g++) {
    const group = `Dept-${g + 1}`;
    assert.equal((await gh.api('POST', '/groups', { name: group })).status, 201);
    const emails = [];
    for (let i = g * 5000; i < (g + 1) * 5000; i++) emails.push(`user${String(i).padStart(5, '0')}@company${i % 40}.example`);
    const res = await gh.api('POST', `/groups/${group}/members`, { emails });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.added.length, 5000);
  }
  console.log(`seeded ${USERS} users in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);
  const total = (await gh.api('GET', '/users?per_page=1')).body.total;
  assert.equal(total, USERS + 1); // + the bootstrap admin

  const browser = await launchBrowser(t);
  const page = await newPage(browser, gh);
  await signInWithKey(page, gh.adminKey);
  await page.locator('#user-count').getByText(`${(USERS + 1).toLocaleString('en-US')} people in Gatehouse`).waitFor();
  await page.evaluate(() => { performance.setResourceTimingBufferSize(10000); performance.clearResourceTimings(); });

  // Search as you type: one key at a time, waiting for each answer (so each keystroke is one request).
  const search = page.getByLabel('Search by name or email');
  const typed = 'user0123';
  for (let i = 1; i <= typed.length; i++) {
    const prefix = typed.slice(0, i);
    const answered = page.waitForResponse((r) => r.url().includes(`/mcp-admin/api/users?q=${prefix}&`));
    await search.fill(prefix);
    await answered;
  }
  await page.locator('#user-count').getByText('10 people match “user0123”').waitFor();
  await page.locator('#users-table tr[data-email="user01234@company34.example"]').waitFor();
  const searchTimes = (await browserTimings(page, '/mcp-admin/api/users?q=')).map((e) => e.ms);
  assert.equal(searchTimes.length, typed.length, 'one request per keystroke');

  // Paging through a broad search ("company1" matches 11 of the 40 domains) and through everyone.
  await page.evaluate(() => performance.clearResourceTimings());
  await search.fill('company1');
  await page.locator('#user-count').getByText('people match “company1”').waitFor();
  for (let i = 0; i < 10; i++) {
    const answered = page.waitForResponse((r) => r.url().includes(`page=${i + 2}&`));
    await page.getByRole('button', { name: 'Next →' }).click();
    await answered;
  }
  await page.locator('.pager-status').getByText(/page 11 of/).waitFor();
  await screenshot(page, '10-users-15000-paging');
  const pagingTimes = (await browserTimings(page, '/mcp-admin/api/users?q=company1&page='))
    .filter((e) => !e.url.includes('page=1&')).map((e) => e.ms); // the Next clicks, not the search itself
  assert.equal(pagingTimes.length, 10);

  // The same requests straight from Node (no browser in the way), deep pages included.
  const direct = [];
  for (const path of ['/users?q=user0&page=1&per_page=25', '/users?q=user1499&page=1&per_page=25', '/users?q=company7.example&page=20&per_page=25',
    '/users?page=1&per_page=25', '/users?page=300&per_page=25', '/users?page=601&per_page=25', '/users?q=nobody-matches&page=1&per_page=25',
    '/users?q=USER14&page=5&per_page=25', '/users?page=150&per_page=100', '/users?q=e&page=500&per_page=25']) {
    for (let rep = 0; rep < 3; rep++) {
      const t0 = performance.now();
      const res = await gh.api('GET', path);
      direct.push(performance.now() - t0);
      assert.equal(res.status, 200);
    }
  }
  const lines = [summary('browser, search as you type (per keystroke)', searchTimes),
    summary('browser, paging (Next)', pagingTimes), summary('node fetch, search and deep pages', direct)];
  t.diagnostic(lines.join(' | '));
  for (const ms of [...searchTimes, ...pagingTimes, ...direct]) assert.ok(ms < BOUND_MS, `a request took ${ms.toFixed(1)} ms`);
  assert.deepEqual(page.problems, []);
});
