// Multi-tenancy, part 3: a property test over random users, groups and grants (seeded; the seed is printed,
// TENANCY_SEED=<n> replays a run). For every random case, every user:
//   - sees exactly the servers and tools a simple model of the grants predicts (admins: everything), on the
//     aggregate /mcp (<server>__<tool>), on each /mcp/<server> (404 when not granted) and on /servers;
//   - a tool is callable iff it is listed, on both endpoints: unlisted names (also ones on no server) are
//     refused as "Unknown tool" (-32602), listed ones answer (probed with the tools that are cheap to call).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { everythingStdio, startGatehouse } from './lib/index.js';
import { visibleServers } from './lib/identity.js';
import { isUnknownTool, makeGroup, makeUser, mcpSession, prng, putGrant } from './lib/tenancy.js';

const SERVER_IDS = ['alpha', 'beta', 'gamma'];
const SERVERS = Object.fromEntries(SERVER_IDS.map((id) => [id, everythingStdio()]));
const CASES = Number(process.env.TENANCY_CASES ?? 50);
const SEED = Number(process.env.TENANCY_SEED ?? Math.floor(Math.random() * 2 ** 31));
const TIME_BUDGET_MS = 150000;

// Names drawn into allow/deny lists (one exists on no server), and how to call the cheap ones.
const POOL = ['echo', 'get-sum', 'get-env', 'get-tiny-image', 'trigger-long-running-operation', 'get-structured-content', 'no-such-tool'];
const SAFE_ARGS = { echo: { message: 'property' }, 'get-sum': { a: 1, b: 2 }, 'get-env': {}, 'get-tiny-image': {} };

function randomTools(r) {
  const roll = r.next();
  if (roll < 0.35) return null;
  const names = r.subset(POOL, 0.4);
  return roll < 0.7 ? { allow: names } : { deny: names };
}

function allows(tools, name) {
  if (tools === null) return true;
  if (tools.allow) return tools.allow.includes(name);
  return !tools.deny.includes(name);
}

/** The model: server → sorted tool names the user may use (servers not granted are absent). */
function expectedAccess(user, grants, catalog) {
  const out = {};
  for (const server of SERVER_IDS) {
    if (user.isAdmin) { out[server] = [...catalog[server]]; continue; }
    const rules = user.groups.flatMap((g) => (grants[g]?.[server] !== undefined ? [grants[g][server]] : []));
    if (rules.length === 0) continue;
    out[server] = catalog[server].filter((name) => rules.some((tools) => allows(tools, name))).sort();
  }
  return out;
}

describe('multi-tenancy property: a tool is callable iff it is listed', () => {
  let gh;
  let catalog;
  before(async () => {
    console.log(`tenancy property test: seed ${SEED}, ${CASES} cases (replay: TENANCY_SEED=${SEED})`);
    gh = await startGatehouse({ servers: SERVERS });
    catalog = {};
    for (const server of SERVER_IDS) {
      const s = await mcpSession(gh, gh.authHeaders, `/mcp/${server}`);
      assert.equal(s.status, 200, s.text);
      catalog[server] = await s.tools();
    }
  });
  after(() => gh?.stop());

  it(`${CASES} random cases of users, groups and grants (seed printed above)`, async (t) => {
    t.diagnostic(`seed ${SEED}`);
    const r = prng(SEED);
    const started = Date.now();
    let probes = 0;
    let done = 0;
    for (let c = 0; c < CASES; c++) {
      if (Date.now() - started > TIME_BUDGET_MS) break; // bounded in time: report how far it got
      const groupNames = Array.from({ length: 1 + r.int(3) }, (_, i) => `P${c}-G${i}`);
      const grants = {};
      for (const g of groupNames) {
        await makeGroup(gh, g);
        grants[g] = {};
        for (const server of SERVER_IDS) {
          if (!r.chance(0.5)) continue;
          grants[g][server] = randomTools(r);
          await putGrant(gh, g, server, grants[g][server]);
        }
      }
      const users = [];
      for (let u = 0; u < 2; u++) {
        const isAdmin = r.chance(0.08);
        const groups = r.subset(groupNames, 0.5);
        const user = await makeUser(gh, `p${c}-u${u}@property.example`, { isAdmin, groups });
        users.push({ ...user, isAdmin, groups });
      }
      const describeCase = (user) => `seed ${SEED} case ${c}: user ${user.email} admin=${user.isAdmin} ` +
        `groups=${JSON.stringify(user.groups)} grants=${JSON.stringify(grants)}`;

      for (const user of users) {
        const where = describeCase(user);
        const expected = expectedAccess(user, grants, catalog);
        const granted = Object.keys(expected).sort();
        assert.deepEqual((await visibleServers(gh, user.headers)).ids, granted, `/servers — ${where}`);

        const agg = await mcpSession(gh, user.headers);
        assert.equal(agg.status, 200, `initialize /mcp — ${where}: ${agg.text}`);
        const aggTools = await agg.tools();
        const expectedAgg = granted.flatMap((s) => expected[s].map((n) => `${s}__${n}`)).sort();
        assert.deepEqual(aggTools, expectedAgg, `aggregate tools/list — ${where}`);

        for (const server of SERVER_IDS) {
          const probeNames = [...new Set([...POOL, r.pick(catalog[server]), r.pick(catalog[server])])];
          const one = await mcpSession(gh, user.headers, `/mcp/${server}`);
          if (!expected[server]) {
            assert.equal(one.status, 404, `/mcp/${server} not granted → 404 — ${where}: ${one.status} ${one.text.slice(0, 200)}`);
          } else {
            assert.equal(one.status, 200, `/mcp/${server} initialize — ${where}: ${one.text.slice(0, 200)}`);
            const listed = await one.tools();
            assert.deepEqual(listed, expected[server], `/mcp/${server} tools/list — ${where}`);
          }
          for (const name of probeNames) {
            const endpoints = [[agg, `${server}__${name}`, aggTools.includes(`${server}__${name}`)]];
            if (expected[server]) endpoints.push([one, name, expected[server].includes(name)]);
            for (const [session, callName, listed] of endpoints) {
              if (listed && !(name in SAFE_ARGS)) continue; // listed but not cheap to run: the list check covers it
              const res = await session.call(callName, SAFE_ARGS[name] ?? { message: 'x' });
              probes++;
              if (listed) {
                assert.ok(res.result && !res.error && res.result.isError !== true,
                  `listed ${callName} must be callable — ${where}: ${res.text.slice(0, 300)}`);
              } else {
                assert.ok(isUnknownTool(res), `unlisted ${callName} must be "Unknown tool" — ${where}: ${res.text.slice(0, 300)}`);
              }
            }
          }
          await one.close?.();
        }
        await agg.close();
      }
      done++;
    }
    t.diagnostic(`${done} cases, ${probes} tools/call probes in ${Date.now() - started} ms`);
    assert.ok(done >= Math.min(CASES, 20), `only ${done} of ${CASES} cases ran within ${TIME_BUDGET_MS} ms (seed ${SEED})`);
  });
});
