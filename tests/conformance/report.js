#!/usr/bin/env node
// Compares conformance results of the fixture tested directly and through Gatehouse.
// usage: node report.js --scenarios FILE --direct DIR [--gatehouse DIR] [--expected FILE]
// DIR holds the CLI's `-o` output: one `server-<scenario>-<timestamp>/checks.json` per scenario.
// A scenario passes when none of its checks is a FAILURE (WARNING and INFO do not fail it).
// Prints a table, the failing checks, and finally `conformance: N passed, M failed`:
// N = scenarios passing on the leg under test (through Gatehouse, or direct without --gatehouse),
// M = unexpected failures there, plus scenarios with no direct result (a broken run). Exit status 1 when M > 0.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    scenarios: { type: 'string' },
    direct: { type: 'string' },
    gatehouse: { type: 'string' },
    expected: { type: 'string' },
  },
});
if (!opt.scenarios || !opt.direct) {
  console.error('usage: report.js --scenarios FILE --direct DIR [--gatehouse DIR] [--expected FILE]');
  process.exit(2);
}

const scenarios = readFileSync(opt.scenarios, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean);

// expected-failures.txt: `scenario  # reason`, one a line; blank lines and `#` lines are ignored.
const expected = new Map();
if (opt.expected && existsSync(opt.expected)) {
  for (const line of readFileSync(opt.expected, 'utf8').split('\n')) {
    const [name, ...reason] = line.split('#');
    if (!name.trim()) continue;
    expected.set(name.trim(), reason.join('#').trim() || '(no reason given)');
  }
}

// scenario -> {checks, dir}; the newest result directory wins.
function load(dir) {
  const results = new Map();
  if (!dir || !existsSync(dir)) return results;
  for (const entry of readdirSync(dir).sort()) {
    const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry);
    const file = join(dir, entry, 'checks.json');
    if (!m || !existsSync(file)) continue;
    results.set(m[1], { checks: JSON.parse(readFileSync(file, 'utf8')), file });
  }
  return results;
}

function outcome(result) {
  if (!result) return { pass: false, cell: 'missing', failures: [], warned: [] };
  const failures = result.checks.filter((c) => c.status === 'FAILURE');
  const judged = result.checks.filter((c) => c.status === 'SUCCESS').length + failures.length;
  const warned = result.checks.filter((c) => c.status === 'WARNING');
  const warn = warned.length ? ` (${warned.length} warn)` : '';
  return failures.length
    ? { pass: false, cell: `FAIL ${failures.length}/${judged}${warn}`, failures, warned, file: result.file }
    : { pass: true, cell: `pass${warn}`, failures, warned, file: result.file };
}

const direct = load(opt.direct);
const viaGatehouse = opt.gatehouse ? load(opt.gatehouse) : null;

const rows = [];
const problems = []; // {scenario, leg, failures, file}
const newWarnings = []; // {scenario, checks, file}: warnings through Gatehouse that the direct run did not have
let passed = 0;
let failed = 0;
let notCounted = 0;
let expectedHits = 0;

for (const scenario of scenarios) {
  const d = outcome(direct.get(scenario));
  const g = viaGatehouse ? outcome(viaGatehouse.get(scenario)) : null;
  const why = expected.get(scenario);
  let note = '';
  if (!d.pass) problems.push({ scenario, leg: 'direct', ...d });
  if (!d.file) {
    // No direct result at all: the run itself broke (CLI crash, timeout), whatever Gatehouse did.
    failed++;
    note = 'no direct result';
  } else if (!g) {
    // Direct only: the fixture is the thing under test.
    if (d.pass) passed++;
    else { failed++; note = 'UNEXPECTED'; }
  } else if (g.pass) {
    passed++;
    if (!d.pass) note = 'fixture fails directly';
    if (why) note = 'expected failure passes: remove it from expected-failures.txt';
  } else if (!d.pass) {
    notCounted++;
    note = 'fixture fails directly: not counted';
  } else if (why) {
    expectedHits++;
    note = `expected: ${why}`;
  } else {
    failed++;
    note = 'UNEXPECTED';
    problems.push({ scenario, leg: 'gatehouse', ...g });
  }
  if (g) {
    const directWarned = new Set(d.warned.map((c) => c.id));
    const checks = g.warned.filter((c) => !directWarned.has(c.id));
    if (checks.length) newWarnings.push({ scenario, checks, file: g.file });
  }
  rows.push([scenario, d.cell, g ? g.cell : '-', note]);
}

for (const name of expected.keys()) {
  if (!scenarios.includes(name)) console.log(`note: expected-failures.txt names unknown scenario '${name}'`);
}

const header = ['scenario', 'direct', 'via gatehouse', 'note'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const fmt = (r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
console.log(fmt(header));
console.log(fmt(widths.map((w) => '-'.repeat(w))));
for (const r of rows) console.log(fmt(r));

if (problems.length) {
  console.log('\nfailing checks:');
  for (const p of problems) {
    console.log(`- ${p.scenario} (${p.leg})${p.file ? `: ${p.file}` : ': no results written'}`);
    for (const c of p.failures) console.log(`    ${c.id}: ${c.errorMessage ?? c.description}`);
  }
}

if (newWarnings.length) {
  console.log('\nwarnings only through Gatehouse (do not fail the run):');
  for (const w of newWarnings) {
    console.log(`- ${w.scenario}: ${w.file}`);
    for (const c of w.checks) console.log(`    ${c.id}: ${c.errorMessage ?? c.description}`);
  }
}

const extra = [];
if (expectedHits) extra.push(`${expectedHits} expected failure(s)`);
if (notCounted) extra.push(`${notCounted} failing directly, not counted`);
if (extra.length) console.log(`\n(${extra.join('; ')})`);
console.log(`conformance: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
