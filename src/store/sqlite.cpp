// SQLite backend of the SQL layer: one connection, prepared statements cached per SQL text.
#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/log.hpp"
#include "store/db.hpp"
#include "store/watch_loop.hpp"

namespace gh::store::sql {
namespace {

// The "gatehouse" VFS: SQLite's default one with every file wrapped, everything forwarded, with two additions.
// 1. Pauses: reads and writes made while a PauseBetweenWrites is alive on the thread call its function every
//    kOpsPerPause of them.
// 2. A WAL's appends in one system call: SQLite writes each frame as two `pwrite`s (its 24-byte header, then
//    the page), ~17–50 for a 512-row analytics batch, and a system call is dear in a VM (the writer's CPU was
//    mostly kernel time; docs/performance.md, session 18). Writes that continue the last are kept in the WAL
//    file's buffer and written in one call when the commit's last frame is complete — that frame's header
//    carries the database size, zero in every other — so the commit's frames are in the file, or the write
//    that ends the commit fails, before SQLite publishes them in the shared index, as without the buffer.
//    A write elsewhere in the file, a full buffer, a sync and the size write it first (their error is
//    SQLite's); a read inside it is served from it. Bytes that cannot be written stay (nothing published
//    depends on them: SQLite has been told of the failure or has not committed them), except past a
//    truncation. Close and the database file's shared-memory barrier and locks write what is held too, as a
//    safety net whose failure is not theirs.
// The real file's state lives right after the wrapper.
constexpr int kOpsPerPause = 8;
constexpr std::size_t kWalBuffer = 0x1ffff;  // the unix VFS writes at most 17 bits of length in one call
constexpr int kWalFrameHeader = 24;  // page number, database size after a commit (else 0), salts, checksums
thread_local const std::function<void()>* t_pause = nullptr;
thread_local int t_ops = 0;

struct WalBuffer {
  std::string bytes;
  sqlite3_int64 at = 0;        // the file offset of bytes[0]
  bool commit_header = false;  // the last write was a commit frame's header: its page ends the commit
  sqlite3_int64 end() const { return at + static_cast<sqlite3_int64>(bytes.size()); }
};

struct PausingFile {
  sqlite3_file base;
  WalBuffer* wal_buffer;  // a WAL file's (else null)
  PausingFile* wal;       // a database file's WAL while it is open (else null)
  PausingFile* db;        // a WAL file's database file (else null)
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};
static_assert(sizeof(PausingFile) % 8 == 0);  // the real file stays 8-aligned, as SQLite allocates it

PausingFile* wrapper(sqlite3_file* f) { return reinterpret_cast<PausingFile*>(f); }
sqlite3_file* real(sqlite3_file* f) { return wrapper(f)->real(); }
const sqlite3_io_methods& io(sqlite3_file* f) { return *real(f)->pMethods; }

void count_and_pause() {
  if (!t_pause || ++t_ops % kOpsPerPause) return;
  auto pause = std::exchange(t_pause, nullptr);  // a pause that reads or writes (a test's probe) does not recurse
  try {
    (*pause)();
  } catch (...) {
  }
  t_pause = pause;
}

// Writes what a WAL file holds; SQLITE_OK when it holds nothing (or is no WAL). On an error the bytes stay.
int flush(PausingFile* f) {
  WalBuffer* b = f ? f->wal_buffer : nullptr;
  if (!b || b->bytes.empty()) return SQLITE_OK;
  count_and_pause();
  int rc = f->real()->pMethods->xWrite(f->real(), b->bytes.data(), static_cast<int>(b->bytes.size()), b->at);
  if (rc == SQLITE_OK) b->bytes.clear();
  b->commit_header = false;
  return rc;
}
int flush(sqlite3_file* f) { return flush(wrapper(f)); }

int pf_close(sqlite3_file* f) {
  auto* pf = wrapper(f);
  (void)flush(pf);  // nothing committed is left in it: the commit wrote its frames
  if (pf->db && pf->db->wal == pf) pf->db->wal = nullptr;
  if (pf->wal) pf->wal->db = nullptr;
  delete std::exchange(pf->wal_buffer, nullptr);
  return io(f).xClose(real(f));
}
int pf_read(sqlite3_file* f, void* out, int n, sqlite3_int64 o) {
  if (WalBuffer* b = wrapper(f)->wal_buffer; b && !b->bytes.empty() && o < b->end() && o + n > b->at) {
    if (o >= b->at && o + n <= b->end()) {  // a frame of the open transaction read back
      std::memcpy(out, b->bytes.data() + (o - b->at), static_cast<std::size_t>(n));
      return SQLITE_OK;
    }
    if (int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  count_and_pause();
  return io(f).xRead(real(f), out, n, o);
}
int pf_write(sqlite3_file* f, const void* data, int n, sqlite3_int64 o) {
  WalBuffer* b = wrapper(f)->wal_buffer;
  if (!b) {
    count_and_pause();
    return io(f).xWrite(real(f), data, n, o);
  }
  if (!b->bytes.empty() && (o != b->end() || b->bytes.size() + static_cast<std::size_t>(n) > kWalBuffer)) {
    if (int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  bool ends_commit = b->commit_header;
  if (b->bytes.empty()) b->at = o;
  b->bytes.append(static_cast<const char*>(data), static_cast<std::size_t>(n));
  const auto* p = static_cast<const unsigned char*>(data);
  b->commit_header = n == kWalFrameHeader && (p[4] | p[5] | p[6] | p[7]) != 0;
  return ends_commit ? flush(f) : SQLITE_OK;
}
int pf_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (WalBuffer* b = wrapper(f)->wal_buffer; b && size <= b->at) b->bytes.clear();  // cut off unwritten
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f).xTruncate(real(f), size);
}
int pf_sync(sqlite3_file* f, int flags) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f).xSync(real(f), flags);
}
int pf_file_size(sqlite3_file* f, sqlite3_int64* size) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f).xFileSize(real(f), size);
}
int pf_lock(sqlite3_file* f, int l) { return io(f).xLock(real(f), l); }
int pf_unlock(sqlite3_file* f, int l) { return io(f).xUnlock(real(f), l); }
int pf_check_reserved(sqlite3_file* f, int* out) { return io(f).xCheckReservedLock(real(f), out); }
int pf_file_control(sqlite3_file* f, int op, void* arg) { return io(f).xFileControl(real(f), op, arg); }
int pf_sector_size(sqlite3_file* f) { return io(f).xSectorSize(real(f)); }
int pf_device(sqlite3_file* f) { return io(f).xDeviceCharacteristics(real(f)); }
// The shared-memory methods are the database file's.
int pf_shm_map(sqlite3_file* f, int pg, int sz, int extend, void volatile** p) {
  return io(f).xShmMap(real(f), pg, sz, extend, p);
}
int pf_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  (void)flush(wrapper(f)->wal);
  return io(f).xShmLock(real(f), offset, n, flags);
}
void pf_shm_barrier(sqlite3_file* f) {
  (void)flush(wrapper(f)->wal);
  io(f).xShmBarrier(real(f));
}
int pf_shm_unmap(sqlite3_file* f, int del) {
  (void)flush(wrapper(f)->wal);
  return io(f).xShmUnmap(real(f), del);
}
int pf_fetch(sqlite3_file* f, sqlite3_int64 o, int n, void** p) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return io(f).xFetch(real(f), o, n, p);
}
int pf_unfetch(sqlite3_file* f, sqlite3_int64 o, void* p) { return io(f).xUnfetch(real(f), o, p); }

