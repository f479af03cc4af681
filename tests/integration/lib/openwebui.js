// An Open WebUI database as Open WebUI itself lays it out, for the gateway to resolve Open WebUI session
// tokens against: tables "user", "group" and (current versions) "group_member", on SQLite (a file written with
// sql.js, pure wasm) or on PostgreSQL (a fresh database on GATEHOUSE_TEST_PG_URL, via pg).
// Layout (Open WebUI's models and alembic migrations):
//   user(id text PK, name, email, username, role, profile_image_url, bio, gender, date_of_birth, api_key UNIQUE,
//        created_at, updated_at, last_active_at (epoch s, BIGINT), settings JSON, info JSON, oauth_sub UNIQUE)
//   group(id text PK, user_id (creator), name, description, data JSON, meta JSON, permissions JSON,
//         created_at, updated_at) + user_ids JSON in versions before the group_member migration (37f288994c47),
//         which moved membership to
//   group_member(id text PK, group_id → group.id, user_id → user.id, created_at, updated_at,
//                UNIQUE(group_id, user_id)) and dropped group.user_ids.
// legacyUserIds: true → the older form (group.user_ids, no group_member table); false → the current form.
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { SignJWT } from 'jose';
import { tempDir } from './procs.js';
import { TEST_BACKEND, createPgDatabase, withPg } from './store.js';

const require = createRequire(import.meta.url);

function userTable(q, json) {
  return `CREATE TABLE ${q('user')} (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    email VARCHAR(255) NOT NULL,
    username VARCHAR(50),
    role VARCHAR(255) NOT NULL,
    profile_image_url TEXT NOT NULL,
    bio TEXT,
    gender TEXT,
    date_of_birth DATE,
    api_key VARCHAR(255) UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    settings ${json},
    info ${json},
    oauth_sub TEXT UNIQUE
  )`;
}

function groupTable(q, json, legacyUserIds) {
  return `CREATE TABLE ${q('group')} (
    id TEXT NOT NULL PRIMARY KEY UNIQUE,
    user_id TEXT,
    name TEXT,
    description TEXT,
    data ${json},
    meta ${json},
    permissions ${json},
    ${legacyUserIds ? `user_ids ${json},` : ''}
    created_at BIGINT,
    updated_at BIGINT
  )`;
}

function groupMemberTable(q) {
  return `CREATE TABLE group_member (
    id TEXT NOT NULL PRIMARY KEY UNIQUE,
    group_id TEXT NOT NULL REFERENCES ${q('group')}(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES ${q('user')}(id) ON DELETE CASCADE,
    created_at BIGINT,
    updated_at BIGINT,
    CONSTRAINT uq_group_member_group_user UNIQUE (group_id, user_id)
  )`;
}

const quote = (name) => `"${name}"`;
const now = () => Math.floor(Date.now() / 1000);

/**
 * Creates an empty Open WebUI database.
 * @param {object} [options]
 * @param {'sqlite'|'postgres'} [options.backend]  default: the run's backend (GATEHOUSE_TEST_BACKEND)
 * @param {boolean} [options.legacyUserIds]       group.user_ids JSON instead of the group_member table
 * @param {object|Function} [options.t]           node:test context (or `after`): stop() is registered on it
 * @returns {Promise<{backend, url, legacyUserIds, addUser({id,email,name,role,…}) → id,
 *   addGroup(name, userIds, {description}) → id, addMember(groupId, userId), setRole(id, role), query(sql), stop()}>}
 *   url: `sqlite:///abs/webui.db` or `postgresql://…` — the gateway's OPENWEBUI_DATABASE_URL
 */
