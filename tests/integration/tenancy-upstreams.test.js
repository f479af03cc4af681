// Multi-tenancy, part 4: what reaches HTTP upstreams. Tenant endpoints route a tenant's calls to its own
// server-everything instance (seen through `get-env`), with URL checks; a ${secret:NAME} in an HTTP server's
// headers carries the tenant's value; forwardIdentity sends X-User-* / X-Gateway-* headers and a verifiable
// X-Gateway-Token (HS256, UPSTREAM_IDENTITY_SECRET), never the client's own Authorization or spoofed X-User-*,
// and servers without forwardIdentity get none of them (fixtures/header-recorder.js records every request).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { jwtVerify } from 'jose';
import { everythingStdio, startEverythingHttp, startGatehouse, streamableHttpEntry, waitFor } from './lib/index.js';
import {
  bearerOf, callText, distinctiveSecret, makeGroup, makeUser, mcpSession, newEncryptionKey, putGrant, putKey,
  startHeaderRecorder,
} from './lib/tenancy.js';

const envOf = (res, what) => JSON.parse(callText(res, what));

describe('multi-tenancy: tenant endpoints', () => {
  it('route a tenant\'s calls to its own URL; others keep the configured one; checked URLs; GET/PUT/DELETE', async (t) => {
    const [a, b] = await Promise.all([
      startEverythingHttp('streamableHttp', { t, env: { INSTANCE_MARK: 'configured-A' } }),
      startEverythingHttp('streamableHttp', { t, env: { INSTANCE_MARK: 'tenant-B' } }),
    ]);
    const gh = await startGatehouse({ servers: { remote: streamableHttpEntry(a.url), local: everythingStdio() }, t });
    await makeGroup(gh, 'Tenant-A', { isTenant: true });
    await makeGroup(gh, 'Tenant-B', { isTenant: true });
    await putGrant(gh, 'Tenant-A', 'remote');
    await putGrant(gh, 'Tenant-B', 'remote');
    const ua = await makeUser(gh, 'ua@a.example', { groups: ['Tenant-A'] });
    const ub = await makeUser(gh, 'ub@b.example', { groups: ['Tenant-B'] });

    const sb = await mcpSession(gh, ub.headers);
    assert.equal(envOf(await sb.call('remote__get-env'), 'ub before').INSTANCE_MARK, 'configured-A');

    const put = await gh.api('PUT', '/tenants/Tenant-B/endpoints/remote', { url: b.url });
    assert.equal(put.status, 201, put.text);
    assert.equal(put.body.url, b.url);
    assert.equal((await gh.api('PUT', '/tenants/Tenant-B/endpoints/remote', { url: b.url })).status, 200);
    const list = await gh.api('GET', '/tenants/Tenant-B/endpoints');
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.body.items.map((e) => [e.group, e.server, e.url]), [['Tenant-B', 'remote', b.url]]);
    assert.equal((await gh.api('GET', '/tenants/Tenant-B/endpoints/remote')).body.url, b.url);
    assert.equal((await gh.api('GET', '/tenants/Tenant-A/endpoints/remote')).status, 404);

    // The open session of a Tenant-B user is routed on its next call; Tenant-A and the admin are not.
    assert.equal(envOf(await sb.call('remote__get-env'), 'ub routed').INSTANCE_MARK, 'tenant-B');
    const sa = await mcpSession(gh, ua.headers);
    assert.equal(envOf(await sa.call('remote__get-env'), 'ua').INSTANCE_MARK, 'configured-A');
    const admin = await mcpSession(gh, gh.authHeaders, '/mcp/remote');
    assert.equal(envOf(await admin.call('get-env'), 'admin').INSTANCE_MARK, 'configured-A');
    const perServer = await mcpSession(gh, ub.headers, '/mcp/remote');
    assert.equal(perServer.status, 200, perServer.text);
    assert.equal(envOf(await perServer.call('get-env'), 'ub per-server').INSTANCE_MARK, 'tenant-B');

    for (const url of ['ftp://127.0.0.1/mcp', 'http://169.254.169.254/latest/meta-data', 'http://metadata.google.internal/mcp',
      'http://metadata.google.internal./mcp', 'http://[::a9fe:a9fe]/', 'http://[64:ff9b::a9fe:a9fe]/', 'http://[::ffff:169.254.169.254]/',
      'http://[fe80::1]/mcp', 'file:///etc/passwd', 'not a url',
      // A percent-encoded NUL ended the host for the resolver: the metadata check saw another name.
      'http://metadata.google.internal%00.example/mcp', 'http://localhost%00.x.example:1/mcp']) {
      const bad = await gh.api('PUT', '/tenants/Tenant-A/endpoints/remote', { url });
      assert.equal(bad.status, 400, `${url}: ${bad.status} ${bad.text}`);
      if (url !== 'not a url') assert.equal(bad.body.error.code, 'invalid_url', `${url}: ${bad.text}`);
    }
    const stdio = await gh.api('PUT', '/tenants/Tenant-A/endpoints/local', { url: b.url });
    assert.equal(stdio.status, 400, `a stdio server cannot be routed: ${stdio.text}`);
    assert.equal((await gh.api('PUT', '/tenants/Tenant-A/endpoints/no-such-server', { url: b.url })).status, 404);
    assert.equal((await gh.api('PUT', '/tenants/No-Group/endpoints/remote', { url: b.url })).status, 404);
    assert.deepEqual((await gh.api('GET', '/tenants/Tenant-A/endpoints')).body.items, [], 'refused PUTs stored nothing');
    assert.equal((await mcpSession(gh, ua.headers)).status, 200);
    assert.equal(envOf(await sa.call('remote__get-env'), 'ua after refusals').INSTANCE_MARK, 'configured-A');

    const del = await gh.api('DELETE', '/tenants/Tenant-B/endpoints/remote');
    assert.equal(del.status, 204, del.text);
    assert.equal(envOf(await sb.call('remote__get-env'), 'ub after delete').INSTANCE_MARK, 'configured-A');
    const audit = await gh.api('GET', '/audit?target=Tenant-B&per_page=100');
    const actions = audit.body.items.map((e) => e.action);
    for (const action of ['endpoint.create', 'endpoint.update', 'endpoint.delete']) assert.ok(actions.includes(action), actions.join());
  });
});

