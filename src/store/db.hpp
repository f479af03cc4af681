// A thin SQL layer over the C APIs of SQLite and libpq, so the store is written once.
// SQL text is written with `?` placeholders and `@` before table names; each backend translates:
// PostgreSQL turns `?` into `$1…$n` and `@` into its schema prefix (e.g. "mcp_proxy."), SQLite drops `@`.
// Values always travel as bound parameters, never in the SQL text. Neither C header leaks out of here.
// A Connection is not thread-safe: its owner serialises calls (one mutex per connection).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.hpp"

namespace gh::store::sql {

enum class Dialect { sqlite, postgresql };

// A bound parameter. Views must outlive the call that uses them.
struct Value {
  enum class Kind { null, integer, real, text } kind = Kind::null;
  int64_t i = 0;
  double d = 0;
  std::string_view s;

  Value(std::nullptr_t) {}
  Value(bool b) : kind(Kind::integer), i(b ? 1 : 0) {}
  Value(int v) : kind(Kind::integer), i(v) {}
  Value(long v) : kind(Kind::integer), i(v) {}
  Value(long long v) : kind(Kind::integer), i(v) {}
  Value(double v) : kind(Kind::real), d(v) {}
  Value(std::string_view v) : kind(Kind::text), s(v) {}
  Value(const std::string& v) : kind(Kind::text), s(v) {}
  Value(const char* v) : kind(Kind::text), s(v) {}
};

// 0 means "unset" in the store's structs and NULL in the tables.
inline Value time_or_null(int64_t t) { return t == 0 ? Value(nullptr) : Value(t); }

// One result row, valid only inside the callback that receives it.
class Row {
 public:
  virtual ~Row() = default;
  virtual int columns() const = 0;
  virtual bool is_null(int i) const = 0;
  virtual std::string_view text(int i) const = 0;  // "" for NULL
  virtual int64_t int64(int i) const = 0;          // 0 for NULL
  virtual bool boolean(int i) const = 0;           // false for NULL
  std::string str(int i) const { return std::string(text(i)); }
};
using RowFn = std::function<void(const Row&)>;

// Thrown for database failures; the message carries the server's primary message, never values.
struct DbError : StoreError {
  DbError(const std::string& what, bool unique_violation = false, bool values_refused = false)
      : StoreError(what), unique_violation(unique_violation), values_refused(values_refused || unique_violation) {}
  bool unique_violation;
  // The statement's values were refused (a constraint, a trigger, data of the wrong kind or size): sending them
  // again fails again. Not so a database that is read-only, full, locked or gone.
  bool values_refused;
};

class Connection {
 public:
  virtual ~Connection() = default;
  virtual Dialect dialect() const = 0;

  // One statement; returns the number of rows changed.
  int64_t exec(std::string_view sql, std::initializer_list<Value> params = {}) {
    return exec_span(sql, std::span<const Value>(params.begin(), params.size()));
  }
  int64_t exec(std::string_view sql, const std::vector<Value>& params) { return exec_span(sql, params); }
  // One statement; calls `fn` for each row.
  void query(std::string_view sql, std::initializer_list<Value> params, const RowFn& fn) {
    query_span(sql, std::span<const Value>(params.begin(), params.size()), fn);
  }
  void query(std::string_view sql, const std::vector<Value>& params, const RowFn& fn) { query_span(sql, params, fn); }
  // First column of the first row as an integer (0 if no row).
  int64_t scalar(std::string_view sql, std::initializer_list<Value> params = {});
  int64_t scalar(std::string_view sql, const std::vector<Value>& params);
  // Several statements without parameters (DDL in migrations); `@` is translated, `?` must not appear.
  virtual void script(std::string_view sql) = 0;
  // Settings of this connection (SET …): run now and again on every reconnection (PostgreSQL; SQLite runs
  // them once, its connection being the file's).
  virtual void session_setup(std::string sql) { script(sql); }

  // Transactions. `write`: SQLite takes its write lock up front (BEGIN IMMEDIATE) so two writers never
  // deadlock upgrading a read lock. Not `write`: reads only, from one snapshot (PostgreSQL: REPEATABLE READ
  // READ ONLY).
  virtual void begin(bool write) = 0;
  virtual void commit() = 0;
  virtual void rollback() = 0;

