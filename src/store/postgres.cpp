// PostgreSQL backend of the SQL layer (libpq): text-format parameters through PQexecParams, one reconnect
// when the connection is found broken outside a transaction, and the LISTEN watcher.
#include <libpq-fe.h>

#include <charconv>
#include <chrono>
#include <optional>
#include <unordered_map>

#include "core/log.hpp"
#include "store/db.hpp"
#include "store/watch_loop.hpp"

namespace gh::store::sql {
namespace {

// libpq prints NOTICEs (e.g. "schema … already exists, skipping") to stderr by default; we log JSON only.
void ignore_notice(void*, const char*) {}

PGconn* connect_pg(const std::string& url, std::string* error) {
  // A server that stops answering (its host gone, a network partition, a failover that leaves the old address
  // silent) must not hold a connection for the kernel's two hours: a connection attempt gives up after 10 s,
  // an idle connection is probed after 30 s, and one whose sent data goes unacknowledged for 30 s fails. The
  // URL's own settings come last and win (libpq keeps the last value of a repeated key word).
  static const char* const keys[] = {"connect_timeout", "keepalives",       "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", "tcp_user_timeout", "dbname",          nullptr};
  const char* values[] = {"10", "1", "30", "10", "3", "30000", url.c_str(), nullptr};
  PGconn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    std::string msg = c ? PQerrorMessage(c) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    *error = msg;
    PQfinish(c);
    return nullptr;
  }
  PQsetNoticeProcessor(c, ignore_notice, nullptr);
  return c;
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

class PgRow final : public Row {
 public:
  PgRow(PGresult* r, int row) : r_(r), row_(row) {}
  int columns() const override { return PQnfields(r_); }
  bool is_null(int i) const override { return PQgetisnull(r_, row_, i); }
  std::string_view text(int i) const override {
    return {PQgetvalue(r_, row_, i), static_cast<size_t>(PQgetlength(r_, row_, i))};
  }
  int64_t int64(int i) const override {
    auto t = text(i);
    if (t == "t") return 1;  // booleans come back as t/f
    int64_t v = 0;
    std::from_chars(t.data(), t.data() + t.size(), v);
    return v;
  }
  bool boolean(int i) const override {
    auto t = text(i);
    return t == "t" || t == "true" || (!t.empty() && t != "f" && t != "false" && t != "0");
  }
  PGresult* r_;
  int row_;
};

class PgConnection final : public Connection {
 public:
  PgConnection(std::string url, std::string prefix, bool read_only)
      : url_(std::move(url)), prefix_(std::move(prefix)), read_only_(read_only) {
    std::string err;
    conn_ = connect_pg(url_, &err);
    if (!conn_) throw DbError("postgresql: cannot connect to " + redact_url(url_) + ": " + err);
    on_connected();
  }
  ~PgConnection() override { PQfinish(conn_); }

  Dialect dialect() const override { return Dialect::postgresql; }

  void script(std::string_view sql) override {
    std::string text = translate(sql, Dialect::postgresql, prefix_);
    run([&] { return Result(PQexec(conn_, text.c_str())); });
  }
  void begin(bool write) override {
    // Reads get one snapshot for all their statements (a consistent dump).
    exec_span(write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {});
    in_tx_ = true;
  }
  void commit() override {
    // Still "in a transaction" while COMMIT runs: a COMMIT must never be retried on a fresh connection,
    // where it would succeed vacuously and hide the lost transaction.
    try {
      exec_span("COMMIT", {});
    } catch (...) {
      in_tx_ = false;
      throw;
    }
    in_tx_ = false;
  }
  void rollback() override {
    in_tx_ = false;
    if (PQstatus(conn_) == CONNECTION_OK) exec_span("ROLLBACK", {});
  }

  int64_t exec_span(std::string_view sql, std::span<const Value> params) override {
    auto r = execute(sql, params);
    const char* n = PQcmdTuples(r.get());
    int64_t v = 0;
    std::from_chars(n, n + std::char_traits<char>::length(n), v);
    return v;
  }

  void query_span(std::string_view sql, std::span<const Value> params, const RowFn& fn) override {
    auto r = execute(sql, params);
    int rows = PQntuples(r.get());
    PgRow row(r.get(), 0);
    for (int i = 0; i < rows; ++i) {
      row.row_ = i;
      fn(row);
    }
  }

