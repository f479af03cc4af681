// Identity, part 5: bearer JWTs from the IdP (RS256 and ES256, verified with the JWKS from discovery) on
// every route; every bad shape (expired, nbf in the future, wrong iss, wrong aud, alg none, HS256 signed with
// the RSA public key, bad signature, unknown key, truncated, oversized) → 401 with the reason in the
// gateway's JSON log lines and not in the response; key rotation without restarting the gateway.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { everythingStdio, startGatehouse } from './lib/index.js';
import { generateSigningKeys, hs256Jwt, rawJwt, startOidcProvider } from './lib/oidc.js';
import {
  assertUnauthorized, bearerHeaders, eventually, mcpInitialize, nowSeconds, request, visibleServers, waitForLog, whoami,
} from './lib/identity.js';

const SERVERS = { alpha: everythingStdio() };
const ALICE = { sub: 'alice', email: 'alice@example.com', name: 'Alice Example' };
// Words a client must never be told (they belong in the log).
const LEAKY = /expir|signature|issuer|audience|\bnbf\b|\bkid\b|\balg\b|HS256|RS256|ES256|jwks|too (large|long|big)|malformed/i;

describe('IdP bearer tokens', () => {
  let idp;
  let gh;
  before(async () => {
    idp = await startOidcProvider({ accounts: { alice: ALICE } });
    gh = await startGatehouse({ servers: SERVERS, env: idp.gatewayEnv() });
  });
  after(async () => {
    await gh?.stop();
    await idp?.stop();
  });

  for (const alg of ['RS256', 'ES256']) {
    it(`a valid ${alg} access token is accepted on /auth/me, /servers and /mcp (auth_method "oidc")`, async () => {
      const token = await idp.mintAccessToken(ALICE, { alg });
      const me = await whoami(gh, bearerHeaders(token));
      assert.equal(me.status, 200, me.text);
      assert.equal(me.body.email, 'alice@example.com');
      assert.equal(me.body.auth_method, 'oidc');
      assert.equal(me.body.is_admin, false);
      assert.equal((await visibleServers(gh, bearerHeaders(token))).status, 200);
      assert.equal((await mcpInitialize(gh, bearerHeaders(token))).status, 200);
    });
  }

  it('an email claim does not take over an account that another IdP account signs in to; an unverified one names nobody', async () => {
    const owner = await idp.mintAccessToken({ sub: 'carol-1', email: 'carol@example.com', name: 'Carol' });
    const first = await whoami(gh, bearerHeaders(owner));
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.email, 'carol@example.com');
    // another subject with the same address: refused, not signed in as carol
    const from = gh.logs.length;
    const other = await idp.mintAccessToken({ sub: 'mallory', email: 'carol@example.com' });
    const refused = await whoami(gh, bearerHeaders(other));
    assert.equal(refused.status, 403, refused.text);
    assert.doesNotMatch(refused.text, /carol/);
    await waitForLog(gh, from, /belongs to another identity/, { what: 'the refusal in the log' });
    assert.equal((await whoami(gh, bearerHeaders(owner))).status, 200, 'the owner still signs in');
    // an account an administrator made (bound to nobody yet) is bound by the first IdP account to use it
    assert.equal((await gh.api('POST', '/users', { email: 'erin@example.com', name: 'Erin' })).status, 201);
    const erin = await whoami(gh, bearerHeaders(await idp.mintAccessToken({ sub: 'erin-1', email: 'erin@example.com' })));
    assert.equal(erin.status, 200, erin.text);
    const second = await whoami(gh, bearerHeaders(await idp.mintAccessToken({ sub: 'erin-2', email: 'erin@example.com' })));
    assert.equal(second.status, 403, second.text);
    // email_verified false: the address is not used (here there is no other: refused)
    const unverified = await idp.mintAccessToken({ sub: 'dave-1', email: 'dave@example.com', email_verified: false });
    const noEmail = await whoami(gh, bearerHeaders(unverified));
    assert.equal(noEmail.status, 401, noEmail.text);
    // preferred_username is whatever the user chose at most providers (OIDC Core 5.1): it names nobody, not
    // even an account an administrator made and nobody signed in to yet
    assert.equal((await gh.api('POST', '/users', { email: 'boss@example.com', name: 'Boss', is_admin: true })).status, 201);
    const chosen = await idp.mintAccessToken({ sub: 'mallory-1', email: 'mallory@evil.example', email_verified: false,
      preferred_username: 'boss@example.com' });
    const mallory = await whoami(gh, bearerHeaders(chosen));
    assert.equal(mallory.status, 401, mallory.text);
    const noEmailAtAll = await whoami(gh, bearerHeaders(await idp.mintAccessToken({ sub: 'mallory-2', preferred_username: 'boss@example.com' })));
    assert.equal(noEmailAtAll.status, 401, noEmailAtAll.text);
    // In Microsoft Entra's tokens (with tid) it is the UPN, in a domain the tenant verified: it names the user
    const named = await idp.mintAccessToken({ sub: 'dave-2', tid: 'tenant-1', oid: 'dave-oid', email: 'boss@example.com',
      email_verified: false, preferred_username: 'dave@example.com' });
    const dave = await whoami(gh, bearerHeaders(named));
    assert.equal(dave.status, 200, dave.text);
    assert.equal(dave.body.email, 'dave@example.com');
  });

  it('an array aud containing the client id is accepted', async () => {
    const token = await idp.mintAccessToken({ ...ALICE, aud: ['something-else', idp.clientId] });
    assert.equal((await whoami(gh, bearerHeaders(token))).status, 200);
  });

  it('every bad token → 401, the reason in the JSON log, not in the body', async () => {
    const now = nowSeconds();
    const rsa = idp.keyFor('RS256');
    const good = await idp.mintAccessToken(ALICE);
    const [h, p, s] = good.split('.');
    const flip = (str, i) => `${str.slice(0, i)}${str[i] === 'A' ? 'B' : 'A'}${str.slice(i + 1)}`;
    const [stranger] = await generateSigningKeys([{ alg: 'RS256', kid: rsa.kid }]);
    const [unknownKey] = await generateSigningKeys(['RS256']);
    const padding = 'x'.repeat(17 * 1024);
    const payload = { iss: idp.issuer, aud: idp.clientId, iat: now, exp: now + 300, ...ALICE };
    const cases = [
      ['expired', await idp.mintAccessToken(ALICE, { expiresIn: -600 }), /exp/i],
      ['nbf in the future', await idp.mintAccessToken({ ...ALICE, nbf: now + 600 }), /nbf|not (yet|before)/i],
      ['wrong iss', await idp.mintAccessToken({ ...ALICE, iss: 'http://127.0.0.1:9/not-the-issuer' }), /iss/i],
      ['wrong aud', await idp.mintAccessToken({ ...ALICE, aud: 'another-client' }), /aud/i],
      ['alg none', rawJwt({ alg: 'none', typ: 'JWT', kid: rsa.kid }, payload, ''), /alg|none/i],
      ['HS256 signed with the RSA public key (PEM)', hs256Jwt({ kid: rsa.kid }, payload, rsa.publicPem), /alg|HS256/i],
      ['HS256 signed with the RSA public key (JWK JSON)', hs256Jwt({ kid: rsa.kid }, payload, JSON.stringify(rsa.publicJwk)), /alg|HS256/i],
      ['bad signature (a flipped character)', `${h}.${p}.${flip(s, 20)}`, /signature/i],
      ['tampered payload', `${h}.${Buffer.from(JSON.stringify({ ...payload, email: 'root@example.com' })).toString('base64url')}.${s}`, /signature/i],
      ['signed by another key under the IdP kid', await idp.mintAccessToken(ALICE, { key: stranger }), /signature/i],
      ['unknown kid', await idp.mintAccessToken(ALICE, { key: unknownKey }), /kid|key/i],
      ['truncated to two parts', `${h}.${p}`, /malformed|part|format|parse|invalid/i],
      ['truncated mid-payload', good.slice(0, h.length + 12), /malformed|part|format|parse|invalid/i],
      ['oversized', await idp.mintAccessToken({ ...ALICE, padding }), /large|long|size|bytes|oversize|exceed/i],
    ];
    for (const [what, token, reason] of cases) {
      const from = gh.logs.length;
      const res = await request(gh, 'GET', '/servers', { headers: bearerHeaders(token) });
      assertUnauthorized(gh, res, what);
      assert.doesNotMatch(res.text, LEAKY, `${what}: the reason leaks into the response body: ${res.text.slice(0, 300)}`);
      assert.ok(!res.text.includes(token.slice(0, 40)), `${what}: the token is echoed back`);
      await waitForLog(gh, from, reason, { what: `${what}: a JSON log line with the reason (${reason})` });
      const mcp = await mcpInitialize(gh, bearerHeaders(token));
      assertUnauthorized(gh, mcp, `${what} on /mcp`);
      assert.doesNotMatch(mcp.text, LEAKY, `${what}: the reason leaks into the /mcp body`);
    }
    // The good token still works after all that.
    assert.equal((await whoami(gh, bearerHeaders(good))).status, 200);
  });
});

