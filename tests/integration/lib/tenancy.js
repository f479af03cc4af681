// Helpers for the multi-tenancy tests: users with API keys, groups, grants, tenant keys and endpoints through
// the management API; MCP sessions as a given user (status-aware, so a refused initialize is a result, not a
// throw); tools/list and tools/call outcomes; the stdio processes a gateway started; the header-recorder fixture.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { descendantPids, onLines, stopProcessGroup, track, waitFor } from './procs.js';
import { MCP_HEADERS, initializeMessage, rawRequest, rpc } from './raw.js';
import { FIXTURES_DIR, INTEGRATION_DIR } from './upstreams.js';

/** A fresh ENCRYPTION_KEY: base64 of 32 random bytes. */
export function newEncryptionKey() {
  return crypto.randomBytes(32).toString('base64');
}

/** A distinctive secret string (easy to grep for, never a substring of anything else). */
export function distinctiveSecret(label) {
  return `tenancy-secret-${label}-${crypto.randomBytes(9).toString('hex')}`;
}

export function bearerOf(key) {
  return { authorization: `Bearer ${key}` };
}

/** Creates a user (non-admin unless isAdmin) with an API key; adds it to `groups`. */
export async function makeUser(gh, email, { isAdmin = false, groups = [] } = {}) {
  const created = await gh.api('POST', '/users', { email, name: email.split('@')[0], is_admin: isAdmin });
  assert.equal(created.status, 201, `POST /users ${email}: ${created.status} ${created.text}`);
  const key = await gh.api('POST', '/apikeys', { user_email: email, name: 'tenancy-test' });
  assert.equal(key.status, 201, `POST /apikeys ${email}: ${key.status} ${key.text}`);
  for (const g of groups) await addMember(gh, g, email);
  return { email, key: key.body.key, headers: bearerOf(key.body.key) };
}

export async function makeGroup(gh, name, { priority = 0, isTenant = false, description = '' } = {}) {
  const res = await gh.api('POST', '/groups', { name, description, priority, is_tenant: isTenant });
  assert.equal(res.status, 201, `POST /groups ${name}: ${res.status} ${res.text}`);
  return res.body;
}

export async function addMember(gh, group, email) {
  const res = await gh.api('PUT', `/groups/${encodeURIComponent(group)}/members/${encodeURIComponent(email)}`);
  assert.ok([200, 201, 204].includes(res.status), `PUT member ${email} → ${group}: ${res.status} ${res.text}`);
}

export async function removeMember(gh, group, email) {
  const res = await gh.api('DELETE', `/groups/${encodeURIComponent(group)}/members/${encodeURIComponent(email)}`);
  assert.ok([200, 204].includes(res.status), `DELETE member ${email} ← ${group}: ${res.status} ${res.text}`);
}

/** PUT a grant; tools: null (all), {allow:[…]} or {deny:[…]}. Returns the response. */
export async function putGrant(gh, group, server, tools = null, { expect } = {}) {
  const res = await gh.api('PUT', `/groups/${encodeURIComponent(group)}/servers/${encodeURIComponent(server)}`, { tools });
  if (expect !== undefined) {
    const ok = Array.isArray(expect) ? expect.includes(res.status) : res.status === expect;
    assert.ok(ok, `PUT grant ${group} → ${server} ${JSON.stringify(tools)}: expected ${expect}, got ${res.status} ${res.text}`);
  } else {
    assert.ok([200, 201].includes(res.status), `PUT grant ${group} → ${server}: ${res.status} ${res.text}`);
  }
  return res;
}

export async function putKey(gh, group, server, slot, value) {
  return gh.api('PUT', `/tenants/${encodeURIComponent(group)}/keys/${encodeURIComponent(server)}/${encodeURIComponent(slot)}`, { value });
}

/** GET /mcp-admin/api/servers → a map id → item. */
export async function adminServers(gh) {
  const res = await gh.api('GET', '/servers');
  assert.equal(res.status, 200, `GET /servers: ${res.text}`);
  return Object.fromEntries(res.body.items.map((s) => [s.id, s]));
}

/**
 * An MCP session at `path` (/mcp or /mcp/<server>) with exactly `headers` as credentials (none: anonymous).
 * Returns {status, text, initResult, error?, tools(), call(name, args), request(method, params)}; status is
 * the initialize's HTTP status (200 = open). `record({path, method, params, text})` sees every answer.
 */
