// Starts the real build/gatehouse on a free port against a temp servers.json,
// waits for readiness (the "listening" log line, then /gateway/health == 200), and stops it.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  killQuietly, onLines, stopProcessGroup, tempDir, track, waitFor, waitForExit,
} from './procs.js';
import { registerGatewayAuth, withAuth } from './auth.js';
import { TEST_BACKEND, createTestDatabase, knownDatabase } from './store.js';

/** The bootstrap line the gateway prints on stdout when it creates the admin account in an empty store. */
export const ADMIN_KEY_LINE = /^Admin API key \(shown once\): (gh_\S+)\s*$/;

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


let identityProbe;
/**
 * Whether the binary under test has the identity features (store, auth): `gatehouse migrate` is a
 * command it knows. GATEHOUSE_TEST_IDENTITY=1|0 overrides. Probed once per test process.
 */
export function identitySupported() {
  if (identityProbe !== undefined) return identityProbe;
  const forced = process.env.GATEHOUSE_TEST_IDENTITY;
  if (forced === '1' || forced === '0') return (identityProbe = forced === '1');
  assertBinaryExists();
  const { dir, cleanup } = tempDir('gatehouse-probe-');
  try {
    const result = spawnSync(GATEHOUSE_BIN, ['migrate'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 15000,
      killSignal: 'SIGKILL',
      env: { ...process.env, DATABASE_URL: `sqlite://${path.join(dir, 'probe.db')}` },
    });
    identityProbe = !/unknown command/i.test(`${result.stderr}\n${result.stdout}`);
  } finally {
    cleanup();
  }
  return identityProbe;
}

/**
 * Runs the gatehouse CLI (`migrate`, `apikey create …`, `users …`, `groups …`) synchronously.
 * @returns {{code, signal, stdout, stderr, lastLine}} lastLine = the last non-empty stdout line
 */
export function runCli(args, { env = {}, cwd, timeoutMs = 30000, input } = {}) {
  assertBinaryExists();
  const result = spawnSync(GATEHOUSE_BIN, args, {
    cwd: cwd && fs.existsSync(cwd) ? cwd : undefined,
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    input,
    env: { ...process.env, GATEWAY_HOST: '127.0.0.1', ...env },
  });
  const stdout = result.stdout ?? '';
  const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  return {
    code: result.status,
    signal: result.signal,
    stdout,
    stderr: result.stderr ?? '',
    lastLine: lines[lines.length - 1] ?? '',
    error: result.error,
  };
}

