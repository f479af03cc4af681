// Raw HTTP against the gateway (node:http, so every header — Host, Origin, Accept — is exactly ours).
import http from 'node:http';
import { withAuth } from './auth.js';

export const LATEST_PROTOCOL = '2025-11-25';

export const MCP_HEADERS = Object.freeze({
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
});

/** Parses an SSE body into its `data:` payloads (JSON where possible). */
export function parseSse(text) {
  const messages = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
    if (!data) continue;
    try { messages.push(JSON.parse(data)); } catch { messages.push(data); }
  }
  return messages;
}

/**
 * One HTTP request. Returns {status, headers, text, json, messages}:
 * `messages` = the JSON-RPC messages in the body (one for application/json, the events for SSE),
 * `json` = the response message (the one with an id, else the first), or undefined.
 * Carries the gateway's default credentials (lib/auth.js) unless `auth: false` or headers has `authorization`.
 */
export function rawRequest(url, { method = 'POST', headers: givenHeaders = {}, body, timeoutMs = 15000, auth = true } = {}) {
  const target = new URL(url);
  const headers = withAuth(url, givenHeaders, { auth });
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      method,
      headers,
      setHost: !Object.keys(headers).some((h) => h.toLowerCase() === 'host'),
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        clearTimeout(timer);
        const contentType = String(res.headers['content-type'] ?? '');
        let messages = [];
        if (contentType.includes('text/event-stream')) {
          messages = parseSse(text);
        } else if (text.length > 0) {
          try {
            const parsed = JSON.parse(text);
            messages = Array.isArray(parsed) ? parsed : [parsed];
          } catch { messages = []; }
        }
        const json = messages.find((m) => m && typeof m === 'object' && 'id' in m && ('result' in m || 'error' in m))
          ?? messages.find((m) => m && typeof m === 'object');
        resolve({ status: res.statusCode, headers: res.headers, text, messages, json });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${url}: no complete response within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (error) => { clearTimeout(timer); reject(error); });
    if (body !== undefined) req.write(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    req.end();
  });
}

let nextId = 1;
export function rpc(method, params, id = nextId++) {
  const message = { jsonrpc: '2.0', id, method };
  if (params !== undefined) message.params = params;
  return message;
}

export function initializeMessage({ protocolVersion = LATEST_PROTOCOL, capabilities = {}, padding } = {}) {
  const clientInfo = { name: 'gatehouse-it-raw', version: '1.0.0' };
  if (padding) clientInfo.description = padding;
  return rpc('initialize', { protocolVersion, capabilities, clientInfo });
}

/**
 * A raw MCP session: initialize + notifications/initialized. Returns
 * {sessionId, protocolVersion, initResult, post(message, headers), request(method, params), remove()}.
 */
export async function rawSession(url, { protocolVersion = LATEST_PROTOCOL, capabilities = {}, headers: givenHeaders = {}, auth = true } = {}) {
  const headers = withAuth(url, givenHeaders, { auth });
  const init = await rawRequest(url, { headers: { ...MCP_HEADERS, ...headers }, body: initializeMessage({ protocolVersion, capabilities }) });
  if (init.status !== 200 || !init.json?.result) {
    throw new Error(`initialize failed: HTTP ${init.status} ${init.text.slice(0, 500)}`);
  }
  const sessionId = init.headers['mcp-session-id'];
  if (!sessionId) throw new Error('initialize: no MCP-Session-Id header in the response');
  const negotiated = init.json.result.protocolVersion;
  const sessionHeaders = { ...MCP_HEADERS, ...headers, 'mcp-session-id': sessionId, 'mcp-protocol-version': negotiated };
  const initialized = await rawRequest(url, { headers: sessionHeaders, body: { jsonrpc: '2.0', method: 'notifications/initialized' } });
  if (initialized.status !== 202) throw new Error(`notifications/initialized: HTTP ${initialized.status} ${initialized.text.slice(0, 300)}`);
  return {
    sessionId,
    protocolVersion: negotiated,
    initResult: init.json.result,
    headers: sessionHeaders,
    post: (message, extra = {}) => rawRequest(url, { headers: { ...sessionHeaders, ...extra }, body: message }),
    request: (method, params) => rawRequest(url, { headers: sessionHeaders, body: rpc(method, params) }),
    remove: () => rawRequest(url, { method: 'DELETE', headers: sessionHeaders }),
  };
}

/**
 * Writes `piece` to `socket` over and over, as fast as the peer takes it, until the socket closes or `bytes`
 * are written: a peer that sends without end (a chunk header, an SSE event that never ends). Counts what it
 * wrote in `count.sent` and sets `count.closed` when the socket closes.
 */
export function pump(socket, piece, { bytes = Infinity, count = { sent: 0, closed: false } } = {}) {
  socket.on('close', () => { count.closed = true; });
  socket.on('error', () => {});
  const more = () => {
    while (count.sent < bytes && !socket.destroyed) {
      count.sent += piece.length;
      if (!socket.write(piece)) { socket.once('drain', more); return; }
    }
  };
  more();
  return count;
}
