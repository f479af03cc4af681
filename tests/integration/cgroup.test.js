// The analytics writer's idle cgroup (ANALYTICS_WRITER_CGROUP, docs/operations.md "Analytics"): by default the
// writer's thread — and only it — goes into `gatehouse-idle` (cpu.idle = 1) under the process's own cgroup-v1
// `cpu` cgroup when the gateway may create it; where it may not, the gateway says why and runs as before;
// `off` leaves it where it is; a directory the operator prepared is joined as it is; a wrong value stops
// start-up with the setting's name.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { checkConfig, startGatehouse } from './lib/index.js';

/** This process's cgroup-v1 cpu directory (the gateway's too: it is our child), or null. */
function cpuV1Dir() {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')
    .map((l) => l.split(':')).find((f) => f.length >= 3 && f[1].split(',').includes('cpu'));
  if (!line) return null;
  const cgPath = line.slice(2).join(':');
  for (const m of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = m.split(' - ');
    if (!right) continue;
    const [, , , root, mount] = left.split(' ');
    const [type, , opts] = right.split(' ');
    if (type !== 'cgroup' || !opts.split(',').includes('cpu')) continue;
    if (root === '/') return cgPath === '/' ? mount : mount + cgPath;
    if (cgPath === root) return mount;
    if (cgPath.startsWith(`${root}/`)) return mount + cgPath.slice(root.length);
  }
  return null;
}

/** May this process create a cgroup next to its own (root with a writable cgroup-v1 cpu hierarchy)? */
function canMakeCgroups(dir) {
  if (!dir) return false;
  const probe = path.join(dir, `gh-probe-${process.pid}`);
  try {
    fs.mkdirSync(probe);
    fs.rmdirSync(probe);
    return true;
  } catch {
    return false;
  }
}

/** {name: cpu cgroup path} of the gateway's threads. */
function threadCgroups(pid) {
  const out = {};
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    const name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    const cpu = fs.readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'utf8').split('\n')
      .map((l) => l.split(':')).find((f) => f.length >= 3 && f[1].split(',').includes('cpu'));
    (out[name] ??= new Set()).add(cpu ? cpu.slice(2).join(':') : '');
  }
  return out;
}

async function statsCgroup(gh) {
  const res = await gh.fetch('/gateway/stats');
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.ok(body.analytics, 'stats have an analytics section');
  return body.analytics.cgroup;
}

const logOf = (gh, msg) => gh.jsonLogs().find((l) => l.msg === msg);

const cpuDir = cpuV1Dir();
const writable = canMakeCgroups(cpuDir);

it('by default the analytics writer (and only it) runs in an idle cgroup where the gateway may make one', async (t) => {
  const gh = await startGatehouse({ t, servers: {} });
  if (!writable) {
    // Nothing to join here (cgroup v2 only, or no permission): the gateway says why, and runs.
    assert.equal(await statsCgroup(gh), null);
    const line = logOf(gh, 'analytics writer: no idle cgroup; SCHED_IDLE with pauses only');
    assert.ok(line && line.reason, `a log line says why: ${gh.describe()}`);
    return;
  }
  const dir = path.join(cpuDir, 'gatehouse-idle');
  assert.equal(await statsCgroup(gh), dir);
  assert.equal(fs.readFileSync(path.join(dir, 'cpu.idle'), 'utf8').trim(), '1');
  assert.equal(logOf(gh, 'analytics writer: in its idle cgroup')?.cgroup, dir);
  const threads = threadCgroups(gh.pid);
  assert.deepEqual([...threads['gh-analytics']].map((p) => p.endsWith('/gatehouse-idle')), [true],
    `the writer's thread is in gatehouse-idle: ${[...threads['gh-analytics']]}`);
  for (const [name, paths] of Object.entries(threads)) {
    if (name === 'gh-analytics') continue;
    for (const p of paths) assert.ok(!p.endsWith('/gatehouse-idle'), `${name} stays in the process's cgroup (${p})`);
  }
});

it('ANALYTICS_WRITER_CGROUP=off leaves the writer in the process\'s cgroup', async (t) => {
  const gh = await startGatehouse({ t, servers: {}, env: { ANALYTICS_WRITER_CGROUP: 'off' } });
  assert.equal(await statsCgroup(gh), null);
  const line = logOf(gh, 'analytics writer: no idle cgroup; SCHED_IDLE with pauses only');
  assert.match(line?.reason ?? '', /ANALYTICS_WRITER_CGROUP=off/);
  const threads = threadCgroups(gh.pid);
  const main = threads[Object.keys(threads).find((n) => n !== 'gh-analytics' && !n.startsWith('gh-'))];
  assert.deepEqual([...threads['gh-analytics']], [...main], 'the writer is where the main thread is');
});

it('ANALYTICS_WRITER_CGROUP=<directory> is joined as the operator prepared it', async (t) => {
  if (!writable) return t.skip('no writable cgroup-v1 cpu hierarchy on this machine to prepare a cgroup in');
  const dir = path.join(cpuDir, `gh-test-${process.pid}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'cpu.idle'), '1');
  const gh = await startGatehouse({ t, servers: {}, env: { ANALYTICS_WRITER_CGROUP: dir } });
  try {
    assert.equal(await statsCgroup(gh), dir);
    const tasks = fs.readFileSync(path.join(dir, 'tasks'), 'utf8').trim().split('\n').filter(Boolean);
    assert.equal(tasks.length, 1, `only the writer's thread is in ${dir}: ${tasks}`);
    assert.equal(fs.readFileSync(`/proc/${gh.pid}/task/${tasks[0]}/comm`, 'utf8').trim(), 'gh-analytics');
  } finally {
    await gh.stop();
    // The thread leaves with the process; the kernel may take a moment before the cgroup is empty.
    for (let i = 0; ; i++) {
      try { fs.rmdirSync(dir); break; } catch (e) { if (i > 50) throw e; await new Promise((r) => setTimeout(r, 100)); }
    }
  }
});

it('a value that is neither auto, off nor a cgroup directory stops start-up, naming ANALYTICS_WRITER_CGROUP', () => {
  for (const value of ['yes', '/tmp', 'relative/dir']) {
    const res = checkConfig({ servers: {}, env: { ANALYTICS_WRITER_CGROUP: value } });
    assert.equal(res.code, 2, `${value}: ${res.stdout} ${res.stderr}`);
    assert.match(res.stderr, /ANALYTICS_WRITER_CGROUP/);
  }
});