 private:
  void on_connected() {
    if (read_only_) {
      Result r(PQexec(conn_, "SET default_transaction_read_only = on"));
      (void)r;
    }
    // A statement waits for a lock at most 3 s and runs at most 10 s: one row lock held by someone else, or a
    // table locked by VACUUM FULL/ALTER, must not hold the store — every admin call, session resume and
    // directory reload behind it — without end (the connections that read or write many rows, analytics and
    // reports, and migrations set longer limits for themselves). Set with SET, not a startup `options`
    // (PgBouncer refuses that parameter); a DATABASE_URL that names either setting keeps its own.
    for (auto [name, sql] : {std::pair{"lock_timeout", "SET lock_timeout = 3000"},
                             std::pair{"statement_timeout", "SET statement_timeout = 60000"}})
      if (!names_setting(name)) {
        Result r(PQexec(conn_, sql));
        (void)r;
      }
    if (!setup_.empty()) {
      Result r(PQexec(conn_, setup_.c_str()));
      (void)r;
    }
  }
  // Whether the URL sets this itself: "lock_timeout" as a word ("-c lock_timeout=", "-c%20lock_timeout%3D"),
  // not inside "deadlock_timeout".
  bool names_setting(std::string_view key) const {
    for (auto at = url_.find(key); at != std::string::npos; at = url_.find(key, at + 1)) {
      unsigned char before = at ? static_cast<unsigned char>(url_[at - 1]) : ' ';
      if ((!std::isalnum(before) && before != '_') || (at >= 3 && url_.compare(at - 3, 3, "%20") == 0)) return true;
    }
    return false;
  }

 public:
  void session_setup(std::string sql) override {
    setup_ = std::move(sql);
    script(setup_);
  }

 private:

  Result execute(std::string_view sql, std::span<const Value> params) {
    auto it = translated_.find(sql);
    if (it == translated_.end())
      it = translated_.emplace(std::string(sql), translate(sql, Dialect::postgresql, prefix_)).first;
    const std::string& text = it->second;
    // Text format, NUL-terminated values (libpq reads text parameters up to the NUL).
    std::vector<std::string> owned(params.size());
    std::vector<const char*> values(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& v = params[i];
      if (v.kind == Value::Kind::null) continue;
      if (v.kind == Value::Kind::text) {
        // libpq would end the value at the NUL: "a\0b" stored as "a", "admin@x\0y" found as admin@x.
        if (v.s.find('\0') != std::string_view::npos) throw StoreError("a text value holds a NUL character");
        owned[i] = v.s;
      } else {
        append_number(owned[i], v);
      }
      values[i] = owned[i].c_str();
    }
    return run([&] {
      return Result(PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                                 nullptr, nullptr, 0));
    });
  }

  static void append_number(std::string& out, const Value& v) {
    char buf[32];
    auto r = v.kind == Value::Kind::real ? std::to_chars(buf, buf + sizeof buf, v.d) : std::to_chars(buf, buf + sizeof buf, v.i);
    out.append(buf, r.ptr);
  }

  // COPY's text format: tab between fields, newline after a row, \N for NULL, backslash escapes.
  static void append_copy_text(std::string& out, const Value& v) {
    switch (v.kind) {
      case Value::Kind::null: out += "\\N"; return;
      case Value::Kind::text: break;
      default: append_number(out, v); return;
    }
    for (char c : v.s) {
      switch (c) {
        case '\\': out += "\\\\"; break;
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        default: out += c;
      }
    }
  }

 public:
  void insert_rows(std::string_view table, std::span<const std::string_view> columns,
                   std::span<const Value> values) override {
    const std::size_t width = columns.size();
    if (width == 0 || values.size() % width) throw DbError("postgresql: insert_rows: values do not fill whole rows");
    if (values.empty()) return;
    std::string sql = "COPY " + translate(table, Dialect::postgresql, prefix_) + " (";
    for (std::size_t c = 0; c < width; ++c) (sql += c ? "," : "") += columns[c];
    sql += ") FROM STDIN";
    std::string data;
    data.reserve(values.size() * 16);
    for (std::size_t i = 0; i < values.size(); ++i) {
      append_copy_text(data, values[i]);
      data += (i + 1) % width ? '\t' : '\n';
    }
    if (PQstatus(conn_) != CONNECTION_OK && !in_tx_) reconnect();
    {
      Result r(PQexec(conn_, sql.c_str()));
      if (!r || PQresultStatus(r.get()) != PGRES_COPY_IN) fail(r.get());
    }
    bool sent = PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) == 1;
    // A failed send ends the COPY with an error message, so the server discards the rows.
    PQputCopyEnd(conn_, sent ? nullptr : "gatehouse: sending rows failed");
    Result last(nullptr);
    while (PGresult* r = PQgetResult(conn_)) last = Result(r);
    if (!ok(last.get())) fail(last.get());
  }

 private:
  template <class F>
  Result run(F&& f) {
    // A connection the server dropped (restart, idle timeout) is reopened once, but never in the middle of a
    // transaction, whose earlier statements are gone with it.
    if (PQstatus(conn_) != CONNECTION_OK && !in_tx_) reconnect();
    Result r = f();
    if (ok(r.get())) return r;
    if (PQstatus(conn_) != CONNECTION_OK && !in_tx_) {
      reconnect();
      r = f();
      if (ok(r.get())) return r;
    }
    fail(r.get());
  }

  static bool ok(PGresult* r) {
    if (!r) return false;
    auto s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
  }

