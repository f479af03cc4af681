// Upstreams that misbehave in ways that used to cost more than one call: a legacy SSE server that points its
// message endpoint at another host (which would get the configured credentials), a Streamable HTTP server
// that drops the connection after carrying out a call (the call must not run twice), one that writes bytes
// after its answer (they must not become the next call's answer), and a stdio server that stops reading its
// input while it floods the gateway with requests (the gateway must not hold its answers without bound), and
// one that exits while a process it started keeps its output open; stderr floods; and a server that cannot start
// (one call must not start it twice); large answers read at once, past UPSTREAM_MEMORY_LIMIT_MB. The line
// framing of stdio servers: a client's line breaks must not split its call into messages of its making, and an
// answer's bare CR must not cut the SSE event it goes out in; a stdio server gets none of the gateway's sockets.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { connectClient, fixtureStdio, pump, rawSession, resultText, rssKb, startGatehouse, waitFor } from './lib/index.js';
import { makeGroup, makeUser, putGrant } from './lib/tenancy.js';
import { send } from './lib/ops.js';

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));

// A Streamable HTTP MCP server on raw sockets (every byte under the test's control). `onCall(name, socket,
// answer)` decides what a tools/call gets; `answer(obj, extra)` writes a JSON response, then `extra` bytes.
// With `sessionId`, initialize answers with that Mcp-Session-Id; `onGet(socket)` takes GET requests (else 405).
function rawMcpServer(onCall, { sessionId, onGet } = {}) {
  const calls = [];
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('error', () => {});
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length).toString('utf8');
        buf = buf.subarray(end + 4 + length);
        const answer = (obj, extra = '') => {
          const text = JSON.stringify(obj);
          const session = sessionId && obj.result?.serverInfo ? `Mcp-Session-Id: ${sessionId}\r\n` : '';
          socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n${session}Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}${extra}`);
        };
        if (head.startsWith('GET') && onGet) { onGet(socket); continue; }
        if (!head.startsWith('POST')) { socket.write('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n'); continue; }
        const msg = JSON.parse(body);
        if (msg.id === undefined) { socket.write('HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n'); continue; }
        if (msg.method === 'initialize') {
          answer({ jsonrpc: '2.0', id: msg.id, result: { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'raw', version: '1' } } });
        } else if (msg.method === 'tools/list') {
          answer({ jsonrpc: '2.0', id: msg.id, result: { tools: ['once', 'trailing', 'plain', 'held', 'endless', 'early'].map((name) => ({ name, inputSchema: { type: 'object' } })) } });
        } else if (msg.method === 'tools/call') {
          calls.push(msg.params.name);
          onCall(msg.params.name, socket, (text, extra) => answer({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text }] } }, extra), msg.id);
        } else {
          answer({ jsonrpc: '2.0', id: msg.id, result: {} });
        }
      }
    });
  });
  const load = { open: 0, most: 0 };
  server.on('connection', (socket) => {
    load.most = Math.max(load.most, ++load.open);
    socket.on('close', () => { load.open--; });
  });
  return { server, calls, load };
}

// An answer whose first chunk header never ends: bytes as fast as the gateway takes them, counted.
function endlessChunkHeader(socket, count) {
  socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1;a=');
  pump(socket, Buffer.alloc(65536, 'b'), { count });
}

describe('hostile upstreams', () => {
  const flood = { sent: 0, closed: false };
  let gh;
  const cleanups = [];
  const stolen = [];
  let raw;
  let capped;

  before(async () => {
    // Legacy SSE: the stream names an endpoint on another port, where a server counts what arrives.
    const thief = http.createServer((req, res) => { stolen.push(req.headers.authorization ?? ''); req.resume(); res.end(); });
    const thiefPort = await listen(thief);
    const sse = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: endpoint\ndata: http://127.0.0.1:${thiefPort}/messages?sessionId=1\n\n`);
    });
    const ssePort = await listen(sse);
    raw = rawMcpServer((name, socket, answer) => {
      if (name === 'once') socket.destroy();  // carried out, then the connection drops without an answer
      else if (name === 'endless') endlessChunkHeader(socket, flood);
      else if (name === 'trailing') answer('first', 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
      else if (name === 'early') {  // interim answers first, as HTTP/1.1 allows (103 Early Hints, 102 Processing)
        socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' +
          'HTTP/1.1 102 Processing\r\n\r\n'.repeat(12));  // (as many as come before the deadline)
        setTimeout(() => answer('after the hints'), 150);
      }
      else answer(`plain ${raw.calls.length}`);
    });
    const rawPort = await listen(raw.server);
    capped = rawMcpServer((name, socket, answer) => setTimeout(() => answer('slow'), 300));
    const cappedPort = await listen(capped.server);
    cleanups.push(() => { thief.closeAllConnections?.(); thief.close(); sse.closeAllConnections?.(); sse.close(); raw.server.close(); capped.server.close(); });
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      servers: {
        foreign: { type: 'sse', url: `http://127.0.0.1:${ssePort}/sse`, headers: { Authorization: 'Bearer upstream-secret' }, timeoutMs: 5000 },
        raw: { type: 'streamable-http', url: `http://127.0.0.1:${rawPort}/mcp`, timeoutMs: 5000 },
        capped: { type: 'streamable-http', url: `http://127.0.0.1:${cappedPort}/mcp`, timeoutMs: 10000, maxConnections: 3 },
        deaf: fixtureStdio('deaf.js', { timeoutMs: 120000 }),
        forkexit: fixtureStdio('forkexit.js', { timeoutMs: 60000 }),
        chatter: fixtureStdio('chatter.js'),
        quitter: fixtureStdio('exit-at-init.js', { timeoutMs: 5000 }),
        doomed: fixtureStdio('exit-at-init.js', { timeoutMs: 5000 }),
        crasher: fixtureStdio('crash.js', { timeoutMs: 10000 }),
      },
    });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  const logged = (re) => gh.jsonLogs().filter((l) => re.test(JSON.stringify(l)));

  it('a legacy SSE endpoint on another origin is refused: nothing is sent there', async () => {
    // (whether the downstream session opens depends on when the upstream starts; what matters follows)
    await rawSession(`${gh.url}/mcp/foreign`).then((s) => s.request('tools/list', {})).catch(() => {});
    await waitFor(() => logged(/SSE endpoint is on another origin/).length > 0,
      { timeoutMs: 10000, what: 'the refusal in the log' });
    assert.deepEqual(stolen, [], 'a request (with the configured Authorization) reached the other origin');
  });

  it('a call whose connection drops after it was carried out is not sent again', async () => {
    const s = await rawSession(`${gh.url}/mcp/raw`);
    const warm = await s.request('tools/call', { name: 'plain', arguments: {} });  // the connection is pooled now
    assert.equal(warm.status, 200, warm.text);
    const before = raw.calls.filter((n) => n === 'once').length;
    const res = await s.request('tools/call', { name: 'once', arguments: {} });
    assert.ok(res.json?.error, `expected an error for the dropped call: ${res.text}`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(raw.calls.filter((n) => n === 'once').length - before, 1, `the upstream ran the call ${raw.calls.join(',')}`);
  });

  it('bytes after an answer do not become the next call\'s answer', async () => {
    const s = await rawSession(`${gh.url}/mcp/raw`);
    const first = await s.request('tools/call', { name: 'trailing', arguments: {} });
    assert.equal(resultText(first.json.result), 'first', first.text);
    const next = await s.request('tools/call', { name: 'plain', arguments: {} });
    assert.match(resultText(next.json?.result ?? {}), /^plain \d+$/, next.text);
  });

  it('interim 1xx answers before the answer are skipped: the call gets its answer, and the next calls theirs', async () => {
    const s = await rawSession(`${gh.url}/mcp/raw`);
    const early = await s.request('tools/call', { name: 'early', arguments: {} });
    assert.equal(resultText(early.json?.result ?? {}), 'after the hints', early.text);
    for (let i = 0; i < 3; ++i) {
      const next = await s.request('tools/call', { name: 'plain', arguments: {} });
      assert.match(resultText(next.json?.result ?? {}), /^plain \d+$/, next.text);
    }
  });

  it('an answer whose chunk header never ends fails its call at once, not read into memory (nor until the timeout)', async () => {
    const s = await rawSession(`${gh.url}/mcp/raw`);
    const before = rssKb(gh.pid);
    const started = Date.now();
    const res = await s.request('tools/call', { name: 'endless', arguments: {} });
    assert.ok(res.json?.error || res.json?.result?.isError, res.text.slice(0, 300));
    assert.ok(Date.now() - started < 4000, `${Date.now() - started} ms: the call waited for its timeout (5 s)`);
    await waitFor(() => flood.closed, { timeoutMs: 10000, what: 'the gateway to close the connection' });
    assert.ok(flood.sent < 32 << 20, `the upstream wrote ${flood.sent} bytes before the gateway gave up`);
    const grown = rssKb(gh.pid) - before;
    assert.ok(grown < 32 * 1024, `the gateway grew by ${grown} KiB`);
  });

  it('a stdio server that exits while a process it started holds its output is seen to exit', async () => {
    const s = await rawSession(`${gh.url}/mcp/forkexit`);
    const started = Date.now();
    const res = await s.request('tools/call', { name: 'leave', arguments: {} });
    assert.ok(res.json?.error, `expected an error: ${res.text}`);
    assert.ok(Date.now() - started < 20000, `answered after ${Date.now() - started} ms (the call's timeout is 60 s)`);
    const again = await s.request('tools/call', { name: 'echo', arguments: { message: 'restarted' } });
    assert.match(resultText(again.json?.result ?? {}), /restarted/, again.text);
  });

  it('a flood of stderr lines is logged at a bounded rate, with a count of the rest', async () => {
    const s = await rawSession(`${gh.url}/mcp/chatter`);
    const res = await s.request('tools/call', { name: 'chatter', arguments: {} });
    assert.equal(resultText(res.json.result), 'chattered', res.text);
    await waitFor(() => gh.jsonLogs().some((l) => l.msg === 'upstream stderr' && /after the flood/.test(l.line)),
      { timeoutMs: 10000, what: 'the line written a second after the flood' });
    const dropped = gh.jsonLogs().filter((l) => l.msg === 'upstream stderr lines dropped' && l.server === 'chatter')
      .reduce((n, l) => n + l.lines, 0);
    const logged = gh.jsonLogs().filter((l) => l.msg === 'upstream stderr' && /chatter line/.test(l.line)).length;
    assert.equal(logged + dropped, 5000, `logged ${logged}, dropped ${dropped}`);
    assert.ok(logged <= 200, `${logged} of 5,000 lines logged`);
  });

  it('maxConnections bounds the connections to a remote server; calls beyond it wait their turn', async () => {
    const s = await rawSession(`${gh.url}/mcp/capped`);
    const results = await Promise.all(Array.from({ length: 8 }, () => s.request('tools/call', { name: 'plain', arguments: {} })));
    for (const r of results) assert.equal(resultText(r.json?.result ?? {}), 'slow', r.text);
    assert.ok(capped.load.most <= 3, `${capped.load.most} connections at once`);
    assert.equal(capped.calls.length, 8);
  });

  it('a server that exits during initialize counts one failure a start (backoff 250 ms, then doubling)', async () => {
    const s = await rawSession(`${gh.url}/mcp/quitter`).catch(() => null);
    if (s) await s.request('tools/list', {}).catch(() => {});
    const failures = await waitFor(() => {
      const f = gh.jsonLogs().filter((l) => l.server === 'quitter' && /^upstream (start )?failed$/.test(l.msg));
      return f.length > 0 && f;
    }, { timeoutMs: 15000, what: 'a start failure of quitter in the log' });
    assert.ok(failures.every((l) => l.msg === 'upstream start failed'), JSON.stringify(failures));
    assert.equal(failures[0].retry_in_ms, 250, JSON.stringify(failures));
    for (let i = 1; i < failures.length; i++) assert.equal(failures[i].retry_in_ms, 2 * failures[i - 1].retry_in_ms);
  });

  it('crashes soon after each start back off as failed starts do; a crash after 5 s of service restarts at once', async () => {
    const s = await rawSession(`${gh.url}/mcp/crasher`);
    const delays = () => gh.jsonLogs().filter((l) => l.msg === 'upstream failed' && l.server === 'crasher').map((l) => l.retry_in_ms);
    for (let i = 0; i < 4; i += 1) {
      await waitFor(async () => (await s.request('tools/call', { name: 'echo', arguments: { message: 'up' } })).json?.result,
        { timeoutMs: 10000, intervalMs: 100, what: 'the crasher to run again' });
      await s.request('tools/call', { name: 'crash', arguments: {} });
    }
    await waitFor(() => delays().length === 4, { timeoutMs: 5000, what: 'four failures logged' });
    assert.deepEqual(delays(), [250, 500, 1000, 2000]);
    await waitFor(async () => (await s.request('tools/call', { name: 'echo', arguments: { message: 'up' } })).json?.result,
      { timeoutMs: 10000, intervalMs: 100, what: 'the crasher to run again' });
    await new Promise((r) => setTimeout(r, 5500));  // a while of good service
    await s.request('tools/call', { name: 'crash', arguments: {} });
    await waitFor(() => delays().length === 5, { timeoutMs: 5000, what: 'the fifth failure logged' });
    assert.equal(delays()[4], 250, 'its earlier failures are forgotten');
  });

  it('a call to a server that cannot start starts it once, not again after the backoff', async () => {
    const starts = () => gh.jsonLogs().filter((l) => l.server === 'doomed' && l.msg === 'upstream start failed').length;
    const s = await rawSession(`${gh.url}/mcp`);
    for (const [method, params] of [['tools/call', { name: 'doomed__echo', arguments: {} }],
      ['prompts/get', { name: 'doomed__greeting', arguments: {} }]]) {
      await new Promise((r) => setTimeout(r, 1200));  // past the backoff of the previous start (250 ms, then 500)
      const before = starts();
      const res = await s.request(method, params);
      assert.equal(res.json?.error?.code, -32603, res.text);
      assert.match(res.json.error.message, /Upstream server 'doomed' is unavailable/, res.text);
      await new Promise((r) => setTimeout(r, 700));  // a second start would follow the first within 250–500 ms
      assert.equal(starts() - before, 1, `${method}: ${starts() - before} starts for one call`);
    }
  });

  it('a stdio server that stops reading its input is failed and restarted, not buffered for without bound', async () => {
    const s = await rawSession(`${gh.url}/mcp/deaf`);
    const start = rssKb(gh.proc.pid);
    const res = await s.request('tools/call', { name: 'flood', arguments: {} });
    assert.ok(res.json?.error, `expected an error: ${res.text}`);
    assert.ok(logged(/does not read its input/).length > 0, 'no log line');
    const grown = rssKb(gh.proc.pid) - start;
    assert.ok(grown < 400 * 1024, `RSS grew by ${grown} kB`);
    const again = await s.request('tools/call', { name: 'echo', arguments: { message: 'back' } });
    assert.match(resultText(again.json?.result ?? {}), /back/, again.text);
  });
});

