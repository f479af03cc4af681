// SQLite backend of the SQL layer: one connection, prepared statements cached per SQL text.
#include <sqlite3.h>

#include <unordered_map>

#include "core/log.hpp"
#include "store/db.hpp"
#include "store/watch_loop.hpp"

namespace gh::store::sql {
namespace {

class SqliteRow final : public Row {
 public:
  explicit SqliteRow(sqlite3_stmt* s) : s_(s) {}
  int columns() const override { return sqlite3_column_count(s_); }
  bool is_null(int i) const override { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
  std::string_view text(int i) const override {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    if (!p) return {};
    return {p, static_cast<size_t>(sqlite3_column_bytes(s_, i))};
  }
  int64_t int64(int i) const override { return sqlite3_column_int64(s_, i); }
  bool boolean(int i) const override { return sqlite3_column_int64(s_, i) != 0; }

 private:
  sqlite3_stmt* s_;
};

class SqliteConnection final : public Connection {
 public:
  SqliteConnection(const std::string& path, bool read_only) {
    int flags = SQLITE_OPEN_NOMUTEX | (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      db_ = nullptr;
      throw DbError("sqlite: cannot open " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 5000);
    sqlite3_extended_result_codes(db_, 1);
    if (!read_only) {
      if (path != ":memory:") script("PRAGMA journal_mode=WAL");
      // WAL makes NORMAL durable against application crashes, and much faster than FULL.
      script("PRAGMA synchronous=NORMAL");
    }
    script("PRAGMA foreign_keys=ON");
  }

  ~SqliteConnection() override {
    for (auto& [_, st] : cache_) sqlite3_finalize(st);
    sqlite3_close_v2(db_);
  }

  Dialect dialect() const override { return Dialect::sqlite; }

  void script(std::string_view sql) override {
    char* err = nullptr;
    std::string text = translate(sql, Dialect::sqlite, "");
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "error";
      sqlite3_free(err);
      throw DbError("sqlite: " + msg);
    }
  }

  void begin(bool write) override { exec_span(write ? "BEGIN IMMEDIATE" : "BEGIN", {}); }
  void commit() override { exec_span("COMMIT", {}); }
  void rollback() override {
    if (!sqlite3_get_autocommit(db_)) exec_span("ROLLBACK", {});
  }

  int64_t exec_span(std::string_view sql, std::span<const Value> params) override {
    auto st = prepare(sql, params);
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) fail(rc);
    return sqlite3_changes(db_);
  }

  void query_span(std::string_view sql, std::span<const Value> params, const RowFn& fn) override {
    auto st = prepare(sql, params);
    SqliteRow row(st.get());
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) fn(row);
    if (rc != SQLITE_DONE) fail(rc);
  }

  void insert_rows(std::string_view table, std::span<const std::string_view> columns,
                   std::span<const Value> values) override {
    const std::size_t width = columns.size();
    if (width == 0 || values.size() % width) throw DbError("sqlite: insert_rows: values do not fill whole rows");
    std::size_t rows = values.size() / width;
    // Statements of 256, 64, 16 and 1 rows (well under SQLite's 32,766 parameters), so four cached
    // statements cover any count (64: the analytics writer's slice).
    for (std::size_t done = 0; done < rows;) {
      std::size_t left = rows - done, n = left >= 256 ? 256 : left >= 64 ? 64 : left >= 16 ? 16 : 1;
      std::string sql = "INSERT INTO ";
      sql += table;
      sql += " (";
      for (std::size_t c = 0; c < width; ++c) (sql += c ? "," : "") += columns[c];
      sql += ") VALUES ";
      std::string one = "(";
      for (std::size_t c = 0; c < width; ++c) one += c ? ",?" : "?";
      one += ")";
      for (std::size_t r = 0; r < n; ++r) (sql += r ? "," : "") += one;
      exec_span(sql, values.subspan(done * width, n * width));
      done += n;
    }
  }

