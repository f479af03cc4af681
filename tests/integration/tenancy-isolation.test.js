// What one user's or tenant's session must never get of another's, found by review (docs/tenancy.md):
//  - a dedicated upstream session (the client declared sampling) opened with tenant A's credentials is not
//    used once the user has left tenant A, nor after A's value is deleted;
//  - after a grant is revoked, nothing more of that server reaches the session (its GET stream), and its
//    upstream session is closed;
//  - a catalog listed through tenant A's credentials (resource names, descriptions) is not shown to tenant B;
//  - MCP tasks (which live in an upstream session) are not relayed on a session shared by many users, and
//    the tasks capability is not offered there;
//  - one user cannot take every dedicated upstream slot of a server (32 of 64 at most).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import {
  everythingStdio, initializeMessage, MCP_HEADERS, parseSse, rawRequest, rpc, startGatehouse, waitFor,
} from './lib/index.js';
import {
  addMember, callText, distinctiveSecret, makeGroup, makeUser, mcpSession, newEncryptionKey, putGrant, putKey,
  removeMember, upstreamProcessesWithEnv,
} from './lib/tenancy.js';
import { FIXTURES_DIR } from './lib/upstreams.js';

// A session that declares client capabilities (sampling: a dedicated upstream session).
async function capSession(gh, headers, urlPath, capabilities) {
  const url = `${gh.url}${urlPath}`;
  const base = { ...MCP_HEADERS, ...headers };
  const init = await rawRequest(url, { headers: base, body: initializeMessage({ capabilities }) });
  assert.equal(init.status, 200, init.text);
  const h = { ...base, 'mcp-session-id': init.headers['mcp-session-id'], 'mcp-protocol-version': init.json.result.protocolVersion };
  assert.equal((await rawRequest(url, { headers: h, body: { jsonrpc: '2.0', method: 'notifications/initialized' } })).status, 202);
  const request = async (method, params) => {
    const res = await rawRequest(url, { headers: h, body: rpc(method, params), timeoutMs: 30000 });
    return { status: res.status, text: res.text, result: res.json?.result, error: res.json?.error };
  };
  return {
    headers: h, url, init: init.json.result, request,
    call: (name, args = {}) => request('tools/call', { name, arguments: args }),
  };
}

// The standalone GET stream's messages, as they come.
function openGet(s) {
  const target = new URL(s.url);
  const got = [];
  let raw = '';
  const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, method: 'GET',
    headers: { ...s.headers, accept: 'text/event-stream' } }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (c) => { raw += c; got.length = 0; got.push(...parseSse(raw)); });
  });
  req.on('error', () => {});
  req.end();
  return { got, close: () => req.destroy() };
}