describe('upstream answers held while being read: at most UPSTREAM_MEMORY_LIMIT_MB across calls', () => {
  const cleanups = [];
  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  it('the standalone GET stream counts too: an event that never ends holds at most the limit', async () => {
    let streams = 0;
    const endless = rawMcpServer((name, socket, answer) => answer('ok'), {
      sessionId: 'endless-get',
      onGet: (socket) => {
        streams += 1;
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n');
        pump(socket, `10000\r\n${'d'.repeat(0x10000)}\r\n`);
      },
    });
    const port = await listen(endless.server);
    cleanups.push(() => { endless.server.close(); });
    const gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      env: { UPSTREAM_MEMORY_LIMIT_MB: '4' },
      servers: { endless: { type: 'streamable-http', url: `http://127.0.0.1:${port}/mcp`, timeoutMs: 10000 } },
    });
    const metric = async (name) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec((await send(`${gh.url}/metrics`)).text)?.[1]);
    const before = rssKb(gh.pid);
    const s = await rawSession(`${gh.url}/mcp/endless`);
    assert.equal(resultText((await s.request('tools/call', { name: 'plain', arguments: {} })).json.result), 'ok');
    await waitFor(async () => await metric('gatehouse_upstream_answers_refused_total') > 0,
      { timeoutMs: 15000, what: 'the GET stream refused at the limit' });
    assert.ok(streams >= 1);
    const grown = rssKb(gh.pid) - before;
    assert.ok(grown < 40 * 1024, `the gateway grew by ${grown} KiB`);
    assert.equal(resultText((await s.request('tools/call', { name: 'plain', arguments: {} })).json.result), 'ok', 'calls go on');
  });

  it('an answer that would take the total past the limit fails its call; the rest go on, and the memory is given back', async () => {
    const SIZE = 700 * 1024;  // each under the limit (1 MiB), two of them over it
    let release;
    const released = new Promise((r) => { release = r; });
    const big = rawMcpServer((name, socket, answer, id) => {
      if (name !== 'held') { answer('y'.repeat(SIZE)); return; }
      // All but the last bytes now, the rest when the test says so: the gateway holds what came meanwhile.
      const text = JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'x'.repeat(SIZE) }] } });
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n`);
      socket.write(text.slice(0, -10));
      released.then(() => socket.write(text.slice(-10)));
    });
    const port = await listen(big.server);
    cleanups.push(() => big.server.close());
    const gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      env: { UPSTREAM_MEMORY_LIMIT_MB: '1' },
      servers: { big: { type: 'streamable-http', url: `http://127.0.0.1:${port}/mcp`, timeoutMs: 10000 } },
    });
    const metric = async (name) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec((await send(`${gh.url}/metrics`)).text)?.[1]);
    const s = await rawSession(`${gh.url}/mcp/big`);
    const held = s.request('tools/call', { name: 'held', arguments: {} });
    await waitFor(async () => await metric('gatehouse_upstream_answer_bytes') > SIZE - 1024,
      { timeoutMs: 5000, what: 'the held answer counted' });

    const refused = await s.request('tools/call', { name: 'plain', arguments: {} });
    assert.equal(refused.json?.error?.code, -32603, refused.text.slice(0, 300));
    assert.match(refused.json.error.message, /Upstream server 'big' answered, but the gateway cannot take it: too many large answers/);
    assert.equal(await metric('gatehouse_upstream_answers_refused_total'), 1);
    assert.ok(gh.jsonLogs().some((l) => l.msg === 'upstream answer not read' && l.server === 'big'), 'no log line');

    release();
    const first = await held;
    assert.equal(resultText(first.json?.result ?? {}).length, SIZE, first.text.slice(0, 300));
    assert.equal(await metric('gatehouse_upstream_answer_bytes'), 0, 'the shares are given back');
    const again = await s.request('tools/call', { name: 'plain', arguments: {} });
    assert.equal(resultText(again.json?.result ?? {}).length, SIZE, again.text.slice(0, 300));
  });
});