  // Appends rows to `table` (`@` prefix translated): `values` holds the rows one after the other, each with
  // one Value per column. The fastest path each backend has for many rows: SQLite multi-row INSERTs from a
  // few cached statements, PostgreSQL COPY … FROM STDIN. Run it inside a transaction to make it atomic.
  virtual void insert_rows(std::string_view table, std::span<const std::string_view> columns,
                           std::span<const Value> values) = 0;

  virtual int64_t exec_span(std::string_view sql, std::span<const Value> params) = 0;
  virtual void query_span(std::string_view sql, std::span<const Value> params, const RowFn& fn) = 0;

 private:
  friend class Transaction;
  int tx_depth_ = 0;  // Transactions open on this connection
};

// Rolls back unless committed. Inside another on the same connection it is a savepoint: its rollback undoes
// only its own statements, its commit leaves them to the outer transaction's.
class Transaction {
 public:
  Transaction(Connection& c, bool write) : c_(c) {
    if (c_.tx_depth_ == 0) c_.begin(write);
    else c_.exec("SAVEPOINT gh_nested");
    ++c_.tx_depth_;
  }
  ~Transaction() {
    if (done_) return;
    --c_.tx_depth_;
    try {
      if (c_.tx_depth_ == 0) c_.rollback();
      else c_.exec("ROLLBACK TO SAVEPOINT gh_nested"), c_.exec("RELEASE SAVEPOINT gh_nested");
    } catch (...) {}
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    if (c_.tx_depth_ == 1) c_.commit();  // when it throws, still open: the destructor rolls it back
    else c_.exec("RELEASE SAVEPOINT gh_nested");
    --c_.tx_depth_;
    done_ = true;
  }

 private:
  Connection& c_;
  bool done_ = false;
};

// SQLite: `path` is a file (its directory must exist) or ":memory:". Sets WAL (files), busy_timeout 5000,
// foreign_keys on. `read_only` opens without creating or writing.
std::unique_ptr<Connection> open_sqlite(const std::string& path, bool read_only = false);
// While one is alive on this thread, SQLite connections opened here call `pause` after every 8 reads or
// writes of their files: a checkpoint reads and writes a page per call, so it gives its core away as the
// analytics rows' slices do (docs/performance.md, session 14). A commit's WAL frames are one write of up to
// 128 KB (the VFS holds them back until the commit's last frame; session 18). Not nested; PostgreSQL: no
// effect.
class PauseBetweenWrites {
 public:
  explicit PauseBetweenWrites(const std::function<void()>& pause);
  ~PauseBetweenWrites();
  PauseBetweenWrites(const PauseBetweenWrites&) = delete;
  PauseBetweenWrites& operator=(const PauseBetweenWrites&) = delete;
};
// PostgreSQL: `url` is a libpq connection URI; `schema_prefix` replaces `@` (e.g. "mcp_proxy.").
// Reconnects once when the connection is found broken outside a transaction.
std::unique_ptr<Connection> open_postgres(const std::string& url, std::string schema_prefix, bool read_only = false);

// The URL with any password replaced by "***", for messages and logs.
std::string redact_url(std::string_view url);

// Translates `?`/`@` as described above (exposed for tests).
std::string translate(std::string_view sql, Dialect d, std::string_view schema_prefix);

// A thread that calls `cb` after change notifications, at most once per ~50 ms burst, never holding a lock
// of the store. Destroying it stops the thread.
class Watcher {
 public:
  virtual ~Watcher() = default;
  // Wakes the watcher from this process (SQLite's in-process notification).
  virtual void poke() = 0;
};
// LISTEN on channel `channel` over its own connection; reconnects with backoff and then calls cb once.
// LISTENs on `channel`, and every few seconds runs `version_sql` (one value): a change of it is a change
// whose notification was missed, and no answer within 10 s a connection lost (made again, counted as a change).
std::unique_ptr<Watcher> watch_postgres(const std::string& url, std::string channel, std::string version_sql,
                                        std::function<void()> cb);
// Pokes, plus every ~500 ms (when `path` is a file) a poll on its own connection of `poll_sql`, a query whose
// first value changes when other processes notify (0 when it has no row).
std::unique_ptr<Watcher> watch_sqlite(const std::string& path, std::string poll_sql, std::function<void()> cb);

}  // namespace gh::store::sql