// One table per version of the real file's methods (SQLite looks at iVersion before using the later ones).
constexpr sqlite3_io_methods pausing_methods(int version) {
  return {version,        pf_close,     pf_read,       pf_write,          pf_truncate,
          pf_sync,        pf_file_size, pf_lock,       pf_unlock,         pf_check_reserved,
          pf_file_control, pf_sector_size, pf_device,  pf_shm_map,        pf_shm_lock,
          pf_shm_barrier, pf_shm_unmap, pf_fetch,      pf_unfetch};
}
constexpr sqlite3_io_methods kPausingMethods[] = {pausing_methods(1), pausing_methods(2), pausing_methods(3)};

sqlite3_vfs* g_default_vfs = nullptr;

int pf_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* pf = reinterpret_cast<PausingFile*>(f);
  pf->base.pMethods = nullptr;
  pf->wal_buffer = nullptr;
  pf->wal = pf->db = nullptr;
  pf->real()->pMethods = nullptr;
  int rc = g_default_vfs->xOpen(g_default_vfs, name, pf->real(), flags, out_flags);
  // Set even when the open failed but left methods behind: SQLite then calls xClose, forwarded.
  if (auto* m = pf->real()->pMethods) pf->base.pMethods = &kPausingMethods[std::clamp(m->iVersion, 1, 3) - 1];
  if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && name) {
    // Its database file is one of ours too (same connection, same VFS).
    if (auto* db = wrapper(sqlite3_database_file_object(name)); db && db->base.pMethods) {
      pf->wal_buffer = new WalBuffer;
      pf->db = db;
      db->wal = pf;
    }
  }
  return rc;
}

// Registered once (not as the default); its other methods are the default VFS's own, called with the same
// pAppData, so they behave as they would there.
const char* pausing_vfs() {
  static sqlite3_vfs vfs = [] {
    g_default_vfs = sqlite3_vfs_find(nullptr);
    if (!g_default_vfs) throw DbError("sqlite: no default VFS");
    sqlite3_vfs v = *g_default_vfs;
    v.szOsFile = static_cast<int>(sizeof(PausingFile)) + g_default_vfs->szOsFile;
    v.zName = "gatehouse";
    v.pNext = nullptr;
    v.xOpen = pf_open;
    return v;
  }();
  static const int registered = sqlite3_vfs_register(&vfs, 0);
  if (registered != SQLITE_OK) throw DbError(std::string("sqlite: cannot register VFS: ") + sqlite3_errstr(registered));
  return vfs.zName;
}

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
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, pausing_vfs());
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
    int primary = rc & 0xff;
    bool refused = primary == SQLITE_CONSTRAINT || primary == SQLITE_MISMATCH || primary == SQLITE_TOOBIG;
    throw DbError(std::string("sqlite: ") + sqlite3_errmsg(db_), unique, refused);
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

PauseBetweenWrites::PauseBetweenWrites(const std::function<void()>& pause) {
  t_pause = &pause;
  t_ops = 0;
}

PauseBetweenWrites::~PauseBetweenWrites() { t_pause = nullptr; }

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