describe('stdio line framing and descriptors', () => {
  it('line breaks in a call\'s params do not smuggle messages to a stdio server past the tool allow-list', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-framing-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const record = path.join(dir, 'ran.txt');
    const gh = await startGatehouse({ t, servers: { lf: fixtureStdio('line-framing.js', { env: { RECORD_FILE: record } }) } });
    await makeGroup(gh, 'Limited');
    await putGrant(gh, 'Limited', 'lf', { allow: ['safe'] });
    const bob = await makeUser(gh, 'bob@example.com', { groups: ['Limited'] });
    const s = await rawSession(`${gh.mcpUrl}/lf`, { headers: bob.headers, auth: false });
    const denied = await s.request('tools/call', { name: 'dangerous', arguments: {} });
    assert.equal(denied.json?.error?.code, -32602, denied.text);
    for (const [i, eol] of ['\n', '\r\n', '\r'].entries()) {
      const inner = `{"jsonrpc":"2.0","id":${900 + i},"method":"tools/call","params":{"name":"dangerous","arguments":{}}}`;
      const body = `{"jsonrpc":"2.0","id":${10 + i},"method":"tools/call","params":{"name":"safe","arguments":${eol}${inner}${eol}}}`;
      const res = await s.post(body);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json?.id, 10 + i, res.text);
      assert.equal(res.json?.result?.content?.[0]?.text, 'safe ran', res.text);
    }
    assert.deepEqual(fs.readFileSync(record, 'utf8').trim().split('\n'), ['safe', 'safe', 'safe'], 'only safe ran');
  });

  it('an answer with a bare CR as JSON whitespace reaches the client whole over SSE', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-framing-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const gh = await startGatehouse({ t, servers: { lf: fixtureStdio('line-framing.js', { env: { RECORD_FILE: path.join(dir, 'ran.txt') } }) } });
    const client = await connectClient(`${gh.mcpUrl}/lf`, { t });
    let progressed = 0;
    const result = await client.callTool({ name: 'lone-cr', arguments: {} }, undefined,
      { timeout: 10000, onprogress: () => { progressed++; } });
    assert.equal(progressed, 1, 'the answer came after a progress notification (an SSE response)');
    assert.equal(resultText(result), 'after a lone CR');
  });

  it('a stdio server holds none of the gateway\'s sockets (its listening socket, clients\', upstreams\')', async (t) => {
    const gh = await startGatehouse({ t, servers: { fds: fixtureStdio('descriptors.js') } });
    const client = await connectClient(`${gh.mcpUrl}/fds`, { t });  // a client connection open while it starts
    const theirs = JSON.parse(resultText(await client.callTool({ name: 'descriptors', arguments: {} })));
    const ours = new Set();
    for (const fd of fs.readdirSync(`/proc/${gh.pid}/fd`)) {
      try { ours.add(fs.readlinkSync(`/proc/${gh.pid}/fd/${fd}`)); } catch { /* closed meanwhile */ }
    }
    const gatewaySockets = [...ours].filter((l) => l.startsWith('socket:'));
    assert.ok(gatewaySockets.length >= 2, `the gateway has sockets open: ${gatewaySockets}`);
    const shared = theirs.filter((l) => gatewaySockets.includes(l));
    assert.deepEqual(shared, [], `the server holds the gateway's sockets: ${JSON.stringify(theirs)}`);
  });

  it('a stdio server gets SIGPIPE as it should be (not ignored, as in the gateway), and dies with a killed gateway', async (t) => {
    // (node ignores SIGPIPE itself: a shell in front reports what the gateway handed on, then becomes the server)
    const { command, args } = fixtureStdio('descriptors.js');
    const sticky = { command: '/bin/sh', args: ['-c', 'grep SigIgn /proc/$$/status >&2; exec "$0" "$@"', command, ...args], env: { STICKY: '1' } };
    const gh = await startGatehouse({ t, servers: { sticky } });
    const client = await connectClient(`${gh.mcpUrl}/sticky`, { t });
    const { pid } = JSON.parse(resultText(await client.callTool({ name: 'process', arguments: {} })));
    const line = await waitFor(() => gh.jsonLogs().find((l) => l.msg === 'upstream stderr' && /SigIgn/.test(l.line)),
      { timeoutMs: 5000, what: 'the shell\'s SigIgn line' });
    const sigIgn = /SigIgn:\s*([0-9a-f]+)/.exec(line.line)[1];
    assert.equal(BigInt(`0x${sigIgn}`) & (1n << 12n), 0n, `SIGPIPE ignored in the server (SigIgn ${sigIgn})`);
    const alive = () => { try { process.kill(pid, 0); return true; } catch { return false; } };
    assert.ok(alive());
    process.kill(gh.pid, 'SIGKILL');
    await waitFor(() => !alive(), { timeoutMs: 5000, what: `server ${pid} to end with the gateway` });
  });
});

