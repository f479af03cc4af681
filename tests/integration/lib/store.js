// The gateway's store for tests: which backend this run uses (GATEHOUSE_TEST_BACKEND = sqlite | postgres),
// and throwaway databases: SQLite files in a temp dir, or PostgreSQL databases `t_<random>` created on the
// cluster named by GATEHOUSE_TEST_PG_URL (scripts/test.sh starts one) and dropped afterwards.
import crypto from 'node:crypto';
import pg from 'pg';
import path from 'node:path';
import { tempDir } from './procs.js';

const BACKENDS = { sqlite: 'sqlite', postgres: 'postgres', postgresql: 'postgres', pg: 'postgres' };

/** 'sqlite' (default) or 'postgres', from GATEHOUSE_TEST_BACKEND. */
export const TEST_BACKEND = (() => {
  const raw = (process.env.GATEHOUSE_TEST_BACKEND ?? 'sqlite').trim().toLowerCase() || 'sqlite';
  const backend = BACKENDS[raw];
  if (!backend) throw new Error(`GATEHOUSE_TEST_BACKEND=${raw}: expected sqlite or postgres`);
  return backend;
})();

/** The PostgreSQL server URL tests create their databases on (throws a clear error when unset). */
export function pgServerUrl() {
  const url = process.env.GATEHOUSE_TEST_PG_URL;
  if (!url) {
    throw new Error('GATEHOUSE_TEST_PG_URL is not set: scripts/test.sh starts a throwaway PostgreSQL cluster ' +
      'and sets it (postgresql://postgres@127.0.0.1:PORT/postgres); or start one as in docs TESTING.md');
  }
  return url;
}

/** The same server URL with another database name. */
export function pgUrlFor(database, serverUrl = pgServerUrl()) {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Runs `fn(client)` with a pg client connected to `url` (default: the server's maintenance database). */
export async function withPg(fn, url = pgServerUrl()) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** CREATE DATABASE t_<random> (or `${prefix}<random>`); returns {name, url, drop()}. */
export async function createPgDatabase({ prefix = 't_' } = {}) {
  const name = `${prefix}${crypto.randomBytes(6).toString('hex')}`;
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
  await withPg((c) => c.query(`CREATE DATABASE ${name}`));
  let dropped = null;
  return {
    name,
    url: pgUrlFor(name),
    drop() {
      if (!dropped) {
        dropped = withPg((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch((error) => {
          console.error(`could not drop test database ${name}: ${error.message}`);
        });
      }
      return dropped;
    },
  };
}

// Every store database the harness made, by URL: whether a gateway has used it yet, the bootstrap admin
// key printed for it, and how many running gateways use it (an owned database is dropped with the last).
const databases = new Map();

/** The harness's record of a database URL (undefined for a URL it did not create). */
export function knownDatabase(url) {
  return databases.get(url);
}

/**
 * A fresh, empty store database for the gateway, for the run's backend (or `backend`):
 * sqlite → `sqlite://<temp dir>/gatehouse.db`, postgres → a new database on GATEHOUSE_TEST_PG_URL.
 * Pass `db.url` (or `db`) as `startGatehouse({database})` to share it between gateways or keep it across a
 * restart; the first gateway on it captures the bootstrap admin key (`db.adminKey`), later ones inherit it.
 * @returns {Promise<{backend, url, adminKey, used, drop()}>}  drop() removes it (registered on `t` if given)
 */
export async function createTestDatabase({ backend = TEST_BACKEND, t } = {}) {
  let db;
  if (backend === 'postgres') {
    const pgdb = await createPgDatabase();
    db = { backend, url: pgdb.url, name: pgdb.name, drop: () => pgdb.drop() };
  } else if (backend === 'sqlite') {
    const { dir, cleanup } = tempDir('gatehouse-db-');
    const file = path.join(dir, 'gatehouse.db');
    db = { backend, url: `sqlite://${file}`, file, drop: async () => cleanup() };
  } else {
    throw new Error(`unknown backend ${backend}`);
  }
  Object.assign(db, { adminKey: null, used: false, users: 0 });
  const drop = db.drop;
  let dropped = null;
  db.drop = () => {
    if (!dropped) dropped = Promise.resolve(drop()).finally(() => databases.delete(db.url));
    return dropped;
  };
  databases.set(db.url, db);
  if (t) (typeof t === 'function' ? t : t.after.bind(t))(() => db.drop());
  return db;
}
