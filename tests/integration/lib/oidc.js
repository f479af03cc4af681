// A real OpenID Connect provider for tests: `oidc-provider` (npm, v9) on 127.0.0.1 and a free port, signing
// with keys the test owns (RS256 and ES256 by default), so tests can also mint access tokens that the IdP's
// JWKS vouches for, and restart it on the same port with another key set (key rotation).
// Logins are non-interactive: the IdP's interaction page signs in the account named by the authorization
// request's `login_hint` (else `defaultAccount`) and grants the requested scopes, so a client only follows
// redirects. signIn() drives the gateway's /auth/login → IdP → /auth/callback that way with fetch.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';
import {
  SignJWT, exportJWK, exportSPKI, generateKeyPair,
} from 'jose';
import { freePort } from './procs.js';

const DEFAULT_ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['Engineering'] },
};

/**
 * Signing keys: [{alg, kid, privateJwk, publicJwk, privateKey, publicKey}]. `specs` is a list of algs
 * ('RS256' | 'ES256') or {alg, kid}. Kids are random unless given.
 */
export async function generateSigningKeys(specs = ['RS256', 'ES256']) {
  const keys = [];
  for (const spec of specs) {
    const { alg, kid = `${(typeof spec === 'string' ? spec : spec.alg).toLowerCase()}-${crypto.randomBytes(6).toString('hex')}` } =
      typeof spec === 'string' ? { alg: spec } : spec;
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) });
    const privateJwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    keys.push({ alg, kid, privateJwk, publicJwk, privateKey, publicKey, publicPem: await exportSPKI(publicKey) });
  }
  return keys;
}

