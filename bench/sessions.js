#!/usr/bin/env node
// Opens MCP sessions on a Streamable HTTP endpoint: for each one, POST
// `initialize` (Accept: application/json, text/event-stream), read the
// Mcp-Session-Id response header, then POST `notifications/initialized`.
// Keep-alive connections, bounded concurrency, bounded total time.
//
// usage: node sessions.js --url http://127.0.0.1:PORT/mcp/fast --count N
//          [--concurrency 32] [--deadline-s 120] [--timeout-ms 15000]
//          [--protocol 2025-11-25] [--ids] [--authorization "Bearer gh_…"]
// --authorization (default: env MCP_AUTHORIZATION) is sent as the Authorization header of every request.
// Prints one JSON object on stdout:
//   {"requested":N,"ok":n,"failed":f,"seconds":s,"first_failure":"…"|null,"ids":[…]}
// ("ids" only with --ids). Exit code 0 when every session was opened, else 1.
'use strict';
const http = require('node:http');

function parseArgs(argv) {
  const o = { concurrency: 32, deadlineS: 120, timeoutMs: 15000, protocol: '2025-11-25', ids: false,
    authorization: process.env.MCP_AUTHORIZATION || '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--url': o.url = next(); break;
      case '--count': o.count = Number(next()); break;
      case '--concurrency': o.concurrency = Number(next()); break;
      case '--deadline-s': o.deadlineS = Number(next()); break;
      case '--timeout-ms': o.timeoutMs = Number(next()); break;
      case '--protocol': o.protocol = next(); break;
      case '--ids': o.ids = true; break;
      case '--authorization': o.authorization = next(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!o.url || !(o.count >= 0)) throw new Error('need --url and --count');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const url = new URL(opts.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency });

function post(body, headers) {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = http.request({
      agent,
      host: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Accept': 'application/json, text/event-stream',
        'Content-Length': data.length,
        ...(opts.authorization ? { 'Authorization': opts.authorization } : {}),
        ...headers,
      },
      timeout: opts.timeoutMs,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${opts.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

let nextId = 1;
async function openSession() {
  const init = await post({
    jsonrpc: '2.0', id: nextId++, method: 'initialize',
    params: {
      protocolVersion: opts.protocol,
      capabilities: {},
      clientInfo: { name: 'gatehouse-bench-sessions', version: '1.0.0' },
    },
  }, {});
  const sid = init.headers['mcp-session-id'];
  if (init.status !== 200) throw new Error(`initialize: HTTP ${init.status}: ${init.body.slice(0, 300)}`);
  if (!sid) throw new Error(`initialize: no Mcp-Session-Id header: ${init.body.slice(0, 300)}`);
  if (!init.body.includes('"result"')) throw new Error(`initialize: no result: ${init.body.slice(0, 300)}`);
  const m = /"protocolVersion"\s*:\s*"([^"]+)"/.exec(init.body);
  const proto = m ? m[1] : opts.protocol;
  const note = await post({ jsonrpc: '2.0', method: 'notifications/initialized' },
    { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': proto });
  if (note.status !== 202 && note.status !== 200) {
    throw new Error(`notifications/initialized: HTTP ${note.status}: ${note.body.slice(0, 300)}`);
  }
  return sid;
}

async function main() {
  const started = Date.now();
  const deadline = started + opts.deadlineS * 1000;
  const ids = [];
  let ok = 0;
  let failed = 0;
  let firstFailure = null;
  let issued = 0;
  let timedOut = false;

  async function worker() {
    while (issued < opts.count) {
      if (Date.now() > deadline) { timedOut = true; return; }
      issued++;
      try {
        const sid = await openSession();
        ok++;
        if (opts.ids) ids.push(sid);
      } catch (e) {
        failed++;
        if (!firstFailure) firstFailure = String(e && e.message || e);
      }
    }
  }
  const n = Math.max(1, Math.min(opts.concurrency, opts.count));
  await Promise.all(Array.from({ length: n }, worker));
  agent.destroy();
  if (timedOut) {
    failed += opts.count - issued;
    if (!firstFailure) firstFailure = `deadline of ${opts.deadlineS} s reached after ${issued} sessions`;
  }
  const out = {
    requested: opts.count, ok, failed,
    seconds: (Date.now() - started) / 1000,
    first_failure: firstFailure,
  };
  if (opts.ids) out.ids = ids;
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ requested: opts.count, ok: 0, failed: opts.count, first_failure: String(e) }) + '\n');
  process.exitCode = 1;
});
