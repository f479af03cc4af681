// The reverse proxy to Open WebUI (OPENWEBUI_URL): every path Gatehouse does not serve goes to a tiny fake
// Open WebUI in this process — headers echoed back (identity injected for a signed-in caller, spoofed ones gone),
// SSE streamed without buffering, a 50 MB upload streamed without the gateway holding it, a WebSocket echo both
// ways, an upstream that is down answered 502 at once (an upload to it too: no 100 Continue first, no reset).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { checkConfig, freePort, pump, rssKb, startGatehouse, waitFor } from './lib/index.js';
import { createOpenWebUiDb, mintWebUiToken } from './lib/openwebui.js';

const SECRET = 'webui-secret-for-proxy-tests-0123456789';
const MB = 1024 * 1024;

/** A stand-in for Open WebUI on a free loopback port. `gates` lets a test hold the SSE stream half-way. */
async function startFakeWebUi() {
  const seen = [];
  const sse = { firstSentAt: 0, lastSentAt: 0, release: null };
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers });
    if (req.url.startsWith('/api/upload')) {
      let bytes = 0;
      req.on('data', (chunk) => { bytes += chunk.length; });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes, transferEncoding: req.headers['transfer-encoding'] ?? null,
          contentLength: req.headers['content-length'] ?? null }));
      });
      return;
    }
    if (req.url.startsWith('/api/chat/stream')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: {"n":1}\n\n');
      sse.firstSentAt = Date.now();
      // The rest waits until the client has the first event (or 5 s: a buffering proxy fails the test).
      const gate = new Promise((resolve) => {
        sse.release = resolve;
        setTimeout(resolve, 5000);
      });
      gate.then(async () => {
        for (let n = 2; n <= 4; n += 1) {
          await new Promise((r) => setTimeout(r, 50));
          res.write(`data: {"n":${n}}\n\n`);
        }
        sse.lastSentAt = Date.now();
        res.end('data: [DONE]\n\n');
      });
      return;
    }
    if (req.url.startsWith('/early-hints')) {  // two interim answers before the final one
      res.writeEarlyHints({ link: '</app.js>; rel=preload' });
      res.writeProcessing?.();
      setTimeout(() => res.end('final answer'), 50);
      return;
    }
    if (req.url.startsWith('/status/204')) {
      res.writeHead(204, { 'x-fake': 'yes' });
      res.end();
      return;
    }
    // Everything else: the request as the upstream saw it.
    let bytes = 0;
    req.on('data', (chunk) => { bytes += chunk.length; });
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bytes });
      const html = (req.headers.accept ?? '').includes('text/html');
      res.writeHead(200, { 'content-type': html ? 'text/html' : 'application/json', 'x-upstream': 'fake-webui',
        'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers, upgrade: true });
    if (!req.url.startsWith('/ws/socket.io/')) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      // First word from the upstream, sent at once (it may arrive right behind the 101).
      ws.send(JSON.stringify({ hello: true, user: req.headers['x-user-email'] ?? null }));
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data}`, { binary: isBinary }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    sse,
    wss,
    async stop() {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A plain http.request: {status, headers, body (text)}. */
function send(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = (r) => JSON.parse(r.body);

function vmRssKb(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)[1]);
}

describe('reverse proxy to Open WebUI', () => {
  let gh;
  let webui;
  let owdb;
  const ids = {};
  before(async () => {
    webui = await startFakeWebUi();
    owdb = await createOpenWebUiDb();
    ids.user = await owdb.addUser({ email: 'chat.user@webui.test', name: 'Chat Üser', role: 'user' });
    await owdb.addGroup('Engineering', [ids.user]);
    gh = await startGatehouse({
      env: {
        OPENWEBUI_URL: `${webui.url}/`,
        PROXY_MAX_BODY_BYTES: String(60 * MB),
        WEBUI_SECRET_KEY: SECRET,
        OPENWEBUI_DATABASE_URL: owdb.url,
      },
    });
  });
  after(async () => {
    await gh?.stop();
    await webui?.stop();
    await owdb?.stop();
  });

  it('passes method, path and query; adds X-Forwarded-* and X-Request-Id; drops hop-by-hop fields', async () => {
    const r = await send(`${gh.url}/api/v1/chats/?page=2&q=a%20b`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '6.6.6.6', 'x-custom': 'kept',
        te: 'trailers', 'proxy-authorization': 'Basic Zm9vOmJhcg==', 'keep-alive': 'timeout=5',
        forwarded: 'for=6.6.6.6;proto=https;host=evil.example', 'x-real-ip': '6.6.6.6', 'x-forwarded-port': '443',
        'x-forwarded-prefix': '/evil' },
      body: '{"title":"x"}',
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['x-upstream'], 'fake-webui');
    const seen = json(r);
    assert.equal(seen.method, 'PATCH');
    assert.equal(seen.url, '/api/v1/chats/?page=2&q=a%20b');
    assert.equal(seen.bytes, 13);
    assert.equal(seen.headers['x-custom'], 'kept');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'a spoofed X-Forwarded-For from an untrusted peer is replaced');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${gh.port}`);
    assert.match(seen.headers['x-request-id'], /\S+-\d+/);
    for (const h of ['te', 'proxy-authorization', 'keep-alive', 'x-user-email', 'x-gateway-validated'])
      assert.equal(seen.headers[h], undefined, h);
    // other names for the client's address, scheme, host and path, from an untrusted peer: not passed on
    for (const h of ['forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix'])
      assert.equal(seen.headers[h], undefined, h);
  });

  it('an anonymous caller reaches Open WebUI without identity headers; spoofed ones are removed', async () => {
    const r = await send(`${gh.url}/`, {
      headers: { accept: 'text/html', 'x-user-email': 'ceo@evil.test', 'x-user-admin': 'true',
        'x-gateway-validated': 'true', 'X-User-Groups': 'MCP-Admin',
        // WSGI and CGI servers read these as X-User-Email and X-Gateway-Validated
        X_User_Email: 'ceo@evil.test', 'x_gateway_validated': 'true', 'X-User_Admin': 'true' },
    });
    assert.equal(r.status, 200);
    const seen = json(r);
    for (const h of ['x-user-email', 'x-user-admin', 'x-user-groups', 'x-user-name', 'x-gateway-validated',
      'x_user_email', 'x_gateway_validated', 'x-user_admin'])
      assert.equal(seen.headers[h], undefined, `${h} must not reach Open WebUI`);
  });

  it('a signed-in caller gets the real identity injected (API key, session cookie, Open WebUI token cookie)', async () => {
    const spoof = { 'x-user-email': 'ceo@evil.test', 'x-user-admin': 'true', 'x-gateway-validated': 'nope' };
    // A Gatehouse API key (the bootstrap admin).
    let seen = json(await send(`${gh.url}/api/v1/auths/`, { headers: { ...spoof, authorization: `Bearer ${gh.adminKey}` } }));
    assert.equal(seen.headers['x-user-email'], 'admin@localhost');
    assert.equal(seen.headers['x-user-admin'], 'true');
    assert.equal(seen.headers['x-gateway-validated'], 'true');
    assert.equal(seen.headers.authorization, `Bearer ${gh.adminKey}`, 'the credential itself passes on');
    // The gatehouse_session cookie (API-key sign-in of the portal).
    const signIn = await send(`${gh.url}/auth/session`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ api_key: gh.adminKey }),
    });
    assert.equal(signIn.status, 200, signIn.body);
    const cookie = String(signIn.headers['set-cookie']).split(';')[0];
    seen = json(await send(`${gh.url}/c/some-chat`, { headers: { ...spoof, cookie: `theme=dark,compact; ${cookie}; gatehouse_login_abc=x; lang=en` } }));
    assert.equal(seen.headers['x-user-email'], 'admin@localhost');
    // Gatehouse's own cookies (an admin's credential for the management API) stay here; Open WebUI's go on.
    assert.equal(seen.headers.cookie, 'theme=dark,compact; lang=en');
    seen = json(await send(`${gh.url}/c/some-chat`, { headers: { cookie } }));
    assert.equal(seen.headers.cookie, undefined, 'no Cookie field left');
    // Open WebUI's own `token` cookie: the user and their Open WebUI groups.
    const token = await mintWebUiToken(SECRET, { id: ids.user });
    seen = json(await send(`${gh.url}/api/models`, { headers: { ...spoof, cookie: `token=${token}` } }));
    assert.equal(seen.headers['x-user-email'].toLowerCase(), 'chat.user@webui.test');
    assert.equal(seen.headers['x-user-admin'], 'false');
    assert.equal(seen.headers['x-user-groups'], 'Engineering');
    assert.equal(decodeURIComponent(seen.headers['x-user-name']), 'Chat Üser');
    assert.equal(seen.headers['x-gateway-validated'], 'true');
    assert.equal(seen.headers.cookie, `token=${token}`);
    // A token that does not verify: passed on (Open WebUI decides), no identity.
    seen = json(await send(`${gh.url}/api/models`, { headers: { ...spoof, cookie: 'token=not.a.jwt' } }));
    assert.equal(seen.headers['x-user-email'], undefined);
  });

  it("Gatehouse's own paths are not proxied", async () => {
    const before = webui.seen.length;
    assert.equal((await send(`${gh.url}/gateway/health`)).status, 200);
    const servers = await send(`${gh.url}/servers`, { headers: { authorization: `Bearer ${gh.adminKey}` } });
    assert.equal(servers.status, 200);
    assert.ok(Array.isArray(json(servers).servers));
    assert.equal((await send(`${gh.url}/mcp-admin/api/users`)).status, 401);
    assert.equal((await send(`${gh.url}/auth/me`)).status, 401);
    const metrics = await send(`${gh.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /route="proxy"/, 'proxied requests are counted with route "proxy"');
    assert.equal(webui.seen.length, before);
  });

  it('absolute-form targets (GET http://host/path) are routed and passed on by their path; their host is checked as Host', async () => {
    const raw = (head) => new Promise((resolve) => {
      let got = '';
      const s = net.connect({ port: gh.port, host: '127.0.0.1' }, () => s.write(`${head}\r\nConnection: close\r\n\r\n`));
      const timer = setTimeout(() => { s.destroy(); resolve(got); }, 5000);
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('close', () => { clearTimeout(timer); resolve(got); });
      s.on('error', () => {});
    });
    const status = (text) => Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);
    const me = `127.0.0.1:${gh.port}`;
    const before = webui.seen.length;
    // Gatehouse's own path in absolute-form: answered here (401), not handed to Open WebUI.
    assert.equal(status(await raw(`GET http://${me}/mcp-admin/api/users HTTP/1.1\r\nHost: other.example`)), 401);
    assert.equal(status(await raw(`GET HTTP://${me}/auth/me HTTP/1.1\r\nHost: ${me}`)), 401);
    assert.equal(webui.seen.length, before);
    // Open WebUI gets the origin-form path and query.
    assert.equal(status(await raw(`GET http://${me}/api/v1/chats/?page=3 HTTP/1.1\r\nHost: ${me}`)), 200);
    assert.equal(webui.seen.at(-1).url, '/api/v1/chats/?page=3');
    assert.equal(status(await raw(`GET http://${me} HTTP/1.1\r\nHost: ${me}`)), 200);
    assert.equal(webui.seen.at(-1).url, '/');
    // A host we do not serve is refused as a Host header would be (DNS rebinding), whatever Host says.
    assert.equal(status(await raw(`GET http://evil.example/api/v1/chats/ HTTP/1.1\r\nHost: ${me}`)), 403);
    // Other forms, user info, two Hosts: 400.
    for (const head of [`OPTIONS * HTTP/1.1\r\nHost: ${me}`, `GET ${me} HTTP/1.1\r\nHost: ${me}`,
      `GET ftp://${me}/x HTTP/1.1\r\nHost: ${me}`, `GET http://u:p@${me}/x HTTP/1.1\r\nHost: ${me}`,
      `GET http://${me}/x HTTP/1.1\r\nHost: ${me}\r\nHost: evil.example`]) {
      const text = await raw(head);
      assert.equal(status(text), 400, `${head}: ${text}`);
    }
    assert.equal(webui.seen.length, before + 2);
    // A Host whose port is not digits ("name:@evil.example") would reach Open WebUI as Host and X-Forwarded-Host.
    for (const host of ['127.0.0.1:@evil.example', `127.0.0.1:${gh.port}/../evil`, '127.0.0.1:x', 'evil.example:@127.0.0.1']) {
      const text = await raw(`GET /api/v1/chats/ HTTP/1.1\r\nHost: ${host}`);
      assert.equal(status(text), 403, `Host: ${host}: ${text}`);
    }
    // "." and ".." segments (also %2e) are refused: after OPENWEBUI_URL's base path they would leave it.
    for (const target of ['/../admin/secret', '/api/%2e%2e/%2E%2e/admin', '/./x', '/a/..?q=1', '/..%2Fadmin', '/%2e%2e%2fadmin',
      '/x/..%5C..%5Cadmin', '/x/..\\admin']) {
      const text = await raw(`GET ${target} HTTP/1.1\r\nHost: ${me}`);
      assert.equal(status(text), 400, `${target}: ${text}`);
    }
    assert.equal(webui.seen.length, before + 2, 'nothing of those reached Open WebUI');
    assert.equal(status(await raw(`GET /api/..x/.hidden/a..b HTTP/1.1\r\nHost: ${me}`)), 200, 'dots inside a segment are fine');
  });

  it('interim answers (103 Early Hints, 102) are not relayed; the final answer that follows them is', async () => {
    const text = await new Promise((resolve) => {
      let got = '';
      const s = net.connect({ port: gh.port, host: '127.0.0.1' }, () => {
        s.write('GET /early-hints HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
      });
      const timer = setTimeout(() => { s.destroy(); resolve(got); }, 5000);
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('close', () => { clearTimeout(timer); resolve(got); });
      s.on('error', () => {});
    });
    assert.match(text, /^HTTP\/1\.1 200 /, text);
    assert.match(text, /final answer/, text);
    assert.doesNotMatch(text, /HTTP\/1\.1 10\d/, text);
  });

  it('HEAD and 204 answers pass through without a body; keep-alive connections carry several requests', async () => {
    const head = await send(`${gh.url}/index.html`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.ok(Number(head.headers['content-length']) > 0);
    const none = await send(`${gh.url}/status/204`);
    assert.equal(none.status, 204);
    assert.equal(none.headers['x-fake'], 'yes');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set();
    for (let i = 0; i < 3; i += 1) {
      await new Promise((resolve, reject) => {
        http.get(`${gh.url}/api/config?i=${i}`, { agent }, (res) => {
          ports.add(res.socket.localPort);
          res.resume();
          res.on('end', resolve);
        }).on('error', reject);
      });
    }
    agent.destroy();
    assert.equal(ports.size, 1, 'one client connection for three proxied requests');
  });

  it('streams SSE: the first event reaches the client before the last one is sent', async () => {
    const events = [];
    let firstReceivedAt = 0;
    const res = await new Promise((resolve, reject) => {
      http.get(`${gh.url}/api/chat/stream`, { headers: { accept: 'text/event-stream' }, agent: false }, resolve)
        .on('error', reject);
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/event-stream');
    let text = '';
    await new Promise((resolve, reject) => {
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
        if (!firstReceivedAt && text.includes('"n":1')) {
          firstReceivedAt = Date.now();
          webui.sse.release();
        }
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
    for (const block of text.split('\n\n')) if (block.startsWith('data: ')) events.push(block.slice(6));
    assert.deepEqual(events, ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}', '[DONE]']);
    assert.ok(firstReceivedAt > 0 && firstReceivedAt < webui.sse.lastSentAt,
      `first event received at ${firstReceivedAt}, last sent at ${webui.sse.lastSentAt}: the stream was buffered`);
  });

  it('streams a 50 MB upload without holding it (gateway RSS stays flat)', async () => {
    const rssBefore = vmRssKb(gh.pid);
    const total = 50 * MB;
    const piece = Buffer.alloc(MB, 0x61);
    const result = await new Promise((resolve, reject) => {
      const req = http.request(`${gh.url}/api/upload`, {
        method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream' },
      }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { body += c; });
        res.on('end', () => resolve({ status: res.statusCode, body }));
      });
      req.on('error', reject);
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent += piece.length;
          if (!req.write(piece)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    const rssAfter = vmRssKb(gh.pid);
    assert.equal(result.status, 200, result.body);
    const counted = JSON.parse(result.body);
    assert.equal(counted.bytes, total);
    assert.equal(counted.transferEncoding, 'chunked');
    const grownMb = (rssAfter - rssBefore) / 1024;
    assert.ok(grownMb < 25, `gateway RSS grew by ${grownMb.toFixed(1)} MB during a 50 MB upload (${rssBefore} → ${rssAfter} kB)`);
    // With a Content-Length, the length is passed on as is.
    const sized = await send(`${gh.url}/api/upload`, { method: 'POST', body: Buffer.alloc(3 * MB, 0x62) });
    assert.deepEqual(json(sized), { bytes: 3 * MB, transferEncoding: null, contentLength: String(3 * MB) });
  });

  it('refuses an upload over PROXY_MAX_BODY_BYTES with 413', async () => {
    const r = await new Promise((resolve, reject) => {
      const req = http.request(`${gh.url}/api/upload`, {
        method: 'POST', agent: false, headers: { 'content-length': String(61 * MB) },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode }));
      });
      req.on('error', (e) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? resolve({ status: 'reset' }) : reject(e)));
      req.write(Buffer.alloc(1024));
    });
    assert.equal(r.status, 413);
  });

  it('passes a WebSocket (socket.io) through in both directions, with the identity on the upgrade', async () => {
    const token = await mintWebUiToken(SECRET, { id: ids.user });
    const ws = new WebSocket(`${gh.url.replace('http:', 'ws:')}/ws/socket.io/?EIO=4&transport=websocket`, {
      headers: { cookie: `token=${token}`, 'x-user-email': 'ceo@evil.test' },
    });
    const inbox = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      inbox.push(isBinary ? data : data.toString());
      while (waiters.length) waiters.shift()();
    });
    const next = async () => {
      while (!inbox.length) await new Promise((resolve) => waiters.push(resolve));
      return inbox.shift();
    };
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const hello = JSON.parse(await next());
    assert.deepEqual(hello, { hello: true, user: 'chat.user@webui.test' });
    ws.send('hello');
    assert.equal(await next(), 'echo:hello');
    const big = Buffer.alloc(300 * 1024, 7);
    big[0] = 1;
    ws.send(big);
    const back = await next();
    assert.ok(Buffer.isBuffer(back) && back.equals(big), 'binary message echoed intact');
    for (let i = 0; i < 20; i += 1) ws.send(`m${i}`);
    for (let i = 0; i < 20; i += 1) assert.equal(await next(), `echo:m${i}`);
    const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(1000, 'bye');
    assert.equal(await closed, 1000);
    const upgrade = webui.seen.filter((s) => s.upgrade).at(-1);
    assert.equal(upgrade.headers['x-user-email'].toLowerCase(), 'chat.user@webui.test');
    assert.equal(upgrade.headers.upgrade, 'websocket');
  });
});

