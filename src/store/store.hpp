// The store: users, groups, memberships, API keys, grants, tenant keys and endpoints, audit log (and, later,
// analytics).
// One interface, two backends with identical behaviour: SQLite (embedded default) and PostgreSQL (schema
// mcp_proxy). Calls block: run them on the blocking pool (core/blocking.hpp), never on an io thread.
// Every method is safe to call from several threads at once.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gh::store {

// A database failure (connection lost, constraint the caller did not expect, bad URL). The message never
// contains parameter values (they may be secrets).
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Times are Unix epoch seconds; 0 means "never"/"unset".
struct User {
  std::string email;    // primary key, stored lower-case
  std::string name;
  std::string subject;  // IdP identity: "oidc:<iss>|<sub>", "entra:<tid>|<oid>", "openwebui:<id>"; "" if none
  std::string source;   // "oidc" | "openwebui" | "apikey" | "admin" | "cli" | "bootstrap"
  bool is_admin = false;
  bool disabled = false;
  int64_t created_at = 0;
  int64_t last_seen_at = 0;
};

struct Group {
  std::string name;  // primary key, case-sensitive as entered (e.g. "MCP-Admin", "Tenant-AcmeCorp")
  std::string description;
  int priority = 0;  // higher wins when choosing a tenant group
  bool is_tenant = false;
  int64_t created_at = 0;
  int64_t member_count = 0;  // filled by list_groups/get_group
};

struct Membership {
  std::string user_email;
  std::string group_name;
  std::string source;  // "manual" | "idp" (synced from a token claim on sign-in)
};

struct ApiKey {
  std::string id;          // random, public (used in URLs and logs)
  std::string user_email;
  std::string name;        // label chosen by the creator
  std::string prefix;      // first characters of the key, shown in lists ("gh_ab12cd34")
  std::string hash;        // hex SHA-256 of the whole key
  std::string scopes;      // space-separated; "" = everything the user may do
  int64_t created_at = 0;
  int64_t expires_at = 0;
  int64_t last_used_at = 0;
  int64_t revoked_at = 0;
};

// What a bulk add to a group did (Store::add_members_creating).
struct MembersAdded {
  std::vector<std::string> created;  // users that did not exist
  std::vector<std::string> added;    // memberships that did not exist
};

struct AuditEntry {
  int64_t id = 0;
  int64_t timestamp = 0;
  std::string actor;    // email of who did it ("cli" / "system" for non-user changes)
  std::string action;   // e.g. "user.update", "group.create", "group.member.add", "apikey.revoke"
  std::string target;   // e.g. the email or group name
  std::string details;  // JSON text: {"before":…, "after":…}; never a secret value
};

struct AuditFilter {
  std::string actor, action, target;
  int64_t since = 0, until = 0;
  int64_t offset = 0, limit = 100;
};

// A group's right to use a server (table group_tenant_mapping: tenant_id is the server id).
struct Grant {
  std::string group;
  std::string server;
  std::string tools_mode;          // "" = every tool, "allow" = only `tools`, "deny" = all but `tools`
  std::vector<std::string> tools;  // stored as a JSON array
  int64_t updated_at = 0;
};

// A tenant group's value for one credential slot of one server (table tenant_server_keys), encrypted by the
// caller (AES-256-GCM, see auth/secrets.hpp); the store never sees the clear value.
struct TenantKey {
  std::string group;       // tenant_id column
  std::string server;      // server_id
  std::string slot;        // the ${secret:NAME} name
  std::string ciphertext;  // api_key_encrypted (base64 text)
  std::string key_id;      // which encryption key sealed it
  int64_t updated_at = 0;
};

// A tenant group's own upstream URL for a server (table tenant_server_endpoints).
struct TenantEndpoint {
  std::string group;
  std::string server;
  std::string url;
  int64_t updated_at = 0;
};

// One request, as api_analytics keeps it. The text fields are views of the caller's data.
struct AnalyticsRow {
  int64_t timestamp = 0;  // Unix seconds
  std::string_view user_email, method, endpoint;
  int status = 0;
  double response_ms = 0;
  std::string_view user_agent, client_ip, server, tool, request_id;
  int64_t bytes_in = 0, bytes_out = 0;
};

