// Process and port helpers shared by the harness: free ports from the OS,
// bounded polling, /proc look-ups of child processes, and cleanup of what a test started.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A free TCP port on 127.0.0.1: bind port 0, read the port, close. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Every process group the harness started, so nothing survives the test process:
// killed on exit, and on SIGINT/SIGTERM (e.g. the runner's timeout) before exiting.
const tracked = new Set();

export function track(proc) { tracked.add(proc); return proc; }
export function untrack(proc) { tracked.delete(proc); }

function killTracked() {
  for (const proc of tracked) {
    if (proc.pid === undefined) continue;
    for (const pid of descendantPids(proc.pid)) killQuietly(pid, 'SIGKILL');
    killQuietly(-proc.pid, 'SIGKILL');
    killQuietly(proc.pid, 'SIGKILL');
  }
  tracked.clear();
}
process.on('exit', killTracked);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { killTracked(); process.exit(128 + (signal === 'SIGINT' ? 2 : 15)); });
}

export const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` (async, returns a truthy value when done) every `intervalMs`
 * until it succeeds or `timeoutMs` passes. Bounded in time and in count.
 */
export async function waitFor(check, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (let attempt = 0; attempt < 10000; attempt++) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) break;
    await delay(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
    (lastError ? ` (last error: ${lastError.message})` : ''));
}

/** Resolves once 127.0.0.1:port accepts a TCP connection (bounded). */
export async function waitForPort(port, { timeoutMs = 15000, proc } = {}) {
  return waitFor(() => {
    if (proc && proc.exitCode !== null) {
      throw new Error(`process exited with ${proc.exitCode} before listening on ${port}`);
    }
    return new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => { socket.destroy(); resolve(false); });
    });
  }, { timeoutMs, what: `127.0.0.1:${port} to accept connections` });
}

/** The resident set of a process, in kB (VmRSS). */
export function rssKb(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/** True while a process with this pid exists and is not a zombie. */
export function pidAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function readStat(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid: Number(pid), state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

/** Live (non-zombie) direct children of `pid`, read from /proc. */
export function childPids(pid) {
  const result = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(entry);
    if (stat && stat.ppid === pid && stat.state !== 'Z') result.push(stat.pid);
  }
  return result;
}

/** Live descendants of `pid` (children, grandchildren, …). */
export function descendantPids(pid) {
  const stats = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(entry);
    if (stat && stat.state !== 'Z') stats.push(stat);
  }
  const found = [];
  const queue = [pid];
  for (let i = 0; i < queue.length && i < 10000; i++) {
    for (const stat of stats) {
      if (stat.ppid === queue[i]) { found.push(stat.pid); queue.push(stat.pid); }
    }
  }
  return found;
}

/** The command line of a pid, or '' when it is gone. */
export function cmdline(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

export function killQuietly(pid, signal = 'SIGKILL') {
  try { process.kill(pid, signal); } catch { /* already gone */ }
}

/** Resolves with {code, signal} when the child exits, or null after timeoutMs. */
export function waitForExit(proc, timeoutMs) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => { proc.off('exit', onExit); resolve(null); }, timeoutMs);
    function onExit(code, signal) { clearTimeout(timer); resolve({ code, signal }); }
    proc.once('exit', onExit);
  });
}

/**
 * Stops a process this harness spawned with `detached: true` (its own process group):
 * `signal` first, then SIGKILL to the whole group after `graceMs`.
 */
export async function stopProcessGroup(proc, { signal = 'SIGTERM', graceMs = 5000 } = {}) {
  if (!proc || proc.pid === undefined) return null;
  const leftovers = descendantPids(proc.pid);
  let result = { code: proc.exitCode, signal: proc.signalCode };
  if (proc.exitCode === null && proc.signalCode === null) {
    killQuietly(proc.pid, signal);
    result = await waitForExit(proc, graceMs);
    if (!result) {
      killQuietly(-proc.pid, 'SIGKILL');
      killQuietly(proc.pid, 'SIGKILL');
      result = await waitForExit(proc, 5000);
    }
  }
  // Anything the process left behind (its group, and descendants that made their own group).
  killQuietly(-proc.pid, 'SIGKILL');
  for (const pid of leftovers) killQuietly(pid, 'SIGKILL');
  untrack(proc);
  return result;
}

/** A fresh temp directory, removed by the returned cleanup(). */
export function tempDir(prefix = 'gatehouse-it-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Splits a stream into lines, calling onLine for each complete one. */
export function onLines(stream, onLine) {
  let buffer = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, '');
      buffer = buffer.slice(newline + 1);
      onLine(line);
    }
  });
  stream.on('end', () => { if (buffer) onLine(buffer); buffer = ''; });
}
