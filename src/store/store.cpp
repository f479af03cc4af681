// The one Store implementation, over the SQL layer (db.hpp). Both backends run the same statements; the
// differences (placeholders, schema prefix, column types) live in the SQL layer and the migrations.
#include "store/store.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include "core/config.hpp"
#include "core/util.hpp"
#include "store/db.hpp"
#include "store/migrations.hpp"

namespace gh::store {

// ---- AnalyticsBatch: per row a fixed header (numbers, then the eight text lengths) and the texts.

namespace {
struct PackedHead {
  int64_t timestamp, bytes_in, bytes_out;
  double response_ms;
  int32_t status;
  uint16_t len[8];
};

}  // namespace

void AnalyticsBatch::add(const AnalyticsRow& r) {
  const std::string_view text[8] = {r.user_email, r.method, r.endpoint, r.user_agent,
                                    r.client_ip,  r.server, r.tool,     r.request_id};
  // Each field at most what it can sensibly hold: most come from the client (a method or a tool name of
  // kilobytes would make every row of a flood that large, refused ones included).
  static constexpr std::size_t kMax[8] = {320, 32, 512, 256, 64, 128, 256, 128};
  PackedHead h{r.timestamp, r.bytes_in, r.bytes_out, r.response_ms, r.status, {}};
  std::size_t total = sizeof h;
  for (int i = 0; i < 8; ++i) total += h.len[i] = static_cast<uint16_t>(std::min(text[i].size(), kMax[i]));
  std::size_t at = buf_.size();
  buf_.resize(at + total);
  char* p = buf_.data() + at;
  std::memcpy(p, &h, sizeof h);
  p += sizeof h;
  for (int i = 0; i < 8; ++i) {
    std::memcpy(p, text[i].data(), h.len[i]);
    // Stored text is valid UTF-8 without control characters: a NUL or a broken sequence (a client can put
    // either in a tool name or a URL path) would make PostgreSQL reject the whole batch, and every retry of
    // it. The endpoint and user agent (raw HTTP bytes) are kept as printable ASCII.
    sanitize_text(p, h.len[i], /*ascii_only=*/i == 2 || i == 3);
    p += h.len[i];
  }
  ++rows_;
}

AnalyticsRow AnalyticsBatch::read(std::size_t& at) const {
  PackedHead h;
  std::memcpy(&h, buf_.data() + at, sizeof h);
  at += sizeof h;
  std::string_view text[8];
  for (int i = 0; i < 8; ++i) {
    text[i] = std::string_view(buf_.data() + at, h.len[i]);
    at += h.len[i];
  }
  AnalyticsRow r;
  r.timestamp = h.timestamp, r.bytes_in = h.bytes_in, r.bytes_out = h.bytes_out;
  r.response_ms = h.response_ms, r.status = h.status;
  r.user_email = text[0], r.method = text[1], r.endpoint = text[2], r.user_agent = text[3];
  r.client_ip = text[4], r.server = text[5], r.tool = text[6], r.request_id = text[7];
  return r;
}

namespace {

using sql::Connection;
using sql::Dialect;
using sql::Row;
using sql::Transaction;
using sql::Value;

constexpr const char* kChannel = "mcp_proxy_changed";
// Any constant shared by all instances: serialises migrations across processes (PostgreSQL).
constexpr int64_t kMigrationLockKey = 0x6d63705f70727879;  // "mcp_prxy"
constexpr int64_t kChangeLockKey = 0x6d63705f63686e67;     // "mcp_chng": Store::atomically
constexpr int64_t kNoLimit = int64_t{1} << 62;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Emails compare case-insensitively; ASCII only, identically in both backends.
std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// "%q%" for LIKE … ESCAPE '\', the user's own % and _ taken literally.
std::string like_pattern(std::string_view q) {
  std::string out = "%";
  for (char c : lower(q)) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  out += '%';
  return out;
}

// SQL text from fragments (never values). One allocation; also sidesteps a GCC 12 -Warray-bounds false
// positive on chains of operator+.
std::string cat(std::initializer_list<std::string_view> parts) {
  size_t n = 0;
  for (auto p : parts) n += p.size();
  std::string out;
  out.reserve(n);
  for (auto p : parts) out.append(p);
  return out;
}

int64_t limit_of(int64_t limit) { return limit < 0 ? kNoLimit : limit; }

constexpr const char* kUserCols = "email, name, subject, source, is_admin, disabled, created_at, last_seen_at";

User read_user(const Row& r) {
  User u;
  u.email = r.str(0);
  u.name = r.str(1);
  u.subject = r.str(2);
  u.source = r.str(3);
  u.is_admin = r.boolean(4);
  u.disabled = r.boolean(5);
  u.created_at = r.int64(6);
  u.last_seen_at = r.int64(7);
  return u;
}

constexpr const char* kGroupCols =
    "g.name, g.description, g.priority, g.is_tenant, g.created_at, "
    "(SELECT COUNT(*) FROM @user_group_membership m WHERE m.group_name = g.name)";

Group read_group(const Row& r) {
  Group g;
  g.name = r.str(0);
  g.description = r.str(1);
  g.priority = static_cast<int>(r.int64(2));
  g.is_tenant = r.boolean(3);
  g.created_at = r.int64(4);
  g.member_count = r.int64(5);
  return g;
}

constexpr const char* kKeyCols =
    "id, user_email, name, prefix, hash, scopes, created_at, expires_at, last_used_at, revoked_at";

ApiKey read_key(const Row& r) {
  ApiKey k;
  k.id = r.str(0);
  k.user_email = r.str(1);
  k.name = r.str(2);
  k.prefix = r.str(3);
  k.hash = r.str(4);
  k.scopes = r.str(5);
  k.created_at = r.int64(6);
  k.expires_at = r.int64(7);
  k.last_used_at = r.int64(8);
  k.revoked_at = r.int64(9);
  return k;
}

constexpr const char* kGrantCols = "group_name, tenant_id, tools_mode, tools, updated_at";

// Tool lists travel as a JSON array of strings; anything else in the column (hand-edited, NULL) reads as
// an empty list rather than failing the whole load.
std::string tools_json(const std::vector<std::string>& tools) {
  boost::json::array a;
  a.reserve(tools.size());
  for (auto& t : tools) a.emplace_back(t);
  return gh::to_json_array(a);
}

std::vector<std::string> parse_tools(std::string_view text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_array()) return out;
  for (auto& e : v.get_array())
    if (e.is_string()) out.emplace_back(e.get_string());
  return out;
}

Grant read_grant(const Row& r) {
  Grant g;
  g.group = r.str(0);
  g.server = r.str(1);
  g.tools_mode = r.str(2);  // NULL → "" (every tool)
  g.tools = parse_tools(r.text(3));
  g.updated_at = r.int64(4);
  return g;
}

constexpr const char* kTenantKeyCols = "tenant_id, server_id, slot, api_key_encrypted, key_id, updated_at";

TenantKey read_tenant_key(const Row& r) {
  return {r.str(0), r.str(1), r.str(2), r.str(3), r.str(4), r.int64(5)};
}

constexpr const char* kEndpointCols = "tenant_id, server_id, endpoint_url, updated_at";

TenantEndpoint read_endpoint(const Row& r) { return {r.str(0), r.str(1), r.str(2), r.int64(3)}; }

// "WHERE <col> = ?" when listing one group's rows, nothing for all of them.
std::string group_filter(std::string_view group, const char* column) {
  return group.empty() ? std::string() : cat({" WHERE ", column, " = ?"});
}

std::vector<Value> group_param(std::string_view group) {
  if (group.empty()) return {};
  return {Value(group)};
}

class SqlStore final : public Store {
 public:
  SqlStore(std::unique_ptr<Connection> conn, std::string url, std::string sqlite_path)
      : conn_(std::move(conn)), url_(std::move(url)), sqlite_path_(std::move(sqlite_path)) {}
  ~SqlStore() override { stop_watching(); }

