// /gateway/health and /servers shapes, `check-config` exit codes and messages, --version.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  GATEHOUSE_BIN, checkConfig, connectClient, everythingStdio, getJson, listAll, startEverythingHttp,
  startGatehouse, streamableHttpEntry,
} from './lib/index.js';

const STATES = ['idle', 'starting', 'ready', 'backoff', 'failed', 'disabled'];

describe('health and servers endpoints', () => {
  let gh;
  const cleanups = [];

  before(async () => {
    const http = await startEverythingHttp('streamableHttp', { t: (fn) => cleanups.push(fn) });
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      servers: {
        everything: everythingStdio({ description: 'the reference server over stdio' }),
        evhttp: streamableHttpEntry(http.url, { description: 'the reference server over HTTP' }),
        off: everythingStdio({ enabled: false, description: 'switched off' }),
      },
    });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  it('GET /gateway/health: 200, status ok, one entry per upstream with a known state', async () => {
    const { status, headers, body } = await getJson(`${gh.url}/gateway/health`);
    assert.equal(status, 200);
    assert.match(headers.get('content-type') ?? '', /application\/json/);
    assert.equal(body.status, 'ok');
    assert.deepEqual(Object.keys(body.upstreams).sort(), ['everything', 'evhttp', 'off']);
    for (const [id, upstream] of Object.entries(body.upstreams)) {
      assert.ok(STATES.includes(upstream.state), `${id}: unknown state ${JSON.stringify(upstream.state)}`);
    }
    assert.equal(body.upstreams.off.state, 'disabled');
  });

  it('GET /servers: id, transport, state, description, tools for every configured server', async (t) => {
    const first = await getJson(`${gh.url}/servers`);
    assert.equal(first.status, 200);
    assert.ok(Array.isArray(first.body.servers), JSON.stringify(first.body));
    const byId = Object.fromEntries(first.body.servers.map((s) => [s.id, s]));
    assert.deepEqual(Object.keys(byId).sort(), ['everything', 'evhttp', 'off']);
    assert.equal(byId.everything.transport, 'stdio');
    assert.equal(byId.evhttp.transport, 'streamable-http');
    assert.equal(byId.everything.description, 'the reference server over stdio');
    assert.equal(byId.evhttp.description, 'the reference server over HTTP');
    assert.equal(byId.off.state, 'disabled');
    for (const server of first.body.servers) {
      assert.ok(STATES.includes(server.state), `${server.id}: unknown state ${JSON.stringify(server.state)}`);
      for (const every of ['calls', 'errors', 'avg_us', 'tenant_connections'])  // everyone's: /gateway/stats
        assert.ok(!(every in server), `${server.id}: /servers shows ${every}`);
      assert.ok(server.tools === null || Number.isInteger(server.tools), `${server.id}: tools = ${JSON.stringify(server.tools)}`);
    }

    // Once a client has listed tools, the counts are known.
    const client = await connectClient(gh.mcpUrl, { t });
    const names = (await listAll(client, 'tools')).items.map((tool) => tool.name);
    assert.ok(names.every((name) => !name.startsWith('off__')), 'a disabled server\'s tools are not listed');
    const second = await getJson(`${gh.url}/servers`);
    const after = Object.fromEntries(second.body.servers.map((s) => [s.id, s]));
    for (const id of ['everything', 'evhttp']) {
      assert.ok(Number.isInteger(after[id].tools) && after[id].tools > 0, `${id}: tools = ${after[id].tools}`);
      assert.equal(after[id].state, 'ready');
    }
  });
});