describe('multi-tenancy: credentials in HTTP headers', () => {
  it('a ${secret:NAME} in an HTTP server\'s headers carries the caller\'s tenant value', async (t) => {
    const rec = await startHeaderRecorder({ t, name: 'hdr' });
    const secretA = distinctiveSecret('hdr-a');
    const secretB = distinctiveSecret('hdr-b');
    const gh = await startGatehouse({
      servers: { hdr: streamableHttpEntry(rec.url, { headers: { 'X-Api-Key': '${secret:HDR_TOKEN}' } }) },
      env: { ENCRYPTION_KEY: newEncryptionKey() },
      t,
    });
    for (const [group, value] of [['Tenant-HA', secretA], ['Tenant-HB', secretB]]) {
      await makeGroup(gh, group, { isTenant: true });
      await putGrant(gh, group, 'hdr');
      const stored = await putKey(gh, group, 'hdr', 'HDR_TOKEN', value);
      assert.equal(stored.status, 201, stored.text);
    }
    const ua = await makeUser(gh, 'ha@a.example', { groups: ['Tenant-HA'] });
    const ub = await makeUser(gh, 'hb@b.example', { groups: ['Tenant-HB'] });
    const seenBy = async (user) => {
      const s = await mcpSession(gh, user.headers);
      return JSON.parse(callText(await s.call('hdr__whoami'), `whoami as ${user.email}`)).headers['x-api-key'];
    };
    assert.equal(await seenBy(ua), secretA);
    assert.equal(await seenBy(ub), secretB);
    const { requests } = await rec.debug();
    assert.ok(requests.length > 0);
    assert.ok(requests.every((r) => [secretA, secretB].includes(r.headers['x-api-key'])),
      `every upstream request carried one tenant's value: ${JSON.stringify(requests.map((r) => r.headers['x-api-key']))}`);
    const keys = await gh.api('GET', '/tenants/Tenant-HA/keys');
    const output = [...gh.logs, ...gh.stdout, keys.text, (await gh.api('GET', '/audit?per_page=500')).text].join('\n');
    for (const secret of [secretA, secretB]) assert.ok(!output.includes(secret), 'a header secret leaked into logs or the API');
  });

  it('a tenant\'s own endpoint never gets the gateway\'s own value for a slot: its groups must store one', async (t) => {
    const [configured, tenant] = await Promise.all([startHeaderRecorder({ t, name: 'hdr' }), startHeaderRecorder({ t, name: 'hdr' })]);
    const gatewayOwn = distinctiveSecret('gateway-own');
    const tenantOwn = distinctiveSecret('tenant-own');
    const gh = await startGatehouse({
      servers: { hdr: streamableHttpEntry(configured.url, { headers: { 'X-Api-Key': '${secret:HDR_DEFAULT}' } }) },
      env: { ENCRYPTION_KEY: newEncryptionKey(), HDR_DEFAULT: gatewayOwn },
      t,
    });
    await makeGroup(gh, 'Tenant-E', { isTenant: true });
    await putGrant(gh, 'Tenant-E', 'hdr');
    assert.equal((await gh.api('PUT', '/tenants/Tenant-E/endpoints/hdr', { url: tenant.url })).status, 201);
    const user = await makeUser(gh, 'e@e.example', { groups: ['Tenant-E'] });
    const s = await mcpSession(gh, user.headers);
    const refused = await s.call('hdr__whoami');
    const text = JSON.stringify(refused.json ?? refused.text);
    assert.match(text, /needs the credential HDR_DEFAULT for the endpoint of your group /, text);
    assert.ok(!(await tenant.debug()).requests.some((r) => r.headers['x-api-key'] === gatewayOwn),
      'the gateway\'s own value reached the tenant\'s endpoint');

    assert.equal((await putKey(gh, 'Tenant-E', 'hdr', 'HDR_DEFAULT', tenantOwn)).status, 201);
    const seen = JSON.parse(callText(await s.call('hdr__whoami'), 'whoami with the tenant value')).headers['x-api-key'];
    assert.equal(seen, tenantOwn);
    // Everyone else still reaches the configured URL with the gateway's value.
    const admin = await mcpSession(gh, gh.authHeaders, '/mcp/hdr');
    assert.equal(JSON.parse(callText(await admin.call('whoami'), 'admin whoami')).headers['x-api-key'], gatewayOwn);
    assert.ok((await tenant.debug()).requests.every((r) => r.headers['x-api-key'] !== gatewayOwn));
  });

  it('values stored one right after the other (same second) each take effect on the next call', async (t) => {
    const rec = await startHeaderRecorder({ t, name: 'hdr' });
    const gh = await startGatehouse({
      servers: { hdr: streamableHttpEntry(rec.url, { headers: { 'X-Api-Key': '${secret:HDR_TOKEN}' } }) },
      env: { ENCRYPTION_KEY: newEncryptionKey() },
      t,
    });
    await makeGroup(gh, 'Tenant-Fast', { isTenant: true });
    await putGrant(gh, 'Tenant-Fast', 'hdr');
    const user = await makeUser(gh, 'fast@f.example', { groups: ['Tenant-Fast'] });
    const s = await mcpSession(gh, user.headers);
    const seen = async () => JSON.parse(callText(await s.call('hdr__whoami'), 'whoami')).headers['x-api-key'];
    // Three writes well inside a few seconds: each call must carry the value stored just before it.
    for (const tag of ['one', 'two', 'three']) {
      const value = distinctiveSecret(`fast-${tag}`);
      const stored = await putKey(gh, 'Tenant-Fast', 'hdr', 'HDR_TOKEN', value);
      assert.ok([200, 201].includes(stored.status), stored.text);
      assert.equal(await seen(), value, `the value stored as "${tag}"`);
    }
  });
});