// Rows packed one after another into one growing buffer: adding a row is a few memcpys into memory that
// is reused batch after batch, with no allocation per row or per field (the gateway records one per
// request on its io thread). Text fields are cut (email 320 bytes, method 32, endpoint 512, user agent 256,
// client IP 64, server 128, tool 256, request id 128).
class AnalyticsBatch {
 public:
  void add(const AnalyticsRow& r);
  std::size_t size() const { return rows_; }
  bool empty() const { return rows_ == 0; }
  std::size_t bytes() const { return buf_.size(); }
  void clear() { buf_.clear(), rows_ = 0; }  // keeps the memory
  void release() { std::string().swap(buf_), rows_ = 0; }  // gives it back
  void swap(AnalyticsBatch& o) noexcept { buf_.swap(o.buf_), std::swap(rows_, o.rows_); }
  // Calls fn(const AnalyticsRow&) for each row, in order; the views live as long as the batch is unchanged.
  // Rows before `from` are skipped.
  template <class F>
  void for_each(F&& fn, std::size_t from = 0) const {
    std::size_t at = 0;
    for (std::size_t i = 0; i < rows_; ++i) {
      auto r = read(at);
      if (i >= from) fn(r);
    }
  }

 private:
  AnalyticsRow read(std::size_t& at) const;
  std::string buf_;
  std::size_t rows_ = 0;
};

struct AnalyticsQuery {
  int64_t since = 0, until = 0;  // inclusive Unix seconds (both read as they are: 0 is 1970)
  int64_t bucket_s = 3600;       // timeline bucket
  int64_t top = 10;              // entries in the top lists
};

struct AnalyticsReport {
  int64_t requests = 0, errors = 0;  // errors: status >= 400
  double p50_ms = 0, p90_ms = 0, p95_ms = 0, p99_ms = 0;
  struct Bucket {
    int64_t start = 0, requests = 0, errors = 0;
  };
  std::vector<Bucket> timeline;
  struct Count {
    std::string key, key2;  // user / server (+ tool)
    int64_t requests = 0, errors = 0;
    double avg_ms = 0;
  };
  std::vector<Count> top_users, top_servers, top_tools;
};

// Everything the hot path needs, loaded in one go (see Snapshot in auth/).
struct Dump {
  std::vector<User> users;
  std::vector<Group> groups;
  std::vector<Membership> memberships;
  std::vector<ApiKey> api_keys;  // not revoked (expired ones included; the caller checks)
  std::vector<Grant> grants;
  std::vector<TenantKey> tenant_keys;
  std::vector<TenantEndpoint> tenant_endpoints;
};

class Store {
 public:
  virtual ~Store() = default;

  // "sqlite://./data/gatehouse.db", "sqlite:///abs/path.db", "sqlite::memory:", "postgresql://…", "postgres://…".
  // Creates the SQLite file's directory if missing. Throws StoreError (message names the URL without password).
  static std::unique_ptr<Store> open(const std::string& url);

  virtual std::string_view backend() const = 0;  // "sqlite" | "postgresql"

  // Applies pending versioned migrations (idempotent, safe when several instances start at once);
  // returns the number applied.
  virtual int migrate() = 0;
  virtual int schema_version() = 0;

  // Users. Emails are compared case-insensitively (stored lower-case).
  virtual std::optional<User> get_user(std::string_view email) = 0;
  virtual std::optional<User> find_user_by_subject(std::string_view subject) = 0;
  // Inserts; false if the email exists (nothing changed).
  virtual bool create_user(const User& u) = 0;
  // Updates name, subject, source, is_admin, disabled of an existing user; false if none.
  virtual bool update_user(const User& u) = 0;
  // What a sign-in learns (the identity provider's subject, the name), and nothing else: a sign-in that read
  // the user before an administrator's change must not write the old rights back.
  virtual bool update_user_sign_in(std::string_view email, std::string_view subject, std::string_view name) = 0;
  // A bulk add (the management API's POST …/members): creates the users among `emails` (lower case, distinct)
  // that do not exist (source `user_source`), then makes every one a member of `group` ("manual"). Two
  // statements per 500 emails, not several round trips each. Throws StoreError for an unknown group.
  virtual MembersAdded add_members_creating(std::string_view group, const std::vector<std::string>& emails,
                                            std::string_view user_source) = 0;
  // Deletes the user, their memberships and API keys; false if none.
  virtual bool delete_user(std::string_view email) = 0;
  virtual void touch_user(std::string_view email, int64_t seen_at) = 0;
  // Case-insensitive substring search on email and name, ordered by email; `total` = all matches.
  virtual std::vector<User> list_users(std::string_view q, int64_t offset, int64_t limit, int64_t* total) = 0;
  virtual int64_t count_users() = 0;
  // The enabled users who are administrators: marked so, or members of `admin_group`.
  virtual std::vector<std::string> admin_emails(std::string_view admin_group) = 0;