/** base64url of a string or buffer. */
export function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** A compact JWS-looking token with any header and payload and a given (possibly bogus) signature. */
export function rawJwt(header, payload, signature = '') {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${signature}`;
}

/** An HS256 JWT signed with `secret` (string or Buffer): used for the "HS256 with the RSA public key" attack. */
export function hs256Jwt(header, payload, secret) {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', ...header }))}.${b64url(JSON.stringify(payload))}`;
  const signature = crypto.createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${signature}`;
}

/**
 * Starts the IdP.
 * @param {object} [options]
 * @param {object} [options.accounts]     {accountId: claims} (email, email_verified, name, groups, roles, …)
 * @param {Array}  [options.keys]         signing keys from generateSigningKeys() (default: one RS256, one ES256)
 * @param {string} [options.clientId]     default 'gatehouse'
 * @param {string} [options.clientSecret] default random
 * @param {string[]} [options.redirectUris] default: 'http://127.0.0.1/auth/callback' as a native client, which
 *                                        oidc-provider matches on any loopback port (RFC 8252), so the gateway's
 *                                        port need not be known in advance
 * @param {string} [options.defaultAccount] account used when the request has no login_hint
 * @param {object|Function} [options.t]   node:test context (or `after`): stop() is registered on it
 * @returns {Promise<idp>} {issuer, port, url, jwksUrl, discoveryUrl, clientId, clientSecret, keys, accounts,
 *   mintAccessToken(claims, opts), keyFor(alg|kid), gatewayEnv(extra), addRedirectUri(uri), restart({keys}), stop(),
 *   logs (interaction/errors seen)}
 */
export async function startOidcProvider({
  accounts = DEFAULT_ACCOUNTS,
  keys,
  clientId = 'gatehouse',
  clientSecret = crypto.randomBytes(24).toString('base64url'),
  redirectUris = ['http://127.0.0.1/auth/callback'],
  defaultAccount,
  t,
  port: wantedPort,
} = {}) {
  const port = wantedPort ?? await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const state = {
    keys: keys ?? await generateSigningKeys(['RS256', 'ES256']),
    redirectUris: [...redirectUris],
    accounts,
  };
  const logs = [];
  let server = null;
  let provider = null;
  const sockets = new Set();

  function makeProvider() {
    const native = state.redirectUris.some((u) => /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(\/|$)/.test(u));
    const config = {
      clients: [{
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: state.redirectUris,
        ...(native ? { application_type: 'native' } : {}),
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      }],
      // Any token endpoint auth method the gateway might pick works too.
      clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
      pkce: { required: () => true },
      jwks: { keys: state.keys.map((k) => k.privateJwk) },
      cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
      conformIdTokenClaims: false,
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name', 'preferred_username', 'groups', 'roles'],
        groups: ['groups', 'roles'],
      },
      scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
      features: { devInteractions: { enabled: false } },
      findAccount: (ctx, id) => {
        const claims = state.accounts[id];
        if (!claims) return undefined;
        return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
      },
      // Grant whatever OIDC scopes the request asks for: no consent screen.
      loadExistingGrant: async (ctx) => {
        const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
        if (grantId) return ctx.oidc.provider.Grant.find(grantId);
        const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
        grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' ') || 'openid');
        const claimNames = [...ctx.oidc.requestParamClaims ?? []];
        if (claimNames.length) grant.addOIDCClaims(claimNames);
        await grant.save();
        return grant;
      },
      ttl: { Interaction: 300, Session: 3600, Grant: 3600, AuthorizationCode: 120, AccessToken: 600, IdToken: 600 },
      renderError: (ctx, out) => {
        logs.push(`renderError: ${JSON.stringify(out)}`);
        ctx.type = 'application/json';
        ctx.body = out;
      },
    };
    const p = new Provider(issuer, config);
    p.on('server_error', (ctx, error) => logs.push(`server_error: ${error.stack ?? error}`));
    p.on('authorization.error', (ctx, error) => logs.push(`authorization.error: ${error.message} ${error.error_description ?? ''}`));
    p.on('grant.error', (ctx, error) => logs.push(`grant.error: ${error.message} ${error.error_description ?? ''}`));
    return p;
  }

  // The interaction page, answered without a human: login as login_hint, then grant the requested scopes.
  async function interaction(req, res) {
    try {
      const details = await provider.interactionDetails(req, res);
      const { prompt, params } = details;
      if (prompt.name === 'login') {
        const accountId = params.login_hint || defaultAccount || Object.keys(state.accounts)[0];
        logs.push(`interaction login: ${accountId}`);
        if (!state.accounts[accountId]) {
          await provider.interactionFinished(req, res, { error: 'access_denied', error_description: `unknown account ${accountId}` }, { mergeWithLastSubmission: false });
          return;
        }
        await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
        return;
      }
      if (prompt.name === 'consent') {
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
        const missingScope = prompt.details.missingOIDCScope ?? [];
        if (missingScope.length) grant.addOIDCScope(missingScope.join(' '));
        const missingClaims = prompt.details.missingOIDCClaims ?? [];
        if (missingClaims.length) grant.addOIDCClaims(missingClaims);
        for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
        const grantId = await grant.save();
        logs.push(`interaction consent: ${grantId}`);
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`unexpected prompt ${prompt.name}`);
    } catch (error) {
      logs.push(`interaction error: ${error.stack ?? error}`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(error.message ?? error));
    }
  }

  async function listen() {
    provider = makeProvider();
    const callback = provider.callback();
    server = http.createServer((req, res) => {
      if (/^\/interaction\/[^/?]+\/?(\?|$)/.test(req.url) && req.method === 'GET') {
        interaction(req, res);
      } else {
        callback(req, res);
      }
    });
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve(); });
    });
  }

  async function close() {
    if (!server) return;
    const s = server;
    server = null;
    await new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections?.();
      for (const socket of sockets) socket.destroy();
    });
  }

  await listen();

  const idp = {
    issuer,
    url: issuer,
    port,
    discoveryUrl: `${issuer}/.well-known/openid-configuration`,
    jwksUrl: `${issuer}/jwks`,
    clientId,
    clientSecret,
    logs,
    get keys() { return state.keys; },
    get accounts() { return state.accounts; },
    get provider() { return provider; },
    /** The current key for an alg ('RS256' | 'ES256') or a kid. */
    keyFor(algOrKid = 'RS256') {
      const key = state.keys.find((k) => k.kid === algOrKid) ?? state.keys.find((k) => k.alg === algOrKid);
      if (!key) throw new Error(`the IdP has no key ${algOrKid} (has ${state.keys.map((k) => `${k.alg}/${k.kid}`).join(', ')})`);
      return key;
    },
    /**
     * A JWT access token signed with one of the IdP's keys (or `key`).
     * Defaults: iss = issuer, aud = clientId, sub = 'alice', iat = now, exp = now + expiresIn (300 s);
     * `claims` override any of them (exp: null / nbf: null drop the claim).
     * @param {object} [opts] {alg ('RS256'|'ES256'), kid (header kid; default the key's), key (a key object from
     *   generateSigningKeys, e.g. one the IdP does not publish), expiresIn (seconds, may be negative),
     *   header (extra protected-header fields)}
     */
    async mintAccessToken(claims = {}, { alg = 'RS256', kid, key, expiresIn = 300, header = {} } = {}) {
      const signing = key ?? idp.keyFor(alg);
      const now = Math.floor(Date.now() / 1000);
      const payload = { iss: issuer, aud: clientId, sub: 'alice', iat: now, exp: now + expiresIn, ...claims };
      for (const [name, value] of Object.entries(payload)) if (value === null || value === undefined) delete payload[name];
      return new SignJWT(payload)
        .setProtectedHeader({ alg: signing.alg, typ: 'JWT', kid: kid ?? signing.kid, ...header })
        .sign(signing.privateKey);
    },
    /** The gateway's OIDC_* settings for this IdP (plus `extra`). */
    gatewayEnv(extra = {}) {
      return { OIDC_ISSUER: issuer, OIDC_CLIENT_ID: clientId, OIDC_CLIENT_SECRET: clientSecret, ...extra };
    },
    /** Allows one more redirect URI for the client (takes effect at once and across restarts). */
    async addRedirectUri(uri) {
      state.redirectUris.push(uri);
      const client = await provider.Client.find(clientId);
      if (client && !client.redirectUris.includes(uri)) client.redirectUris.push(uri);
    },
    /** Adds or replaces an account. */
    setAccount(id, claims) { state.accounts = { ...state.accounts, [id]: claims }; },
    /**
     * Stops and starts the IdP on the SAME port and issuer, with `keys` (a new key set: rotation) if given.
     * Sessions and grants are lost, accounts and the client kept.
     */
    async restart({ keys: nextKeys } = {}) {
      await close();
      if (nextKeys) state.keys = nextKeys;
      await listen();
    },
    async stop() { await close(); },
  };
  if (t) (typeof t === 'function' ? t : t.after.bind(t))(() => idp.stop());
  return idp;
}

// ---- a browser-less user agent: fetch with manual redirects and a per-origin cookie jar ---------------------

/** Cookies per origin: {name: {value, path}}. */
export class CookieJar {
  constructor() { this.byOrigin = new Map(); }

  /** Stores the Set-Cookie headers of `res` (a fetch Response) received from `url`. Returns them, raw. */
  store(url, res) {
    const origin = new URL(url).origin;
    const raw = typeof res.headers.getSetCookie === 'function' ? res.headers.getSetCookie() : [];
    for (const line of raw) {
      const parsed = parseSetCookie(line);
      if (!parsed) continue;
      if (!this.byOrigin.has(origin)) this.byOrigin.set(origin, new Map());
      const cookies = this.byOrigin.get(origin);
      if (parsed.expired) cookies.delete(parsed.name);
      else cookies.set(parsed.name, { value: parsed.value, path: parsed.attributes.path ?? '/' });
    }
    return raw;
  }

  /** The Cookie header value for a request to `url` ('' when none). */
  header(url) {
    const { origin, pathname } = new URL(url);
    const cookies = this.byOrigin.get(origin);
    if (!cookies) return '';
    return [...cookies.entries()]
      .filter(([, c]) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map(([name, c]) => `${name}=${c.value}`).join('; ');
  }

  get(url, name) {
    return this.byOrigin.get(new URL(url).origin)?.get(name)?.value;
  }
}

/** Parses one Set-Cookie line: {name, value, attributes (lower-case keys), expired}. */
export function parseSetCookie(line) {
  const parts = line.split(';').map((p) => p.trim());
  const first = parts.shift();
  const eq = first.indexOf('=');
  if (eq <= 0) return null;
  const attributes = {};
  for (const part of parts) {
    const i = part.indexOf('=');
    if (i < 0) attributes[part.toLowerCase()] = true;
    else attributes[part.slice(0, i).trim().toLowerCase()] = part.slice(i + 1).trim();
  }
  const maxAge = attributes['max-age'] !== undefined ? Number(attributes['max-age']) : undefined;
  const expires = attributes.expires ? Date.parse(attributes.expires) : undefined;
  const expired = (maxAge !== undefined && maxAge <= 0) || (expires !== undefined && expires < Date.now());
  return { name: first.slice(0, eq).trim(), value: first.slice(eq + 1).trim(), attributes, expired };
}

/**
 * Follows redirects by hand from `url`, keeping cookies in `jar`, while `follow(nextUrl, response)` says so.
 * Returns {responses: [{url, status, location, setCookie, body}], last, lastUrl}. Bounded by maxRedirects.
 */
export async function browse(url, { jar = new CookieJar(), follow = () => true, maxRedirects = 15, headers = {} } = {}) {
  const responses = [];
  let current = url;
  for (let i = 0; i <= maxRedirects; i++) {
    const cookie = jar.header(current);
    const res = await fetch(current, { redirect: 'manual', headers: { ...headers, ...(cookie ? { cookie } : {}) } });
    const setCookie = jar.store(current, res);
    const location = res.headers.get('location');
    const body = await res.text();
    const entry = { url: current, status: res.status, location, setCookie, headers: res.headers, body };
    responses.push(entry);
    if (res.status < 300 || res.status >= 400 || !location) return { responses, last: entry, lastUrl: current, jar };
    const next = new URL(location, current).toString();
    if (!follow(next, entry)) return { responses, last: entry, lastUrl: current, jar };
    current = next;
  }
  throw new Error(`more than ${maxRedirects} redirects from ${url}: ${responses.map((r) => `${r.status} ${r.url}`).join(' → ')}`);
}

/**
 * Signs `accountId` in at the gateway: GET /auth/login?return_to=…&login_hint=<account> → IdP (non-interactive)
 * → /auth/callback, then stops (the return_to page itself is not fetched).
 * @returns {Promise<{sessionCookie, sessionSetCookie, finalLocation, finalStatus, responses, jar, callback}>}
 *   sessionCookie = value of `gatehouse_session` set by the callback (undefined if none); finalLocation = the
 *   Location the callback redirected to; callback = the callback's response entry.
 */
export async function signIn(gatewayUrl, accountId, { returnTo, jar = new CookieJar(), extraParams = {} } = {}) {
  const gateway = new URL(gatewayUrl).origin;
  const login = new URL('/auth/login', gateway);
  if (returnTo !== undefined) login.searchParams.set('return_to', returnTo);
  if (accountId !== undefined && accountId !== null) login.searchParams.set('login_hint', accountId);
  for (const [k, v] of Object.entries(extraParams)) login.searchParams.set(k, v);
  const { responses, last } = await browse(login.toString(), {
    jar,
    // Leave the gateway only for the IdP; on the gateway, only /auth/callback is followed.
    follow: (next) => {
      const u = new URL(next);
      if (u.origin !== gateway) return true;
      return u.pathname === '/auth/callback';
    },
  });
  const callback = [...responses].reverse().find((r) => new URL(r.url).origin === gateway && new URL(r.url).pathname === '/auth/callback');
  const sessionSetCookie = callback?.setCookie.find((c) => c.startsWith('gatehouse_session='));
  return {
    sessionCookie: sessionSetCookie ? parseSetCookie(sessionSetCookie).value : undefined,
    sessionSetCookie,
    finalLocation: callback?.location ?? null,
    finalStatus: callback?.status ?? last.status,
    callback,
    responses,
    jar,
  };
}
