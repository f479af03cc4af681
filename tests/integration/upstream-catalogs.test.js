// What a gateway keeps of its servers' lists, and how long one list waits for them: a server slow to start is
// left out of an aggregate list after LIST_WAIT_MS and announced with list_changed once it is in; items
// without a name (or uri) are dropped instead of breaking the list for everyone; a cursor that comes back ends
// a list; a server that lists without end is cut short (10,000 items, 16 MiB) instead of filling memory.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connectClient, fixtureStdio, rssKb, startGatehouse, waitFor } from './lib/index.js';

describe('upstream catalogs', () => {
  let gh;
  let rssAtStart;
  before(async () => {
    gh = await startGatehouse({
      env: { LIST_WAIT_MS: '4000' },  // (room for the quick servers to start on a loaded machine)
      servers: {
        slow: fixtureStdio('slow-start.js', { env: { START_DELAY_MS: '15000' } }),
        odd: fixtureStdio('odd-catalog.js', { env: { ODD: 'nameless' } }),
        loop: fixtureStdio('odd-catalog.js', { env: { ODD: 'loop' } }),
        huge: fixtureStdio('odd-catalog.js', { env: { ODD: 'huge' } }),
        surrogate: fixtureStdio('odd-catalog.js', { env: { ODD: 'surrogate' } }),
      },
    });
  });
  after(async () => { await gh?.stop(); });
  before(() => { rssAtStart = rssKb(gh.pid); });

  const names = async (client) => (await client.listTools()).tools.map((t) => t.name).sort();

  it('a server slow to start is left out after LIST_WAIT_MS, then announced with list_changed', async (t) => {
    let changed = 0;
    const client = await connectClient(gh.mcpUrl, { t, notifications: { 'notifications/tools/list_changed': () => { changed += 1; } } });
    const started = Date.now();
    const first = await names(client);
    const waited = Date.now() - started;
    assert.ok(waited < 12000, `the list waited ${waited} ms for the slow server (it starts in 15 s)`);
    assert.ok(!first.includes('slow__mark'), first.join());
    assert.ok(first.includes('odd__ok'), first.join());
    await waitFor(() => changed > 0, { timeoutMs: 40000, what: 'notifications/tools/list_changed' });
    assert.ok((await names(client)).includes('slow__mark'));
    assert.ok(gh.logs.some((l) => l.includes('listed without servers still loading')));
  });

  it('a list holding half of a surrogate pair (\\ud800, as JavaScript writes it) is read, the half made U+FFFD', async (t) => {
    const client = await connectClient(gh.mcpUrl, { t });
    const lone = (await client.listTools()).tools.find((tool) => tool.name === 'surrogate__lone');
    assert.equal(lone?.description, 'half of a pair: \ufffd', JSON.stringify(lone));
  });

  it('items without a string name are dropped; the rest of the list (and every other server\'s) is served', async (t) => {
    const client = await connectClient(gh.mcpUrl, { t });
    const tools = await names(client);
    assert.deepEqual(tools.filter((n) => n.startsWith('odd__')), ['odd__ok']);
    const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
    assert.deepEqual(prompts, ['odd__ok-prompt']);
    assert.equal((await client.callTool({ name: 'odd__ok', arguments: {} })).content[0].text, 'called ok');
  });

  it('a cursor that comes back ends the list; a list without end is cut short at 16 MiB, not kept whole', async (t) => {
    const client = await connectClient(gh.mcpUrl, { t });
    const tools = await names(client);
    assert.deepEqual(tools.filter((n) => n.startsWith('loop__')), ['loop__loop']);
    const huge = tools.filter((n) => n.startsWith('huge__'));
    assert.ok(huge.length >= 1 && huge.length <= 8, `${huge.length} huge tools kept`);
    assert.ok(gh.logs.some((l) => l.includes('a cursor came back')));
    assert.ok(gh.logs.some((l) => l.includes('catalog cut short')));
    // (kept whole, 100 pages of 2 MB would be 200 MB of catalog, and more while read)
    const grown = rssKb(gh.pid) - rssAtStart;
    assert.ok(grown < 150 * 1024, `the gateway grew by ${grown} KiB since it started`);
  });
});