  // Groups.
  virtual std::optional<Group> get_group(std::string_view name) = 0;
  virtual bool create_group(const Group& g) = 0;  // false if it exists
  // Updates description, priority, is_tenant; false if none.
  virtual bool update_group(const Group& g) = 0;
  // Renames, carrying memberships along; false if `from` is missing, throws StoreError if `to` exists.
  // `resealed`: the group's tenant keys sealed again for the new name (auth::reseal_for_rename), written in
  // the same transaction.
  virtual bool rename_group(std::string_view from, std::string_view to, const std::vector<TenantKey>& resealed = {}) = 0;
  virtual bool delete_group(std::string_view name) = 0;  // and its memberships
  virtual std::vector<Group> list_groups(std::string_view q, int64_t offset, int64_t limit, int64_t* total) = 0;

  // Memberships.
  virtual bool add_member(std::string_view group, std::string_view email, std::string_view source) = 0;  // false if already
  virtual bool remove_member(std::string_view group, std::string_view email) = 0;  // false if not a member
  virtual std::vector<std::string> groups_of(std::string_view email) = 0;  // sorted
  virtual std::vector<User> members(std::string_view group, int64_t offset, int64_t limit, int64_t* total) = 0;
  // Makes the user's memberships with source "idp" exactly `groups` (creating missing groups); manual
  // memberships are untouched. One transaction.
  virtual void sync_idp_groups(std::string_view email, const std::vector<std::string>& groups) = 0;

  // API keys.
  virtual void create_api_key(const ApiKey& k) = 0;
  virtual std::optional<ApiKey> get_api_key(std::string_view id) = 0;
  virtual std::vector<ApiKey> list_api_keys(std::string_view user_email /* "" = all */) = 0;
  // A page of them, newest first; `total` gets how many there are.
  virtual std::vector<ApiKey> list_api_keys(std::string_view user_email, int64_t offset, int64_t limit, int64_t* total) = 0;
  virtual bool revoke_api_key(std::string_view id, int64_t at) = 0;  // false if missing or already revoked
  virtual void touch_api_keys(const std::vector<std::pair<std::string, int64_t>>& id_and_time) = 0;

  // Grants (group → server, optional tool allow/deny list). The group must exist (StoreError otherwise).
  virtual std::vector<Grant> list_grants(std::string_view group /* "" = all */) = 0;
  virtual void put_grant(const Grant& g) = 0;  // insert or replace
  virtual bool delete_grant(std::string_view group, std::string_view server) = 0;  // false if none

  // Tenant credentials (encrypted values) and endpoints. The group must exist.
  virtual std::vector<TenantKey> list_tenant_keys(std::string_view group /* "" = all */) = 0;
  virtual void put_tenant_key(const TenantKey& k) = 0;  // insert or replace
  virtual bool delete_tenant_key(std::string_view group, std::string_view server, std::string_view slot) = 0;
  // Replaces the ciphertext and key id of the given (group, server, slot) rows in one transaction (key rotation).
  virtual void reencrypt_tenant_keys(const std::vector<TenantKey>& rows) = 0;
  virtual std::vector<TenantEndpoint> list_tenant_endpoints(std::string_view group /* "" = all */) = 0;
  virtual void put_tenant_endpoint(const TenantEndpoint& e) = 0;  // insert or replace
  virtual bool delete_tenant_endpoint(std::string_view group, std::string_view server) = 0;

