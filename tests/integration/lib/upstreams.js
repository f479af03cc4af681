// Real MCP upstreams for the gateway: server-everything over streamable HTTP and SSE
// (started here, loopback only), and servers.json entries for stdio servers.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, onLines, stopProcessGroup, track, waitFor, waitForPort } from './procs.js';

export const INTEGRATION_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const LOOPBACK_PRELOAD = path.join(INTEGRATION_DIR, 'lib', 'loopback.cjs');
export const FIXTURES_DIR = path.join(INTEGRATION_DIR, 'fixtures');

/** The file a package's `bin` points at (server packages ship one entry). */
export function packageEntry(name) {
  const dir = path.join(INTEGRATION_DIR, 'node_modules', ...name.split('/'));
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const bin = typeof pkg.bin === 'string' ? pkg.bin : Object.values(pkg.bin ?? {})[0];
  const entry = path.join(dir, bin ?? pkg.main ?? 'index.js');
  if (!fs.existsSync(entry)) throw new Error(`${name}: entry ${entry} missing (run npm ci in ${INTEGRATION_DIR})`);
  return entry;
}

export const EVERYTHING_ENTRY = packageEntry('@modelcontextprotocol/server-everything');
export const FILESYSTEM_ENTRY = packageEntry('@modelcontextprotocol/server-filesystem');
export const MEMORY_ENTRY = packageEntry('@modelcontextprotocol/server-memory');

/**
 * Starts server-everything with an HTTP transport on a free loopback port.
 * @param {'streamableHttp'|'sse'} transport
 * @param {object} [options]
 * @param {number} [options.port]  listen on this port (e.g. to restart a server where it was); default a free one
 * @returns {Promise<{port, url, proc, logs, stop}>} url is the MCP endpoint (/mcp or /sse)
 */
export async function startEverythingHttp(transport = 'streamableHttp', { t, env = {}, port: wantedPort } = {}) {
  if (transport !== 'streamableHttp' && transport !== 'sse') throw new Error(`unknown transport ${transport}`);
  const port = wantedPort ?? await freePort();
  const proc = spawn(process.execPath, ['--require', LOOPBACK_PRELOAD, EVERYTHING_ENTRY, transport], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env, PORT: String(port) },
  });
  track(proc);
  const logs = [];
  onLines(proc.stdout, (line) => logs.push(line));
  onLines(proc.stderr, (line) => logs.push(line));
  let stopped = null;
  const server = {
    port,
    url: `http://127.0.0.1:${port}${transport === 'sse' ? '/sse' : '/mcp'}`,
    proc,
    logs,
    stop() {
      if (!stopped) {
        stopped = stopProcessGroup(proc, { signal: 'SIGTERM', graceMs: 3000 });
      }
      return stopped;
    },
  };
  if (t) (typeof t === 'function' ? t : t.after.bind(t))(() => server.stop());
  try {
    await waitForPort(port, { proc, timeoutMs: 30000 });
  } catch (error) {
    await server.stop();
    error.message += `\n--- server-everything ${transport} output ---\n${logs.join('\n')}`;
    throw error;
  }
  return server;
}

// ---- servers.json entries -------------------------------------------------------------

export function everythingStdio(extra = {}) {
  return { command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'], ...extra };
}

export function filesystemStdio(dir, extra = {}) {
  return { command: process.execPath, args: [FILESYSTEM_ENTRY, dir], ...extra };
}

export function memoryStdio(file, extra = {}) {
  return {
    command: process.execPath,
    args: [MEMORY_ENTRY],
    ...extra,
    env: { MEMORY_FILE_PATH: file, ...(extra.env ?? {}) },
  };
}

export function streamableHttpEntry(url, extra = {}) {
  return { type: 'streamable-http', url, ...extra };
}

export function sseEntry(url, extra = {}) {
  return { type: 'sse', url, ...extra };
}

/** A stdio entry for one of the fake upstreams in fixtures/ (crash.js, hang.js, garbage.js…). */
export function fixtureStdio(name, extra = {}) {
  return { command: process.execPath, args: [path.join(FIXTURES_DIR, name)], ...extra };
}

/**
 * Starts fixtures/sdk-http-server.js: an upstream written with the real SDK (McpServer +
 * StreamableHTTPServerTransport with an event store) on 127.0.0.1, port 0 unless `port` is given.
 * It prints {"listening":PORT} on stdout; GET /debug on it reports what it saw (sessions, GET streams,
 * resumptions with Last-Event-ID, closed response streams, every exchange on /mcp).
 * @param {object} [options]
 * @param {boolean} [options.jsonResponse]  enableJsonResponse: requests answered with one application/json body
 * @param {boolean} [options.stateless]     sessionIdGenerator: undefined (no Mcp-Session-Id; GET/DELETE → 405)
 * @param {boolean} [options.extras]        the extra tools, resources and prompt (see the fixture's header)
 * @param {string}  [options.name]          FIXTURE_NAME: serverInfo.name, resource URIs, tool texts
 * @returns {Promise<{port, url, debugUrl, debug(), proc, logs, stop}>} url is the MCP endpoint (/mcp)
 */
export async function startSdkFixture({
  t, env = {}, port = 0, startTimeoutMs = 20000, jsonResponse = false, stateless = false, extras = false, name,
} = {}) {
  const modes = {
    ...(jsonResponse ? { JSON_RESPONSE: '1' } : {}),
    ...(stateless ? { STATELESS: '1' } : {}),
    ...(extras ? { EXTRAS: '1' } : {}),
    ...(name ? { FIXTURE_NAME: name } : {}),
  };
  const proc = spawn(process.execPath, [path.join(FIXTURES_DIR, 'sdk-http-server.js')], {
    cwd: INTEGRATION_DIR,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env, ...modes, PORT: String(port) },
  });
  track(proc);
  const logs = [];
  let listening = null;
  onLines(proc.stdout, (line) => {
    logs.push(line);
    try {
      const obj = JSON.parse(line);
      if (Number.isInteger(obj?.listening)) listening = obj.listening;
    } catch { /* a plain log line */ }
  });
  onLines(proc.stderr, (line) => logs.push(line));
  let stopped = null;
  const server = {
    proc,
    logs,
    stop() {
      if (!stopped) stopped = stopProcessGroup(proc, { signal: 'SIGTERM', graceMs: 3000 });
      return stopped;
    },
    async debug() {
      const res = await fetch(server.debugUrl);
      if (res.status !== 200) throw new Error(`GET ${server.debugUrl} → ${res.status}`);
      return res.json();
    },
  };
  if (t) (typeof t === 'function' ? t : t.after.bind(t))(() => server.stop());
  try {
    server.port = await waitFor(() => {
      if (proc.exitCode !== null) throw new Error(`sdk-http-server exited with ${proc.exitCode}`);
      return listening;
    }, { timeoutMs: startTimeoutMs, intervalMs: 25, what: 'sdk-http-server to print {"listening":PORT}' });
  } catch (error) {
    await server.stop();
    error.message += `\n--- sdk-http-server output ---\n${logs.join('\n')}`;
    throw error;
  }
  server.url = `http://127.0.0.1:${server.port}/mcp`;
  server.debugUrl = `http://127.0.0.1:${server.port}/debug`;
  return server;
}
