// Streamable HTTP upstreams over https: the gateway verifies the upstream's certificate chain (OpenSSL's
// default verify paths, so SSL_CERT_FILE=<a PEM CA bundle> makes it trust a test CA) and its host name
// (SNI + host name verification, DNS and IP subjectAltNames).
//
// A throwaway CA and certificates are made with the `openssl` CLI in a temp dir; https fronts (node:https on
// 127.0.0.1) forward every request — method, path, headers, body — to server-everything's plain-HTTP
// streamableHttp endpoint and stream the answers back (SSE included). Good certificates must work on /mcp and
// /mcp/<id> (tools, calls, progress notifications through TLS); a self-signed certificate and a CA-signed one
// for another name must be refused with -32603 naming the server, without hurting the gateway.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import {
  connectClient, getJson, listAll, rawSession, resultText, startEverythingHttp, startGatehouse,
  streamableHttpEntry, tempDir, waitFor,
} from './lib/index.js';

// ---- certificates --------------------------------------------------------------------------

function openssl(args, cwd) {
  try {
    return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 30000 });
  } catch (error) {
    throw new Error(`openssl ${args.join(' ')} failed: ${error.stderr || error.message}`);
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A CA-signed leaf certificate with the given subjectAltName. Returns {key, cert} file paths. */
function issueLeaf(dir, name, cn, san) {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature, keyEncipherment',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${san}`,
    '',
  ].join('\n'));
  openssl(['req', '-new', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-sha256', '-extfile', ext, '-out', cert], dir);
  return { key, cert };
}

function makeCertificates(dir) {
  openssl(['req', '-x509', ...EC_KEY, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-sha256',
    '-subj', '/CN=Gatehouse integration test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const good = issueLeaf(dir, 'server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  const otherName = issueLeaf(dir, 'other', 'other.example', 'DNS:other.example');
  // Self-signed, right names, but no chain to the CA.
  const selfSigned = { key: path.join(dir, 'self.key'), cert: path.join(dir, 'self.pem') };
  openssl(['req', '-x509', ...EC_KEY, '-keyout', selfSigned.key, '-out', selfSigned.cert, '-days', '2', '-sha256',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], dir);
  return { ca: path.join(dir, 'ca.pem'), good, otherName, selfSigned };
}

// ---- an https front that forwards to a plain-HTTP upstream ---------------------------------------

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function forwardableHeaders(headers) {
  const out = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name.toLowerCase())) out[name] = value;
  }
  return out;
}

/**
 * node:https on 127.0.0.1 (port 0) with {key, cert}; every request is sent on to `target` (an http:// origin)
 * and its response streamed back chunk by chunk. Records what it saw in `stats`.
 */