  // Analytics (api_analytics): rows; retention; the portal's report.
  // Rows are committed in transactions of at most analytics_chunk() rows, through a database connection of
  // their own (not under the lock of the store's other calls), so a low-priority writer never keeps other
  // callers waiting. SQLite, given `between`, inserts them in slices of 64 rows (~40 µs of this thread's time
  // each) and calls `between` before each slice but the first — where the writer gives its core away (see
  // AnalyticsWriter); within a transaction, so a slice costs no commit of its own (64-row transactions cost
  // 1.6× the CPU a row). `written` counts the rows committed (also when it throws: a retry starts after them).
  virtual void insert_analytics(const AnalyticsBatch& rows, std::size_t& written,
                                const std::function<void()>& between = {}) = 0;
  // SQLite: 512 (the insert runs on the gateway's own writer thread: short bursts). PostgreSQL: 4096 (the
  // server does the work, and each COPY and commit costs it as much as a few hundred rows: heap trimming and
  // refaulting, WAL flush), a transaction of about 50 ms.
  virtual std::size_t analytics_chunk() const = 0;
  // SQLite in a file: copies the write-ahead log's pages into the database (a PASSIVE checkpoint: it never
  // waits for readers or the writer), which the analytics connection's commits never do: the writer chooses
  // when (AnalyticsWriter). `between` as for insert_analytics. Returns false where there is nothing to do
  // (PostgreSQL, an in-memory database).
  virtual bool checkpoint_analytics(const std::function<void()>& between = {}) = 0;
  virtual int64_t purge_analytics(int64_t before) = 0;  // rows deleted
  virtual int64_t count_analytics() = 0;
  virtual AnalyticsReport analytics_report(const AnalyticsQuery& q) = 0;

  // Audit log.
  virtual void append_audit(const AuditEntry& e) = 0;  // id assigned by the store
  virtual void append_audits(const std::vector<AuditEntry>& entries) = 0;  // many at once
  virtual std::vector<AuditEntry> list_audit(const AuditFilter& f, int64_t* total) = 0;

  // Small key/value settings the gateway keeps for itself (e.g. the session signing secret).
  virtual std::optional<std::string> get_meta(std::string_view key) = 0;
  // Sets the value only if the key is absent; returns the value now stored (so instances agree).
  virtual std::string put_meta_if_absent(std::string_view key, std::string_view value) = 0;

  // MCP sessions their clients ended (DELETE), so that no instance opens one again from its id
  // (mcp/session_ids.hpp): recorded by the instance that ended it before it answers, asked by one about to
  // open it again, and read every few seconds by every instance, to close its own copy. Times are the
  // database's clock (Unix seconds).
  virtual void record_session_end(std::string_view session_id) = 0;  // once; a repeat is ignored
  virtual bool session_ended(std::string_view session_id) = 0;
  virtual std::vector<std::string> sessions_ended_within(int64_t seconds) = 0;  // the last `seconds`
  virtual int64_t purge_session_ends(int64_t before) = 0;                       // records deleted

  virtual Dump dump() = 0;

  // Runs `fn` in one write transaction on the store's connection: what it changes through this store is
  // committed when it returns true and undone when it returns false or throws. Changes of every instance
  // made this way run one after another (SQLite's write lock; PostgreSQL: an advisory lock), so a check and
  // the change it allows cannot interleave with another's. Other calls of this store wait meanwhile.
  virtual bool atomically(const std::function<bool()>& fn) = 0;

  // Change notification between instances. notify_changed() tells every instance (including this one)
  // that something changed; watch() calls `cb` (on a store-owned thread) after each such notification,
  // at most once per `debounce_ms` burst. PostgreSQL: LISTEN/NOTIFY on channel mcp_proxy_changed with
  // reconnection; SQLite: in-process, plus a poll of a counter in gateway_meta that notify_changed()
  // increments, for other processes (the CLI).
  virtual void notify_changed() = 0;
  // A round trip to the database (SELECT 1): throws when it cannot be reached.
  virtual void ping() = 0;
  virtual void watch(std::function<void()> cb) = 0;
  // Stops the watcher thread (also done by the destructor).
  virtual void stop_watching() = 0;
};

}  // namespace gh::store
