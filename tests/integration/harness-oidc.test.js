// The OIDC test IdP itself (lib/oidc.js), without the gateway: discovery and JWKS as published, a scripted
// authorization-code + PKCE sign-in through a tiny relying party on loopback (the same driver, signIn(), the
// gateway tests use), minted access tokens verifiable against the IdP's JWKS, and key rotation on restart.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { signIn, startOidcProvider, generateSigningKeys } from './lib/oidc.js';

const ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['Engineering', 'MCP-GitHub'] },
  bob: { email: 'bob@example.org', email_verified: true, name: 'Bob Other', roles: ['Gatehouse.Admin'] },
};

/** A minimal relying party: /auth/login → IdP (code, PKCE S256, state, nonce, login_hint); /auth/callback. */
async function startRelyingParty(idp) {
  const discovery = await (await fetch(idp.discoveryUrl)).json();
  const pending = new Map();
  const seen = { tokens: [], idTokens: [] };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${server.address().port}`);
    try {
      if (url.pathname === '/auth/login') {
        const state = crypto.randomBytes(12).toString('base64url');
        const nonce = crypto.randomBytes(12).toString('base64url');
        const verifier = crypto.randomBytes(32).toString('base64url');
        const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
        pending.set(state, { nonce, verifier, returnTo: url.searchParams.get('return_to') ?? '/' });
        const authorize = new URL(discovery.authorization_endpoint);
        authorize.search = new URLSearchParams({
          response_type: 'code',
          client_id: idp.clientId,
          redirect_uri: `${rp.url}/auth/callback`,
          scope: 'openid email profile',
          state,
          nonce,
          code_challenge: challenge,
          code_challenge_method: 'S256',
          login_hint: url.searchParams.get('login_hint') ?? '',
        }).toString();
        res.writeHead(302, { location: authorize.toString(), 'set-cookie': `rp_login=${state}; HttpOnly; Path=/` }).end();
        return;
      }
      if (url.pathname === '/auth/callback') {
        const flow = pending.get(url.searchParams.get('state'));
        if (!flow) { res.writeHead(400).end('bad state'); return; }
        const tokenRes = await fetch(discovery.token_endpoint, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`${idp.clientId}:${idp.clientSecret}`).toString('base64')}`,
          },
          body: new URLSearchParams({
            grant_type: 'authorization_code',
            code: url.searchParams.get('code'),
            redirect_uri: `${rp.url}/auth/callback`,
            code_verifier: flow.verifier,
          }),
        });
        const tokens = await tokenRes.json();
        seen.tokens.push({ status: tokenRes.status, tokens });
        if (tokenRes.status !== 200) { res.writeHead(502).end(JSON.stringify(tokens)); return; }
        const jwks = createLocalJWKSet(await (await fetch(discovery.jwks_uri)).json());
        const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer: idp.issuer, audience: idp.clientId });
        seen.idTokens.push(payload);
        if (payload.nonce !== flow.nonce) { res.writeHead(400).end('bad nonce'); return; }
        res.writeHead(302, {
          location: flow.returnTo,
          'set-cookie': `gatehouse_session=${payload.sub}; HttpOnly; SameSite=Lax; Path=/`,
        }).end();
        return;
      }
      res.writeHead(404).end();
    } catch (error) {
      res.writeHead(500).end(String(error.stack ?? error));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const rp = {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  return rp;
}

describe('the OIDC test IdP (lib/oidc.js)', () => {
  let idp;
  let rp;
  before(async () => {
    idp = await startOidcProvider({ accounts: ACCOUNTS });
    rp = await startRelyingParty(idp);
  });
  after(async () => {
    await rp?.stop();
    await idp?.stop();
  });

  it('publishes discovery and a JWKS with its RS256 and ES256 public keys (no private parts)', async () => {
    const discovery = await (await fetch(idp.discoveryUrl)).json();
    assert.equal(discovery.issuer, idp.issuer);
    assert.equal(discovery.jwks_uri, idp.jwksUrl);
    assert.ok(discovery.code_challenge_methods_supported.includes('S256'));
    const jwks = await (await fetch(idp.jwksUrl)).json();
    const kids = jwks.keys.map((k) => k.kid).sort();
    assert.deepEqual(kids, idp.keys.map((k) => k.kid).sort());
    for (const key of jwks.keys) assert.equal(key.d, undefined, 'private part published');
  });

  it('signs an account in non-interactively (login_hint) and the relying party gets its claims in the ID token', async () => {
    const result = await signIn(rp.url, 'alice', { returnTo: '/after' });
    assert.equal(result.finalStatus, 302, JSON.stringify(result.responses.map((r) => [r.status, r.url, r.body.slice(0, 200)])) + idp.logs.join('\n'));
    assert.equal(result.finalLocation, '/after');
    assert.equal(result.sessionCookie, 'alice');
    const claims = rp.seen.idTokens.at(-1);
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(claims.name, 'Alice Example');
    assert.deepEqual(claims.groups, ['Engineering', 'MCP-GitHub']);

    const other = await signIn(rp.url, 'bob');
    assert.equal(other.sessionCookie, 'bob');
    assert.equal(other.finalLocation, '/');
    assert.deepEqual(rp.seen.idTokens.at(-1).roles, ['Gatehouse.Admin']);
  });

  it('refuses an unknown account (no session at the relying party)', async () => {
    const result = await signIn(rp.url, 'mallory');
    assert.equal(result.sessionCookie, undefined);
  });

  it('mints access tokens its JWKS verifies; restart with a new key set rotates the JWKS on the same issuer', async () => {
    // One retry: a socket kept alive from before the IdP's restart fails the first fetch after it.
    const getJson = async (url) => { try { return await (await fetch(url)).json(); } catch { return (await fetch(url)).json(); } };
    const jwksOf = async () => createLocalJWKSet(await getJson(idp.jwksUrl));
    for (const alg of ['RS256', 'ES256']) {
      const token = await idp.mintAccessToken({ sub: 'alice', email: 'alice@example.com' }, { alg });
      const { payload, protectedHeader } = await jwtVerify(token, await jwksOf(), { issuer: idp.issuer, audience: idp.clientId });
      assert.equal(protectedHeader.alg, alg);
      assert.equal(payload.email, 'alice@example.com');
    }
    const oldToken = await idp.mintAccessToken({}, { alg: 'RS256' });
    const port = idp.port;
    await idp.restart({ keys: await generateSigningKeys(['RS256']) });
    assert.equal(idp.port, port);
    const fresh = await idp.mintAccessToken({}, { alg: 'RS256' });
    await jwtVerify(fresh, await jwksOf(), { issuer: idp.issuer });
    await assert.rejects(jwtVerify(oldToken, await jwksOf(), { issuer: idp.issuer }), /no applicable key|JWKSNoMatchingKey|matching/i);
    // Sign-in still works after the restart.
    const result = await signIn(rp.url, 'alice');
    assert.equal(result.sessionCookie, 'alice');
  });
});