describe('multi-tenancy: what a tenant endpoint gets', () => {
  it('only its own group\'s values, only the headers carrying them, no X-Gateway-Token; errors never quote a value', async (t) => {
    const [configured, tenant] = await Promise.all([startHeaderRecorder({ t, name: 'hdr' }), startHeaderRecorder({ t, name: 'hdr' })]);
    const [secretA, secretB, gatewayStatic, gatewayEnv] = ['tenant-a', 'tenant-b', 'literal', 'env'].map(distinctiveSecret);
    const gh = await startGatehouse({
      servers: {
        hdr: streamableHttpEntry(configured.url, {
          forwardIdentity: true,
          headers: { 'X-Api-Key': '${secret:HDR_KEY}', 'X-Static': gatewayStatic, 'X-From-Env': '${env:GW_STATIC}' },
        }),
      },
      env: {
        ENCRYPTION_KEY: newEncryptionKey(), GW_STATIC: gatewayEnv, HDR_KEY: distinctiveSecret('gateway-own'),
        UPSTREAM_IDENTITY_SECRET: `identity-${'s'.repeat(40)}`,
      },
      t,
    });
    await makeGroup(gh, 'Tenant-EA', { isTenant: true, priority: 10 });
    await makeGroup(gh, 'Tenant-EB', { isTenant: true });
    await putGrant(gh, 'Tenant-EA', 'hdr');
    assert.equal((await gh.api('PUT', '/tenants/Tenant-EA/endpoints/hdr', { url: tenant.url })).status, 201);
    assert.equal((await putKey(gh, 'Tenant-EB', 'hdr', 'HDR_KEY', secretB)).status, 201);
    const both = await makeUser(gh, 'ab@e.example', { groups: ['Tenant-EA', 'Tenant-EB'] });
    const s = await mcpSession(gh, both.headers);

    // Tenant-EA's endpoint, and only Tenant-EB has a value: refused, not Tenant-EB's value sent to Tenant-EA.
    const refused = JSON.stringify(await s.call('hdr__whoami'));
    assert.match(refused, /needs the credential HDR_KEY for the endpoint of your group Tenant-EA/, refused);
    const all = () => Promise.all([tenant.debug(), configured.debug()]).then(([a, b]) => JSON.stringify([a, b]));
    assert.ok(!(await all()).includes(secretB), 'Tenant-EB\'s value reached an upstream');

    assert.equal((await putKey(gh, 'Tenant-EA', 'hdr', 'HDR_KEY', secretA)).status, 201);
    const seen = JSON.parse(callText(await s.call('hdr__whoami'), 'whoami at the tenant endpoint')).headers;
    assert.equal(seen['x-api-key'], secretA);
    assert.equal(seen['x-user-email'], 'ab@e.example');
    for (const h of ['x-static', 'x-from-env', 'x-gateway-token']) assert.equal(seen[h], undefined, `${h} reached the tenant's endpoint`);
    assert.ok(!JSON.stringify((await tenant.debug()).requests).includes(gatewayStatic));
    // The configured URL still gets all of them.
    const admin = await mcpSession(gh, gh.authHeaders, '/mcp/hdr');
    const own = JSON.parse(callText(await admin.call('whoami'), 'admin whoami')).headers;
    assert.equal(own['x-static'], gatewayStatic);
    assert.equal(own['x-from-env'], gatewayEnv);
    assert.ok(own['x-gateway-token'], JSON.stringify(own));
  });

  it('an upstream that quotes the credential it got in its refusal: the client and the log see it cut out', async (t) => {
    const secret = `${distinctiveSecret('echoed')}/with/slashes`;
    const echo = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const key = req.headers['x-api-key'];
        if (key === bullets) {  // a value that looks like the mask, quoted 200,000 times (6 MB) in a JSON-RPC error
          res.writeHead(401, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ jsonrpc: '2.0', id: 'x', error: { code: -32001, message: 'no', data: key.repeat(200000) } }));
        }
        res.writeHead(401, { 'content-type': 'text/plain' });
        // as written, and as a JSON encoder that escapes '/' writes it
        res.end(`invalid credentials "Bearer ${key}" {"k":"${key.replaceAll('/', '\\/')}"}`);
      });
    });
    const bullets = '••••••••';
    await new Promise((r) => echo.listen(0, '127.0.0.1', r));
    t.after(() => echo.close());
    const gh = await startGatehouse({
      servers: { echo: streamableHttpEntry(`http://127.0.0.1:${echo.address().port}/mcp`, { headers: { 'X-Api-Key': '${secret:ECHO_KEY}' } }) },
      env: { ENCRYPTION_KEY: newEncryptionKey() },
      t,
    });
    await makeGroup(gh, 'Tenant-Echo', { isTenant: true });
    await putGrant(gh, 'Tenant-Echo', 'echo');
    assert.equal((await putKey(gh, 'Tenant-Echo', 'echo', 'ECHO_KEY', secret)).status, 201);
    const user = await makeUser(gh, 'echo@e.example', { groups: ['Tenant-Echo'] });
    const s = await mcpSession(gh, user.headers, '/mcp/echo');
    const answer = JSON.stringify(await s.call('anything'));
    assert.match(answer, /invalid credentials/, answer);
    assert.match(answer, /•••/, answer);
    const servers = (await gh.api('GET', '/servers')).text;
    const output = [answer, servers, ...gh.logs].join('\n');
    assert.ok(!output.includes(secret), 'the credential was quoted back');
    assert.ok(!output.includes(secret.replaceAll('/', '\\/')), 'the credential was quoted back, JSON-escaped');
    // Redacting a large answer full of a value shaped like the mask ends (it once looped for ever on the io thread).
    assert.equal((await putKey(gh, 'Tenant-Echo', 'echo', 'ECHO_KEY', bullets)).status, 200);
    const s2 = await mcpSession(gh, user.headers, '/mcp/echo');
    assert.ok(s2.status === 200 || s2.status >= 400, s2.text);
    assert.equal((await fetch(`${gh.url}/gateway/health`)).status, 200);
  });

  it('a value the gateway cannot decrypt fails the call (not the gateway\'s own instead); a rename that could not reseal it is refused', async (t) => {
    const [configured] = await Promise.all([startHeaderRecorder({ t, name: 'hdr' })]);
    const [k1, k2] = [newEncryptionKey(), newEncryptionKey()];
    const [tenantValue, gatewayOwn] = ['tenant', 'gateway-own'].map(distinctiveSecret);
    const gh = await startGatehouse({
      servers: { hdr: streamableHttpEntry(configured.url, { headers: { 'X-Api-Key': '${secret:HDR_DEFAULT}' } }) },
      env: { ENCRYPTION_KEY: k1, HDR_DEFAULT: gatewayOwn },
      t,
    });
    await makeGroup(gh, 'Tenant-Rot', { isTenant: true });
    await putGrant(gh, 'Tenant-Rot', 'hdr');
    assert.equal((await putKey(gh, 'Tenant-Rot', 'hdr', 'HDR_DEFAULT', tenantValue)).status, 201);
    const user = await makeUser(gh, 'rot@e.example', { groups: ['Tenant-Rot'] });
    const s = await mcpSession(gh, user.headers);
    assert.equal(JSON.parse(callText(await s.call('hdr__whoami'), 'before')).headers['x-api-key'], tenantValue);

    // Rotated to a key this instance does not have yet (the wrong order: the new key must be everywhere first).
    const rotate = gh.cli(['keys', 'rotate'], { env: { ENCRYPTION_KEY: k2, ENCRYPTION_KEY_PREVIOUS: k1 } });
    assert.equal(rotate.code, 0, rotate.stderr);
    await waitFor(async () => /cannot be decrypted/.test(JSON.stringify(await s.call('hdr__whoami'))),
      { timeoutMs: 15000, intervalMs: 200, what: 'the reload after the rotation' });
    assert.ok(!(await configured.debug()).requests.some((r) => r.headers['x-api-key'] === gatewayOwn && r.rpcMethod === 'tools/call'),
      'the tenant\'s call ran with the gateway\'s own value');

    // Renamed by something that cannot open the value (this instance has only k1 now): refused, nothing renamed.
    const patch = await gh.api('PATCH', '/groups/Tenant-Rot', { name: 'Tenant-Renamed' });
    assert.equal(patch.status, 409, patch.text);
    assert.equal(patch.body.error.code, 'credential_unreadable');
    const cli = gh.cli(['groups', 'rename', 'Tenant-Rot', 'Tenant-Renamed'], { env: { ENCRYPTION_KEY: newEncryptionKey() } });
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /hdr\/HDR_DEFAULT cannot be decrypted/);
    assert.equal((await gh.api('GET', '/groups/Tenant-Rot')).status, 200);
    // With the new key the rename goes through, and the value still opens.
    const renamed = gh.cli(['groups', 'rename', 'Tenant-Rot', 'Tenant-Renamed'], { env: { ENCRYPTION_KEY: k2 } });
    assert.equal(renamed.code, 0, renamed.stderr);
    const listed = gh.cli(['keys', 'list', 'Tenant-Renamed'], { env: { ENCRYPTION_KEY: k2 } });
    assert.match(listed.stdout, new RegExp(`••••${tenantValue.slice(-4)}`), listed.stdout);
  });

  it('the command line checks a value\'s server and slot, and an endpoint\'s server, against the servers file', async (t) => {
    const gh = await startGatehouse({
      servers: { remote: streamableHttpEntry('http://127.0.0.1:9/mcp', { headers: { 'X-Api-Key': '${secret:REMOTE_KEY}' } }), local: everythingStdio() },
      env: { ENCRYPTION_KEY: newEncryptionKey() },
      t,
    });
    await makeGroup(gh, 'Tenant-Cli2', { isTenant: true });
    for (const [args, why] of [
      [['keys', 'set', 'Tenant-Cli2', 'remote', 'REMOTE_KYE'], /no credential slot REMOTE_KYE/],
      [['keys', 'set', 'Tenant-Cli2', 'nowhere', 'REMOTE_KEY'], /no server nowhere is configured/],
      [['endpoints', 'set', 'Tenant-Cli2', 'local', 'http://127.0.0.1:9/mcp'], /runs as a process/],
    ]) {
      const res = gh.cli(args, { input: 'value-1234\n' });
      assert.notEqual(res.code, 0, args.join(' '));
      assert.match(res.stderr, why, res.stderr);
    }
    assert.deepEqual((await gh.api('GET', '/tenants/Tenant-Cli2/keys')).body.items, []);
    assert.deepEqual((await gh.api('GET', '/tenants/Tenant-Cli2/endpoints')).body.items, []);
    const ok = gh.cli(['keys', 'set', 'Tenant-Cli2', 'remote', 'REMOTE_KEY'], { input: 'value-1234\n' });
    assert.equal(ok.code, 0, ok.stderr);
  });
});