async function startHttpsFront({ key, cert }, target) {
  const upstream = new URL(target);
  const stats = { handshakes: 0, servernames: [], tlsClientErrors: [], requests: [] };
  const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    stats.requests.push({ method: req.method, url: req.url, servername: req.socket.servername });
    const headers = forwardableHeaders(req.headers);
    headers.host = upstream.host;
    const upReq = http.request({
      host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers,
    }, (upRes) => {
      res.writeHead(upRes.statusCode, upRes.statusMessage, forwardableHeaders(upRes.headers));
      res.flushHeaders(); // SSE: the client sees the head before the first event
      upRes.on('data', (chunk) => res.write(chunk));
      upRes.on('end', () => res.end());
      upRes.on('error', () => res.destroy());
    });
    upReq.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`front: ${error.message}`);
    });
    // The downstream side went away (e.g. a GET stream closed): drop the upstream request too.
    res.on('close', () => { if (!res.writableFinished) upReq.destroy(); });
    req.pipe(upReq);
  });
  server.on('secureConnection', (socket) => {
    stats.handshakes += 1;
    stats.servernames.push(socket.servername);
  });
  server.on('tlsClientError', (error) => {
    stats.tlsClientErrors.push(`${error.code ?? ''} ${error.message}`.trim());
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    stats,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// ---- the tests -----------------------------------------------------------------------------

describe('Streamable HTTP upstreams over https (certificate and host name verification)', () => {
  let gh;
  let client;  // /mcp
  let scoped;  // /mcp/tls
  let certs;
  const fronts = {};
  const cleanups = [];

  before(async () => {
    const certDir = tempDir('gatehouse-tls-');
    cleanups.push(certDir.cleanup);
    certs = makeCertificates(certDir.dir);

    const everything = await startEverythingHttp('streamableHttp', { t: (fn) => cleanups.push(fn) });
    const target = `http://127.0.0.1:${everything.port}`;
    for (const [name, pair] of [['good', certs.good], ['selfSigned', certs.selfSigned], ['otherName', certs.otherName]]) {
      fronts[name] = await startHttpsFront(pair, target);
      cleanups.push(fronts[name].close);
    }

    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      env: { SSL_CERT_FILE: certs.ca },
      servers: {
        tls: streamableHttpEntry(`https://localhost:${fronts.good.port}/mcp`),
        tlsip: streamableHttpEntry(`https://127.0.0.1:${fronts.good.port}/mcp`),
        selfsigned: streamableHttpEntry(`https://localhost:${fronts.selfSigned.port}/mcp`, { timeoutMs: 15000 }),
        wrongname: streamableHttpEntry(`https://localhost:${fronts.otherName.port}/mcp`, { timeoutMs: 15000 }),
      },
    });
    client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
    scoped = await connectClient(`${gh.mcpUrl}/tls`, { t: (fn) => cleanups.push(fn) });
  });

  after(async () => {
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  function context() {
    return `\nfronts: ${JSON.stringify(Object.fromEntries(Object.entries(fronts).map(([k, f]) => [k, {
      handshakes: f.stats.handshakes,
      servernames: f.stats.servernames,
      tlsClientErrors: f.stats.tlsClientErrors,
      requests: f.stats.requests.slice(-10),
    }])))}\n${gh.describe()}`;
  }

  it('the openssl-made certificates are what the tests assume (CA chain, SANs)', () => {
    const verify = (cert) => {
      try {
        return execFileSync('openssl', ['verify', '-CAfile', certs.ca, cert], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) { return `${error.stdout}${error.stderr}`; }
    };
    assert.match(verify(certs.good.cert), /: OK/);
    assert.match(verify(certs.otherName.cert), /: OK/);
    assert.doesNotMatch(verify(certs.selfSigned.cert), /: OK/);
    const text = (cert) => openssl(['x509', '-in', cert, '-noout', '-ext', 'subjectAltName']);
    assert.match(text(certs.good.cert), /DNS:localhost, IP Address:127\.0\.0\.1/);
    assert.match(text(certs.selfSigned.cert), /DNS:localhost, IP Address:127\.0\.0\.1/);
    assert.match(text(certs.otherName.cert), /DNS:other\.example/);
    assert.doesNotMatch(text(certs.otherName.cert), /localhost|127\.0\.0\.1/);
  });

  it('/mcp/tls (https://localhost): initialize, tools/list and echo through TLS; SNI is localhost', async () => {
    assert.match(scoped.getServerVersion()?.name ?? '', /everything/i, JSON.stringify(scoped.getServerVersion()));
    const names = (await listAll(scoped, 'tools')).items.map((tool) => tool.name);
    assert.ok(names.includes('echo'), `tools on /mcp/tls: ${names.join(', ')}${context()}`);
    assert.ok(names.includes('trigger-long-running-operation'), names.join(', '));
    assert.ok(!names.some((name) => name.includes('__')), `names on /mcp/<id> are unprefixed: ${names.join(', ')}`);

    const result = await scoped.callTool({ name: 'echo', arguments: { message: 'over tls' } });
    assert.equal(resultText(result), 'Echo: over tls');

    const { stats } = fronts.good;
    assert.ok(stats.handshakes >= 1, context());
    assert.ok(stats.requests.some((r) => r.method === 'POST' && r.url === '/mcp' && r.servername === 'localhost'),
      `no POST /mcp with SNI localhost reached the good front${context()}`);
  });

  it('/mcp: tls__ and tlsip__ (https://127.0.0.1, IP subjectAltName) tools listed and called; the refused servers are left out', async () => {
    const names = (await listAll(client, 'tools')).items.map((tool) => tool.name);
    assert.ok(names.includes('tls__echo'), `aggregate tools: ${names.join(', ')}${context()}`);
    assert.ok(names.includes('tlsip__echo'), `aggregate tools: ${names.join(', ')}${context()}`);
    assert.ok(!names.some((name) => name.startsWith('selfsigned__') || name.startsWith('wrongname__')),
      `tools from upstreams whose certificate must be refused: ${names.filter((n) => /^(selfsigned|wrongname)__/.test(n)).join(', ')}`);

    assert.equal(resultText(await client.callTool({ name: 'tls__echo', arguments: { message: 'dns' } })), 'Echo: dns');
    assert.equal(resultText(await client.callTool({ name: 'tlsip__echo', arguments: { message: 'ip' } })), 'Echo: ip');
  });

  for (const [title, which, name] of [
    ['/mcp/tls', 'scoped', 'trigger-long-running-operation'],
    ['/mcp (tls__)', 'client', 'tls__trigger-long-running-operation'],
    ['/mcp (tlsip__)', 'client', 'tlsip__trigger-long-running-operation'],
  ]) {
    it(`${title}: progress notifications arrive (SSE through TLS)`, async () => {
      const c = which === 'scoped' ? scoped : client;
      const progress = [];
      const result = await c.callTool({ name, arguments: { duration: 0.8, steps: 4 } }, undefined,
        { onprogress: (p) => progress.push(p), timeout: 30000 });
      assert.match(resultText(result), /Long running operation completed\. Duration: 0\.8 seconds, Steps: 4\./);
      assert.deepEqual(progress.map((p) => p.progress), [1, 2, 3, 4], `progress seen: ${JSON.stringify(progress)}${context()}`);
      assert.ok(progress.every((p) => p.total === 4), JSON.stringify(progress));
    });
  }

  for (const [id, front, why] of [
    ['selfsigned', 'selfSigned', 'a self-signed certificate (names right, not signed by the trusted CA)'],
    ['wrongname', 'otherName', 'a CA-signed certificate for other.example only'],
  ]) {
    it(`${id}: ${why} → tools/list on /mcp/${id} gives -32603 naming the server; nothing reaches the upstream; the gateway stays healthy`, async () => {
      const session = await rawSession(`${gh.mcpUrl}/${id}`);
      const listed = await session.request('tools/list', {});
      assert.equal(listed.status, 200, listed.text);
      assert.equal(listed.json?.error?.code, -32603, `${listed.text}${context()}`);
      assert.match(listed.json.error.message, new RegExp(`'${id}'`), `the error does not name the server: ${listed.text}`);
      assert.match(listed.json.error.message, /certificate verify failed/i, `the error does not say why: ${listed.text}`);
      const logged = gh.jsonLogs().filter((entry) => entry.server === id && entry.level === 'warn');
      assert.ok(logged.some((entry) => /certificate verify failed/i.test(entry.error ?? '')),
        `no warning about ${id}'s certificate:\n${logged.map((e) => JSON.stringify(e)).join('\n')}`);
      await session.remove();

      // The handshake was refused by the gateway: the front saw TLS errors and forwarded no request.
      const { stats } = fronts[front];
      assert.equal(stats.requests.length, 0, `requests went through a certificate that must be refused${context()}`);
      await waitFor(() => stats.tlsClientErrors.some((e) => /alert/i.test(e)),
        { timeoutMs: 5000, what: `a TLS alert from the gateway on the ${front} front` }).catch((error) => {
        error.message += context();
        throw error;
      });

      const health = await getJson(`${gh.url}/gateway/health`);
      assert.equal(health.status, 200, JSON.stringify(health.body));
      assert.equal(health.body.status, 'ok', JSON.stringify(health.body));
      assert.ok(['failed', 'backoff'].includes(health.body.upstreams?.[id]?.state), JSON.stringify(health.body));
      assert.equal(resultText(await scoped.callTool({ name: 'echo', arguments: { message: `after ${id}` } })), `Echo: after ${id}`);
      assert.equal(resultText(await client.callTool({ name: 'tlsip__echo', arguments: { message: `after ${id}` } })), `Echo: after ${id}`);
    });
  }

  it('no warning was logged for tls or tlsip, and the gateway is still running', async () => {
    assert.equal(gh.proc.exitCode, null, gh.describe());
    const bad = gh.jsonLogs().filter((entry) => ['tls', 'tlsip'].includes(entry.server) && ['warn', 'error'].includes(entry.level));
    assert.deepEqual(bad, [], `warnings about the good upstreams:\n${bad.map((e) => JSON.stringify(e)).join('\n')}`);
  });
});
