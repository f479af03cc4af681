// Settings a user sees the effect of: MAX_SESSIONS, ALLOWED_ORIGINS, ALLOWED_HOSTS, PUBLIC_URL, the .env file,
// and values substituted into the servers file (${env:NAME}, ${secret:NAME}).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  MCP_HEADERS, checkConfig, connectClient, everythingStdio, filesystemStdio, initializeMessage, rawRequest,
  rawSession, resultText, runCli, startGatehouse, tempDir,
} from './lib/index.js';

it('MAX_SESSIONS: one more initialize → 503; ending a session makes room', async (t) => {
  const gh = await startGatehouse({ t, servers: {}, env: { MAX_SESSIONS: '2' } });
  const first = await rawSession(gh.mcpUrl);
  await rawSession(gh.mcpUrl);
  const refused = await rawRequest(gh.mcpUrl, { headers: MCP_HEADERS, body: initializeMessage() });
  assert.equal(refused.status, 503, refused.text);
  const deleted = await first.remove();
  assert.ok(deleted.status === 200 || deleted.status === 204, `DELETE → ${deleted.status}`);
  const again = await rawRequest(gh.mcpUrl, { headers: MCP_HEADERS, body: initializeMessage() });
  assert.equal(again.status, 200, again.text);
});

it('ALLOWED_ORIGINS and ALLOWED_HOSTS extend what is accepted; others stay 403', async (t) => {
  const gh = await startGatehouse({
    t,
    servers: {},
    env: { ALLOWED_ORIGINS: 'https://app.example.com,https://other.example.com', ALLOWED_HOSTS: 'gw.example.com' },
  });
  const init = (headers) => rawRequest(gh.mcpUrl, { headers: { ...MCP_HEADERS, ...headers }, body: initializeMessage() });
  assert.equal((await init({ origin: 'https://app.example.com' })).status, 200);
  assert.equal((await init({ origin: 'https://other.example.com' })).status, 200);
  assert.equal((await init({ origin: 'https://evil.example.com' })).status, 403);
  assert.equal((await init({ host: 'gw.example.com' })).status, 200);
  assert.equal((await init({ host: `gw.example.com:${gh.port}` })).status, 200);
  assert.equal((await init({ host: 'evil.example.com' })).status, 403);
});

it('PUBLIC_URL\'s host is an allowed Host', async (t) => {
  const gh = await startGatehouse({ t, servers: {}, env: { PUBLIC_URL: 'https://mcp.example.org' } });
  const res = await rawRequest(gh.mcpUrl, { headers: { ...MCP_HEADERS, host: 'mcp.example.org' }, body: initializeMessage() });
  assert.equal(res.status, 200, res.text);
  const evil = await rawRequest(gh.mcpUrl, { headers: { ...MCP_HEADERS, host: 'evil.example.com' }, body: initializeMessage() });
  assert.equal(evil.status, 403, evil.text);
});

it('a .env file is read, and the real environment wins over it', async (t) => {
  const bad = checkConfig({ servers: { everything: everythingStdio() }, dotenv: 'MAX_BODY_BYTES=lots\n' });
  assert.equal(bad.code, 2, `a bad value from .env is reported: ${bad.stdout} ${bad.stderr}`);
  assert.ok(bad.stderr.includes('MAX_BODY_BYTES'), bad.stderr);
  const overridden = checkConfig({
    servers: { everything: everythingStdio() }, dotenv: 'MAX_BODY_BYTES=lots\n', env: { MAX_BODY_BYTES: '4096' },
  });
  assert.equal(overridden.code, 0, `the real environment wins: ${overridden.stderr}`);

  const gh = await startGatehouse({ t, servers: {}, dotenv: '# comment\nALLOWED_ORIGINS=https://from-dotenv.example\n' });
  const res = await rawRequest(gh.mcpUrl, {
    headers: { ...MCP_HEADERS, origin: 'https://from-dotenv.example' }, body: initializeMessage(),
  });
  assert.equal(res.status, 200, `ALLOWED_ORIGINS from .env: ${res.text}`);
});

it('servers file values: env, ${env:NAME} and ${secret:NAME} reach the upstream', async (t) => {
  const data = tempDir('gatehouse-subst-');
  t.after(data.cleanup);
  const shared = path.join(data.dir, 'shared');
  fs.mkdirSync(shared);
  fs.writeFileSync(path.join(shared, 'marker.txt'), 'x');
  const gh = await startGatehouse({
    t,
    env: { GH_IT_PLAIN: 'plain-value', GH_IT_SECRET: 's3cr3t-from-env', GH_IT_DIR: shared },
    servers: {
      everything: everythingStdio({
        env: { STATIC_K: 'static-v', FROM_ENV: '${env:GH_IT_PLAIN}', FROM_SECRET: '${secret:GH_IT_SECRET}' },
      }),
      fs: filesystemStdio('${env:GH_IT_DIR}'),
    },
  });
  const client = await connectClient(gh.mcpUrl, { t });
  const upstreamEnv = JSON.parse(resultText(await client.callTool({ name: 'everything__get-env', arguments: {} })));
  assert.equal(upstreamEnv.STATIC_K, 'static-v');
  assert.equal(upstreamEnv.FROM_ENV, 'plain-value');
  assert.equal(upstreamEnv.FROM_SECRET, 's3cr3t-from-env');
  const listing = await client.callTool({ name: 'fs__list_directory', arguments: { path: shared } });
  assert.equal(listing.isError, undefined, resultText(listing));
  assert.match(resultText(listing), /\[FILE\] marker\.txt/);
});