describe('IdP key rotation', () => {
  it('after the IdP restarts with a new key, tokens with the new kid are accepted without restarting the gateway; the removed key is refused', async (t) => {
    const idp = await startOidcProvider({ accounts: { alice: ALICE }, keys: await generateSigningKeys(['RS256']), t });
    // The unknown-kid refetch is rate-limited (OIDC_JWKS_MIN_REFRESH_S, 60 s by default): shorten it here.
    const gh = await startGatehouse({ servers: SERVERS, env: idp.gatewayEnv({ OIDC_JWKS_MIN_REFRESH_S: '2' }), t });
    const oldToken = await idp.mintAccessToken(ALICE);
    assert.equal((await whoami(gh, bearerHeaders(oldToken))).status, 200, 'the first key works');

    const oldKid = idp.keyFor('RS256').kid;
    await idp.restart({ keys: await generateSigningKeys(['RS256', 'ES256']) });
    assert.notEqual(idp.keyFor('RS256').kid, oldKid);
    const newToken = await idp.mintAccessToken(ALICE, { alg: 'RS256' });
    // An unknown kid makes the gateway fetch the JWKS again (rate-limited, hence the bounded retry).
    await eventually('a token with the new kid to be accepted', async () => (await whoami(gh, bearerHeaders(newToken))).status === 200,
      { timeoutMs: 20000, intervalMs: 500 });
    assert.equal((await whoami(gh, bearerHeaders(await idp.mintAccessToken(ALICE, { alg: 'ES256' })))).status, 200);
    const freshOld = await idp.mintAccessToken(ALICE, { key: { ...idp.keyFor('RS256'), kid: oldKid } });
    assert.equal((await whoami(gh, bearerHeaders(freshOld))).status, 401, 'a token naming the removed kid');
    assertUnauthorized(gh, await request(gh, 'GET', '/servers', { headers: bearerHeaders(oldToken) }), 'a token signed by the removed key');
    assert.equal(gh.proc.exitCode, null, 'the gateway was not restarted');
  });
});
