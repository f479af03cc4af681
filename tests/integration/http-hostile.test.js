// Hostile HTTP on the downstream side, byte by byte (raw sockets): what a client without credentials can make
// the gateway hold, request framing that could desynchronise a proxy in front of it, repeated Host headers,
// numbers JSON cannot hold, a client that pipelines a request and then hangs up mid-call; and more connections
// than MAX_CONNECTIONS, with the open-file limit the gateway gives itself and its children.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  MCP_HEADERS, assertServing, delay, fixtureStdio, rssKb, rawRequest, rawSession, resultText, rpc, startGatehouse, waitFor, withAuth,
} from './lib/index.js';

describe('hostile HTTP clients', () => {
  let gh;
  const cleanups = [];
  const sockets = [];

  before(async () => {
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      env: { MAX_BODY_BYTES: String(8 * 1024 * 1024) },
      servers: { hang: fixtureStdio('hang.js', { timeoutMs: 60000 }) },
    });
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await assertServing(gh);
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  const open = () => new Promise((resolve, reject) => {
    const s = net.connect({ port: gh.port, host: '127.0.0.1' }, () => resolve(s));
    s.on('error', reject);
    sockets.push(s);
  });
  // Writes `text`, then reads until the gateway closes the connection (or `ms` pass): everything it sent.
  const exchange = async (text, ms = 5000) => {
    const s = await open();
    return new Promise((resolve) => {
      let got = '';
      const timer = setTimeout(() => { s.destroy(); resolve(got); }, ms);
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('close', () => { clearTimeout(timer); resolve(got); });
      s.on('error', () => {});
      s.write(text);
    });
  };
  const responses = (text) => text.match(/^HTTP\/1\.1 \d{3}/gm) ?? [];
  const logged = (msg, since) => gh.jsonLogs().slice(since).filter((l) => l.msg === msg);

  it('a body claimed but not sent costs what arrives, not the length claimed', async () => {
    const before = rssKb(gh.proc.pid);
    const head = 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${8 * 1024 * 1024}\r\n\r\n{`;
    for (let i = 0; i < 40; i++) (await open()).write(head);
    await new Promise((r) => setTimeout(r, 1500));
    const grown = rssKb(gh.proc.pid) - before;
    // 40 × 8 MiB = 320 MiB if each claimed length were allocated up front
    assert.ok(grown < 64 * 1024, `RSS grew by ${grown} kB for 40 connections that sent one byte of their body`);
  });

  it('a Transfer-Encoding that does not end in chunked → 400, and the body is not read as a request', async () => {
    const since = gh.jsonLogs().length;
    const smuggled = 'GET /gateway/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
    const text = await exchange('POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      `Transfer-Encoding: chunked, gzip\r\n\r\n${smuggled}`);
    assert.deepEqual(responses(text), ['HTTP/1.1 400'], text);
    assert.ok(logged('bad http request', since).some((l) => /Transfer-Encoding/.test(l.error)), 'no log line');
  });

  it('a coding other than chunked before it → 501', async () => {
    const text = await exchange('POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      'Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n');
    assert.deepEqual(responses(text), ['HTTP/1.1 501'], text);
  });

  it('a chunk size that is not hexadecimal → 400 and a log line', async () => {
    const since = gh.jsonLogs().length;
    const text = await exchange('POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      'Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n');
    assert.deepEqual(responses(text), ['HTTP/1.1 400'], text);
    assert.ok(logged('bad http request', since).some((l) => l.reading === 'body'), 'no log line');
  });

  it('two Host headers → 400, even when the first is allowed', async () => {
    const [, auth] = Object.entries(withAuth(gh.url, {})).find(([k]) => k.toLowerCase() === 'authorization');
    const text = await exchange('GET /servers HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example.com\r\n' +
      `Authorization: ${auth}\r\n\r\n`);
    assert.deepEqual(responses(text), ['HTTP/1.1 400'], text);
    const ok = await exchange(`GET /servers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`);
    assert.deepEqual(responses(ok), ['HTTP/1.1 200'], ok);
  });

  it('a Host of bytes that are not UTF-8 → 403, and the log line that says so is valid UTF-8', async () => {
    const from = gh.logs.length;
    const text = await exchange(Buffer.from('GET /servers HTTP/1.1\r\nHost: ev\xffil\xc3.example.com\r\nConnection: close\r\n\r\n', 'latin1'));
    assert.deepEqual(responses(text), ['HTTP/1.1 403'], text);
    const line = await waitFor(() => gh.logs.slice(from).find((l) => l.includes('"refused request"')), { what: 'the refusal\'s log line' });
    assert.ok(!line.includes('\ufffd'), `bytes that are not UTF-8 reached the log: ${line}`);
    assert.equal(JSON.parse(line).host, 'ev?il?.example.com', line);
  });

  it('a Host that only begins with an allowed IPv6 literal → 403', async () => {
    const res = await rawRequest(`${gh.url}/servers`, { method: 'GET', headers: { host: '[::1].evil.example.com' } });
    assert.equal(res.status, 403, res.text);
  });

  it('HEAD gets the fields a GET would (its Content-Length too) and no body: the next request on the connection is read right', async () => {
    const host = `Host: 127.0.0.1:${gh.port}\r\n`;
    const got = await exchange(`HEAD /gateway/health HTTP/1.1\r\n${host}\r\nHEAD /servers HTTP/1.1\r\n${host}\r\n` +
      `GET /gateway/health HTTP/1.1\r\n${host}Connection: close\r\n\r\n`);
    const answers = got.split(/(?=HTTP\/1\.1 \d{3})/);
    assert.equal(answers.length, 3, got.slice(0, 600));
    for (const head of answers.slice(0, 2)) {
      const [fields, body] = head.split('\r\n\r\n');
      assert.match(fields, /\r\ncontent-length: [1-9]\d*/i, fields);
      assert.equal(body, '', `a body after a HEAD answer: ${head.slice(0, 300)}`);
    }
    assert.match(answers[0], /^HTTP\/1\.1 (200|503)/);
    assert.match(answers[1], /^HTTP\/1\.1 401/);
    const [, lastBody] = answers[2].split('\r\n\r\n');
    assert.ok(JSON.parse(lastBody).status, answers[2]);
  });

  it('an HTTP/1.0 client gets its stream unchunked (it knows no chunks), ended by the connection\'s close', async () => {
    const s = await rawSession(`${gh.url}/mcp/hang`);
    const auth = withAuth(`${gh.url}/mcp/hang`, {});
    const fields = Object.entries({ ...auth, 'mcp-session-id': s.sessionId, accept: 'text/event-stream' })
      .map(([k, v]) => `${k}: ${v}\r\n`).join('');
    const got = await exchange(`GET /mcp/hang HTTP/1.0\r\nHost: 127.0.0.1:${gh.port}\r\n${fields}\r\n`, 1500);
    const head = got.split('\r\n\r\n')[0];
    assert.match(head, /^HTTP\/1\.0 200/, got.slice(0, 400));
    assert.match(head, /content-type: text\/event-stream/i);
    assert.doesNotMatch(head, /transfer-encoding/i, head);
  });

  it('a number too large for a double reaches the upstream as JSON, and the call is answered', async () => {
    const s = await rawSession(`${gh.url}/mcp/hang`);
    const body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"k":1},"name":"echo",' +
      '"arguments":{"message":"big","n":1e400}}}';
    const res = await rawRequest(`${gh.url}/mcp/hang`, { headers: { ...MCP_HEADERS, ...s.headers }, body, timeoutMs: 10000 });
    assert.equal(res.status, 200, res.text);
    assert.match(resultText(res.json.result), /big/, res.text);
  });

  it('a client that pipelines a request and then hangs up still gets its call cancelled', async () => {
    const s = await rawSession(`${gh.url}/mcp`);
    const headers = { ...MCP_HEADERS, ...s.headers };
    const report = async () => JSON.parse(resultText((await rawRequest(`${gh.url}/mcp`, {
      headers, body: rpc('tools/call', { name: 'hang__report', arguments: {} }) })).json.result));
    const sock = await open();
    const body = JSON.stringify(rpc('tools/call', { name: 'hang__hang', arguments: { tag: 'pipelined' } }));
    const head = Object.entries(withAuth(gh.url, headers)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    sock.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const arrived = await waitFor(async () => (await report()).hangCalls.find((c) => c.tag === 'pipelined'),
      { timeoutMs: 10000, intervalMs: 50, what: 'the hang call to reach the upstream' });
    sock.write('GET /gateway/health HTTP/1.1\r\n');  // the start of a pipelined request
    await new Promise((r) => setTimeout(r, 300));
    sock.end();
    const cancelled = await waitFor(async () => (await report()).cancelled.find((c) => c.requestId === arrived.id),
      { timeoutMs: 10000, intervalMs: 100, what: `notifications/cancelled for upstream request ${JSON.stringify(arrived.id)}` });
    assert.deepEqual(cancelled.requestId, arrived.id);
  });
});

describe('connections past MAX_CONNECTIONS, and the open-file limit', () => {
  let gh;
  const cleanups = [];
  const held = [];
  let childLimits;  // what the stdio server's process started with (Node raises its own limit: a shell reads it)

  before(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-fd-'));
    childLimits = path.join(dir, 'limits');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const hang = fixtureStdio('hang.js');
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      prefix: ['prlimit', '--nofile=256:4096', '--'],  // started as systemd starts services: a low soft limit
      env: { MAX_CONNECTIONS: '4' },
      servers: {
        hang: { command: 'sh', args: ['-c', `cat /proc/self/limits > ${childLimits}; exec "$0" "$@"`, hang.command, ...hang.args] },
      },
    });
  });

  after(async () => {
    for (const s of held.splice(0)) s.destroy();
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  // A raw connection that records what it receives (`got`) and when it closes (`ended`).
  const connect = () => new Promise((resolve, reject) => {
    const s = net.connect({ port: gh.port, host: '127.0.0.1' }, () => resolve(s));
    s.got = '';
    s.ended = new Promise((r) => s.on('close', r));
    s.on('data', (d) => { s.got += d.toString('latin1'); });
    s.once('error', reject);
  });
  const health = 'GET /gateway/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n';

  it('past MAX_CONNECTIONS a new connection gets a 503 and a close; the open ones keep working', async () => {
    const since = gh.jsonLogs().length;
    let refused;
    for (let i = 0; i < 8 && !refused; i++) {
      const s = await connect();
      await delay(300);  // a refused connection is answered at once, without a request
      if (s.got) refused = s;
      else held.push(s);
    }
    assert.ok(refused, `${held.length} connections open, none refused`);
    // (the harness's own keep-alive connection to the gateway may hold one of the four)
    assert.ok(held.length >= 3 && held.length <= 4, `refused after ${held.length} open connections`);
    await refused.ended;
    assert.match(refused.got, /^HTTP\/1\.1 503 /, refused.got);
    assert.match(refused.got, /\r\nRetry-After: 1\r\n/i, refused.got);
    const body = JSON.parse(refused.got.slice(refused.got.indexOf('\r\n\r\n') + 4));
    assert.match(body.error.message, /Too many connections/, refused.got);
    const line = gh.jsonLogs().slice(since).find((l) => l.msg === 'connections refused: at the limit');
    assert.equal(line?.max_connections, 4, 'no log line naming the limit');

    const open = held.pop();  // a connection that was open before still gets answers
    open.write(health);
    await open.ended;
    assert.match(open.got, /^HTTP\/1\.1 200 /, open.got);
    // and its slot is free again once it closed
    await waitFor(async () => {
      const s = await connect();
      s.write(health);
      await s.ended;
      return /^HTTP\/1\.1 200 /.test(s.got);
    }, { timeoutMs: 5000, what: 'a new connection served after one closed' });
  });

  it('the soft open-file limit is raised to the hard one; a stdio server starts with the one it was given', async () => {
    for (const s of held.splice(0)) s.destroy();
    assert.match(fs.readFileSync(`/proc/${gh.proc.pid}/limits`, 'utf8'), /^Max open files\s+4096\s+4096\s/m);
    const listening = gh.jsonLogs().find((l) => l.msg === 'listening');
    assert.equal(listening?.open_file_limit, 4096, JSON.stringify(listening));
    const echoed = await waitFor(async () => {
      try {
        const s = await rawSession(`${gh.url}/mcp/hang`);
        const res = await s.request('tools/call', { name: 'echo', arguments: { message: 'limits' } });
        return res.status === 200 && res;
      } catch { return false; }
    }, { timeoutMs: 10000, what: 'a call through the gateway' });
    assert.match(resultText(echoed.json.result), /limits/, echoed.text);
    assert.match(fs.readFileSync(childLimits, 'utf8'), /^Max open files\s+256\s+4096\s/m);
  });
});
