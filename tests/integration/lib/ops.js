// Helpers for the traffic-control and visibility tests (rate limits, Redis, analytics, /gateway/stats, /metrics):
// users with API keys, many requests at once over keep-alive connections, a throwaway redis-server, a strict
// Prometheus text-format parser, and row counts read from the store itself.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { runCli } from './gatehouse.js';
import { freePort, onLines, stopProcessGroup, track, waitFor, waitForPort } from './procs.js';
import { withPg } from './store.js';

/** Creates a user (optionally in groups, created when missing) with an API key, through the management API. */
export async function makeUser(gh, email, { groups = [], isAdmin = false } = {}) {
  const created = await gh.api('POST', '/users', { email, name: email.split('@')[0], is_admin: isAdmin });
  assert.equal(created.status, 201, `POST /users ${email}: ${created.text}`);
  for (const group of groups) {
    const made = await gh.api('POST', '/groups', { name: group });
    assert.ok([201, 409].includes(made.status), `POST /groups ${group}: ${made.text}`);
    const added = await gh.api('POST', `/groups/${encodeURIComponent(group)}/members`, { emails: [email] });
    assert.equal(added.status, 200, `add ${email} to ${group}: ${added.text}`);
  }
  const key = await gh.api('POST', '/apikeys', { user_email: email, name: 'ops-test' });
  assert.equal(key.status, 201, `POST /apikeys ${email}: ${key.text}`);
  return { email, key: key.body.key, headers: { authorization: `Bearer ${key.body.key}` } };
}

/** Grants `server` to `group` (PUT /groups/G/servers/S), creating the group when missing. */
export async function grantServer(gh, group, server) {
  const made = await gh.api('POST', '/groups', { name: group });
  assert.ok([201, 409].includes(made.status), `POST /groups ${group}: ${made.text}`);
  const res = await gh.api('PUT', `/groups/${encodeURIComponent(group)}/servers/${encodeURIComponent(server)}`, {});
  assert.ok([200, 201].includes(res.status), `grant ${server} to ${group}: ${res.status} ${res.text}`);
}

/**
 * One HTTP request over `agent` (keep-alive): {status, headers, text}. Only the headers given are sent.
 * Rejects after timeoutMs (a hang is a failure, never a wait).
 */
export function send(url, { method = 'GET', headers = {}, body, agent, timeoutMs = 10000 } = {}) {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: target.hostname, port: target.port, path: target.pathname + target.search, method, headers, agent,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (error) => { clearTimeout(timer); reject(error); });
    });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${url}: no response within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (error) => { clearTimeout(timer); reject(error); });
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

/**
 * Sends `n` requests all at once (each on its own connection unless an agent is given) and waits for every
 * answer. `target(i)` → {url, headers, method, body}. Returns {results (in order), elapsedMs, byStatus}.
 */
export async function burst(n, target, { agent } = {}) {
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => {
    const { url, ...init } = target(i);
    return send(url, { agent, ...init });
  }));
  const elapsedMs = Date.now() - started;
  const byStatus = {};
  for (const r of results) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  return { results, elapsedMs, byStatus };
}

/**
 * The most requests GCRA may let through from a standing start over `elapsedMs`: the burst, plus one per
 * 60/perMinute seconds elapsed.
 */
export function allowedBound(perMinute, elapsedMs, burstSize = perMinute) {
  return burstSize + Math.floor((elapsedMs / 1000) * (perMinute / 60));
}

/** Asserts a 429 carries what the contract promises; returns the parsed header values. */
export function assertRateLimited(res, { limit, what = 'a refusal' } = {}) {
  assert.equal(res.status, 429, `${what}: status ${res.status} ${res.text.slice(0, 300)}`);
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `${what}: Retry-After ${res.headers['retry-after']}`);
  const lim = res.headers['ratelimit-limit'];
  const remaining = res.headers['ratelimit-remaining'];
  const reset = Number(res.headers['ratelimit-reset']);
  assert.ok(lim !== undefined, `${what}: no RateLimit-Limit header`);
  if (limit !== undefined) assert.equal(Number(lim), limit, `${what}: RateLimit-Limit`);
  assert.equal(remaining, '0', `${what}: RateLimit-Remaining`);
  assert.ok(Number.isInteger(reset) && reset >= 1, `${what}: RateLimit-Reset ${res.headers['ratelimit-reset']}`);
  return { retryAfter, limit: Number(lim), reset };
}