describe('check-config', () => {
  it('a good file → exit 0 and "config ok"', () => {
    const result = checkConfig({
      servers: {
        everything: everythingStdio({ env: { K: 'v' }, timeoutMs: 30000, description: 'd' }),
        remote: { type: 'streamable-http', url: 'http://127.0.0.1:9/mcp', headers: { 'X-K': 'v' } },
        legacy: { type: 'sse', url: 'http://127.0.0.1:9/sse' },
        'Off-2_x': everythingStdio({ enabled: false }),
      },
    });
    assert.equal(result.code, 0, `stderr: ${result.stderr}`);
    assert.match(result.stdout, /config ok/);
  });

  it('a servers file that is not JSON → exit 2, naming the file setting', () => {
    const result = checkConfig({ servers: '{"mcpServers": {"a": ' });
    assert.equal(result.code, 2, `stdout: ${result.stdout} stderr: ${result.stderr}`);
    assert.match(result.stderr, /MCP_SERVERS_FILE|servers\.json/);
  });

  it('a missing servers file → exit 2, naming the file setting', () => {
    const result = checkConfig({ env: { MCP_SERVERS_FILE: '/nonexistent/gatehouse/servers.json' } });
    assert.equal(result.code, 2, `stdout: ${result.stdout} stderr: ${result.stderr}`);
    assert.match(result.stderr, /MCP_SERVERS_FILE|\/nonexistent\/gatehouse\/servers\.json/);
  });

  for (const badId of ['bad__id', '-leading-dash', 'has space', 'x'.repeat(65)]) {
    it(`server id ${JSON.stringify(badId.length > 20 ? `${badId.slice(0, 8)}…(${badId.length})` : badId)} → exit 2, naming the id`, () => {
      const result = checkConfig({ servers: { [badId]: everythingStdio() } });
      assert.equal(result.code, 2, `stdout: ${result.stdout} stderr: ${result.stderr}`);
      assert.ok(result.stderr.includes(badId), `stderr does not name ${badId}: ${result.stderr}`);
    });
  }

  it('an unknown transport type → exit 2, naming the server and the type', () => {
    const result = checkConfig({ servers: { pigeon: { type: 'carrier-pigeon', url: 'http://127.0.0.1:9/' } } });
    assert.equal(result.code, 2, `stdout: ${result.stdout} stderr: ${result.stderr}`);
    assert.match(result.stderr, /pigeon/);
    assert.match(result.stderr, /carrier-pigeon|type/);
  });

  for (const [name, value] of [['GATEWAY_PORT', 'not-a-port'], ['MAX_BODY_BYTES', '-5'], ['UPSTREAM_TIMEOUT_MS', 'soon']]) {
    it(`${name}=${value} → exit 2, naming ${name}`, () => {
      const result = checkConfig({ servers: { everything: everythingStdio() }, env: { [name]: value } });
      assert.equal(result.code, 2, `stdout: ${result.stdout} stderr: ${result.stderr}`);
      assert.ok(result.stderr.includes(name), `stderr does not name ${name}: ${result.stderr}`);
    });
  }

  it('--version prints a version and the allocator (tcmalloc in the default build) and exits 0', () => {
    const result = spawnSync(GATEHOUSE_BIN, ['--version'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^gatehouse \d+\.\d+\.\d+\n/);
    // the library is linked --no-as-needed; without it the linker would quietly drop it and keep glibc's malloc
    assert.match(result.stdout, /^allocator: tcmalloc \(.+\)$/m);
  });
});

it('portal files: asked again each time and answered 304 while unchanged (a release reaches an open portal); a directory is 404', async (t) => {
  const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web');
  const gh = await startGatehouse({ t, servers: {}, env: { GATEHOUSE_WEB_DIR: web } });
  const first = await fetch(`${gh.url}/mcp-admin/assets/app.js`);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get('cache-control'), 'no-cache');
  const etag = first.headers.get('etag');
  assert.match(etag ?? '', /^"[0-9a-f]{32}"$/);
  assert.equal((await first.text()).length > 1000, true);
  const again = await fetch(`${gh.url}/mcp-admin/assets/app.js`, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), '');
  assert.equal((await fetch(`${gh.url}/mcp-admin/assets/app.js`, { headers: { 'if-none-match': '"other"' } })).status, 200);
  for (const dir of ['/mcp-admin/assets/', '/mcp-admin/assets/pages']) assert.equal((await fetch(`${gh.url}${dir}`)).status, 404, dir);
});

it('GET /apikeys pages, newest first (page, per_page, total), for everyone or one user', async (t) => {
  const gh = await startGatehouse({ t, servers: {} });
  assert.equal((await gh.api('POST', '/users', { email: 'pager@example.com' })).status, 201);
  const ids = [];
  for (let i = 0; i < 3; i += 1) ids.push((await gh.api('POST', '/apikeys', { user_email: 'pager@example.com', name: `k${i}` })).body.id);
  const first = await gh.api('GET', '/apikeys?user=pager%40example.com&per_page=2');
  assert.equal(first.status, 200, first.text);
  assert.equal(first.body.total, 3);
  assert.equal(first.body.per_page, 2);
  assert.equal(first.body.items.length, 2);
  const second = await gh.api('GET', '/apikeys?user=pager%40example.com&per_page=2&page=2');
  assert.equal(second.body.items.length, 1);
  const seen = [...first.body.items, ...second.body.items].map((k) => k.id);
  assert.deepEqual([...seen].sort(), [...ids].sort(), 'every key once');
  const everyone = await gh.api('GET', '/apikeys');
  assert.equal(everyone.body.total, 4, 'and the bootstrap key');
  assert.equal((await gh.api('GET', '/apikeys?per_page=501')).status, 400);
});