describe('an upstream that keeps a call\'s SSE stream open after answering', () => {
  it('does not hold the pool connection: the next call goes out at once', async (t) => {
    let open = 0;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        const msg = JSON.parse(body || '{}');
        if (msg.id === undefined) { res.writeHead(202).end(); return; }
        const result = msg.method === 'initialize'
          ? { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'open', version: '1' } }
          : msg.method === 'tools/list' ? { tools: [{ name: 'stay', inputSchema: { type: 'object' } }] }
            : { content: [{ type: 'text', text: 'answered' }] };
        if (msg.method !== 'tools/call') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
          return;
        }
        open++;
        res.on('close', () => { open--; });
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: msg.id, result })}\n\n`);  // and never ends
      });
    });
    const port = await listen(server);
    t.after(() => { server.closeAllConnections(); server.close(); });
    const gh = await startGatehouse({
      t, servers: { open: { type: 'streamable-http', url: `http://127.0.0.1:${port}/mcp`, timeoutMs: 20000, maxConnections: 1 } },
    });
    const s = await rawSession(`${gh.url}/mcp/open`);
    for (let i = 0; i < 3; i++) {
      const res = await s.request('tools/call', { name: 'stay', arguments: {} });  // (rawRequest gives up after 15 s)
      assert.equal(resultText(res.json?.result ?? {}), 'answered', res.text);
    }
    await waitFor(() => open === 0, { timeoutMs: 3000, what: 'the streams the gateway no longer needs to be closed' });
  });
});

describe('a remote call given up (cancelled) frees its connection', () => {
  it('with maxConnections 1, the next call goes out instead of waiting for the given-up one\'s deadline', async (t) => {
    const single = rawMcpServer((name, socket, answer) => { if (name !== 'held') answer('plain'); });
    const port = await listen(single.server);
    t.after(() => { single.server.close(); });
    const gh = await startGatehouse({
      t, servers: { single: { type: 'streamable-http', url: `http://127.0.0.1:${port}/mcp`, timeoutMs: 20000, maxConnections: 1 } },
    });
    const [a, b] = [await rawSession(`${gh.url}/mcp/single`), await rawSession(`${gh.url}/mcp/single`)];
    const held = a.post({ jsonrpc: '2.0', id: 'held-1', method: 'tools/call', params: { name: 'held', arguments: {} } });
    await waitFor(() => single.calls.includes('held'), { what: 'the held call upstream' });
    await a.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'held-1' } });
    // Before: the held call's connection stayed taken until its deadline (25 s), past this call's own timeout.
    const next = await b.request('tools/call', { name: 'plain', arguments: {} });
    assert.equal(resultText(next.json?.result ?? {}), 'plain', next.text);
    await held.catch(() => {});
  });
});