it('check-config refuses what serve would (REDIS_URL, ENCRYPTION_KEY, a CIDR, an SQLite URL without a file), naming it', () => {
  for (const [name, value] of [['REDIS_URL', 'redis://localhost/x'], ['ENCRYPTION_KEY', 'garbage'],
    ['TRUSTED_PROXIES', '127.0.0.1/abc'], ['DATABASE_URL', 'sqlite://']]) {
    const res = checkConfig({ servers: {}, env: { [name]: value } });
    assert.equal(res.code, 2, `${name}=${value}: ${res.stdout} ${res.stderr}`);
    assert.ok(res.stderr.includes(name), `${name} named: ${res.stderr}`);
  }
  assert.equal(checkConfig({ servers: {}, dotenv: 'UPSTREAM_IDENTITY_SECRET=     # signs X-Gateway-Token\n' }).code, 0,
    'an uncommented example line with an empty value (the comment is not taken as the value)');
  const extra = runCli(['check-config', 'other.json']);
  assert.equal(extra.code, 2, 'check-config takes no file argument (MCP_SERVERS_FILE)');
});

it('a first start that fails after making the admin still shows its key (the next start shows none)', async (t) => {
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => blocker.close());
  const { dir, cleanup } = tempDir('gatehouse-firststart-');
  t.after(cleanup);
  fs.writeFileSync(path.join(dir, 'servers.json'), '{"mcpServers":{}}');
  const res = runCli(['serve'], { cwd: dir, env: { GATEWAY_PORT: String(blocker.address().port),
    DATABASE_URL: `sqlite://${path.join(dir, 'g.db')}`, MCP_SERVERS_FILE: path.join(dir, 'servers.json') } });
  assert.notEqual(res.code, 0, 'the port is taken');
  assert.match(res.stdout, /Admin API key \(shown once\): gh_\S+/, `${res.stdout} ${res.stderr}`);
  const key = /gh_\S+/.exec(res.stdout)[0];
  // the key works: the command line lists it on the store it was made in
  const listed = runCli(['apikey', 'list'], { cwd: dir, env: { DATABASE_URL: `sqlite://${path.join(dir, 'g.db')}` } });
  assert.equal(listed.code, 0, listed.stderr);
  assert.ok(listed.stdout.includes(key.slice(0, 11)), `${listed.stdout} / ${key}`);
});

it('the command line refuses what it would get wrong: unknown or valueless options, a store no gateway made, odd names', async (t) => {
  const gh = await startGatehouse({ t, servers: {} });
  const cli = (args, opts) => gh.cli(args, opts);
  assert.equal(cli(['groups', 'create', 'Eng']).code, 0);
  for (const args of [['grants', 'set', 'Eng', 'github', '--allow'], ['grants', 'set', 'Eng', 'jira', '--alow', 'read'],
    ['grants', 'set', 'Eng', 's3', '--deny', 'delete', '--allow', 'get'], ['apikey', 'create', '--user', 'x@example.com', '--expires', '30'],
    ['apikey', 'create', '--user', 'x@example.com', '--expires-days', '0'], ['apikey', 'create', '--user', 'x@example.com', '--expires-days', '1.5'],
    ['users', 'list', '--frobnicate'], ['users', 'set-admin', 'admin@localhost', 'maybe'], ['groups', 'create', 'Big', '--priority', '1e9']]) {
    const res = cli(args);
    assert.equal(res.code, 2, `${args.join(' ')}: ${res.stdout} ${res.stderr}`);
  }
  const grants = cli(['grants', 'list', 'Eng']);
  assert.equal(grants.stdout.trim(), '', `nothing was granted: ${grants.stdout}`);
  assert.ok(!cli(['users', 'list']).stdout.includes('x@example.com'), 'no user made by a refused command');
  const only = cli(['grants', 'set', 'Eng', 'github', '--allow', 'read,list']);
  assert.equal(only.code, 0, only.stderr);
  assert.match(only.stdout, /only read, list/);
  // the admin API's group name rules
  for (const name of ['a/b', '..', ' padded', 'eng', 'Zero\u200bWidth']) assert.notEqual(cli(['groups', 'create', name]).code, 0, name);
  assert.notEqual(cli(['groups', 'delete', 'MCP-Admin']).code, 0);
  assert.notEqual(cli(['groups', 'rename', 'Eng', 'mcp-admin']).code, 0);
  assert.equal(cli(['users', 'set-admin', 'admin@localhost', 'TRUE']).code, 0, 'true in any case');
  // a store that does not exist is not made
  const { dir, cleanup } = tempDir('gatehouse-nostore-');
  t.after(cleanup);
  const file = path.join(dir, 'none.db');
  const res = runCli(['apikey', 'create', '--user', 'admin@localhost', '--admin'], { cwd: dir, env: { DATABASE_URL: `sqlite://${file}` } });
  assert.equal(res.code, 1, res.stdout);
  assert.match(res.stderr, /no database at/);
  assert.equal(fs.existsSync(file), false, 'no database made');
  // provisioning before the first start: migrate makes it, then an administrator of one's own
  assert.equal(runCli(['migrate'], { cwd: dir, env: { DATABASE_URL: `sqlite://${file}` } }).code, 0);
  const made = runCli(['apikey', 'create', '--user', 'ops@example.com', '--admin'], { cwd: dir, env: { DATABASE_URL: `sqlite://${file}` } });
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /^gh_/);
});
