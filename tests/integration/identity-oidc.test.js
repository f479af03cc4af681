// Identity, part 4: browser sign-in with OpenID Connect against a real IdP (oidc-provider, lib/oidc.js):
// /auth/login → IdP (code + PKCE S256 + state + nonce, login_hint passed on) → /auth/callback → session cookie
// → /auth/me; the first sign-in creates the user with no groups; admins from the `roles` claim; group sync
// with OIDC_GROUP_SYNC; OIDC_ALLOWED_DOMAINS refusal; bad state → 400; logout needs the page's CSRF token.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { everythingStdio, startGatehouse } from './lib/index.js';
import { tempDir } from './lib/procs.js';
import { browse, CookieJar, parseSetCookie, signIn, startOidcProvider } from './lib/oidc.js';
import { request, visibleServers, whoami } from './lib/identity.js';

const SERVERS = { alpha: everythingStdio() };
const accounts = () => ({
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['Engineering', 'MCP-GitHub'] },
  bob: { email: 'bob@elsewhere.org', email_verified: true, name: 'Bob Elsewhere', groups: ['Engineering'] },
  root: { email: 'root@example.com', email_verified: true, name: 'Root', roles: ['Gatehouse.Admin'], groups: [] },
  carol: { email: 'carol@example.com', email_verified: true, name: 'Carol', roles: ['Reader'], groups: ['Sales'] },
});
const sessionHeaders = (cookie) => ({ cookie: `gatehouse_session=${cookie}` });

function describeFlow(result, idp) {
  return result.responses.map((r) => `${r.status} ${r.url}${r.location ? ` → ${r.location}` : ''} ${r.body.slice(0, 150)}`).join('\n') +
    `\n--- IdP ---\n${idp.logs.slice(-10).join('\n')}`;
}

