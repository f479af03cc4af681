// Small helpers for the identity tests: requests with exactly the credentials a test gives (no defaults),
// who the gateway thinks the caller is, which servers it shows, and the gateway's log lines after a point.
import assert from 'node:assert/strict';
import { readBody } from './gatehouse.js';
import { waitFor } from './procs.js';
import { MCP_HEADERS, initializeMessage, rawRequest } from './raw.js';

/** A request to the gateway with only the given headers (never the harness's default admin key). */
export async function request(gh, method, path, { headers = {}, body, redirect = 'manual' } = {}) {
  const init = { method, headers: { ...headers }, redirect };
  if (body !== undefined) {
    init.headers['content-type'] ??= 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  for (const [k, v] of Object.entries(init.headers)) if (v === undefined || v === null) delete init.headers[k];
  return readBody(await fetch(`${gh.url}${path}`, init));
}

/** GET /auth/me with these headers: {status, body}. */
export function whoami(gh, headers = {}) {
  return request(gh, 'GET', '/auth/me', { headers });
}

/** GET /servers with these headers: {status, ids (sorted; null unless 200), body}. */
export async function visibleServers(gh, headers = {}) {
  const res = await request(gh, 'GET', '/servers', { headers });
  const ids = res.status === 200 && Array.isArray(res.body?.servers) ? res.body.servers.map((s) => s.id).sort() : null;
  return { ...res, ids };
}

/** POST initialize to /mcp (or /mcp/<server>) with only these headers. */
export function mcpInitialize(gh, headers = {}, path = '/mcp') {
  return rawRequest(`${gh.url}${path}`, { auth: false, headers: { ...MCP_HEADERS, ...headers }, body: initializeMessage() });
}

export function bearerHeaders(token) {
  return { authorization: `Bearer ${token}` };
}

/** The WWW-Authenticate challenge the contract asks for on a 401. */
export function expectedChallenge(gh, publicUrl = gh.url) {
  return `Bearer resource_metadata="${publicUrl}/.well-known/oauth-protected-resource"`;
}

/** Asserts a 401 with the Bearer challenge and a JSON(-RPC) error body; `res` from request()/rawRequest(). */
export function assertUnauthorized(gh, res, what) {
  assert.equal(res.status, 401, `${what}: expected 401, got ${res.status} ${String(res.text).slice(0, 300)}`);
  const challenge = typeof res.headers.get === 'function' ? res.headers.get('www-authenticate') : res.headers['www-authenticate'];
  assert.equal(challenge, expectedChallenge(gh), `${what}: WWW-Authenticate`);
}

/** The log lines (stderr) from index `from` on, as text. */
export function logsSince(gh, from) {
  return gh.logs.slice(from).join('\n');
}

/** Waits (bounded) until a JSON log line from index `from` on matches `pattern`; returns it. */
export async function waitForLog(gh, from, pattern, { timeoutMs = 3000, what } = {}) {
  return waitFor(() => {
    for (const line of gh.logs.slice(from)) {
      let obj;
      try { obj = JSON.parse(line); } catch { continue; }
      if (obj && typeof obj === 'object' && pattern.test(line)) return line;
    }
    return null;
  }, { timeoutMs, intervalMs: 25, what: what ?? `a JSON log line matching ${pattern}` });
}

/** Polls `check` (bounded) until it returns truthy; a thin alias that names what is awaited. */
export function eventually(what, check, { timeoutMs = 5000, intervalMs = 50 } = {}) {
  return waitFor(check, { timeoutMs, intervalMs, what });
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