  std::string_view backend() const override { return pg() ? "postgresql" : "sqlite"; }

  int migrate() override {
    std::lock_guard lk(mu_);
    auto& c = *conn_;
    if (pg()) {
      // CREATE SCHEMA IF NOT EXISTS races between instances; the advisory lock serialises all of it, and
      // every migration runs in this one transaction (DDL is transactional in both backends).
      Transaction tx(c, true);
      // (an index over millions of rows takes what it takes; another instance's migration is waited for)
      c.script("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0");
      c.exec("SELECT pg_advisory_xact_lock(?)", {kMigrationLockKey});
      c.script("CREATE SCHEMA IF NOT EXISTS mcp_proxy");
      int n = apply_pending();
      tx.commit();
      return n;
    }
    Transaction tx(c, true);  // BEGIN IMMEDIATE: one migrating process at a time
    int n = apply_pending();
    tx.commit();
    return n;
  }

  void ping() override {
    std::lock_guard lk(mu_);
    conn_->scalar("SELECT 1");
  }

  int schema_version() override {
    std::lock_guard lk(mu_);
    if (!migrations_table_exists()) return 0;
    return static_cast<int>(conn_->scalar("SELECT COALESCE(MAX(version), 0) FROM @schema_migrations"));
  }

  // ---- users ----
  std::optional<User> get_user(std::string_view email) override {
    std::lock_guard lk(mu_);
    return get_user_locked(lower(email));
  }

  std::optional<User> find_user_by_subject(std::string_view subject) override {
    if (subject.empty()) return std::nullopt;
    std::lock_guard lk(mu_);
    std::optional<User> out;
    conn_->query(cat({"SELECT ", kUserCols, " FROM @users WHERE subject = ? ORDER BY email LIMIT 1"}),
                 {subject}, [&](const Row& r) { out = read_user(r); });
    return out;
  }

  bool create_user(const User& u) override {
    auto email = lower(u.email);
    if (email.empty()) throw StoreError("user email is empty");
    std::lock_guard lk(mu_);
    return conn_->exec(
               "INSERT INTO @users (email, name, subject, source, is_admin, disabled, created_at, last_seen_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING",
               {email, u.name, u.subject, u.source, u.is_admin, u.disabled, u.created_at ? u.created_at : now_seconds(),
                sql::time_or_null(u.last_seen_at)}) == 1;
  }

  bool update_user(const User& u) override {
    auto email = lower(u.email);
    std::lock_guard lk(mu_);
    return conn_->exec("UPDATE @users SET name = ?, subject = ?, source = ?, is_admin = ?, disabled = ? WHERE email = ?",
                       {u.name, u.subject, u.source, u.is_admin, u.disabled, email}) > 0;
  }

  bool update_user_sign_in(std::string_view email_in, std::string_view subject, std::string_view name) override {
    auto email = lower(email_in);
    std::lock_guard lk(mu_);
    return conn_->exec("UPDATE @users SET subject = ?, name = ? WHERE email = ?", {subject, name, email}) > 0;
  }

  bool delete_user(std::string_view email_in) override {
    auto email = lower(email_in);
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    conn_->exec("DELETE FROM @user_group_membership WHERE user_email = ?", {email});
    conn_->exec("DELETE FROM @api_keys WHERE user_email = ?", {email});
    bool found = conn_->exec("DELETE FROM @users WHERE email = ?", {email}) > 0;
    tx.commit();
    return found;
  }

  void touch_user(std::string_view email_in, int64_t seen_at) override {
    auto email = lower(email_in);
    std::lock_guard lk(mu_);
    conn_->exec("UPDATE @users SET last_seen_at = ? WHERE email = ? AND (last_seen_at IS NULL OR last_seen_at < ?)",
                {seen_at, email, seen_at});
  }

  std::vector<User> list_users(std::string_view q, int64_t offset, int64_t limit, int64_t* total) override {
    std::string where;
    std::vector<Value> params;
    auto pattern = like_pattern(q);
    if (!q.empty()) {
      // Emails are stored lower-case, so lower(email) matches the users_email_lower index (prefix searches).
      where = " WHERE lower(email) LIKE ? ESCAPE '\\' OR lower(name) LIKE ? ESCAPE '\\'";
      params = {pattern, pattern};
    }
    std::lock_guard lk(mu_);
    std::vector<User> out;
    if (limit != 0) {
      auto p = params;
      p.emplace_back(limit_of(limit));
      p.emplace_back(std::max<int64_t>(offset, 0));
      conn_->query(cat({"SELECT ", kUserCols, " FROM @users", where, " ORDER BY email LIMIT ? OFFSET ?"}), p,
                   [&](const Row& r) { out.push_back(read_user(r)); });
    }
    if (total) *total = conn_->scalar(cat({"SELECT COUNT(*) FROM @users", where}), params);
    return out;
  }