export async function mcpSession(gh, headers = {}, urlPath = '/mcp', { record } = {}) {
  const url = `${gh.url}${urlPath}`;
  const seen = (method, params, text) => { if (record) record({ path: urlPath, method, params, text }); };
  const base = { ...MCP_HEADERS, ...headers };
  if (!Object.keys(headers).some((h) => h.toLowerCase() === 'authorization')) base.authorization = null;
  const init = await rawRequest(url, { headers: base, body: initializeMessage() });
  seen('initialize', undefined, init.text);
  const out = { status: init.status, text: init.text, initResult: init.json?.result, initError: init.json?.error };
  if (init.status !== 200 || !init.json?.result) return out;
  const sid = init.headers['mcp-session-id'];
  const sessionHeaders = { ...base, 'mcp-protocol-version': init.json.result.protocolVersion };
  if (sid) sessionHeaders['mcp-session-id'] = sid;
  const initialized = await rawRequest(url, { headers: sessionHeaders, body: { jsonrpc: '2.0', method: 'notifications/initialized' } });
  assert.equal(initialized.status, 202, `notifications/initialized at ${urlPath}: ${initialized.status} ${initialized.text}`);
  out.sessionId = sid;
  out.request = async (method, params) => {
    const res = await rawRequest(url, { headers: sessionHeaders, body: rpc(method, params), timeoutMs: 30000 });
    seen(method, params, res.text);
    return { status: res.status, text: res.text, result: res.json?.result, error: res.json?.error };
  };
  /** Every tool name (following nextCursor). Throws on an error. */
  out.tools = async () => {
    const names = [];
    let cursor;
    for (let page = 0; page < 100; page++) {
      const res = await out.request('tools/list', cursor === undefined ? {} : { cursor });
      assert.equal(res.status, 200, `tools/list at ${urlPath}: HTTP ${res.status} ${res.text.slice(0, 300)}`);
      assert.ok(res.result, `tools/list at ${urlPath}: ${res.text.slice(0, 300)}`);
      names.push(...res.result.tools.map((x) => x.name));
      cursor = res.result.nextCursor;
      if (cursor === undefined || cursor === null) return names.sort();
    }
    throw new Error('tools/list: more than 100 pages');
  };
  out.call = (name, args = {}) => out.request('tools/call', { name, arguments: args });
  out.close = () => rawRequest(url, { method: 'DELETE', headers: sessionHeaders }).catch(() => {});
  return out;
}

/** True when a tools/call answer is the gateway's "Unknown tool" refusal (JSON-RPC -32602). */
export function isUnknownTool(res) {
  return res.status === 200 && res.error?.code === -32602 && /^Unknown tool/.test(res.error.message ?? '');
}

/** The text of a successful tools/call answer (asserts success). */
export function callText(res, what = 'tools/call') {
  assert.equal(res.status, 200, `${what}: HTTP ${res.status} ${res.text?.slice(0, 300)}`);
  assert.ok(res.result && !res.error, `${what}: expected a result, got ${res.text?.slice(0, 500)}`);
  assert.notEqual(res.result.isError, true, `${what}: isError ${JSON.stringify(res.result).slice(0, 500)}`);
  return (res.result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

/** Live processes under the gateway whose environment has `name` (=value when given): [{pid, value}]. */
export function upstreamProcessesWithEnv(gh, name, value) {
  const found = [];
  for (const pid of descendantPids(gh.pid)) {
    let env;
    try { env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0'); } catch { continue; }
    const entry = env.find((e) => e.startsWith(`${name}=`));
    if (!entry) continue;
    const v = entry.slice(name.length + 1);
    if (value === undefined || v === value) found.push({ pid, value: v });
  }
  return found;
}

/** Starts fixtures/header-recorder.js on a free loopback port: {url, debug(), clear(), stop()}. */
export async function startHeaderRecorder({ t, name = 'header-recorder', startTimeoutMs = 20000 } = {}) {
  const proc = spawn(process.execPath, [path.join(FIXTURES_DIR, 'header-recorder.js')], {
    cwd: INTEGRATION_DIR, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FIXTURE_NAME: name, PORT: '0' },
  });
  track(proc);
  const logs = [];
  let port = null;
  onLines(proc.stdout, (line) => {
    logs.push(line);
    try { const o = JSON.parse(line); if (Number.isInteger(o?.listening)) port = o.listening; } catch { /* log line */ }
  });
  onLines(proc.stderr, (line) => logs.push(line));
  let stopped = null;
  const rec = {
    proc, logs,
    stop() { if (!stopped) stopped = stopProcessGroup(proc, { signal: 'SIGTERM', graceMs: 3000 }); return stopped; },
    async debug() { const r = await fetch(`http://127.0.0.1:${rec.port}/debug`); return r.json(); },
    async clear() { await (await fetch(`http://127.0.0.1:${rec.port}/debug/clear`, { method: 'POST' })).arrayBuffer(); },
  };
  if (t) (typeof t === 'function' ? t : t.after.bind(t))(() => rec.stop());
  try {
    rec.port = await waitFor(() => {
      if (proc.exitCode !== null) throw new Error(`header-recorder exited with ${proc.exitCode}`);
      return port;
    }, { timeoutMs: startTimeoutMs, intervalMs: 25, what: 'header-recorder to print {"listening":PORT}' });
  } catch (error) {
    await rec.stop();
    error.message += `\n--- header-recorder output ---\n${logs.join('\n')}`;
    throw error;
  }
  rec.url = `http://127.0.0.1:${rec.port}/mcp`;
  return rec;
}

/** mulberry32: a small seeded PRNG. */
export function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    chance: (p) => next() < p,
    subset: (arr, p = 0.5) => arr.filter(() => next() < p),
  };
}
