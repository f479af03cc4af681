// Starts the real build/gatehouse on a free port against a temp servers.json,
// waits for readiness (the "listening" log line, then /gateway/health == 200), and stops it.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  killQuietly, onLines, stopProcessGroup, tempDir, track, waitFor, waitForExit,
} from './procs.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
// GATEHOUSE_BIN overrides the binary under test (e.g. a release build in build-release/).
export const GATEHOUSE_BIN = process.env.GATEHOUSE_BIN
  ? path.resolve(process.env.GATEHOUSE_BIN)
  : path.resolve(fileURLToPath(new URL('../../../build/gatehouse', import.meta.url)));

export function assertBinaryExists() {
  if (!fs.existsSync(GATEHOUSE_BIN)) {
    throw new Error(`${GATEHOUSE_BIN} does not exist: run \`make build\` in ${REPO_ROOT} first`);
  }
}

function writeServersFile(file, servers) {
  const content = typeof servers === 'string' ? servers : JSON.stringify({ mcpServers: servers }, null, 2);
  fs.writeFileSync(file, content);
}

function registerCleanup(t, fn) {
  if (!t) return;
  if (typeof t === 'function') t(fn);
  else t.after(fn);
}

/** Parsed JSON log lines (lines that are not JSON are skipped). */
export function jsonLogs(lines) {
  const out = [];
  for (const line of lines) {
    try {
      const obj = JSON.parse(line);
      if (obj && typeof obj === 'object') out.push(obj);
    } catch { /* not a JSON line */ }
  }
  return out;
}

/**
 * Starts the gateway.
 * @param {object} options
 * @param {object|string} options.servers  the `mcpServers` object (or a raw file content string)
 * @param {object} [options.env]           extra environment
 * @param {string} [options.dotenv]        content of a `.env` file in the gateway's working directory
 * @param {object|Function} [options.t]    a node:test context (or `after`): stop() is registered on it
 * @returns {Promise<{url, mcpUrl, port, proc, logs, stdout, serversFile, dir, writeServers, signal, stop}>}
 */
export async function startGatehouse({ servers = {}, env = {}, dotenv, t, startTimeoutMs = 20000 } = {}) {
  assertBinaryExists();
  const { dir, cleanup } = tempDir('gatehouse-gw-');
  const serversFile = path.join(dir, 'servers.json');
  writeServersFile(serversFile, servers);
  if (dotenv !== undefined) fs.writeFileSync(path.join(dir, '.env'), dotenv);

  const proc = spawn(GATEHOUSE_BIN, ['serve'], {
    cwd: dir, // no stray .env from the repository is read
    detached: true, // own process group, so cleanup can reach everything it started
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      GATEWAY_PORT: '0',
      GATEWAY_HOST: '127.0.0.1',
      MCP_SERVERS_FILE: serversFile,
      SHUTDOWN_GRACE_MS: '3000',
      LOG_LEVEL: 'info',
      ...env,
    },
  });
  track(proc);
  const logs = [];
  const stdout = [];
  const listeners = new Set();
  onLines(proc.stderr, (line) => {
    logs.push(line);
    for (const listener of listeners) listener(line);
  });
  onLines(proc.stdout, (line) => stdout.push(line));

  let stopped = null;
  const gh = {
    proc,
    pid: proc.pid,
    logs,
    stdout,
    dir,
    serversFile,
    /** Replaces the servers file (the gateway rereads it on SIGHUP). */
    writeServers(next) { writeServersFile(serversFile, next); },
    /** Sends a signal; SIGTERM/SIGINT/SIGKILL mark the exit that follows as expected. */
    signal(sig) {
      if (['SIGTERM', 'SIGINT', 'SIGKILL'].includes(sig)) gh.expectExit = true;
      killQuietly(proc.pid, sig);
    },
    /** SIGTERM, wait for exit (SIGKILL after a bound); returns {code, signal}. */
    stop() {
      if (!stopped) {
        stopped = stopProcessGroup(proc, { signal: 'SIGTERM', graceMs: 15000 }).finally(cleanup);
      }
      return stopped;
    },
    jsonLogs() { return jsonLogs(logs); },
    describe() {
      return `gatehouse pid ${proc.pid} exit=${proc.exitCode} signal=${proc.signalCode}\n--- stderr ---\n${logs.slice(-60).join('\n')}`;
    },
  };
  registerCleanup(t, () => gh.stop());
  // A gateway that dies on its own is a finding: say so with its last log lines.
  proc.once('exit', (code, signal) => {
    if (stopped || gh.expectExit) return;
    console.error(`gatehouse (pid ${proc.pid}) exited unexpectedly: code ${code}, signal ${signal}\n` +
      `--- last stderr lines ---\n${logs.slice(-40).join('\n')}`);
  });

  try {
    const port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`no "listening" log line within ${startTimeoutMs} ms`)), startTimeoutMs);
      function finish(error, value) {
        clearTimeout(timer);
        listeners.delete(onLine);
        proc.off('exit', onExit);
        if (error) reject(error); else resolve(value);
      }
      function check(line) {
        try {
          const obj = JSON.parse(line);
          if (obj && obj.msg === 'listening' && Number.isInteger(obj.port) && obj.port > 0) {
            finish(null, obj.port);
            return true;
          }
        } catch { /* not JSON */ }
        return false;
      }
      function onLine(line) { check(line); }
      function onExit(code, signal) { finish(new Error(`gatehouse exited early (code ${code}, signal ${signal})`)); }
      for (const line of logs) if (check(line)) return;
      listeners.add(onLine);
      proc.once('exit', onExit);
      proc.once('error', (error) => finish(error));
    });
    gh.port = port;
    gh.url = `http://127.0.0.1:${port}`;
    gh.mcpUrl = `${gh.url}/mcp`;
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`gatehouse exited (code ${proc.exitCode})`);
      const res = await fetch(`${gh.url}/gateway/health`);
      await res.arrayBuffer();
      return res.status === 200;
    }, { timeoutMs: 15000, intervalMs: 50, what: 'GET /gateway/health == 200' });
  } catch (error) {
    await gh.stop();
    error.message += `\n${gh.describe()}`;
    throw error;
  }
  return gh;
}

/** GET a gateway JSON endpoint: {status, body}. */
export async function getJson(url) {
  const res = await fetch(url);
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, headers: res.headers, body };
}

/**
 * Runs `gatehouse check-config` against a servers file content (object → {"mcpServers":…},
 * string → written as is). Returns {code, stdout, stderr}.
 */
export function checkConfig({ servers, env = {}, dotenv, timeoutMs = 15000 } = {}) {
  assertBinaryExists();
  const { dir, cleanup } = tempDir('gatehouse-cc-');
  try {
    const serversFile = path.join(dir, 'servers.json');
    if (servers !== undefined) writeServersFile(serversFile, servers);
    if (dotenv !== undefined) fs.writeFileSync(path.join(dir, '.env'), dotenv);
    const result = spawnSync(GATEHOUSE_BIN, ['check-config'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      env: { ...process.env, MCP_SERVERS_FILE: serversFile, GATEWAY_PORT: '0', GATEWAY_HOST: '127.0.0.1', ...env },
    });
    return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
  } finally {
    cleanup();
  }
}

export { waitForExit };