  // ---- analytics ----
  void insert_analytics(const AnalyticsBatch& rows, std::size_t& written,
                        const std::function<void()>& between) override {
    static constexpr std::string_view kColumns[] = {
        "timestamp", "user_email", "method", "endpoint", "status_code", "response_time_ms", "user_agent",
        "client_ip", "server_id",  "tool",       "request_id", "bytes_in", "bytes_out"};
    constexpr std::size_t kWidth = std::size(kColumns);
    const std::size_t chunk = analytics_chunk();
    // SQLite inserts a transaction's rows in slices of 64 (~40 µs of this thread each), `between` before
    // each, and calls it after every 8 file operations of the commit (its WAL writes: this connection
    // never checkpoints on commit, see checkpoint_analytics);
    // PostgreSQL sends them in one COPY, no pause (the writer waits on the server there). The values are
    // built in a buffer the thread keeps (266 KB for 512 rows: fresh memory each batch was pages to fault in
    // before the first pause).
    const bool pausing = between && !pg();
    const std::size_t slice = (pausing ? 64 : chunk) * kWidth;
    auto text_or_null = [](std::string_view v) { return v.empty() ? Value(nullptr) : Value(v); };
    thread_local std::vector<Value> values;
    values.clear();  // (views of an earlier batch, if its insert threw)
    values.reserve(std::min(rows.size(), chunk) * kWidth);
    int64_t min_ts = std::numeric_limits<int64_t>::max(), max_ts = std::numeric_limits<int64_t>::min();
    auto commit = [&] {
      with_analytics_connection([&](Connection& c) {
        Transaction tx(c, true);
        const std::span<const Value> all(values);
        for (std::size_t at = 0; at < all.size(); at += slice) {
          if (pausing) between();
          c.insert_rows("@api_analytics", kColumns, all.subspan(at, std::min(slice, all.size() - at)));
        }
        if (!pg()) note_analytics_rows(c, min_ts, max_ts);
        std::optional<sql::PauseBetweenWrites> in_commit;
        if (pausing) in_commit.emplace(between);
        tx.commit();
      });
      written += values.size() / kWidth;
      values.clear();
      min_ts = std::numeric_limits<int64_t>::max(), max_ts = std::numeric_limits<int64_t>::min();
    };
    rows.for_each([&](const AnalyticsRow& r) {
      min_ts = std::min(min_ts, r.timestamp), max_ts = std::max(max_ts, r.timestamp);
      values.insert(values.end(), {Value(r.timestamp), text_or_null(r.user_email), Value(r.method),
                                   Value(r.endpoint), Value(r.status), Value(std::round(r.response_ms * 1000) / 1000),
                                   text_or_null(r.user_agent), text_or_null(r.client_ip), text_or_null(r.server),
                                   text_or_null(r.tool), text_or_null(r.request_id), Value(r.bytes_in),
                                   Value(r.bytes_out)});
      if (values.size() == chunk * kWidth) commit();
    }, written);
    if (!values.empty()) commit();
  }

  std::size_t analytics_chunk() const override { return pg() ? 4096 : 512; }

  bool checkpoint_analytics(const std::function<void()>& between) override {
    if (pg() || in_memory()) return false;
    with_analytics_connection([&](Connection& c) {
      std::optional<sql::PauseBetweenWrites> pausing;
      if (between) pausing.emplace(between);
      c.script("PRAGMA wal_checkpoint(PASSIVE)");
    });
    return true;
  }

  int64_t purge_analytics(int64_t before) override {
    // In chunks, each its own transaction taking the store on its own: a day of a busy gateway's rows is
    // millions, and one DELETE of them held the store (directory reloads, the admin API) for seconds.
    constexpr int64_t kChunk = 10'000;
    int64_t n = 0;
    if (pg()) {
      // By the rows' physical addresses (`id` has no index: migration 4): old rows lie at the start of the
      // append-only heap, and each chunk goes on from where the last one ended (a TID range scan) instead of
      // reading the dead rows it left from the start again. Rows another instance is deleting at the same
      // moment are skipped, not waited for (that instance deletes them).
      std::string after = "(0,0)";
      // On the analytics connection: a chunk waiting for a lock on the table holds only the analytics writer.
      for (int64_t got = kChunk; got == kChunk;) {
        got = 0;
        with_analytics_connection([&](Connection& conn) {
        conn.query("WITH c AS (SELECT ctid FROM @api_analytics WHERE ctid > CAST(? AS tid) AND timestamp < ? LIMIT ? "
                     "FOR UPDATE SKIP LOCKED), "
                     "d AS (DELETE FROM @api_analytics WHERE ctid = ANY(ARRAY(SELECT ctid FROM c)) RETURNING 1) "
                     "SELECT (SELECT COUNT(*) FROM d), (SELECT CAST(MAX(ctid) AS text) FROM c)",
                     {after, before, kChunk}, [&](const Row& r) {
                       got = r.int64(0);
                       if (!r.is_null(1)) after = r.str(1);
                     });
        });
        n += got;
      }
      return n;
    }
    // SQLite (migration 5): the old rows lie in the id ranges whose least timestamp is older; after them a
    // range keeps only newer rows, so its least timestamp becomes `before` (a bound, not the exact least —
    // and while the chunks run, an older bound is still a bound).
    int64_t first, last;
    {
      std::lock_guard lk(mu_);
      last = conn_->scalar("SELECT COALESCE(MAX(last_id), 0) FROM api_analytics_ranges WHERE min_ts < ?", {before});
      first = conn_->scalar("SELECT COALESCE(MIN(id), 0) FROM api_analytics");
    }
    for (int64_t from = first; from <= last; from += kChunk) {
      std::lock_guard lk(mu_);
      n += conn_->exec("DELETE FROM api_analytics WHERE id >= ? AND id <= ? AND timestamp < ?",
                       {from, std::min(last, from + kChunk - 1), before});
    }
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    // Only the ranges the chunks went through: rows the writer added meanwhile (one with an old time, from a
    // long call) are in later ranges, whose bounds stay as the writer made them.
    conn_->exec("DELETE FROM api_analytics_ranges WHERE max_ts < ? AND last_id <= ?", {before, last});
    conn_->exec("UPDATE api_analytics_ranges SET min_ts = ? WHERE min_ts < ? AND last_id <= ?", {before, before, last});
    tx.commit();
    return n;
  }

  int64_t count_analytics() override {
    std::lock_guard lk(mu_);
    return conn_->scalar("SELECT COUNT(*) FROM @api_analytics");
  }