/** Reads a fetch Response: {status, headers, text, body (parsed JSON, else the text; undefined when empty)}. */
export async function readBody(res) {
  const text = await res.text();
  let body = text;
  if (text.length > 0) {
    try { body = JSON.parse(text); } catch { /* not JSON */ }
  } else {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

/**
 * Starts the gateway.
 * @param {object} options
 * @param {object|string} options.servers  the `mcpServers` object (or a raw file content string)
 * @param {object} [options.env]           extra environment (an explicit DATABASE_URL here wins over `database`)
 * @param {string} [options.dotenv]        content of a `.env` file in the gateway's working directory
 * @param {object|Function} [options.t]    a node:test context (or `after`): stop() is registered on it
 * @param {string|object} [options.database] the store: a URL or a createTestDatabase() handle. Default: a fresh
 *                                         store of the run's backend (GATEHOUSE_TEST_BACKEND), owned by this
 *                                         gateway and removed when it stops (after any gateway sharing it).
 * @param {string} [options.adminKey]      the admin key to use when the store is not fresh and the harness does
 *                                         not know its key (a store it did not create)
 * @param {number} [options.adminKeyTimeoutMs] how long to wait for the bootstrap key line on a fresh store
 * @param {string[]} [options.prefix]     a command that runs the gateway (it must exec it: the pid stays the
 *                                         gateway's), e.g. ['prlimit', '--nofile=256:4096', '--']
 * @returns {Promise<gh>} {url, mcpUrl, port, proc, logs, stdout, serversFile, dir, databaseUrl, database,
 *   adminKey (getter; throws a clear error when none), authHeaders ({Authorization: 'Bearer gh_…'} or {}),
 *   fetch(path, init), api(method, path, body, {headers}), cli(args, {env}), writeServers, signal, stop, …}
 */
export async function startGatehouse({
  servers = {}, env = {}, dotenv, t, startTimeoutMs = 20000, database, adminKey: givenAdminKey,
  adminKeyTimeoutMs = 15000, prefix = [],
} = {}) {
  assertBinaryExists();
  // The store: an explicit DATABASE_URL in env, else `database`, else a fresh one of the run's backend.
  let db;
  let ownsDatabase = false;
  if (env.DATABASE_URL === undefined) {
    if (database === undefined || database === null) {
      db = await createTestDatabase({ backend: TEST_BACKEND });
      ownsDatabase = true;
    } else {
      const url = typeof database === 'string' ? database : database.url;
      db = knownDatabase(url) ?? { url, used: true, adminKey: null, users: 0 };
    }
  } else {
    db = knownDatabase(env.DATABASE_URL) ?? { url: env.DATABASE_URL, used: true, adminKey: null, users: 0 };
  }
  const freshStore = !db.used;
  db.used = true;
  db.users = (db.users ?? 0) + 1;
  const releaseDatabase = async () => {
    db.users -= 1;
    if (ownsDatabase) db.ownerStopped = true;
    if (db.ownerStopped && db.users <= 0 && typeof db.drop === 'function') await db.drop();
  };
  const { dir, cleanup } = tempDir('gatehouse-gw-');
  const serversFile = path.join(dir, 'servers.json');
  writeServersFile(serversFile, servers);
  if (dotenv !== undefined) fs.writeFileSync(path.join(dir, '.env'), dotenv);

  const command = [...prefix, GATEHOUSE_BIN, 'serve'];
  const proc = spawn(command[0], command.slice(1), {
    cwd: dir, // no stray .env from the repository is read
    detached: true, // own process group, so cleanup can reach everything it started
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      GATEWAY_PORT: '0',
      GATEWAY_HOST: '127.0.0.1',
      MCP_SERVERS_FILE: serversFile,
      SHUTDOWN_GRACE_MS: '3000',
      // Most tests send far more than 100 requests a minute as one user: the limits are tested on their own.
      RATE_LIMIT_PER_MINUTE: '10000000',
      RATE_LIMIT_PER_IP: '10000000',
      LOG_LEVEL: 'info',
      DATABASE_URL: db.url,
      ...env,
    },
  });
  const gatewayEnv = { MCP_SERVERS_FILE: serversFile, ...env, DATABASE_URL: env.DATABASE_URL ?? db.url };
  track(proc);
  const logs = [];
  const stdout = [];
  const listeners = new Set();
  onLines(proc.stderr, (line) => {
    logs.push(line);
    for (const listener of listeners) listener(line);
  });
  let adminKey = givenAdminKey ?? db.adminKey ?? null;
  onLines(proc.stdout, (line) => {
    stdout.push(line);
    const match = ADMIN_KEY_LINE.exec(line.trim());
    if (match && freshStore) {
      adminKey = match[1];
      db.adminKey = match[1];
    }
  });
  let adminKeyProblem = null;

  let stopped = null;
  const gh = {
    proc,
    pid: proc.pid,
    logs,
    stdout,
    dir,
    serversFile,
    database: db,
    databaseUrl: db.url,
    freshStore,
    /** The bootstrap admin's API key (throws when the gateway printed none for this store). */
    get adminKey() {
      if (adminKey) return adminKey;
      throw new Error(adminKeyProblem ?? (freshStore
        ? 'no admin API key: the gateway printed no "Admin API key (shown once): gh_…" line on stdout'
        : `no admin API key known for the store ${db.url} (pass options.adminKey)`));
    },
    get hasAdminKey() { return Boolean(adminKey); },
    /** {Authorization: 'Bearer <admin key>'}, or {} while no admin key is known. */
    get authHeaders() { return adminKey ? { Authorization: `Bearer ${adminKey}` } : {}; },
    /** fetch() against the gateway with the admin's credentials unless init.auth === false or init.headers has its own. */
    fetch(pathOrUrl, { auth = true, headers = {}, ...init } = {}) {
      const url = /^https?:/.test(pathOrUrl) ? pathOrUrl : `${gh.url}${pathOrUrl}`;
      return fetch(url, { redirect: 'manual', ...init, headers: withAuth(url, headers, { auth }) });
    },
    /**
     * The management API: `api('GET', '/users?q=x')` → {status, headers, text, body (parsed JSON)}.
     * As the bootstrap admin unless opts.headers carries another Authorization (null: none).
     */
    async api(method, apiPath, body, { headers = {}, auth = true } = {}) {
      const init = { method, headers: { accept: 'application/json', ...headers }, auth };
      if (body !== undefined) {
        init.headers['content-type'] = 'application/json';
        init.body = typeof body === 'string' ? body : JSON.stringify(body);
      }
      return readBody(await gh.fetch(`/mcp-admin/api${apiPath}`, init));
    },
    /** The CLI with this gateway's environment (same DATABASE_URL): {code, stdout, stderr, lastLine}. */
    cli(args, { env: extra = {}, ...rest } = {}) {
      return runCli(args, { cwd: dir, ...rest, env: { ...gatewayEnv, ...extra } });
    },
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
        stopped = stopProcessGroup(proc, { signal: 'SIGTERM', graceMs: 15000 })
          .finally(() => { unregisterAuth(); cleanup(); return releaseDatabase(); });
      }
      return stopped;
    },
    jsonLogs() { return jsonLogs(logs); },
    describe() {
      return `gatehouse pid ${proc.pid} exit=${proc.exitCode} signal=${proc.signalCode}\n--- stderr ---\n${logs.slice(-60).join('\n')}`;
    },
  };
  let unregisterAuth = () => {};
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
    unregisterAuth = registerGatewayAuth(gh.url, () => gh.authHeaders);
    // A fresh store: the gateway created the admin account and printed its key once (bounded wait).
    if (freshStore && !adminKey && identitySupported()) {
      try {
        await waitFor(() => {
          if (proc.exitCode !== null) throw new Error(`gatehouse exited (code ${proc.exitCode})`);
          return adminKey;
        }, { timeoutMs: adminKeyTimeoutMs, intervalMs: 25, what: 'the "Admin API key (shown once): gh_…" line on stdout' });
      } catch (error) {
        adminKeyProblem = `no admin API key: ${error.message}\n--- stdout ---\n${stdout.slice(-20).join('\n')}`;
      }
    } else if (freshStore && !adminKey) {
      adminKeyProblem = `no admin API key: ${GATEHOUSE_BIN} has no identity features (no \`migrate\` command)`;
    }
  } catch (error) {
    await gh.stop();
    error.message += `\n${gh.describe()}`;
    throw error;
  }
  return gh;
}

/** GET a gateway JSON endpoint: {status, headers, body}, with the gateway's default credentials (see auth.js). */
export async function getJson(url, { headers = {}, auth = true } = {}) {
  const res = await fetch(url, { headers: withAuth(url, headers, { auth }) });
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

/** Fails unless the gateway still runs and /gateway/health answers 200 (after each test of a bad-input suite). */
export async function assertServing(gh) {
  const health = await getJson(`${gh.url}/gateway/health`);
  assert.equal(health.status, 200, `gateway unhealthy after the test: ${JSON.stringify(health.body)}\n${gh.describe()}`);
  assert.equal(gh.proc.exitCode, null, 'gateway exited');
}