// ---- redis-server, throwaway ----------------------------------------------------------------------------

/**
 * Starts redis-server in the foreground (own process group) on 127.0.0.1:`port` (default: a free one), no
 * persistence. Stopped by its PID with stop() (also registered on `t`). kill() = SIGKILL (a crash).
 */
export async function startRedis({ t, port: wanted } = {}) {
  let lastError;
  for (let attempt = 0; attempt < (wanted ? 1 : 3); attempt++) {
    const port = wanted ?? await freePort();
    const proc = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no',
    ], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    track(proc);
    const logs = [];
    onLines(proc.stdout, (l) => logs.push(l));
    onLines(proc.stderr, (l) => logs.push(l));
    let stopped = null;
    const redis = {
      port, proc, pid: proc.pid, logs, url: `redis://127.0.0.1:${port}`,
      stop() {
        if (!stopped) stopped = stopProcessGroup(proc, { signal: 'SIGTERM', graceMs: 3000 });
        return stopped;
      },
      kill() {
        if (!stopped) stopped = stopProcessGroup(proc, { signal: 'SIGKILL', graceMs: 3000 });
        return stopped;
      },
    };
    if (t) (typeof t === 'function' ? t : t.after.bind(t))(() => redis.stop());
    try {
      await waitForPort(port, { proc, timeoutMs: 10000 });
      return redis;
    } catch (error) {
      lastError = new Error(`${error.message}\n--- redis-server output ---\n${logs.join('\n')}`);
      await redis.stop();
    }
  }
  throw lastError;
}

// ---- Prometheus text format (0.0.4), strict --------------------------------------------------------------

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseNumber(text, where) {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`${where}: bad number ${JSON.stringify(text)}`);
  return Number(text);
}