export async function createOpenWebUiDb({ backend = TEST_BACKEND, legacyUserIds = false, t } = {}) {
  const db = backend === 'postgres' ? await pgBackend() : await sqliteBackend();
  await db.exec(userTable(quote, db.json));
  await db.exec(groupTable(quote, db.json, legacyUserIds));
  if (!legacyUserIds) await db.exec(groupMemberTable(quote));
  await db.flush();

  const groups = new Map(); // id → user ids (legacy form)
  const webui = {
    backend,
    url: db.url,
    legacyUserIds,
    /** Inserts a user; returns its id (a uuid unless given). role: 'admin' | 'user' | 'pending'. */
    async addUser({ id = crypto.randomUUID(), email, name = email?.split('@')[0] ?? 'user', role = 'user', username = null, oauthSub = null } = {}) {
      if (!email) throw new Error('addUser: email required');
      const t0 = now();
      await db.run(
        `INSERT INTO ${quote('user')} (id, name, email, username, role, profile_image_url, api_key, created_at, updated_at, last_active_at, settings, info, oauth_sub)
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $10, NULL, $11)`,
        [id, name, email, username, role, '/user.png', t0, t0, t0, JSON.stringify({ ui: {} }), oauthSub],
      );
      await db.flush();
      return id;
    },
    /** Changes a user's role (e.g. pending → user). */
    async setRole(id, role) {
      await db.run(`UPDATE ${quote('user')} SET role = $1, updated_at = $2 WHERE id = $3`, [role, now(), id]);
      await db.flush();
    },
    /** Inserts a group with these members (in whichever form this database has); returns its id. */
    async addGroup(name, userIds = [], { description = '', id = crypto.randomUUID(), creator = null } = {}) {
      const t0 = now();
      const columns = ['id', 'user_id', 'name', 'description', 'data', 'meta', 'permissions', 'created_at', 'updated_at'];
      const values = [id, creator ?? userIds[0] ?? null, name, description, null, null, JSON.stringify({ workspace: { tools: false } }), t0, t0];
      if (legacyUserIds) { columns.push('user_ids'); values.push(JSON.stringify(userIds)); }
      await db.run(
        `INSERT INTO ${quote('group')} (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`,
        values,
      );
      groups.set(id, [...userIds]);
      if (!legacyUserIds) for (const userId of userIds) await insertMember(id, userId, false);
      await db.flush();
      return id;
    },
    /** Adds a member to an existing group. */
    async addMember(groupId, userId) {
      if (legacyUserIds) {
        const ids = [...(groups.get(groupId) ?? []), userId];
        groups.set(groupId, ids);
        await db.run(`UPDATE ${quote('group')} SET user_ids = $1, updated_at = $2 WHERE id = $3`, [JSON.stringify(ids), now(), groupId]);
      } else {
        await insertMember(groupId, userId, false);
      }
      await db.flush();
    },
    /** Runs SQL (for assertions or odd states); rows for SELECT. */
    query: (sql, params = []) => db.all(sql, params),
    /** Runs a statement that changes the database (an outage: a table renamed), seen by readers at once. */
    exec: (sql) => db.change(sql),
    stop: () => db.close(),
  };

  async function insertMember(groupId, userId) {
    const t0 = now();
    await db.run('INSERT INTO group_member (id, group_id, user_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)',
      [crypto.randomUUID(), groupId, userId, t0, t0]);
  }

  if (t) (typeof t === 'function' ? t : t.after.bind(t))(() => webui.stop());
  return webui;
}

async function pgBackend() {
  const database = await createPgDatabase({ prefix: 'webui_' });
  return {
    url: database.url,
    json: 'JSON',
    exec: (sql) => withPg((c) => c.query(sql), database.url),
    run: (sql, params) => withPg((c) => c.query(sql, params), database.url),
    all: async (sql, params) => (await withPg((c) => c.query(sql, params), database.url)).rows,
    flush: async () => {},
    change: (sql) => withPg((c) => c.query(sql), database.url),
    close: () => database.drop(),
  };
}

let sqlJsPromise;
async function sqliteBackend() {
  if (!sqlJsPromise) {
    const initSqlJs = require('sql.js');
    const wasmDir = path.dirname(require.resolve('sql.js/dist/sql-wasm.wasm'));
    sqlJsPromise = initSqlJs({ locateFile: (file) => path.join(wasmDir, file) });
  }
  const SQL = await sqlJsPromise;
  const { dir, cleanup } = tempDir('gatehouse-webui-');
  const file = path.join(dir, 'webui.db');
  const sdb = new SQL.Database();
  sdb.run('PRAGMA foreign_keys = ON');
  // sql.js binds $1… as named parameters "$1"; map positional arrays onto them.
  const bind = (params) => Object.fromEntries(params.map((v, i) => [`$${i + 1}`, v]));
  let closed = false;
  return {
    url: `sqlite://${file}`, // sqlite:///abs/path (file is absolute)
    file,
    json: 'JSON',
    exec: async (sql) => { sdb.run(sql); },
    run: async (sql, params = []) => { sdb.run(sql, bind(params)); },
    all: async (sql, params = []) => {
      const stmt = sdb.prepare(sql);
      try {
        stmt.bind(bind(params));
        const rows = [];
        while (stmt.step()) rows.push(stmt.getAsObject());
        return rows;
      } finally {
        stmt.free();
      }
    },
    // Written in place (same inode), so a reader that keeps the file open sees the new content.
    flush: async () => { fs.writeFileSync(file, Buffer.from(sdb.export())); },
    // Through the sqlite3 CLI: a file rewritten by flush() keeps its header's change counter, so a reader
    // holding its pages cached would not see the change.
    change: async (sql) => {
      sdb.run(sql);
      execFileSync('sqlite3', ['-cmd', '.timeout 10000', file, sql]);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      sdb.close();
      cleanup();
    },
  };
}

/**
 * An Open WebUI session token: HS256 over {id, exp?, jti?, iat?} with WEBUI_SECRET_KEY, as Open WebUI makes it.
 * exp: seconds since epoch; default now + 1 h; null → no exp (JWT_EXPIRES_IN=-1). jti/iat: included if given
 * (true → a fresh uuid / now).
 */
export async function mintWebUiToken(secret, { id, exp, jti, iat } = {}) {
  if (!id) throw new Error('mintWebUiToken: id required');
  const payload = { id };
  const expiry = exp === undefined ? now() + 3600 : exp;
  if (expiry !== null) payload.exp = expiry;
  if (jti !== undefined && jti !== null) payload.jti = jti === true ? crypto.randomUUID() : jti;
  if (iat !== undefined && iat !== null) payload.iat = iat === true ? now() : iat;
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret));
}