describe('OIDC sign-in (no group sync)', () => {
  let idp;
  let gh;
  before(async () => {
    idp = await startOidcProvider({ accounts: accounts() });
    gh = await startGatehouse({ servers: SERVERS, env: idp.gatewayEnv({ OIDC_ADMIN_ROLES: 'Gatehouse.Admin,Other.Role' }) });
  });
  after(async () => {
    await gh?.stop();
    await idp?.stop();
  });

  it('/auth/login redirects to the IdP with code, PKCE S256, state, nonce and the login_hint, and sets gatehouse_login', async () => {
    const discovery = await (await fetch(idp.discoveryUrl)).json();
    const res = await request(gh, 'GET', '/auth/login?return_to=%2Fx&login_hint=alice');
    assert.equal(res.status, 302, res.text);
    const location = new URL(res.headers.get('location'));
    assert.equal(`${location.origin}${location.pathname}`, discovery.authorization_endpoint);
    const p = location.searchParams;
    assert.equal(p.get('response_type'), 'code');
    assert.equal(p.get('client_id'), idp.clientId);
    assert.equal(p.get('redirect_uri'), `${gh.url}/auth/callback`);
    assert.equal(p.get('code_challenge_method'), 'S256');
    assert.match(p.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.ok((p.get('state') ?? '').length >= 16, 'state');
    assert.ok((p.get('nonce') ?? '').length >= 16, 'nonce');
    assert.equal(p.get('login_hint'), 'alice');
    assert.deepEqual((p.get('scope') ?? '').split(' ').sort(), ['email', 'openid', 'profile']);
    const cookies = res.headers.getSetCookie().map(parseSetCookie);
    // one login cookie per sign-in, named by its state (two tabs' sign-ins both finish)
    const login = cookies.find((c) => c.name === `gatehouse_login_${p.get('state')}`);
    assert.ok(login, `no gatehouse_login_<state> cookie: ${res.headers.getSetCookie().join(' | ')}`);
    assert.ok(login.attributes.httponly, 'gatehouse_login HttpOnly');
    const maxAge = Number(login.attributes['max-age']);
    assert.ok(maxAge > 0 && maxAge <= 3600, `gatehouse_login short-lived, Max-Age ${login.attributes['max-age']}`);
    // A second login gets a different state and challenge.
    const again = new URL((await request(gh, 'GET', '/auth/login?login_hint=alice')).headers.get('location'));
    assert.notEqual(again.searchParams.get('state'), p.get('state'));
    assert.notEqual(again.searchParams.get('code_challenge'), p.get('code_challenge'));
  });

  it('first sign-in creates the user with no groups; the session cookie is HttpOnly, SameSite=Lax, Path=/; /auth/me', async () => {
    assert.equal((await gh.api('GET', '/users/alice%40example.com')).status, 404, 'no such user before the sign-in');
    const result = await signIn(gh.url, 'alice', { returnTo: '/x' });
    assert.equal(result.finalStatus, 302, describeFlow(result, idp));
    assert.equal(result.finalLocation, '/x');
    assert.ok(result.sessionCookie, describeFlow(result, idp));
    const attrs = parseSetCookie(result.sessionSetCookie).attributes;
    assert.ok(attrs.httponly, 'HttpOnly');
    assert.equal(String(attrs.samesite).toLowerCase(), 'lax');
    assert.equal(attrs.path, '/');

    const me = await whoami(gh, sessionHeaders(result.sessionCookie));
    assert.equal(me.status, 200, me.text);
    assert.deepEqual(
      { email: me.body.email, name: me.body.name, groups: me.body.groups, is_admin: me.body.is_admin, auth_method: me.body.auth_method },
      { email: 'alice@example.com', name: 'Alice Example', groups: [], is_admin: false, auth_method: 'session' },
    );
    const user = await gh.api('GET', '/users/alice%40example.com');
    assert.equal(user.status, 200, user.text);
    assert.deepEqual(user.body.groups, [], 'IdP groups are not copied without OIDC_GROUP_SYNC');
    assert.equal(user.body.is_admin, false);
    // The session authenticates the other routes too.
    const seen = await visibleServers(gh, sessionHeaders(result.sessionCookie));
    assert.equal(seen.status, 200, seen.text);
    assert.deepEqual(seen.ids, []);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: sessionHeaders(result.sessionCookie) })).status, 403);
  });

  it('return_to defaults to "/"; a second sign-in reuses the same user', async () => {
    const result = await signIn(gh.url, 'alice');
    assert.equal(result.finalLocation, '/', describeFlow(result, idp));
    const list = await gh.api('GET', '/users?q=alice%40example.com');
    assert.equal(list.body.total, 1);
  });

  it('a value of the roles claim listed in OIDC_ADMIN_ROLES makes an admin; another role does not', async () => {
    const root = await signIn(gh.url, 'root');
    const me = await whoami(gh, sessionHeaders(root.sessionCookie));
    assert.equal(me.status, 200, describeFlow(root, idp));
    assert.equal(me.body.is_admin, true);
    assert.deepEqual((await visibleServers(gh, sessionHeaders(root.sessionCookie))).ids, ['alpha']);
    assert.equal((await request(gh, 'GET', '/mcp-admin/api/users', { headers: sessionHeaders(root.sessionCookie) })).status, 200);
    const carol = await signIn(gh.url, 'carol');
    assert.equal((await whoami(gh, sessionHeaders(carol.sessionCookie))).body.is_admin, false);
  });

  it('/auth/me without a session, or with a forged session cookie → 401', async () => {
    assert.equal((await whoami(gh)).status, 401);
    assert.equal((await whoami(gh, sessionHeaders('forged.value.here'))).status, 401);
    const real = await signIn(gh.url, 'alice');
    const c = real.sessionCookie;
    const flipped = `${c.slice(0, 10)}${c[10] === 'A' ? 'B' : 'A'}${c.slice(11)}`;
    assert.equal((await whoami(gh, sessionHeaders(flipped))).status, 401, 'a modified session cookie');
  });

  it('callback with a bad or missing state → 400, and no session', async () => {
    // A real login cookie, then a callback whose state does not match it.
    const jar = new CookieJar();
    const start = await fetch(`${gh.url}/auth/login?login_hint=alice`, { redirect: 'manual' });
    jar.store(`${gh.url}/`, start);
    const cookie = jar.header(`${gh.url}/auth/callback`);
    for (const query of ['code=abc&state=not-the-state', 'code=abc', 'state=x', '']) {
      const res = await request(gh, 'GET', `/auth/callback${query ? `?${query}` : ''}`, { headers: { cookie } });
      assert.equal(res.status, 400, `/auth/callback?${query}: ${res.status} ${res.text.slice(0, 200)}`);
      assert.ok(!res.headers.getSetCookie().some((l) => l.startsWith('gatehouse_session=') && !parseSetCookie(l).expired),
        `a session cookie on a bad callback (${query})`);
    }
    // A genuine state replayed without the login cookie is refused too.
    const state = new URL(start.headers.get('location')).searchParams.get('state');
    assert.equal((await request(gh, 'GET', `/auth/callback?code=abc&state=${encodeURIComponent(state)}`)).status, 400);
  });

  it('two sign-ins started in one browser both finish; a stray callback (any state, any error) ends neither', async () => {
    const jar = new CookieJar();
    const origin = new URL(gh.url).origin;
    const toCallback = async () => {
      const { lastUrl, last } = await browse(`${origin}/auth/login?login_hint=alice`, { jar, follow: (n) => new URL(n).origin !== origin });
      return new URL(last.location, lastUrl).toString();
    };
    const tabA = await toCallback();
    const tabB = await toCallback();
    // A link from anywhere: another state, with an error the page would show. Refused for its state first
    // (400, the provider's "error" not shown), and neither sign-in's cookie is cleared.
    const stray = await fetch(`${origin}/auth/callback?state=x&error=access_denied&error_description=Call+0800`, {
      redirect: 'manual', headers: { cookie: jar.header(`${origin}/auth/callback`) } });
    const strayText = await stray.text();
    assert.equal(stray.status, 400, strayText);
    assert.doesNotMatch(strayText, /access_denied/);
    assert.deepEqual(stray.headers.getSetCookie(), [], 'a stray callback clears no cookie');
    for (const [name, url] of [['tab A', tabA], ['tab B', tabB]]) {
      const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header(url) } });
      jar.store(url, res);
      assert.equal(res.status, 302, `${name}: ${res.status} ${(await res.text()).slice(0, 300)}`);
      const session = res.headers.getSetCookie().map(parseSetCookie).find((c) => c.name === 'gatehouse_session');
      assert.ok(session?.value, `${name} signed in`);
      assert.equal((await whoami(gh, sessionHeaders(session.value))).body.email, 'alice@example.com');
    }
  });

  it('abandoned sign-ins do not pile up login cookies: the third one under way clears the others', async () => {
    const jar = new CookieJar();
    const start = async () => {
      const res = await fetch(`${gh.url}/auth/login?login_hint=alice`, { redirect: 'manual', headers: { cookie: jar.header(`${gh.url}/auth/login`) } });
      jar.store(`${gh.url}/auth/login`, res);
    };
    const pending = () => jar.header(`${gh.url}/auth/callback`).split('; ').filter((c) => c.startsWith('gatehouse_login_')).length;
    for (let i = 0; i < 12; i += 1) {
      await start();
      assert.ok(pending() <= 2, `login cookies after ${i + 1} sign-ins: ${pending()}`);
    }
  });

  it('a return_to too long for the login cookie falls back to /', async () => {
    const long = `/mcp-admin/users?q=${'x'.repeat(1100)}`;
    const result = await signIn(gh.url, 'alice', { returnTo: long });
    assert.equal(result.finalStatus, 302, describeFlow(result, idp));
    assert.equal(result.finalLocation, '/');
    const short = await signIn(gh.url, 'alice', { returnTo: '/mcp-admin/users?q=x' });
    assert.equal(short.finalLocation, '/mcp-admin/users?q=x');
  });

  it('a deleted account\'s session cookie does not come back with an account made again for the address', async () => {
    const result = await signIn(gh.url, 'carol');
    const headers = sessionHeaders(result.sessionCookie);
    assert.equal((await whoami(gh, headers)).status, 200);
    assert.equal((await gh.api('DELETE', '/users/carol%40example.com')).status, 204);
    assert.equal((await whoami(gh, headers)).status, 401);
    // (an account is told apart by its creation second: the new one is made in a later second than the old)
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 50));
    assert.equal((await gh.api('POST', '/users', { email: 'carol@example.com', name: 'Carol Again' })).status, 201);
    const again = await whoami(gh, headers);
    assert.equal(again.status, 401, `the old cookie names the deleted account: ${again.text}`);
    assert.equal((await whoami(gh, sessionHeaders((await signIn(gh.url, 'carol')).sessionCookie))).status, 200, 'a new sign-in works');
  });

  it('logout: GET shows a button that posts the CSRF token; POST without it clears nothing; with it clears the cookie', async () => {
    const result = await signIn(gh.url, 'alice');
    const headers = sessionHeaders(result.sessionCookie);
    const cleared = (res) => res.headers.getSetCookie().map(parseSetCookie).find((c) => c.name === 'gatehouse_session');

    const shown = await request(gh, 'GET', '/auth/logout', { headers });
    assert.equal(shown.status, 200, shown.text);
    assert.equal(cleared(shown), undefined, 'a GET (a link, an <img>) signs nobody out');
    assert.match(shown.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    const token = /name="csrf_token" value="([^"]+)"/.exec(shown.text)?.[1];
    assert.ok(token, shown.text);

    // A form on another site posts without the token (or with another session's): refused, cookie kept.
    for (const body of ['', 'csrf_token=forged']) {
      const res = await request(gh, 'POST', '/auth/logout', {
        headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body });
      assert.equal(res.status, 403, `${body}: ${res.text}`);
      assert.equal(cleared(res), undefined, body);
    }
    assert.equal((await whoami(gh, headers)).status, 200);

    for (const how of ['form', 'header']) {
      const res = how === 'form'
        ? await request(gh, 'POST', '/auth/logout', {
          headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf_token=${encodeURIComponent(token)}` })
        : await request(gh, 'POST', '/auth/logout', { headers: { ...headers, 'x-csrf-token': token } });
      assert.ok([302, 303].includes(res.status), `${how}: ${res.status} ${res.text}`);
      assert.equal(res.headers.get('location'), '/');
      const c = cleared(res);
      assert.ok(c, `${how}: no gatehouse_session Set-Cookie: ${res.headers.getSetCookie().join(' | ')}`);
      assert.equal(c.attributes['max-age'], '0');
      assert.equal(c.attributes.path, '/');
    }
    // No cookie: nothing to end, straight home.
    const none = await request(gh, 'GET', '/auth/logout');
    assert.equal(none.status, 302);
  });

  it('the protected-resource metadata names the IdP as authorization server', async () => {
    const meta = await request(gh, 'GET', '/.well-known/oauth-protected-resource');
    assert.equal(meta.status, 200, meta.text);
    assert.deepEqual(meta.body.authorization_servers, [idp.issuer]);
  });
});

describe('OIDC sign-in with OIDC_GROUP_SYNC and OIDC_ALLOWED_DOMAINS', () => {
  let idp;
  let gh;
  before(async () => {
    idp = await startOidcProvider({ accounts: accounts() });
    gh = await startGatehouse({
      servers: SERVERS,
      env: idp.gatewayEnv({
        OIDC_GROUP_SYNC: 'true',
        OIDC_ALLOWED_DOMAINS: 'example.com,example.net',
        OIDC_SCOPES: 'openid email profile groups',
      }),
    });
  });
  after(async () => {
    await gh?.stop();
    await idp?.stop();
  });

  it('IdP groups the admin API would refuse are not synced; one differing in letter case is the existing group', async () => {
    assert.equal((await gh.api('POST', '/groups', { name: 'Support' })).status, 201);
    idp.setAccount('carol', { ...accounts().carol, groups: ['support', '/Eng/Backend', '..', 'zero\u200bwidth', ' padded', 'x'.repeat(200),
      'Valid Team', '/Platform', '\u2601\ufe0f Cloud'] });
    const result = await signIn(gh.url, 'carol');
    const me = await whoami(gh, sessionHeaders(result.sessionCookie));
    assert.equal(me.status, 200, describeFlow(result, idp));
    // (Keycloak's full group path "/Platform" is the top-level group Platform; an emoji with its selector is a name)
    assert.deepEqual([...me.body.groups].sort(), ['Platform', 'Support', 'Valid Team', '\u2601\ufe0f Cloud'].sort());
    const names = (await gh.api('GET', '/groups?per_page=500')).body.items.map((g) => g.name);
    for (const bad of ['support', '/Eng/Backend', '..', 'zero\u200bwidth', ' padded']) assert.ok(!names.includes(bad), `${JSON.stringify(bad)} made`);
    assert.ok(gh.logs.some((l) => l.includes('IdP group not synced') && l.includes('/Eng/Backend')), 'logged');
    // the IdP dropping the group in other case removes the membership it made
    idp.setAccount('carol', { ...accounts().carol, groups: ['Valid Team'] });
    const again = await whoami(gh, sessionHeaders((await signIn(gh.url, 'carol')).sessionCookie));
    assert.deepEqual(again.body.groups, ['Valid Team']);
  });

  it('groups from the IdP are synced on sign-in, and again on the next sign-in', async () => {
    const first = await signIn(gh.url, 'alice');
    const me = await whoami(gh, sessionHeaders(first.sessionCookie));
    assert.equal(me.status, 200, describeFlow(first, idp));
    assert.deepEqual([...me.body.groups].sort(), ['Engineering', 'MCP-GitHub']);
    // An admin's manual membership survives the sync; the IdP's change of groups is applied.
    assert.equal((await gh.api('POST', '/groups', { name: 'Manual' })).status, 201);
    assert.equal((await gh.api('PUT', '/groups/Manual/members/alice%40example.com')).status < 300, true);
    idp.setAccount('alice', { ...accounts().alice, groups: ['Engineering', 'Platform'] });
    const second = await signIn(gh.url, 'alice');
    const after2 = await whoami(gh, sessionHeaders(second.sessionCookie));
    assert.deepEqual([...after2.body.groups].sort(), ['Engineering', 'Manual', 'Platform']);
    const platform = await gh.api('GET', '/groups/Platform');
    assert.equal(platform.status, 200, 'a synced group that did not exist is created');
  });

  it('an IdP group named MCP-Admin gives administrator rights, and the audit log says so (and when it goes)', async () => {
    idp.setAccount('alice', { ...accounts().alice, groups: ['Engineering', 'MCP-Admin'] });
    const promoted = await signIn(gh.url, 'alice');
    assert.equal((await whoami(gh, sessionHeaders(promoted.sessionCookie))).body.is_admin, true);
    idp.setAccount('alice', { ...accounts().alice, groups: ['Engineering'] });
    const demoted = await signIn(gh.url, 'alice');
    assert.equal((await whoami(gh, sessionHeaders(demoted.sessionCookie))).body.is_admin, false);
    const audit = (await gh.api('GET', '/audit?actor=idp&target=MCP-Admin&per_page=10')).body.items;
    assert.deepEqual(audit.map((e) => e.action).reverse(), ['group.member.add', 'group.member.remove']);
    assert.deepEqual(audit.at(-1).details.after, { added: ['alice@example.com'], source: 'IdP group sync' });
  });

  it('an email outside the allowed domains is refused with 403 and gets no session', async () => {
    const result = await signIn(gh.url, 'bob');
    assert.equal(result.finalStatus, 403, describeFlow(result, idp));
    assert.equal(result.sessionCookie, undefined);
    assert.equal((await gh.api('GET', '/users/bob%40elsewhere.org')).status, 404, 'no user created');
    // An allowed domain still works.
    const carol = await signIn(gh.url, 'carol');
    assert.equal((await whoami(gh, sessionHeaders(carol.sessionCookie))).status, 200);
  });
});

describe('OIDC sign-in while the store is locked', () => {
  it('a first sign-in gets a 503 page (and a first bearer token a 503) while the store cannot write; both work after', async (t) => {
    const idp = await startOidcProvider({ accounts: { newbie: { email: 'newbie@example.com', email_verified: true, name: 'N' } } });
    t.after(() => idp.stop());
    const { dir, cleanup } = tempDir('gatehouse-locked-');
    t.after(cleanup);
    const file = path.join(dir, 'g.db');
    const gh = await startGatehouse({ servers: {}, env: idp.gatewayEnv({ DATABASE_URL: `sqlite://${file}` }) });
    t.after(() => gh.stop());
    // another process holds the write lock longer than the store's busy timeout (5 s)
    const holder = spawn('sqlite3', [file], { stdio: ['pipe', 'ignore', 'inherit'] });
    t.after(() => holder.kill());
    holder.stdin.write('BEGIN EXCLUSIVE;\nSELECT 1;\n');
    await new Promise((r) => setTimeout(r, 300));
    const locked = await signIn(gh.url, 'newbie');
    assert.equal(locked.finalStatus, 503, describeFlow(locked, idp));
    assert.match(locked.callback.body, /<html[\s\S]*Try again/i, 'an HTML page saying what to do');
    const token = await idp.mintAccessToken({ sub: 'fresh', email: 'fresh@example.com' });
    const bearer = await whoami(gh, { authorization: `Bearer ${token}` });
    assert.equal(bearer.status, 503, bearer.text);
    holder.stdin.end('COMMIT;\n');
    await new Promise((r) => holder.on('exit', r));
    assert.equal((await whoami(gh, { authorization: `Bearer ${token}` })).status, 200, 'the 503 is not remembered');
    const later = await signIn(gh.url, 'newbie');
    assert.equal(later.finalStatus, 302, describeFlow(later, idp));
  });
});