/** Parses `{a="x",b="y\"z"}` starting at `i` (at '{'); returns {labels, end} (end = index after '}'). */
function parseLabels(line, i, where) {
  const labels = {};
  let pos = i + 1;
  for (let guard = 0; guard < 1000; guard++) {
    if (line[pos] === '}') return { labels, end: pos + 1 };
    const eq = line.indexOf('=', pos);
    if (eq < 0) throw new Error(`${where}: label without '='`);
    const name = line.slice(pos, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    if (line[eq + 1] !== '"') throw new Error(`${where}: label ${name} value not quoted`);
    let value = '';
    let j = eq + 2;
    for (; j < line.length; j++) {
      const c = line[j];
      if (c === '\\') {
        const next = line[j + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new Error(`${where}: bad escape \\${next} in label ${name}`);
        j++;
      } else if (c === '"') {
        break;
      } else if (c === '\n') {
        throw new Error(`${where}: raw newline in label ${name}`);
      } else {
        value += c;
      }
    }
    if (j >= line.length) throw new Error(`${where}: unterminated value of label ${name}`);
    labels[name] = value;
    pos = j + 1;
    if (line[pos] === ',') pos++;
    else if (line[pos] !== '}') throw new Error(`${where}: expected ',' or '}' after label ${name}, got ${JSON.stringify(line[pos])}`);
  }
  throw new Error(`${where}: too many labels`);
}

/** The family a sample belongs to given the declared types (histogram _bucket/_sum/_count, summary _sum/_count). */
function familyOf(name, types) {
  if (types.has(name) && types.get(name) !== 'histogram') return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = types.get(base);
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return base;
  }
  return types.has(name) ? name : null;
}

const seriesKey = (name, labels) => `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`;

/**
 * Parses a Prometheus text exposition strictly. Throws on: a line that is neither a comment nor a sample,
 * a bad metric or label name, a bad escape, a bad number, HELP/TYPE twice or TYPE after samples, an unknown
 * type, a sample whose family has no TYPE, a family's samples not in one group, the same series twice,
 * histogram buckets that are not cumulative, not ending in le="+Inf", or whose +Inf differs from _count,
 * a histogram without _sum or _count, and a body not ending in a newline.
 * Returns {families: Map(name → {type, help, samples: [{name, labels, value}]}), value(name, labels)}.
 */
export function parsePrometheus(text) {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const families = new Map();
  const types = new Map();
  const helps = new Set();
  const seen = new Set();
  const closed = new Set(); // families whose group of lines has ended
  let current = null;
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const family = (name) => {
    if (!families.has(name)) families.set(name, { type: undefined, help: undefined, samples: [] });
    return families.get(name);
  };
  const enter = (name, where) => {
    if (current === name) return;
    if (closed.has(name)) throw new Error(`${where}: lines of ${name} are not in one group`);
    if (current) closed.add(current);
    current = name;
  };
  lines.forEach((line, index) => {
    const where = `line ${index + 1} ${JSON.stringify(line.slice(0, 200))}`;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ''] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name ${name}`);
      enter(name, where);
      const fam = family(name);
      if (kind === 'HELP') {
        if (helps.has(name)) throw new Error(`${where}: second HELP for ${name}`);
        helps.add(name);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`);
        fam.help = rest;
      } else {
        const type = rest.trim();
        if (!TYPES.has(type)) throw new Error(`${where}: unknown type ${JSON.stringify(type)}`);
        if (types.has(name)) throw new Error(`${where}: second TYPE for ${name}`);
        if (fam.samples.length > 0) throw new Error(`${where}: TYPE after samples of ${name}`);
        types.set(name, type);
        fam.type = type;
      }
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) throw new Error(`${where}: not a sample`);
    const name = nameMatch[0];
    let pos = name.length;
    let labels = {};
    if (line[pos] === '{') ({ labels, end: pos } = parseLabels(line, pos, where));
    if (line[pos] !== ' ') throw new Error(`${where}: expected one space before the value`);
    const parts = line.slice(pos + 1).split(' ');
    if (parts.length < 1 || parts.length > 2 || parts.some((p) => p === '')) throw new Error(`${where}: expected "value [timestamp]"`);
    const value = parseNumber(parts[0], where);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1])) throw new Error(`${where}: bad timestamp`);
    const fam = familyOf(name, types);
    if (!fam) throw new Error(`${where}: sample ${name} has no TYPE declared before it`);
    enter(fam, where);
    const key = seriesKey(name, labels);
    if (seen.has(key)) throw new Error(`${where}: series ${key} twice`);
    seen.add(key);
    family(fam).samples.push({ name, labels, value });
  });
  for (const [name, fam] of families) {
    if (!fam.type) throw new Error(`family ${name} has HELP but no TYPE`);
    if (fam.type === 'counter') {
      for (const s of fam.samples) if (!(s.value >= 0)) throw new Error(`counter ${s.name} is ${s.value}`);
    }
    if (fam.type !== 'histogram') continue;
    const groups = new Map();
    for (const s of fam.samples) {
      const { le, ...rest } = s.labels;
      const key = seriesKey(name, rest);
      if (!groups.has(key)) groups.set(key, { buckets: [], sum: undefined, count: undefined });
      const g = groups.get(key);
      if (s.name === `${name}_bucket`) {
        if (le === undefined) throw new Error(`${seriesKey(s.name, s.labels)}: bucket without le`);
        g.buckets.push({ le: parseNumber(le, `${key} le`), count: s.value });
      } else if (s.name === `${name}_sum`) {
        if (le !== undefined) throw new Error(`${key}: _sum with le`);
        g.sum = s.value;
      } else {
        if (le !== undefined) throw new Error(`${key}: _count with le`);
        g.count = s.value;
      }
    }
    for (const [key, g] of groups) {
      if (g.buckets.length === 0) throw new Error(`${key}: histogram without buckets`);
      if (g.sum === undefined || g.count === undefined) throw new Error(`${key}: histogram without _sum or _count`);
      for (let i = 1; i < g.buckets.length; i++) {
        if (!(g.buckets[i].le > g.buckets[i - 1].le)) throw new Error(`${key}: le not increasing at ${g.buckets[i].le}`);
        if (g.buckets[i].count < g.buckets[i - 1].count) throw new Error(`${key}: buckets not cumulative at le=${g.buckets[i].le}`);
      }
      const last = g.buckets[g.buckets.length - 1];
      if (last.le !== Infinity) throw new Error(`${key}: the last bucket is le=${last.le}, not +Inf`);
      if (last.count !== g.count) throw new Error(`${key}: +Inf bucket ${last.count} != _count ${g.count}`);
      if (!Number.isInteger(g.count) || g.count < 0) throw new Error(`${key}: _count ${g.count}`);
    }
  }
  return {
    families,
    /** The value of one sample (exact label match), or undefined. */
    value(name, labels = {}) {
      for (const fam of families.values()) {
        for (const s of fam.samples) {
          if (s.name === name && seriesKey(name, s.labels) === seriesKey(name, labels)) return s.value;
        }
      }
      return undefined;
    },
  };
}