  AnalyticsReport analytics_report(const AnalyticsQuery& q) override {
    // The window as asked, 0 included: the management API limits a window's length and buckets, and an
    // `until` of 0 read as "no end" let since=0&until=0 through those limits to every row, bucket by bucket.
    int64_t since = q.since, until = q.until;
    int64_t bucket = std::max<int64_t>(q.bucket_s, 1), top = std::clamp<int64_t>(q.top, 1, 100);
    AnalyticsReport r;
    // On a connection of its own: a report over millions of rows takes a while, and must not hold the store
    // (sign-ins, the management API, the directory) meanwhile. One report at a time.
    with_report_connection([&](Connection& c) {
    Transaction tx(c, false);
    // Every query below reads the window's rows: PostgreSQL through the BRIN index on the timestamp,
    // SQLite through the id range that holds them (migration 5), as the first two parameters.
    std::string where = " WHERE timestamp >= ? AND timestamp <= ?";
    std::vector<Value> window{since, until};
    if (!pg()) {
      auto [first, last] = analytics_ids(c, since, until);
      where = " WHERE id >= ? AND id <= ? AND timestamp >= ? AND timestamp <= ?";
      window = {first, last, since, until};
    }
    auto params = [&](std::initializer_list<Value> before, std::initializer_list<Value> after = {}) {
      std::vector<Value> all(before);
      all.insert(all.end(), window.begin(), window.end());
      all.insert(all.end(), after);
      return all;
    };
    c.query("SELECT COUNT(*), COALESCE(SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END), 0) FROM @api_analytics" + where,
                 params({}), [&](const Row& row) {
                   r.requests = row.int64(0);
                   r.errors = row.int64(1);
                 });
    if (r.requests > 0) {
      // Percentiles by rank (same answer on both backends): the value at ceil(p * n) in response-time order.
      auto at = [&](double p) {
        int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(p * double(r.requests))));
        double v = 0;
        c.query("SELECT response_time_ms FROM @api_analytics" + where +
                         " ORDER BY response_time_ms LIMIT 1 OFFSET ?",
                     params({}, {rank - 1}), [&](const Row& row) { v = std::strtod(row.str(0).c_str(), nullptr); });
        return v;
      };
      r.p50_ms = at(0.50);
      r.p90_ms = at(0.90);
      r.p95_ms = at(0.95);
      r.p99_ms = at(0.99);
    }
    c.query("SELECT (timestamp / ?) * ?, COUNT(*), SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END) FROM @api_analytics" +
                     where + " GROUP BY 1 ORDER BY 1",
                 params({bucket, bucket}), [&](const Row& row) {
                   r.timeline.push_back({row.int64(0), row.int64(1), row.int64(2)});
                 });
    auto counts = [&](const std::string& cols, const std::string& extra_where, std::vector<AnalyticsReport::Count>& out,
                      bool two) {
      c.query("SELECT " + cols + ", COUNT(*), SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END), AVG(response_time_ms) "
                   "FROM @api_analytics" + where + extra_where + " GROUP BY " + cols + " ORDER BY " +
                   std::to_string(two ? 3 : 2) + " DESC, 1 LIMIT ?",
                   params({}, {top}), [&](const Row& row) {
                     AnalyticsReport::Count c;
                     int i = 0;
                     c.key = row.str(i++);
                     if (two) c.key2 = row.str(i++);
                     c.requests = row.int64(i++);
                     c.errors = row.int64(i++);
                     c.avg_ms = std::strtod(row.str(i).c_str(), nullptr);
                     out.push_back(std::move(c));
                   });
    };
    counts("user_email", " AND user_email IS NOT NULL", r.top_users, false);
    counts("server_id", " AND server_id IS NOT NULL", r.top_servers, false);
    counts("server_id, tool", " AND tool IS NOT NULL", r.top_tools, true);
    });
    return r;
  }

  int64_t count_users() override {
    std::lock_guard lk(mu_);
    return conn_->scalar("SELECT COUNT(*) FROM @users");
  }

  std::vector<std::string> admin_emails(std::string_view admin_group) override {
    std::lock_guard lk(mu_);
    std::vector<std::string> out;
    conn_->query("SELECT email FROM @users WHERE disabled = ? AND (is_admin = ? OR email IN "
                 "(SELECT user_email FROM @user_group_membership WHERE group_name = ?)) ORDER BY email",
                 {false, true, admin_group}, [&](const Row& r) { out.push_back(r.str(0)); });
    return out;
  }

  // ---- groups ----
  std::optional<Group> get_group(std::string_view name) override {
    std::lock_guard lk(mu_);
    std::optional<Group> out;
    conn_->query(cat({"SELECT ", kGroupCols, " FROM @groups g WHERE g.name = ?"}), {name},
                 [&](const Row& r) { out = read_group(r); });
    return out;
  }

  bool create_group(const Group& g) override {
    if (g.name.empty()) throw StoreError("group name is empty");
    std::lock_guard lk(mu_);
    return conn_->exec(
               "INSERT INTO @groups (name, description, priority, is_tenant, created_at) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT (name) DO NOTHING",
               {g.name, g.description, g.priority, g.is_tenant, g.created_at ? g.created_at : now_seconds()}) == 1;
  }

  bool update_group(const Group& g) override {
    std::lock_guard lk(mu_);
    return conn_->exec("UPDATE @groups SET description = ?, priority = ?, is_tenant = ? WHERE name = ?",
                       {g.description, g.priority, g.is_tenant, g.name}) > 0;
  }

  bool rename_group(std::string_view from, std::string_view to, const std::vector<TenantKey>& resealed) override {
    if (to.empty()) throw StoreError("group name is empty");
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    if (!group_exists(from)) return false;
    if (from == to) return true;
    if (group_exists(to)) throw StoreError("a group with the new name already exists");
    // Memberships, grants, tenant keys and tenant endpoints follow through ON UPDATE CASCADE.
    conn_->exec("UPDATE @groups SET name = ? WHERE name = ?", {to, from});
    for (auto& k : resealed)
      conn_->exec("UPDATE @tenant_server_keys SET api_key_encrypted = ?, key_id = ? "
                  "WHERE tenant_id = ? AND server_id = ? AND slot = ?",
                  {k.ciphertext, k.key_id, to, k.server, k.slot});
    tx.commit();
    return true;
  }

  bool delete_group(std::string_view name) override {
    std::lock_guard lk(mu_);
    // Memberships, grants, tenant keys and tenant endpoints go with it (ON DELETE CASCADE).
    return conn_->exec("DELETE FROM @groups WHERE name = ?", {name}) > 0;
  }

  std::vector<Group> list_groups(std::string_view q, int64_t offset, int64_t limit, int64_t* total) override {
    std::string where;
    std::vector<Value> params;
    auto pattern = like_pattern(q);
    if (!q.empty()) {
      where = " WHERE lower(g.name) LIKE ? ESCAPE '\\' OR lower(g.description) LIKE ? ESCAPE '\\'";
      params = {pattern, pattern};
    }
    std::lock_guard lk(mu_);
    std::vector<Group> out;
    if (limit != 0) {
      auto p = params;
      p.emplace_back(limit_of(limit));
      p.emplace_back(std::max<int64_t>(offset, 0));
      conn_->query(cat({"SELECT ", kGroupCols, " FROM @groups g", where, " ORDER BY g.name LIMIT ? OFFSET ?"}),
                   p, [&](const Row& r) { out.push_back(read_group(r)); });
    }
    if (total) *total = conn_->scalar(cat({"SELECT COUNT(*) FROM @groups g", where}), params);
    return out;
  }

  // ---- memberships ----
  bool add_member(std::string_view group, std::string_view email_in, std::string_view source) override {
    auto email = lower(email_in);
    if (email.empty()) throw StoreError("member email is empty");
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    if (!group_exists(group)) throw StoreError("no such group");
    bool added = conn_->exec(
                     "INSERT INTO @user_group_membership (user_email, group_name, source, created_at) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (user_email, group_name) DO NOTHING",
                     {email, group, source.empty() ? std::string_view("manual") : source, now_seconds()}) == 1;
    tx.commit();
    return added;
  }

  MembersAdded add_members_creating(std::string_view group, const std::vector<std::string>& emails,
                                    std::string_view user_source) override {
    constexpr std::size_t kChunk = 500;
    MembersAdded out;
    auto now = now_seconds();
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    if (!group_exists(group)) throw StoreError("no such group");
    for (std::size_t from = 0; from < emails.size(); from += kChunk) {
      auto n = std::min(kChunk, emails.size() - from);
      std::string users = "INSERT INTO @users (email, name, subject, source, is_admin, disabled, created_at) VALUES ";
      std::string members = "INSERT INTO @user_group_membership (user_email, group_name, source, created_at) VALUES ";
      std::vector<Value> up, mp;
      up.reserve(n * 5);
      mp.reserve(n * 4);
      for (std::size_t i = 0; i < n; ++i) {
        users += i ? ", (?, '', '', ?, ?, ?, ?)" : "(?, '', '', ?, ?, ?, ?)";
        members += i ? ", (?, ?, ?, ?)" : "(?, ?, ?, ?)";
        const auto& email = emails[from + i];
        up.insert(up.end(), {Value(email), Value(user_source), Value(false), Value(false), Value(now)});
        mp.insert(mp.end(), {Value(email), Value(group), Value(std::string_view("manual")), Value(now)});
      }
      conn_->query(users + " ON CONFLICT (email) DO NOTHING RETURNING email", up,
                   [&](const Row& r) { out.created.push_back(r.str(0)); });
      conn_->query(members + " ON CONFLICT (user_email, group_name) DO NOTHING RETURNING user_email", mp,
                   [&](const Row& r) { out.added.push_back(r.str(0)); });
    }
    tx.commit();
    return out;
  }

  bool remove_member(std::string_view group, std::string_view email_in) override {
    auto email = lower(email_in);
    std::lock_guard lk(mu_);
    return conn_->exec("DELETE FROM @user_group_membership WHERE group_name = ? AND user_email = ?", {group, email}) > 0;
  }

  std::vector<std::string> groups_of(std::string_view email_in) override {
    auto email = lower(email_in);
    std::lock_guard lk(mu_);
    std::vector<std::string> out;
    conn_->query("SELECT group_name FROM @user_group_membership WHERE user_email = ? ORDER BY group_name", {email},
                 [&](const Row& r) { out.push_back(r.str(0)); });
    return out;
  }

  std::vector<User> members(std::string_view group, int64_t offset, int64_t limit, int64_t* total) override {
    std::lock_guard lk(mu_);
    std::vector<User> out;
    if (limit != 0) {
      // LEFT JOIN: a member who has never signed in has no users row; they are listed by email alone.
      conn_->query(
          "SELECT m.user_email, u.name, u.subject, u.source, u.is_admin, u.disabled, u.created_at, u.last_seen_at "
          "FROM @user_group_membership m LEFT JOIN @users u ON u.email = m.user_email "
          "WHERE m.group_name = ? ORDER BY m.user_email LIMIT ? OFFSET ?",
          {group, limit_of(limit), std::max<int64_t>(offset, 0)}, [&](const Row& r) { out.push_back(read_user(r)); });
    }
    if (total) *total = conn_->scalar("SELECT COUNT(*) FROM @user_group_membership WHERE group_name = ?", {group});
    return out;
  }

  void sync_idp_groups(std::string_view email_in, const std::vector<std::string>& groups) override {
    auto email = lower(email_in);
    std::set<std::string> want;
    for (auto& g : groups)
      if (!g.empty()) want.insert(g);
    std::set<std::string> want_lower;
    for (auto& g : want) want_lower.insert(lower(g));
    auto now = now_seconds();
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    std::vector<std::string> stale;
    conn_->query("SELECT group_name FROM @user_group_membership WHERE user_email = ? AND source = 'idp'", {email},
                 [&](const Row& r) {
                   if (!want_lower.count(lower(r.str(0)))) stale.push_back(r.str(0));
                 });
    for (auto& g : stale)
      conn_->exec("DELETE FROM @user_group_membership WHERE user_email = ? AND group_name = ? AND source = 'idp'",
                  {email, g});
    for (auto g : want) {
      // A group that exists with the name in other letter case is that group (as in the admin API).
      conn_->query("SELECT name FROM @groups WHERE lower(name) = ? ORDER BY name LIMIT 1", {lower(g)},
                   [&](const Row& r) { g = r.str(0); });
      conn_->exec("INSERT INTO @groups (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", {g, now});
      // An existing manual membership stays manual (it must survive the IdP dropping the claim).
      conn_->exec(
          "INSERT INTO @user_group_membership (user_email, group_name, source, created_at) VALUES (?, ?, 'idp', ?) "
          "ON CONFLICT (user_email, group_name) DO NOTHING",
          {email, g, now});
    }
    tx.commit();
  }

  // ---- API keys ----
  void create_api_key(const ApiKey& k) override {
    std::lock_guard lk(mu_);
    conn_->exec(cat({"INSERT INTO @api_keys (", kKeyCols, ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"}),
                {k.id, lower(k.user_email), k.name, k.prefix, k.hash, k.scopes, k.created_at ? k.created_at : now_seconds(),
                 sql::time_or_null(k.expires_at), sql::time_or_null(k.last_used_at), sql::time_or_null(k.revoked_at)});
  }

  std::optional<ApiKey> get_api_key(std::string_view id) override {
    std::lock_guard lk(mu_);
    std::optional<ApiKey> out;
    conn_->query(cat({"SELECT ", kKeyCols, " FROM @api_keys WHERE id = ?"}), {id},
                 [&](const Row& r) { out = read_key(r); });
    return out;
  }

  std::vector<ApiKey> list_api_keys(std::string_view user_email) override {
    std::lock_guard lk(mu_);
    std::vector<ApiKey> out;
    auto fn = [&](const Row& r) { out.push_back(read_key(r)); };
    if (user_email.empty())
      conn_->query(cat({"SELECT ", kKeyCols, " FROM @api_keys ORDER BY created_at, id"}), {}, fn);
    else
      conn_->query(cat({"SELECT ", kKeyCols, " FROM @api_keys WHERE user_email = ? ORDER BY created_at, id"}),
                   {lower(user_email)}, fn);
    return out;
  }

  std::vector<ApiKey> list_api_keys(std::string_view user_email, int64_t offset, int64_t limit, int64_t* total) override {
    std::lock_guard lk(mu_);
    std::vector<ApiKey> out;
    std::string where = user_email.empty() ? "" : " WHERE user_email = ?";
    auto email = lower(user_email);  // (kept here: a Value refers to its text)
    std::vector<Value> params;
    if (!email.empty()) params.emplace_back(std::string_view(email));
    if (total) *total = conn_->scalar(cat({"SELECT COUNT(*) FROM @api_keys", where}), params);
    params.emplace_back(limit);
    params.emplace_back(offset);
    conn_->query(cat({"SELECT ", kKeyCols, " FROM @api_keys", where, " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"}),
                 params, [&](const Row& r) { out.push_back(read_key(r)); });
    return out;
  }

  bool revoke_api_key(std::string_view id, int64_t at) override {
    std::lock_guard lk(mu_);
    return conn_->exec("UPDATE @api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                       {at ? at : now_seconds(), id}) > 0;
  }

  void touch_api_keys(const std::vector<std::pair<std::string, int64_t>>& id_and_time) override {
    if (id_and_time.empty()) return;
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    for (auto& [id, t] : id_and_time)
      conn_->exec("UPDATE @api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                  {t, id, t});
    tx.commit();
  }

  // ---- grants ----
  std::vector<Grant> list_grants(std::string_view group) override {
    std::lock_guard lk(mu_);
    return list_grants_locked(group);
  }

  void put_grant(const Grant& g) override {
    if (g.server.empty()) throw StoreError("grant server is empty");
    if (g.tools_mode != "" && g.tools_mode != "allow" && g.tools_mode != "deny")
      throw StoreError("grant tools_mode must be empty, \"allow\" or \"deny\"");
    auto tools = tools_json(g.tools);
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    require_group(g.group);
    conn_->exec(
        "INSERT INTO @group_tenant_mapping (group_name, tenant_id, tools_mode, tools, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name, tenant_id) DO UPDATE SET "
        "tools_mode = excluded.tools_mode, tools = excluded.tools, updated_at = excluded.updated_at",
        {g.group, g.server, g.tools_mode.empty() ? Value(nullptr) : Value(g.tools_mode), tools,
         g.updated_at ? g.updated_at : now_seconds()});
    tx.commit();
  }

  bool delete_grant(std::string_view group, std::string_view server) override {
    std::lock_guard lk(mu_);
    return conn_->exec("DELETE FROM @group_tenant_mapping WHERE group_name = ? AND tenant_id = ?", {group, server}) > 0;
  }

  // ---- tenant keys ----
  std::vector<TenantKey> list_tenant_keys(std::string_view group) override {
    std::lock_guard lk(mu_);
    return list_tenant_keys_locked(group);
  }

  void put_tenant_key(const TenantKey& k) override {
    if (k.server.empty() || k.slot.empty()) throw StoreError("tenant key server or slot is empty");
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    require_group(k.group);
    conn_->exec(
        "INSERT INTO @tenant_server_keys (tenant_id, server_id, slot, api_key_encrypted, key_id, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, server_id, slot) DO UPDATE SET "
        "api_key_encrypted = excluded.api_key_encrypted, key_id = excluded.key_id, updated_at = excluded.updated_at",
        {k.group, k.server, k.slot, k.ciphertext, k.key_id, k.updated_at ? k.updated_at : now_seconds()});
    tx.commit();
  }

  bool delete_tenant_key(std::string_view group, std::string_view server, std::string_view slot) override {
    std::lock_guard lk(mu_);
    return conn_->exec("DELETE FROM @tenant_server_keys WHERE tenant_id = ? AND server_id = ? AND slot = ?",
                       {group, server, slot}) > 0;
  }

  // Rows deleted meanwhile stay deleted (an UPDATE, never an insert); updated_at is kept, since the value
  // itself did not change.
  void reencrypt_tenant_keys(const std::vector<TenantKey>& rows) override {
    if (rows.empty()) return;
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    for (auto& k : rows)
      conn_->exec(
          "UPDATE @tenant_server_keys SET api_key_encrypted = ?, key_id = ? "
          "WHERE tenant_id = ? AND server_id = ? AND slot = ?",
          {k.ciphertext, k.key_id, k.group, k.server, k.slot});
    tx.commit();
  }

  // ---- tenant endpoints ----
  std::vector<TenantEndpoint> list_tenant_endpoints(std::string_view group) override {
    std::lock_guard lk(mu_);
    return list_tenant_endpoints_locked(group);
  }

  void put_tenant_endpoint(const TenantEndpoint& e) override {
    if (e.server.empty()) throw StoreError("tenant endpoint server is empty");
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, true);
    require_group(e.group);
    conn_->exec(
        "INSERT INTO @tenant_server_endpoints (tenant_id, server_id, endpoint_url, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (tenant_id, server_id) DO UPDATE SET "
        "endpoint_url = excluded.endpoint_url, updated_at = excluded.updated_at",
        {e.group, e.server, e.url, e.updated_at ? e.updated_at : now_seconds()});
    tx.commit();
  }

  bool delete_tenant_endpoint(std::string_view group, std::string_view server) override {
    std::lock_guard lk(mu_);
    return conn_->exec("DELETE FROM @tenant_server_endpoints WHERE tenant_id = ? AND server_id = ?", {group, server}) > 0;
  }

  // ---- audit ----
  void append_audits(const std::vector<AuditEntry>& entries) override {
    static constexpr std::string_view kColumns[] = {"timestamp", "actor", "action", "target", "details"};
    std::vector<Value> values;
    values.reserve(entries.size() * 5);
    auto now = now_seconds();
    for (auto& e : entries)
      values.insert(values.end(), {Value(e.timestamp ? e.timestamp : now), Value(e.actor), Value(e.action), Value(e.target),
                                   Value(e.details.empty() ? std::string_view("{}") : std::string_view(e.details))});
    std::lock_guard lk(mu_);
    conn_->insert_rows("@audit_log", kColumns, values);
  }

  void append_audit(const AuditEntry& e) override {
    std::lock_guard lk(mu_);
    conn_->exec("INSERT INTO @audit_log (timestamp, actor, action, target, details) VALUES (?, ?, ?, ?, ?)",
                {e.timestamp ? e.timestamp : now_seconds(), e.actor, e.action, e.target,
                 e.details.empty() ? std::string_view("{}") : std::string_view(e.details)});
  }

  std::vector<AuditEntry> list_audit(const AuditFilter& f, int64_t* total) override {
    std::string where;
    std::vector<Value> params;
    auto add = [&](const char* cond, Value v) {
      where += where.empty() ? " WHERE " : " AND ";
      where += cond;
      params.push_back(v);
    };
    if (!f.actor.empty()) add("actor = ?", f.actor);
    if (!f.action.empty()) add("action = ?", f.action);
    if (!f.target.empty()) add("target = ?", f.target);
    if (f.since) add("timestamp >= ?", f.since);
    if (f.until) add("timestamp <= ?", f.until);
    std::lock_guard lk(mu_);
    std::vector<AuditEntry> out;
    if (f.limit != 0) {
      auto p = params;
      p.emplace_back(limit_of(f.limit));
      p.emplace_back(std::max<int64_t>(f.offset, 0));
      conn_->query(cat({"SELECT id, timestamp, actor, action, target, details FROM @audit_log", where,
                        " ORDER BY id DESC LIMIT ? OFFSET ?"}),
                   p, [&](const Row& r) {
                     out.push_back({r.int64(0), r.int64(1), r.str(2), r.str(3), r.str(4), r.str(5)});
                   });
    }
    if (total) *total = conn_->scalar(cat({"SELECT COUNT(*) FROM @audit_log", where}), params);
    return out;
  }

  // ---- meta ----
  std::optional<std::string> get_meta(std::string_view key) override {
    std::lock_guard lk(mu_);
    std::optional<std::string> out;
    conn_->query("SELECT value FROM @gateway_meta WHERE key = ?", {key}, [&](const Row& r) { out = r.str(0); });
    return out;
  }

  std::string put_meta_if_absent(std::string_view key, std::string_view value) override {
    std::lock_guard lk(mu_);
    conn_->exec("INSERT INTO @gateway_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", {key, value});
    std::string out;
    conn_->query("SELECT value FROM @gateway_meta WHERE key = ?", {key}, [&](const Row& r) { out = r.str(0); });
    return out;
  }

  // The database's clock, not the instance's: instances' clocks may disagree, and the ends are read back by time.
  const char* db_now() const {
    return pg() ? "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)" : "CAST(strftime('%s', 'now') AS INTEGER)";
  }

  void record_session_end(std::string_view session_id) override {
    std::lock_guard lk(mu_);
    conn_->exec(cat({"INSERT INTO @mcp_session_ends (session_id, ended_at) VALUES (?, ", db_now(),
                     ") ON CONFLICT (session_id) DO NOTHING"}),
                {session_id});
  }

  bool session_ended(std::string_view session_id) override {
    std::lock_guard lk(mu_);
    bool found = false;
    conn_->query("SELECT 1 FROM @mcp_session_ends WHERE session_id = ?", {session_id}, [&](const Row&) { found = true; });
    return found;
  }

  std::vector<std::string> sessions_ended_within(int64_t seconds) override {
    std::lock_guard lk(mu_);
    std::vector<std::string> out;
    conn_->query(cat({"SELECT session_id FROM @mcp_session_ends WHERE ended_at >= ", db_now(), " - ?"}), {seconds},
                 [&](const Row& r) { out.push_back(r.str(0)); });
    return out;
  }

  int64_t purge_session_ends(int64_t before) override {
    std::lock_guard lk(mu_);
    return conn_->exec("DELETE FROM @mcp_session_ends WHERE ended_at < ?", {before});
  }

  Dump dump() override {
    Dump d;
    std::lock_guard lk(mu_);
    Transaction tx(*conn_, false);  // one snapshot: memberships agree with users and groups
    conn_->query(cat({"SELECT ", kUserCols, " FROM @users ORDER BY email"}), {},
                 [&](const Row& r) { d.users.push_back(read_user(r)); });
    conn_->query(
        "SELECT g.name, g.description, g.priority, g.is_tenant, g.created_at, COUNT(m.user_email) FROM @groups g "
        "LEFT JOIN @user_group_membership m ON m.group_name = g.name "
        "GROUP BY g.name, g.description, g.priority, g.is_tenant, g.created_at ORDER BY g.name",
        {}, [&](const Row& r) { d.groups.push_back(read_group(r)); });
    conn_->query("SELECT user_email, group_name, source FROM @user_group_membership ORDER BY user_email, group_name", {},
                 [&](const Row& r) { d.memberships.push_back({r.str(0), r.str(1), r.str(2)}); });
    conn_->query(cat({"SELECT ", kKeyCols, " FROM @api_keys WHERE revoked_at IS NULL ORDER BY id"}), {},
                 [&](const Row& r) { d.api_keys.push_back(read_key(r)); });
    d.grants = list_grants_locked("");
    d.tenant_keys = list_tenant_keys_locked("");
    d.tenant_endpoints = list_tenant_endpoints_locked("");
    tx.commit();
    return d;
  }

  bool atomically(const std::function<bool()>& fn) override {
    // PostgreSQL: another instance's change in progress is waited for (up to 5 s, then StoreError) without
    // holding this store, whose other calls go on meanwhile. SQLite: BEGIN IMMEDIATE waits for the write lock
    // (busy_timeout, 5 s).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (true) {
      {
        std::lock_guard lk(mu_);
        Transaction tx(*conn_, true);
        if (!pg() || conn_->scalar("SELECT CASE WHEN pg_try_advisory_xact_lock(?) THEN 1 ELSE 0 END", {kChangeLockKey})) {
          if (!fn()) return false;
          // The other instances (and processes, on SQLite) hear of the change by the commit itself — the
          // counter they poll, and on PostgreSQL a NOTIFY, which is delivered when it commits and only then —
          // not by a later step that a crash or a failed write could skip. The notify_changed() the caller
          // makes after the commit announces it a second time (it is also what pokes SQLite's own watcher and
          // announces writes made outside this function); the watchers' 50 ms debounce makes one reload of the two.
          announce_change_locked();
          tx.commit();
          return true;
        }
      }
      if (std::chrono::steady_clock::now() > until) throw StoreError("another change is in progress; try again");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // ---- change notification ----
  void notify_changed() override {
    {
      std::lock_guard lk(mu_);
      announce_change_locked();
    }
    if (pg()) return;
    std::lock_guard lk(watch_mu_);
    if (watcher_) watcher_->poke();
  }

  // A counter the watchers poll — SQLite's the only way other processes (the CLI) are seen; PostgreSQL's a
  // check every few seconds that no notification was missed — and on PostgreSQL a NOTIFY for the prompt way.
  // Not PRAGMA data_version: that changes with every commit, analytics rows included, and rebuilt the
  // directory twice a second under traffic.
  void announce_change_locked() {
    conn_->exec("INSERT INTO @gateway_meta (key, value) VALUES ('directory_version', '1') ON CONFLICT (key) "
                "DO UPDATE SET value = CAST(CAST(@gateway_meta.value AS INTEGER) + 1 AS TEXT)");
    if (pg()) conn_->exec(cat({"NOTIFY ", kChannel}));
  }

  // SQLite: the watcher's poll also sees this instance's own notifications, so a write here may be
  // reported twice (poke and poll); reloads are idempotent, and the poll is what catches the CLI's writes.
  void watch(std::function<void()> cb) override {
    auto fresh = pg() ? sql::watch_postgres(url_, kChannel,
                                            "SELECT value FROM mcp_proxy.gateway_meta WHERE key = 'directory_version'",
                                            std::move(cb))
                      : sql::watch_sqlite(sqlite_path_, "SELECT value FROM gateway_meta WHERE key = 'directory_version'",
                                          std::move(cb));
    std::unique_ptr<sql::Watcher> old;
    {
      std::lock_guard lk(watch_mu_);
      old = std::exchange(watcher_, std::move(fresh));
    }
    // Destroyed outside the lock: its thread may be inside a callback that calls notify_changed().
  }

  void stop_watching() override {
    std::unique_ptr<sql::Watcher> old;
    {
      std::lock_guard lk(watch_mu_);
      old = std::move(watcher_);
    }
  }

 private:
  bool pg() const { return conn_->dialect() == Dialect::postgresql; }
  bool in_memory() const { return sqlite_path_ == ":memory:"; }  // SQLite without a file: one connection, no log

  // SQLite's time index of api_analytics (migration 5). In the writer's transaction, after it appended rows
  // with times in [min_ts, max_ts]: the newest id range grows over them, or a new range starts once it
  // spans kRangeIds ids. The transaction holds SQLite's write lock, so the ids after the newest range are
  // exactly these rows (this writer is the table's only one; reading their times back instead would cost
  // ~1,300 instructions a row, a fifth of the insert).
  static constexpr int64_t kRangeIds = 4096;
  static void note_analytics_rows(Connection& c, int64_t min_ts, int64_t max_ts) {
    int64_t first = 0, last = 0;
    c.query("SELECT first_id, last_id FROM api_analytics_ranges ORDER BY first_id DESC LIMIT 1", {},
            [&](const Row& row) { first = row.int64(0), last = row.int64(1); });
    int64_t newest = c.scalar("SELECT MAX(id) FROM api_analytics");
    if (newest <= last) return;
    if (first && newest - first < kRangeIds)
      c.exec("UPDATE api_analytics_ranges SET last_id = ?, min_ts = MIN(min_ts, ?), max_ts = MAX(max_ts, ?) "
             "WHERE first_id = ?", {newest, min_ts, max_ts, first});
    else
      c.exec("INSERT INTO api_analytics_ranges (first_id, last_id, min_ts, max_ts) VALUES (?, ?, ?, ?)",
             {last + 1, newest, min_ts, max_ts});
  }
  // The ids [first, last] that hold every row with a timestamp in [since, until]: from the first range
  // that reaches `since` to the last that starts by `until`, open-ended when that is the newest range (rows
  // not yet in a range can only be newer).
  static std::pair<int64_t, int64_t> analytics_ids(Connection& c, int64_t since, int64_t until) {
    int64_t newest = c.scalar("SELECT last_id FROM api_analytics_ranges ORDER BY first_id DESC LIMIT 1");
    int64_t first = c.scalar("SELECT COALESCE(MIN(first_id), ? + 1) FROM api_analytics_ranges WHERE max_ts >= ?",
                             {newest, since});
    int64_t last = c.scalar("SELECT COALESCE(MAX(last_id), 0) FROM api_analytics_ranges WHERE min_ts <= ?", {until});
    return {first, last >= newest ? std::numeric_limits<int64_t>::max() : last};
  }

  bool migrations_table_exists() {
    if (pg()) return conn_->scalar("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'mcp_proxy' AND tablename = 'schema_migrations'") > 0;
    return conn_->scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'") > 0;
  }

  int apply_pending() {
    auto& c = *conn_;
    c.script("CREATE TABLE IF NOT EXISTS @schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
    auto current = c.scalar("SELECT COALESCE(MAX(version), 0) FROM @schema_migrations");
    int applied = 0;
    for (auto& m : migrations()) {
      if (m.version <= current) continue;
      c.script(pg() ? m.postgresql : m.sqlite);
      c.exec("INSERT INTO @schema_migrations (version, applied_at) VALUES (?, ?)", {m.version, now_seconds()});
      ++applied;
    }
    return applied;
  }

  std::optional<User> get_user_locked(const std::string& email) {
    std::optional<User> out;
    conn_->query(cat({"SELECT ", kUserCols, " FROM @users WHERE email = ?"}), {email},
                 [&](const Row& r) { out = read_user(r); });
    return out;
  }

  bool group_exists(std::string_view name) {
    return conn_->scalar("SELECT COUNT(*) FROM @groups WHERE name = ?", {name}) > 0;
  }

  // Inside the caller's write transaction, so the row and its group agree (the foreign key would also
  // refuse it, with a less helpful message).
  void require_group(std::string_view name) {
    if (!group_exists(name)) throw StoreError("no such group");
  }

  std::vector<Grant> list_grants_locked(std::string_view group) {
    std::vector<Grant> out;
    conn_->query(cat({"SELECT ", kGrantCols, " FROM @group_tenant_mapping", group_filter(group, "group_name"),
                      " ORDER BY group_name, tenant_id"}),
                 group_param(group), [&](const Row& r) { out.push_back(read_grant(r)); });
    return out;
  }

  std::vector<TenantKey> list_tenant_keys_locked(std::string_view group) {
    std::vector<TenantKey> out;
    conn_->query(cat({"SELECT ", kTenantKeyCols, " FROM @tenant_server_keys", group_filter(group, "tenant_id"),
                      " ORDER BY tenant_id, server_id, slot"}),
                 group_param(group), [&](const Row& r) { out.push_back(read_tenant_key(r)); });
    return out;
  }

  std::vector<TenantEndpoint> list_tenant_endpoints_locked(std::string_view group) {
    std::vector<TenantEndpoint> out;
    conn_->query(cat({"SELECT ", kEndpointCols, " FROM @tenant_server_endpoints", group_filter(group, "tenant_id"),
                      " ORDER BY tenant_id, server_id"}),
                 group_param(group), [&](const Row& r) { out.push_back(read_endpoint(r)); });
    return out;
  }

  // Analytics rows are written through a connection of their own, so the writer — a low-priority thread that
  // can wait a long time for a core in the middle of a transaction on a busy machine — never holds the lock
  // every other store call takes (a directory reload waited seconds behind it); analytics reports, which read
  // a window's rows and may take long, through another. Each opened on first use. An in-memory SQLite database
  // has no second connection: there they share conn_ and mu_.
  template <class F>
  void with_analytics_connection(F&& f) {
    with_own_connection(analytics_mu_, analytics_conn_, [&](Connection& c) {
      // Its commits leave the log to checkpoint_analytics() (SQLite's default: a checkpoint by the commit
      // that takes the log past 1,000 pages, a fifth of the writer's CPU, in the middle of the load).
      if (!pg()) c.script("PRAGMA wal_autocheckpoint=0");
      else c.session_setup("SET lock_timeout = '10s'");  // (a failed batch is written later)
    }, f);
  }
  template <class F>
  void with_report_connection(F&& f) {
    with_own_connection(report_mu_, report_conn_, [this](Connection& c) {
      if (pg()) c.session_setup("SET statement_timeout = '300s'");  // a report over millions of rows
    }, f);
  }
  template <class Setup, class F>
  void with_own_connection(std::mutex& m, std::unique_ptr<Connection>& conn, Setup&& setup, F& f) {
    if (in_memory()) {
      std::lock_guard lk(mu_);
      f(*conn_);
      return;
    }
    std::lock_guard lk(m);
    if (!conn) {
      conn = pg() ? sql::open_postgres(url_, "mcp_proxy.") : sql::open_sqlite(sqlite_path_);
      setup(*conn);
    }
    f(*conn);
  }

  std::recursive_mutex mu_;  // guards conn_ (one connection per store); recursive: atomically()
  std::unique_ptr<Connection> conn_;
  std::mutex analytics_mu_;  // guards analytics_conn_
  std::unique_ptr<Connection> analytics_conn_;
  std::mutex report_mu_;  // guards report_conn_ (analytics reports)
  std::unique_ptr<Connection> report_conn_;
  std::string url_;
  std::string sqlite_path_;
  std::mutex watch_mu_;  // guards watcher_; never held while a callback runs
  std::unique_ptr<sql::Watcher> watcher_;
};

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& url) {
  std::string_view u(url);
  if (u.starts_with("postgresql://") || u.starts_with("postgres://"))
    return std::make_unique<SqlStore>(sql::open_postgres(url, "mcp_proxy."), url, "");
  if (auto file = sqlite_file(u)) {
    std::string path(*file);
    if (path.empty()) throw StoreError("database URL names no file: " + sql::redact_url(url));
    if (path != ":memory:") {
      auto dir = std::filesystem::path(path).parent_path();
      std::error_code ec;
      if (!dir.empty()) std::filesystem::create_directories(dir, ec);
      if (ec) throw StoreError("cannot create the directory of " + path + ": " + ec.message());
    }
    return std::make_unique<SqlStore>(sql::open_sqlite(path), url, path);
  }
  throw StoreError("unsupported database URL (want sqlite:// or postgresql://): " + sql::redact_url(url));
}

}  // namespace gh::store
