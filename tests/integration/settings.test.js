// Settings a user sees the effect of: MAX_SESSIONS, ALLOWED_ORIGINS, ALLOWED_HOSTS, PUBLIC_URL, the .env file,
// and values substituted into the servers file (${env:NAME}, ${secret:NAME}).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  MCP_HEADERS, checkConfig, connectClient, everythingStdio, filesystemStdio, initializeMessage, rawRequest,
  rawSession, resultText, startGatehouse, tempDir,
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
