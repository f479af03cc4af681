// The Open WebUI database emulation (lib/openwebui.js), read back independently: the file the gateway will
// open (SQLite) or the database (PostgreSQL) has Open WebUI's tables, and membership in the form asked for.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { jwtVerify } from 'jose';
import { createOpenWebUiDb, mintWebUiToken } from './lib/openwebui.js';
import { withPg } from './lib/store.js';

const require = createRequire(import.meta.url);
const hasPg = Boolean(process.env.GATEHOUSE_TEST_PG_URL);

async function readBack(webui, sql) {
  if (webui.backend === 'postgres') return withPg(async (c) => (await c.query(sql)).rows, webui.url);
  const SQL = await require('sql.js')();
  const file = new URL(webui.url.replace(/^sqlite:\/\//, 'file://')).pathname;
  const db = new SQL.Database(fs.readFileSync(file));
  try {
    const [result] = db.exec(sql);
    if (!result) return [];
    return result.values.map((row) => Object.fromEntries(row.map((v, i) => [result.columns[i], v])));
  } finally {
    db.close();
  }
}

for (const backend of ['sqlite', 'postgres']) {
  for (const legacyUserIds of [false, true]) {
    it(`${backend}, ${legacyUserIds ? 'older form (group.user_ids)' : 'current form (group_member)'}: users and groups as Open WebUI keeps them`,
      { skip: backend === 'postgres' && !hasPg ? 'GATEHOUSE_TEST_PG_URL not set' : false }, async (t) => {
        const webui = await createOpenWebUiDb({ backend, legacyUserIds, t });
        if (backend === 'sqlite') assert.match(webui.url, /^sqlite:\/\/\/.+\/webui\.db$/);
        else assert.match(webui.url, /^postgresql:\/\/.+\/webui_[0-9a-f]+$/);
        const ada = await webui.addUser({ email: 'ada@example.com', name: 'Ada', role: 'admin' });
        const bo = await webui.addUser({ email: 'bo@example.com', role: 'pending' });
        await webui.addGroup('Engineering', [ada, bo]);
        await webui.addGroup('Empty', []);

        const users = await readBack(webui, 'SELECT id, email, role, created_at FROM "user" ORDER BY email');
        assert.deepEqual(users.map((u) => [u.id, u.email, u.role]), [[ada, 'ada@example.com', 'admin'], [bo, 'bo@example.com', 'pending']]);
        assert.ok(Number(users[0].created_at) > 1_600_000_000);

        const columns = backend === 'postgres'
          ? (await readBack(webui, "SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'group'")).map((r) => r.c)
          : (await readBack(webui, 'PRAGMA table_info("group")')).map((r) => r.name);
        assert.equal(columns.includes('user_ids'), legacyUserIds);
        const tables = backend === 'postgres'
          ? (await readBack(webui, "SELECT table_name AS n FROM information_schema.tables WHERE table_schema = 'public'")).map((r) => r.n)
          : (await readBack(webui, "SELECT name AS n FROM sqlite_master WHERE type = 'table'")).map((r) => r.n);
        assert.equal(tables.includes('group_member'), !legacyUserIds);

        if (legacyUserIds) {
          const [row] = await readBack(webui, 'SELECT user_ids FROM "group" WHERE name = \'Engineering\'');
          const ids = typeof row.user_ids === 'string' ? JSON.parse(row.user_ids) : row.user_ids;
          assert.deepEqual(ids, [ada, bo]);
        } else {
          const rows = await readBack(webui,
            'SELECT g.name AS name, m.user_id AS user_id FROM group_member m JOIN "group" g ON g.id = m.group_id ORDER BY m.user_id');
          assert.deepEqual(rows.map((r) => [r.name, r.user_id]).sort(), [['Engineering', ada], ['Engineering', bo]].sort());
        }
      });
  }
}

describe('mintWebUiToken', () => {
  it('HS256 with the secret; id and exp, jti/iat when asked, no exp when exp is null', async () => {
    const secret = 'webui-secret';
    const token = await mintWebUiToken(secret, { id: 'u1', jti: true, iat: true });
    const { payload, protectedHeader } = await jwtVerify(token, new TextEncoder().encode(secret));
    assert.equal(protectedHeader.alg, 'HS256');
    assert.equal(payload.id, 'u1');
    assert.ok(payload.exp > Date.now() / 1000);
    assert.match(payload.jti, /^[0-9a-f-]{36}$/);
    const forever = await mintWebUiToken(secret, { id: 'u1', exp: null });
    assert.equal((await jwtVerify(forever, new TextEncoder().encode(secret))).payload.exp, undefined);
    await assert.rejects(jwtVerify(token, new TextEncoder().encode('other')));
  });
});