// ---- analytics rows, read from the store itself ------------------------------------------------------------

/**
 * Runs a SELECT on the gateway's store after the gateway stopped (SQLite: the file read with sql.js) or while
 * it runs (PostgreSQL: the `mcp_proxy` schema). `sql` uses the bare table name api_analytics.
 */
export async function queryStore(db, sql, params = []) {
  if (db.backend === 'postgres') {
    const text = sql.replace(/\bapi_analytics\b/g, 'mcp_proxy.api_analytics');
    return withPg(async (c) => (await c.query(text, params)).rows, db.url);
  }
  const file = db.file ?? db.url.replace(/^sqlite:\/\//, '');
  for (const extra of ['-wal']) {
    if (fs.existsSync(file + extra) && fs.statSync(file + extra).size > 0) {
      throw new Error(`${file}${extra} is not empty after the gateway stopped: the store was not checkpointed`);
    }
  }
  const { default: initSqlJs } = await import('sql.js');
  const SQL = await initSqlJs();
  const database = new SQL.Database(fs.readFileSync(file));
  try {
    const stmt = database.prepare(sql.replace(/\$\d+/g, '?'));
    stmt.bind(params);
    const rows = [];
    while (stmt.step()) rows.push(stmt.getAsObject());
    stmt.free();
    return rows;
  } finally {
    database.close();
  }
}

/**
 * SQLite only: the gateway ends with std::_Exit after its last write and so leaves its WAL file for the next
 * opener to fold in; sql.js reads only the main file. Running the CLI (`gatehouse migrate`) on the store opens
 * and cleanly closes it, which checkpoints the WAL into the main file. Returns the WAL size found before.
 */
export function checkpointSqlite(db) {
  if (db.backend === 'postgres') return 0;
  const file = db.file ?? db.url.replace(/^sqlite:\/\//, '');
  const before = fs.existsSync(`${file}-wal`) ? fs.statSync(`${file}-wal`).size : 0;
  const res = runCli(['migrate'], { env: { DATABASE_URL: db.url } });
  assert.equal(res.code, 0, `gatehouse migrate: ${res.stderr}`);
  return before;
}

/** Polls /gateway/stats (as the admin) until the analytics queue is empty and everything recorded is written. */
export async function waitForAnalyticsFlushed(gh, { timeoutMs = 20000 } = {}) {
  let last;
  await waitFor(async () => {
    const res = await gh.fetch('/gateway/stats');
    last = await res.json();
    const a = last.analytics;
    // The stats request itself is recorded after it answers: allow it to be the one row not yet written.
    return a && a.queued <= 1 && a.recorded - a.written <= 1 && a.dropped === 0;
  }, { timeoutMs, intervalMs: 100, what: 'the analytics queue to drain' }).catch((error) => {
    error.message += `\nlast stats: ${JSON.stringify(last?.analytics)}`;
    throw error;
  });
  return last;
}
