// The schema. Times are Unix epoch seconds (NULL = never). Keys that are listed in order (emails, group
// names) are COLLATE "C" on PostgreSQL so that ordering is bytewise, as in SQLite, and uses the indexes.
// Memberships do not reference users: an admin may add someone who has not signed in yet.
#include "store/migrations.hpp"

namespace gh::store {

namespace {

constexpr std::string_view kSqlite1 = R"sql(
CREATE TABLE users (
  email TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  subject TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  is_admin INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL DEFAULT 0,
  last_seen_at INTEGER,
  disabled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX users_email_lower ON users (lower(email));
CREATE INDEX users_subject ON users (subject) WHERE subject <> '';

CREATE TABLE groups (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL DEFAULT '',
  priority INTEGER NOT NULL DEFAULT 0,
  is_tenant INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE user_group_membership (
  user_email TEXT NOT NULL,
  group_name TEXT NOT NULL REFERENCES groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  source TEXT NOT NULL DEFAULT 'manual',
  created_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user_email, group_name)
);
CREATE INDEX user_group_membership_group ON user_group_membership (group_name, user_email);

CREATE TABLE group_tenant_mapping (
  group_name TEXT NOT NULL REFERENCES groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  tenant_id TEXT NOT NULL,
  tools_mode TEXT NULL,
  tools TEXT NULL,
  PRIMARY KEY (group_name, tenant_id)
);
CREATE INDEX group_tenant_mapping_tenant ON group_tenant_mapping (tenant_id);

CREATE TABLE servers (
  id TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  updated_at INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tenant_server_keys (
  tenant_id TEXT NOT NULL REFERENCES groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  server_id TEXT NOT NULL,
  slot TEXT NOT NULL,
  api_key_encrypted TEXT NOT NULL,
  key_id TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, server_id, slot)
);

CREATE TABLE tenant_server_endpoints (
  tenant_id TEXT NOT NULL REFERENCES groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  server_id TEXT NOT NULL,
  endpoint_url TEXT NOT NULL,
  PRIMARY KEY (tenant_id, server_id)
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  user_email TEXT NOT NULL REFERENCES users (email) ON DELETE CASCADE,
  name TEXT NOT NULL DEFAULT '',
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL DEFAULT '',
  scopes TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL DEFAULT 0,
  expires_at INTEGER,
  last_used_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_email);

CREATE TABLE api_analytics (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  timestamp INTEGER NOT NULL,
  user_email TEXT,
  method TEXT,
  endpoint TEXT,
  status_code INTEGER,
  response_time_ms REAL,
  user_agent TEXT,
  client_ip TEXT,
  server_id TEXT,
  tool TEXT,
  request_id TEXT,
  bytes_in INTEGER,
  bytes_out INTEGER
);
CREATE INDEX api_analytics_timestamp ON api_analytics (timestamp);

CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  timestamp INTEGER NOT NULL,
  actor TEXT NOT NULL DEFAULT '',
  action TEXT NOT NULL DEFAULT '',
  target TEXT NOT NULL DEFAULT '',
  details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_timestamp ON audit_log (timestamp);

CREATE TABLE gateway_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
)sql";

constexpr std::string_view kPostgres1 = R"sql(
CREATE TABLE @users (
  email TEXT COLLATE "C" PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  subject TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  is_admin BOOLEAN NOT NULL DEFAULT FALSE,
  created_at BIGINT NOT NULL DEFAULT 0,
  last_seen_at BIGINT,
  disabled BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX users_email_lower ON @users (lower(email));
CREATE INDEX users_subject ON @users (subject) WHERE subject <> '';

CREATE TABLE @groups (
  name TEXT COLLATE "C" PRIMARY KEY,
  description TEXT NOT NULL DEFAULT '',
  priority INTEGER NOT NULL DEFAULT 0,
  is_tenant BOOLEAN NOT NULL DEFAULT FALSE,
  created_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE @user_group_membership (
  user_email TEXT COLLATE "C" NOT NULL,
  group_name TEXT COLLATE "C" NOT NULL REFERENCES @groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  source TEXT NOT NULL DEFAULT 'manual',
  created_at BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (user_email, group_name)
);
CREATE INDEX user_group_membership_group ON @user_group_membership (group_name, user_email);

CREATE TABLE @group_tenant_mapping (
  group_name TEXT COLLATE "C" NOT NULL REFERENCES @groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  tenant_id TEXT COLLATE "C" NOT NULL,
  tools_mode TEXT NULL,
  tools TEXT NULL,
  PRIMARY KEY (group_name, tenant_id)
);
CREATE INDEX group_tenant_mapping_tenant ON @group_tenant_mapping (tenant_id);

CREATE TABLE @servers (
  id TEXT COLLATE "C" PRIMARY KEY,
  definition TEXT NOT NULL,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  updated_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE @tenant_server_keys (
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES @groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  server_id TEXT COLLATE "C" NOT NULL,
  slot TEXT COLLATE "C" NOT NULL,
  api_key_encrypted TEXT NOT NULL,
  key_id TEXT NOT NULL DEFAULT '',
  updated_at BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, server_id, slot)
);

CREATE TABLE @tenant_server_endpoints (
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES @groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
  server_id TEXT COLLATE "C" NOT NULL,
  endpoint_url TEXT NOT NULL,
  PRIMARY KEY (tenant_id, server_id)
);

CREATE TABLE @api_keys (
  id TEXT COLLATE "C" PRIMARY KEY,
  user_email TEXT COLLATE "C" NOT NULL REFERENCES @users (email) ON DELETE CASCADE,
  name TEXT NOT NULL DEFAULT '',
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL DEFAULT '',
  scopes TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL DEFAULT 0,
  expires_at BIGINT,
  last_used_at BIGINT,
  revoked_at BIGINT
);
CREATE INDEX api_keys_user ON @api_keys (user_email);

CREATE TABLE @api_analytics (
  id BIGSERIAL PRIMARY KEY,
  timestamp BIGINT NOT NULL,
  user_email TEXT,
  method TEXT,
  endpoint TEXT,
  status_code INTEGER,
  response_time_ms DOUBLE PRECISION,
  user_agent TEXT,
  client_ip TEXT,
  server_id TEXT,
  tool TEXT,
  request_id TEXT,
  bytes_in BIGINT,
  bytes_out BIGINT
);
CREATE INDEX api_analytics_timestamp ON @api_analytics (timestamp);

CREATE TABLE @audit_log (
  id BIGSERIAL PRIMARY KEY,
  timestamp BIGINT NOT NULL,
  actor TEXT COLLATE "C" NOT NULL DEFAULT '',
  action TEXT COLLATE "C" NOT NULL DEFAULT '',
  target TEXT COLLATE "C" NOT NULL DEFAULT '',
  details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_timestamp ON @audit_log (timestamp);

CREATE TABLE @gateway_meta (
  key TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL
);
)sql";

// Grants and tenant endpoints record when they last changed, as tenant keys already do.
constexpr std::string_view kSqlite2 = R"sql(
ALTER TABLE group_tenant_mapping ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenant_server_endpoints ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
)sql";

constexpr std::string_view kPostgres2 = R"sql(
ALTER TABLE @group_tenant_mapping ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE @tenant_server_endpoints ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
)sql";

// The analytics table is appended in time order and read by time range (reports, retention): on
// PostgreSQL a BRIN index (a min/max per 128 pages, summarised by autovacuum as ranges fill) serves those
// scans for a fraction of a B-tree's cost per inserted row (measured in docs/performance.md). SQLite has
// no BRIN; its B-tree stayed (until migration 5).
constexpr std::string_view kSqlite3 = "";
constexpr std::string_view kPostgres3 = R"sql(
DROP INDEX @api_analytics_timestamp;
CREATE INDEX api_analytics_timestamp ON @api_analytics USING brin (timestamp) WITH (autosummarize = on);
)sql";

// Nothing reads an analytics row by its id, yet on PostgreSQL the id's B-tree was a fifth of the CPU an
// inserted row costs and the sequence's nextval another eighth (COPY of 500,000 rows: 4.1 µs a row with
// both, 3.2 without the key; docs/performance.md). The column stays, filled from the sequence (1,000
// values cached per connection: ids keep their order within one writer, gaps are harmless); the key goes.
// REPLICA IDENTITY FULL keeps retention's DELETEs replicable should the table join a logical publication
// (a table without a key otherwise refuses them there). SQLite's id is the rowid, the table's own B-tree:
// nothing to drop.
constexpr std::string_view kSqlite4 = "";
constexpr std::string_view kPostgres4 = R"sql(
ALTER TABLE @api_analytics DROP CONSTRAINT api_analytics_pkey;
ALTER TABLE @api_analytics REPLICA IDENTITY FULL;
ALTER SEQUENCE @api_analytics_id_seq CACHE 1000;
)sql";