  void reconnect() {
    log::warn("store: postgresql connection lost, reconnecting", {{"url", redact_url(url_)}});
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK) throw DbError("postgresql: cannot reconnect to " + redact_url(url_));
    PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
    on_connected();
  }

  [[noreturn]] void fail(PGresult* r) {
    // Only the primary message: DETAIL lines quote values ("Key (email)=(…) already exists").
    const char* primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string msg = primary ? primary : PQerrorMessage(conn_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    std::string_view code = state ? state : "";
    bool unique = code == "23505";
    bool refused = code.starts_with("22") || code.starts_with("23") || code == "P0001";  // data, constraint, RAISE
    throw DbError("postgresql: " + msg + (state ? " (" + std::string(state) + ")" : ""), unique, refused);
  }

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::string url_, prefix_;
  bool read_only_;
  std::string setup_;  // session_setup()'s, run again after a reconnection
  PGconn* conn_ = nullptr;
  bool in_tx_ = false;
  std::unordered_map<std::string, std::string, Hash, std::equal_to<>> translated_;
};

class PgWatcher final : public LoopWatcher {
 public:
  PgWatcher(std::string url, std::string channel, std::string version_sql, std::function<void()> cb)
      : LoopWatcher(std::move(cb)), url_(std::move(url)), channel_(std::move(channel)), version_sql_(std::move(version_sql)) {
    start();
  }
  ~PgWatcher() override { stop(); }

 private:
  static constexpr auto kPollEvery = std::chrono::seconds(5), kAnswerWithin = std::chrono::seconds(10);

  void run() override {
    using Clock = std::chrono::steady_clock;
    PGconn* c = nullptr;
    int backoff_ms = 100;
    // Changes may have gone unseen: before the first LISTEN (a write between the directory's first load and
    // this thread's connection, which can take a while on a busy machine), or while a connection was lost.
    bool missed = true, listened = false;
    // The version poll: a query in flight (sent at `asked`), the next one due at `next_poll`, the last answer.
    bool asking = false;
    Clock::time_point asked{}, next_poll{};
    std::optional<std::string> version, answer;
    auto lose = [&](std::string_view why) {
      log::warn("store watcher: connection lost", {{"url", redact_url(url_)}, {"error", why}});
      PQfinish(c);
      c = nullptr;
      missed = true;
      asking = false;
      answer.reset();
    };
    while (!stopping()) {
      if (!c) {
        std::string err;
        c = connect_pg(url_, &err);
        if (c) {
          Result r(PQexec(c, ("LISTEN " + channel_).c_str()));
          if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
            err = PQerrorMessage(c);
            PQfinish(c);
            c = nullptr;
          }
        }
        if (!c) {
          log::warn("store watcher: cannot listen, retrying",
                    {{"url", redact_url(url_)}, {"error", err}, {"retry_ms", backoff_ms}});
          missed = true;
          sleep_for(backoff_ms);
          backoff_ms = std::min(backoff_ms * 2, 5000);
          continue;
        }
        backoff_ms = 100;
        if (missed) {
          if (listened) log::info("store watcher: listening again", {{"url", redact_url(url_)}});
          changed();
          missed = false;
        }
        listened = true;
        next_poll = Clock::now() + kPollEvery;
      }
      auto now = Clock::now();
      if (!asking && now >= next_poll) {
        if (!PQsendQuery(c, version_sql_.c_str())) {
          lose(PQerrorMessage(c));
          continue;
        }
        asking = true;
        asked = now;
      }
      // A short timeout keeps stop prompt even if the eventfd wake were missed, and drives the debounce.
      if (wait(PQsocket(c), 250)) {
        if (!PQconsumeInput(c)) {
          lose(PQerrorMessage(c));
          continue;
        }
        while (PGnotify* n = PQnotifies(c)) {
          changed();
          PQfreemem(n);
        }
      }
      // The poll's results, as far as they have arrived (PQgetResult would block for the rest); its end is
      // the null result after them.
      bool answered = false;
      while (asking && !PQisBusy(c)) {
        PGresult* r = PQgetResult(c);
        if (!r) {
          answered = true;
          break;
        }
        if (PQresultStatus(r) == PGRES_TUPLES_OK) answer = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "";
        PQclear(r);
      }
      if (answered) {
        asking = false;
        next_poll = Clock::now() + kPollEvery;
        if (answer && version && *answer != *version) changed();  // a change whose notification never came
        if (answer) version = std::move(answer);
        answer.reset();
      } else if (asking && Clock::now() - asked > kAnswerWithin) {
        lose("no answer to the version poll within 10 s");
        continue;
      }
      while (PGnotify* n = PQnotifies(c)) {  // (ones read along with the poll's results)
        changed();
        PQfreemem(n);
      }
      fire_if_due();
    }
    PQfinish(c);
  }

  std::string url_, channel_, version_sql_;
};

}  // namespace

std::unique_ptr<Connection> open_postgres(const std::string& url, std::string schema_prefix, bool read_only) {
  return std::make_unique<PgConnection>(url, std::move(schema_prefix), read_only);
}

std::unique_ptr<Watcher> watch_postgres(const std::string& url, std::string channel, std::string version_sql,
                                        std::function<void()> cb) {
  return std::make_unique<PgWatcher>(url, std::move(channel), std::move(version_sql), std::move(cb));
}

}  // namespace gh::store::sql