describe('isolation between users and tenants', () => {
  it('a dedicated upstream session is not used with credentials the user no longer has', async (t) => {
    const secretA = distinctiveSecret('a');
    const secretB = distinctiveSecret('b');
    const gh = await startGatehouse({
      t,
      servers: { crm: everythingStdio({ env: { CRM_API_KEY: '${secret:CRM_API_KEY}' } }) },
      env: { ENCRYPTION_KEY: newEncryptionKey() },
    });
    for (const [g, v] of [['Tenant-A', secretA], ['Tenant-B', secretB]]) {
      await makeGroup(gh, g, { isTenant: true });
      await putGrant(gh, g, 'crm');
      assert.equal((await putKey(gh, g, 'crm', 'CRM_API_KEY', v)).status, 201);
    }
    const u = await makeUser(gh, 'mover@a.example', { groups: ['Tenant-A'] });
    const keyOf = async (s, what) => JSON.parse(callText(await s.call('crm__get-env'), what)).CRM_API_KEY;
    const dedicated = await capSession(gh, u.headers, '/mcp', { sampling: {} });
    assert.equal(await keyOf(dedicated, 'before'), secretA);

    await removeMember(gh, 'Tenant-A', u.email);
    await addMember(gh, 'Tenant-B', u.email);
    assert.equal(await keyOf(dedicated, 'after the move'), secretB);
    await waitFor(() => upstreamProcessesWithEnv(gh, 'CRM_API_KEY', secretA).length === 0,
      { timeoutMs: 10000, what: 'the process started with Tenant-A\'s value to stop' });
    assert.ok(gh.jsonLogs().some((l) => l.msg === 'dedicated upstream session closed: the caller\'s credentials changed'));

    // A replaced value: the next call runs with the new one.
    const rotated = distinctiveSecret('b2');
    assert.equal((await putKey(gh, 'Tenant-B', 'crm', 'CRM_API_KEY', rotated)).status, 200);
    assert.equal(await keyOf(dedicated, 'after the value was replaced'), rotated);
  });

  it('after a grant is revoked nothing more of that server reaches the session, and its upstream session ends', async (t) => {
    const gh = await startGatehouse({ t, servers: { ev: everythingStdio() } });
    await makeGroup(gh, 'Team');
    await putGrant(gh, 'Team', 'ev');
    const u = await makeUser(gh, 'revoked@x.example', { groups: ['Team'] });
    const s = await capSession(gh, u.headers, '/mcp', { sampling: {} });
    const get = openGet(s);
    callText(await s.call('ev__toggle-simulated-logging'), 'toggle logging');
    await waitFor(() => get.got.some((m) => m?.method === 'notifications/message'),
      { timeoutMs: 30000, what: 'a log message on the GET stream' });

    assert.equal((await gh.api('DELETE', '/groups/Team/servers/ev')).status, 204);
    const atRevocation = get.got.length;
    assert.equal((await s.call('ev__echo', { message: 'x' })).error?.code, -32602, 'the call is refused');
    await waitFor(() => gh.jsonLogs().some((l) => l.msg === 'upstream message dropped: the session may no longer use the server'),
      { timeoutMs: 30000, what: 'the next message dropped' });
    await waitFor(() => gh.jsonLogs().some((l) => l.server === 'ev' && l.msg === 'upstream process exited'),
      { timeoutMs: 10000, what: 'the dedicated upstream process to stop' });
    get.close();
    assert.deepEqual(get.got.slice(atRevocation).filter((m) => m?.method === 'notifications/message'), []);
  });

  it('what tenant A\'s credentials list is not shown to tenant B', async (t) => {
    const secretA = distinctiveSecret('cat-a');
    const secretB = distinctiveSecret('cat-b');
    const gh = await startGatehouse({
      t,
      servers: { acct: { command: process.execPath, args: [path.join(FIXTURES_DIR, 'account-catalog.js')],
        env: { ACCOUNT_TOKEN: '${secret:ACCOUNT_TOKEN}' } } },
      env: { ENCRYPTION_KEY: newEncryptionKey() },
    });
    for (const [g, v] of [['Tenant-A', secretA], ['Tenant-B', secretB]]) {
      await makeGroup(gh, g, { isTenant: true });
      await putGrant(gh, g, 'acct');
      assert.equal((await putKey(gh, g, 'acct', 'ACCOUNT_TOKEN', v)).status, 201);
    }
    const sa = await mcpSession(gh, (await makeUser(gh, 'a@a.example', { groups: ['Tenant-A'] })).headers);
    const sb = await mcpSession(gh, (await makeUser(gh, 'b@b.example', { groups: ['Tenant-B'] })).headers);
    const listed = async (s) => JSON.stringify([(await s.request('tools/list', {})).result, (await s.request('resources/list', {})).result]);
    const seenByA = await listed(sa);  // listed first, through A's credentials
    const seenByB = await listed(sb);
    assert.ok(seenByA.includes(secretA.slice(-8)) && !seenByA.includes(secretB.slice(-8)), seenByA);
    assert.ok(seenByB.includes(secretB.slice(-8)) && !seenByB.includes(secretA.slice(-8)), seenByB);
    // A resource of A's listing is not routed for B either.
    const read = await sb.request('resources/read', { uri: `acct://account-${secretA.slice(-8)}/board-minutes.pdf` });
    assert.ok(read.error || !read.text.includes(secretA), read.text);
  });

  it('MCP tasks are not relayed on an upstream session shared by many users, nor offered there', async (t) => {
    const gh = await startGatehouse({ t, servers: { ev: everythingStdio() } });
    await makeGroup(gh, 'Research');
    await putGrant(gh, 'Research', 'ev');
    const victim = await makeUser(gh, 'victim@x.example', { groups: ['Research'] });
    const other = await makeUser(gh, 'other@y.example', { groups: ['Research'] });
    const sv = await capSession(gh, victim.headers, '/mcp/ev', {});
    assert.equal(sv.init.capabilities.tasks, undefined, 'tasks are not offered on a shared upstream session');
    await sv.request('tools/call', { name: 'simulate-research-query', arguments: { topic: 'victim-private-topic' }, task: { ttl: 600000 } });
    const so = await capSession(gh, other.headers, '/mcp/ev', {});
    for (const method of ['tasks/list', 'tasks/get', 'tasks/result', 'tasks/cancel']) {
      const res = await so.request(method, method === 'tasks/list' ? {} : { taskId: 'x' });
      assert.equal(res.error?.code, -32601, `${method}: ${res.text.slice(0, 300)}`);
    }
    // A session of its own (the client declares sampling) gets them: they are its own.
    const own = await capSession(gh, other.headers, '/mcp/ev', { sampling: {} });
    const listed = await own.request('tasks/list', {});
    assert.ok(!listed.text.includes('victim-private-topic'), listed.text.slice(0, 300));
    assert.ok(!(listed.result?.tasks ?? []).length, listed.text.slice(0, 300));
  });
});

describe('dedicated upstream sessions', () => {
  it('one user\'s sessions take at most 32 of a server\'s 64 dedicated upstream sessions; another user still gets one', async (t) => {
    const { startHeaderRecorder } = await import('./lib/tenancy.js');
    const { streamableHttpEntry } = await import('./lib/index.js');
    const rec = await startHeaderRecorder({ t, name: 'hdr' });
    const gh = await startGatehouse({ t, servers: { hdr: streamableHttpEntry(rec.url) } });
    await makeGroup(gh, 'Team');
    await putGrant(gh, 'Team', 'hdr');
    const hog = await makeUser(gh, 'hog@x.example', { groups: ['Team'] });
    const other = await makeUser(gh, 'other@x.example', { groups: ['Team'] });
    const capLines = () => gh.jsonLogs().filter((l) => l.msg === 'dedicated upstream cap reached; using the shared session');
    for (let i = 0; i < 32; i++) await capSession(gh, hog.headers, '/mcp/hdr', { sampling: {} });
    assert.equal(capLines().length, 0);
    await capSession(gh, hog.headers, '/mcp/hdr', { sampling: {} });
    assert.deepEqual(capLines().map((l) => l.cap), ['user']);
    await capSession(gh, other.headers, '/mcp/hdr', { sampling: {} });
    assert.equal(capLines().length, 1, 'the other user got a session of its own');
  });
});