describe('multi-tenancy: forwardIdentity', () => {
  it('sends the caller\'s identity (and a verifiable token) to opted-in servers only; never client credentials', async (t) => {
    const [ident, plain] = await Promise.all([startHeaderRecorder({ t, name: 'ident' }), startHeaderRecorder({ t, name: 'plain' })]);
    const secret = `identity-secret-${'x'.repeat(24)}-${Date.now()}`;
    const gh = await startGatehouse({
      servers: {
        ident: streamableHttpEntry(ident.url, { forwardIdentity: true }),
        plain: streamableHttpEntry(plain.url),
      },
      env: { UPSTREAM_IDENTITY_SECRET: secret },
      t,
    });
    await makeGroup(gh, 'Team-Ident');
    await makeGroup(gh, 'Team-Other');
    await putGrant(gh, 'Team-Ident', 'ident');
    await putGrant(gh, 'Team-Ident', 'plain');
    const name = 'Zoë Q. Tester/Ünïcode & co';
    const created = await gh.api('POST', '/users', { email: 'zoe@ident.example', name, is_admin: false });
    assert.equal(created.status, 201, created.text);
    for (const g of ['Team-Ident', 'Team-Other']) {
      assert.ok([200, 201, 204].includes((await gh.api('PUT', `/groups/${g}/members/zoe%40ident.example`)).status));
    }
    const key = await gh.api('POST', '/apikeys', { user_email: 'zoe@ident.example', name: 'k' });
    const zoe = { email: 'zoe@ident.example', key: key.body.key, headers: bearerOf(key.body.key) };
    const spoofed = {
      'X-User-Email': 'mallory@evil.example', 'X-User-Groups': 'MCP-Admin', 'X-User-Admin': 'true',
      'X-User-Name': 'Mallory', 'X-Gateway-Validated': 'true', 'X-Gateway-Token': 'forged.token.value',
    };

    const s = await mcpSession(gh, { ...zoe.headers, ...spoofed });
    assert.equal(s.status, 200, s.text);
    const before = Math.floor(Date.now() / 1000);
    callText(await s.call('ident__whoami'), 'ident__whoami');
    callText(await s.call('plain__whoami'), 'plain__whoami');
    const adminSession = await mcpSession(gh, { ...gh.authHeaders, ...spoofed });
    callText(await adminSession.call('ident__ping-tool'), 'admin ident__ping-tool');

    const identSeen = (await ident.debug()).requests;
    const calls = identSeen.filter((r) => r.rpcMethod === 'tools/call');
    const zoeCall = calls.find((r) => r.tool === 'whoami');
    assert.ok(zoeCall, `ident saw the tools/call: ${JSON.stringify(identSeen.map((r) => r.rpcMethod))}`);
    const h = zoeCall.headers;
    assert.equal(h['x-user-email'], 'zoe@ident.example');
    assert.deepEqual(h['x-user-groups'].split(',').sort(), ['Team-Ident', 'Team-Other']);
    assert.equal(h['x-user-admin'], 'false');
    assert.equal(decodeURIComponent(h['x-user-name']), name);
    assert.match(h['x-user-name'], /^[A-Za-z0-9%._~-]+$/, 'X-User-Name is URL-encoded');
    assert.equal(h['x-gateway-validated'], 'true');
    const { payload, protectedHeader } = await jwtVerify(h['x-gateway-token'], new TextEncoder().encode(secret), {
      issuer: 'gatehouse', audience: 'ident', algorithms: ['HS256'],
    });
    assert.equal(protectedHeader.alg, 'HS256');
    assert.equal(payload.sub, 'zoe@ident.example');
    assert.ok(payload.exp > before && payload.exp <= Math.floor(Date.now() / 1000) + 60, `exp ${payload.exp}`);

    const adminCall = calls.find((r) => r.tool === 'ping-tool');
    assert.ok(adminCall, 'the admin call reached ident');
    assert.equal(adminCall.headers['x-user-email'], 'admin@localhost');
    assert.equal(adminCall.headers['x-user-admin'], 'true');

    // Nothing the client sent about itself reaches any upstream; the plain one gets no identity at all.
    const plainSeen = (await plain.debug()).requests;
    assert.ok(plainSeen.some((r) => r.rpcMethod === 'tools/call'), 'plain saw the call');
    for (const r of [...identSeen, ...plainSeen]) {
      const text = JSON.stringify(r.headers);
      assert.ok(!text.includes(zoe.key) && !text.includes(gh.adminKey), `a client API key reached an upstream: ${text}`);
      assert.ok(!/mallory|evil\.example|forged\.token/i.test(text), `a spoofed header reached an upstream: ${text}`);
    }
    for (const r of plainSeen) {
      const leaked = Object.keys(r.headers).filter((k) => /^x-user-|^x-gateway-/.test(k));
      assert.deepEqual(leaked, [], `plain (no forwardIdentity) received ${leaked.join(', ')} on ${r.rpcMethod}`);
    }
  });

  it('without UPSTREAM_IDENTITY_SECRET: the identity headers but no X-Gateway-Token', async (t) => {
    const ident = await startHeaderRecorder({ t, name: 'ident2' });
    const gh = await startGatehouse({ servers: { ident: streamableHttpEntry(ident.url, { forwardIdentity: true }) }, t });
    await makeGroup(gh, 'Team-I');
    await putGrant(gh, 'Team-I', 'ident');
    const user = await makeUser(gh, 'plainid@example.com', { groups: ['Team-I'] });
    const s = await mcpSession(gh, user.headers);
    callText(await s.call('ident__ping-tool'), 'ping-tool');
    const call = (await ident.debug()).requests.find((r) => r.rpcMethod === 'tools/call');
    assert.equal(call.headers['x-user-email'], 'plainid@example.com');
    assert.equal(call.headers['x-gateway-validated'], 'true');
    assert.equal(call.headers['x-gateway-token'], undefined);
  });
});