describe('reverse proxy: Open WebUI down', () => {
  let gh;
  before(async () => {
    const port = await freePort();  // nothing listens here
    gh = await startGatehouse({
      env: { OPENWEBUI_URL: `http://127.0.0.1:${port}`, RATE_LIMIT_PER_IP: '6', PROXY_CONNECT_TIMEOUT_S: '2' },
    });
  });
  after(async () => { await gh?.stop(); });

  it('answers 502 at once: an HTML page for browsers, JSON otherwise; a log line', async () => {
    let started = Date.now();
    const page = await send(`${gh.url}/c/123`, { headers: { accept: 'text/html,application/xhtml+xml' } });
    assert.ok(Date.now() - started < 3000, 'no hang');
    assert.equal(page.status, 502);
    assert.match(page.headers['content-type'], /^text\/html/);
    assert.match(page.body, /Open WebUI is not reachable/);
    started = Date.now();
    const api = await send(`${gh.url}/api/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: '{"stream":true}',
    });
    assert.ok(Date.now() - started < 3000, 'no hang');
    assert.equal(api.status, 502);
    assert.deepEqual(json(api).error.code, 'bad_gateway');
    assert.match(json(api).error.message, /Open WebUI is not reachable/);
    assert.ok(gh.jsonLogs().some((l) => l.msg === 'Open WebUI is not reachable' && l.stage === 'connect'));
  });

  it('proxied requests count against the per-IP rate limit', async () => {
    let limited = null;
    for (let i = 0; i < 8 && !limited; i += 1) {
      const r = await send(`${gh.url}/api/version`);
      if (r.status === 429) limited = r;
    }
    assert.ok(limited, 'a 429 within the per-IP limit of 6');
    assert.ok(Number(limited.headers['retry-after']) >= 1);
  });
});

describe('reverse proxy: an upload Open WebUI never takes', () => {
  let gh;
  before(async () => {
    const port = await freePort();  // nothing listens here
    gh = await startGatehouse({ env: { OPENWEBUI_URL: `http://127.0.0.1:${port}` } });
  });
  after(async () => { await gh?.stop(); });

  // Writes `head` (then `body`, at once), reads until the gateway closes: {text, error}.
  const exchange = (head, body) => new Promise((resolve) => {
    let text = '';
    const s = net.connect({ port: gh.port, host: '127.0.0.1' }, () => { s.write(head); if (body) s.write(body); });
    const timer = setTimeout(() => { s.destroy(); resolve({ text, error: 'timeout' }); }, 10000);
    s.on('data', (d) => { text += d.toString('latin1'); });
    s.on('error', (e) => { clearTimeout(timer); resolve({ text, error: e.code }); });
    s.on('close', () => { clearTimeout(timer); resolve({ text, error: null }); });
  });
  const upload = (extra = '') => 'POST /api/v1/files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n' +
    `Content-Length: ${4 << 20}\r\n${extra}\r\n`;

  it('Expect: 100-continue gets the 502 instead of a 100 (the body is not asked for), and the connection closes', async () => {
    const { text, error } = await exchange(upload('Expect: 100-continue\r\n'));
    assert.equal(error, null, text);
    assert.match(text, /^HTTP\/1\.1 502 /, text);
    assert.doesNotMatch(text, /100 Continue/, text);
    assert.match(text, /\r\nConnection: close\r\n/i, text);
  });

  it('a client that sends its body at once still reads the 502: the gateway drains it before closing', async () => {
    const body = Buffer.alloc(4 << 20, 'x');
    for (let i = 0; i < 5; i++) {
      const { text, error } = await exchange(upload(), body);
      assert.match(text, /^HTTP\/1\.1 502 /, `try ${i}: ${error ?? ''} ${text.slice(0, 200)}`);
    }
  });
});

describe('reverse proxy: Open WebUI hangs', () => {
  let gh;
  let silent;
  const sockets = new Set();
  before(async () => {
    // Accepts connections and never answers.
    silent = net.createServer((socket) => { sockets.add(socket); socket.on('error', () => {}); socket.resume(); });
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
    gh = await startGatehouse({
      env: { OPENWEBUI_URL: `http://127.0.0.1:${silent.address().port}`, PROXY_READ_TIMEOUT_S: '1' },
    });
  });
  after(async () => {
    await gh?.stop();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  it('answers 504 after PROXY_READ_TIMEOUT_S', async () => {
    const started = Date.now();
    const r = await send(`${gh.url}/api/models`);
    const took = Date.now() - started;
    assert.equal(r.status, 504, r.body);
    assert.equal(json(r).error.code, 'gateway_timeout');
    assert.ok(took >= 900 && took < 4000, `answered after ${took} ms`);
  });

  it('a client that leaves closes the upstream connection', async () => {
    const before = sockets.size;
    const req = http.get(`${gh.url}/api/chat/stream`, { agent: false });
    req.on('error', () => {});
    await new Promise((resolve, reject) => {
      const deadline = Date.now() + 3000;
      const poll = () => {
        if (sockets.size > before) resolve();
        else if (Date.now() > deadline) reject(new Error('the upstream saw no connection'));
        else setTimeout(poll, 20);
      };
      poll();
    });
    const upstream = [...sockets].at(-1);
    const closed = new Promise((resolve) => upstream.once('close', resolve));
    req.destroy();
    const started = Date.now();
    await closed;
    assert.ok(Date.now() - started < 900, 'closed at once, not at the read timeout');
  });
});

describe('proxy settings', () => {
  it('a bad OPENWEBUI_URL or timeout fails at start, naming the setting', () => {
    for (const [name, value] of [['OPENWEBUI_URL', 'ftp://webui:8080'], ['OPENWEBUI_URL', 'webui:8080'],
      ['PROXY_READ_TIMEOUT_S', '0'], ['PROXY_CONNECT_TIMEOUT_S', 'soon'], ['PROXY_MAX_BODY_BYTES', '-1']]) {
      const r = checkConfig({ servers: {}, env: { OPENWEBUI_URL: 'http://127.0.0.1:9', [name]: value } });
      assert.notEqual(r.code, 0, `${name}=${value} accepted`);
      assert.match(`${r.stdout}${r.stderr}`, new RegExp(name), `${name}=${value}: ${r.stderr}`);
    }
    assert.equal(checkConfig({ servers: {}, env: { OPENWEBUI_URL: 'https://chat.example.com/' } }).code, 0);
  });

  it('without OPENWEBUI_URL unknown paths answer 404 as before', async (t) => {
    const gh = await startGatehouse({ t });
    const r = await send(`${gh.url}/api/v1/chats`);
    assert.equal(r.status, 404);
    assert.equal(json(r).error.code, 'not_found');
  });
});

describe('reverse proxy: rate limits for signed-in users', () => {
  let webui;
  before(async () => { webui = await startFakeWebUi(); });
  after(async () => { await webui?.stop(); });

  for (const counted of [false, true]) {
    it(`a signed-in user's proxied requests ${counted ? 'count (RATE_LIMIT_PROXY=true)' : 'do not count against the per-user limit'}`, async (t) => {
      const gh = await startGatehouse({
        t,
        env: { OPENWEBUI_URL: webui.url, RATE_LIMIT_PER_MINUTE: '5', ...(counted ? { RATE_LIMIT_PROXY: 'true' } : {}) },
      });
      const statuses = [];
      for (let i = 0; i < 12; i += 1) {
        statuses.push((await send(`${gh.url}/api/version`, { headers: { authorization: `Bearer ${gh.adminKey}` } })).status);
      }
      if (counted) assert.ok(statuses.includes(429), `expected a 429 after 5 requests: ${statuses}`);
      else assert.deepEqual(statuses, Array(12).fill(200));
      // The MCP/API routes stay limited either way.
      const api = [];
      for (let i = 0; i < 8; i += 1) api.push((await send(`${gh.url}/servers`, { headers: { authorization: `Bearer ${gh.adminKey}` } })).status);
      assert.ok(api.includes(429), `the per-user API limit still applies: ${api}`);
    });
  }
});

describe('reverse proxy: framing, deadlines, and an Open WebUI that misbehaves', () => {
  let gh;
  let upstream;
  const flood = { sent: 0, closed: false };
  before(async () => {
    upstream = http.createServer((req, res) => {
      if (req.url === '/slow') { setTimeout(() => res.end('slow answer'), 3500); return; }
      if (req.url === '/switch') {  // 101 to a request that asked for no upgrade, then bytes of another protocol
        req.socket.write('HTTP/1.1 101 Switching Protocols\r\n\r\n\u0000\u0001binary');
        return;
      }
      if (req.url === '/endless') {  // a chunk header that never ends
        req.socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n1;a=');
        pump(req.socket, Buffer.alloc(65536, 'b'), { count: flood });
        return;
      }
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ url: req.url, headers: req.headers })));
    });
    upstream.on('clientError', (err, socket) => socket.destroy());
    await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    gh = await startGatehouse({
      env: { OPENWEBUI_URL: `http://127.0.0.1:${upstream.address().port}`, KEEPALIVE_TIMEOUT_S: '2' },
    });
  });
  after(async () => {
    await gh?.stop();
    upstream?.closeAllConnections?.();
    await new Promise((resolve) => upstream?.close(resolve));
  });

  // Writes `head` then `body` (a string, or a function that writes to the socket), reads until the gateway
  // closes: {text, ms}.
  const exchange = (head, body = '') => new Promise((resolve) => {
    let text = '';
    const started = Date.now();
    const s = net.connect({ port: gh.port, host: '127.0.0.1' }, () => {
      s.write(head);
      if (typeof body === 'function') body(s);
      else if (body) s.write(body);
    });
    const done = () => { clearTimeout(timer); resolve({ text, ms: Date.now() - started }); };
    const timer = setTimeout(() => { s.destroy(); done(); }, 15000);
    s.on('data', (d) => { text += d.toString('latin1'); });
    s.on('error', () => {});
    s.on('close', done);
  });
  const statusOf = (text) => Number(/^HTTP\/1\.[01] (\d+)/.exec(text)?.[1]);
  // Writes `bytes` of 'b' in pieces while the gateway takes them.
  const endless = (bytes) => (s) => pump(s, Buffer.alloc(65536, 'b'), { bytes });

  it('an answer slower than KEEPALIVE_TIMEOUT_S still arrives: the wait for the head is not the wait for the answer', async () => {
    const { text, ms } = await exchange('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(text), 200, text);
    assert.match(text, /slow answer/);
    assert.ok(ms >= 3000, `${ms} ms`);
  });

  it('a chunk header or trailer that never ends is 400 and costs no memory, on the gateway\'s routes and proxied ones', async () => {
    const before = rssKb(gh.pid);
    for (const [path, start] of [['/mcp', '1;a='], ['/api/v1/files/', '1;a='], ['/api/v1/files/', '0\r\nX-Trailer: ']]) {
      const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n${start}`;
      const { text } = await exchange(head, endless(2 << 20));  // (under the 4 MiB the lingering close reads: the 400 is not reset away)
      assert.equal(statusOf(text), 400, `${path} ${JSON.stringify(start)}: ${text.slice(0, 300)}`);
    }
    const grown = rssKb(gh.pid) - before;
    assert.ok(grown < 32 * 1024, `the gateway grew by ${grown} KiB`);
  });

  it('a malformed chunked body on a proxied path is 400', async () => {
    const { text } = await exchange('POST /api/v1/files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n');
    assert.equal(statusOf(text), 400, text);
  });

  it('HTTP/1.0 with Transfer-Encoding is 400 and the connection closes (nothing after it is read as a request)', async () => {
    const { text } = await exchange('POST /api/v1/x HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n' +
      'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /gateway/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    assert.equal(statusOf(text), 400, text);
    assert.equal(text.match(/HTTP\/1\.[01] \d+/g).length, 1, text);
  });

  it('Connection cannot strip Host; fields a second Connection line names are not passed on', async () => {
    const { text } = await exchange('GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Host, close\r\nConnection: X-Secret\r\n' +
      'X-Secret: hop\r\nX-Kept: yes\r\n\r\n');
    assert.equal(statusOf(text), 200, text);
    const seen = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4).replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, ''));
    assert.ok(seen.headers.host, 'Host reached Open WebUI');
    assert.equal(seen.headers['x-secret'], undefined);
    assert.equal(seen.headers['x-kept'], 'yes');
  });

  it('a 101 to a request that asked for no upgrade is 502, and what follows is not relayed', async () => {
    const { text } = await exchange('GET /switch HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(text), 502, text);
    assert.doesNotMatch(text, /binary/);
  });

  it('an answer whose chunk header never ends is cut off at once, not read into memory', async () => {
    const before = rssKb(gh.pid);
    const { text } = await exchange('GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await waitFor(() => flood.closed, { timeoutMs: 10000, what: 'the gateway to close the upstream connection' });
    assert.ok(flood.sent < 32 << 20, `Open WebUI wrote ${flood.sent} bytes before the gateway gave up`);
    assert.ok(text.length < 1 << 20, `${text.length} bytes relayed`);
    const grown = rssKb(gh.pid) - before;
    assert.ok(grown < 32 * 1024, `the gateway grew by ${grown} KiB`);
  });
});