 private:
  // Resets the cached statement when the call is done (also when the row callback throws). Its bindings
  // stay (no sqlite3_clear_bindings: prepare() binds every parameter of each use; bound text is
  // SQLITE_STATIC, so nothing is held).
  struct Reset {
    void operator()(sqlite3_stmt* s) const { sqlite3_reset(s); }
  };
  using Stmt = std::unique_ptr<sqlite3_stmt, Reset>;

  Stmt prepare(std::string_view sql, std::span<const Value> params) {
    auto it = cache_.find(sql);
    sqlite3_stmt* st = nullptr;
    if (it != cache_.end()) {
      st = it->second;
    } else {
      auto text = translate(sql, Dialect::sqlite, "");
      if (sqlite3_prepare_v3(db_, text.c_str(), static_cast<int>(text.size()), SQLITE_PREPARE_PERSISTENT, &st,
                             nullptr) != SQLITE_OK)
        throw DbError(std::string("sqlite: ") + sqlite3_errmsg(db_));
      cache_.emplace(std::string(sql), st);
    }
    Stmt out(st);
    if (sqlite3_bind_parameter_count(st) != static_cast<int>(params.size()))
      throw DbError("sqlite: wrong number of parameters");
    bind(st, params);
    return out;
  }

  // The views outlive the statement's use (Value's contract) and the statement is reset before the call
  // returns, so SQLite need not copy text.
  void bind(sqlite3_stmt* st, std::span<const Value> params) {
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& v = params[i];
      int idx = static_cast<int>(i + 1), rc;
      switch (v.kind) {
        case Value::Kind::null: rc = sqlite3_bind_null(st, idx); break;
        case Value::Kind::integer: rc = sqlite3_bind_int64(st, idx, v.i); break;
        case Value::Kind::real: rc = sqlite3_bind_double(st, idx, v.d); break;
        default: rc = sqlite3_bind_text64(st, idx, v.s.data(), v.s.size(), SQLITE_STATIC, SQLITE_UTF8);
      }
      if (rc != SQLITE_OK) fail(rc);
    }
  }

  [[noreturn]] void fail(int rc) {
    bool unique = rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE;
    throw DbError(std::string("sqlite: ") + sqlite3_errmsg(db_), unique);
  }

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*, Hash, std::equal_to<>> cache_;
};

class SqliteWatcher final : public LoopWatcher {
 public:
  SqliteWatcher(std::string path, std::string poll_sql, std::function<void()> cb)
      : LoopWatcher(std::move(cb)), path_(std::move(path)), poll_sql_(std::move(poll_sql)) {
    start();
  }
  ~SqliteWatcher() override { stop(); }

 private:
  static constexpr int kPollMs = 500;

  void run() override {
    std::unique_ptr<Connection> conn;
    int64_t version = -1;
    auto next_poll = std::chrono::steady_clock::now();
    while (!stopping()) {
      wait(-1, 100);
      fire_if_due();
      if (path_.empty() || path_ == ":memory:" || std::chrono::steady_clock::now() < next_poll) continue;
      next_poll = std::chrono::steady_clock::now() + std::chrono::milliseconds(kPollMs);
      try {
        if (!conn) conn = open_sqlite(path_, true);
        int64_t v = conn->scalar(poll_sql_);
        // The first read counts as a change too: what was notified between the caller's load and this
        // read (or while the poll was failing) would otherwise be missed until the next notification.
        if (v != version) changed();
        version = v;
      } catch (const std::exception& e) {
        conn.reset();
        version = -1;
        log::warn("store watcher: sqlite poll failed", {{"error", e.what()}});
      }
    }
  }

  std::string path_, poll_sql_;
};

}  // namespace

std::unique_ptr<Connection> open_sqlite(const std::string& path, bool read_only) {
  // Before SQLite initialises: no global allocation statistics (a process-wide mutex around every malloc).
  static const int no_memstatus = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)no_memstatus;
  return std::make_unique<SqliteConnection>(path, read_only);
}

std::unique_ptr<Watcher> watch_sqlite(const std::string& path, std::string poll_sql, std::function<void()> cb) {
  return std::make_unique<SqliteWatcher>(path, std::move(poll_sql), std::move(cb));
}

}  // namespace gh::store::sql