// SQLite's counterpart of PostgreSQL's BRIN (migration 3): the B-tree on api_analytics.timestamp was a
// quarter of the instructions an inserted row costs (docs/performance.md), and nothing else reads it.
// Rows are appended in id (rowid) order at nearly increasing times, so a small table keeps, per range of
// ids, the least and greatest timestamp in it; a time window then maps to one id range that holds every
// row of the window, read as a slice of the table's own B-tree. The writer grows the newest range in the
// transaction that appends the rows (store.cpp, `note_analytics_rows`); existing rows get ranges of 4,096
// ids here.
constexpr std::string_view kSqlite5 = R"sql(
CREATE TABLE api_analytics_ranges (
  first_id INTEGER PRIMARY KEY,
  last_id INTEGER NOT NULL,
  min_ts INTEGER NOT NULL,
  max_ts INTEGER NOT NULL
);
INSERT INTO api_analytics_ranges (first_id, last_id, min_ts, max_ts)
  SELECT MIN(id), MAX(id), MIN(timestamp), MAX(timestamp) FROM api_analytics GROUP BY id / 4096;
DROP INDEX api_analytics_timestamp;
)sql";
constexpr std::string_view kPostgres5 = "";

// MCP sessions their clients ended (Store::record_session_end): a resumable session id must not open a
// session again on any instance once its client ended it. Kept while such an id could be resumed
// (SESSION_MAX_AGE_S), read by time.
constexpr std::string_view kSqlite6 = R"sql(
CREATE TABLE mcp_session_ends (
  session_id TEXT PRIMARY KEY,
  ended_at INTEGER NOT NULL
);
CREATE INDEX mcp_session_ends_time ON mcp_session_ends (ended_at);
)sql";
constexpr std::string_view kPostgres6 = R"sql(
CREATE TABLE @mcp_session_ends (
  session_id TEXT COLLATE "C" PRIMARY KEY,
  ended_at BIGINT NOT NULL
);
CREATE INDEX mcp_session_ends_time ON @mcp_session_ends (ended_at);
)sql";

}  // namespace

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {
      {1, kSqlite1, kPostgres1},
      {2, kSqlite2, kPostgres2},
      {3, kSqlite3, kPostgres3},
      {4, kSqlite4, kPostgres4},
      {5, kSqlite5, kPostgres5},
      {6, kSqlite6, kPostgres6},
  };
  return all;
}

}  // namespace gh::store
