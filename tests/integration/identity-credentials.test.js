// What the gateway remembers of the credentials it is shown: a token is judged by how it came (our session
// cookie, or a bearer token), and made-up tokens, however many and however long, are not kept.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { startGatehouse } from './lib/index.js';
import { whoami } from './lib/identity.js';

async function sessionOf(gh) {
  const made = await gh.api('POST', '/apikeys', { user_email: 'admin@localhost', name: 'for a session' });
  assert.equal(made.status, 201, made.text);
  const signIn = await fetch(`${gh.url}/auth/session`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ api_key: made.body.key }),
  });
  assert.equal(signIn.status, 200, await signIn.text());
  return /gatehouse_session=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')?.[1];
}

it('a session token counts as the session cookie only, whichever way it was shown first', async (t) => {
  const gh = await startGatehouse({ t });
  const first = await sessionOf(gh);
  assert.equal((await whoami(gh, { authorization: `Bearer ${first}` })).status, 401, 'not a bearer token');
  assert.equal((await whoami(gh, { cookie: `gatehouse_session=${first}` })).status, 200, 'the refusal above is not the cookie\'s');
  const second = await sessionOf(gh);
  assert.equal((await whoami(gh, { cookie: `gatehouse_session=${second}` })).status, 200);
  assert.equal((await whoami(gh, { authorization: `Bearer ${second}` })).status, 401, 'accepted as a cookie, still no bearer token');
});

it('made-up tokens are not kept: thousands of distinct 15 KB ones leave the memory as it was', async (t) => {
  const gh = await startGatehouse({ t, env: { RATE_LIMIT_PER_IP: '10', RATE_LIMIT_PER_MINUTE: '10' } });
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${gh.pid}/status`, 'utf8'))[1]) * 1024;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const send = (i) => new Promise((resolve, reject) => {
    const filler = 'A'.repeat(15000);
    // Half malformed, half shaped as signed JWTs (their signatures are checked, and fail).
    const token = i % 2 ? `x${i}.${filler}.y` : `${b64({ alg: 'RS256', kid: `k${i}` })}.${b64({ sub: `s${i}`, pad: filler })}.c2ln`;
    const req = http.get(`${gh.url}/servers`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
  });
  for (let i = 0; i < 200; i += 1) await send(i); // warm up (allocator pools, buffers)
  const before = rss();
  const statuses = {};
  for (let i = 200; i < 4200; i += 8) {
    for (const s of await Promise.all(Array.from({ length: 8 }, (_, j) => send(i + j)))) statuses[s] = (statuses[s] ?? 0) + 1;
  }
  agent.destroy();
  assert.deepEqual(Object.keys(statuses).sort(), ['401', '429'].filter((s) => statuses[s]), JSON.stringify(statuses));
  const grown = rss() - before;
  // Kept whole, 4,000 such tokens would be 60 MB.
  assert.ok(grown < 15 * 1024 * 1024, `the gateway grew ${(grown / 1048576).toFixed(1)} MB`);
});
