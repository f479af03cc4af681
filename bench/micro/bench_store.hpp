// A throwaway migrated store for the micro benchmarks: SQLite in a temporary directory (always), or a fresh
// PostgreSQL database `<name>_<pid>` on GATEHOUSE_BENCH_PG_URL (a libpq URL of a server where the user may
// create databases; bench/micro.sh provides a throwaway cluster). Deleted or dropped when destroyed.
#pragma once
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "store/db.hpp"
#include "store/store.hpp"

namespace gh::bench {

class BenchStore {
 public:
  // `backend`: "sqlite" or "postgresql"; `name`: names the temp directory or database.
  BenchStore(std::string backend, const std::string& name) : backend(std::move(backend)) {
    const std::string tag = name + "_" + std::to_string(::getpid());
    if (this->backend == "sqlite") {
      dir_ = std::filesystem::temp_directory_path() / tag;
      std::filesystem::create_directories(dir_);
      url = "sqlite://" + file();
    } else {
      const char* admin = std::getenv("GATEHOUSE_BENCH_PG_URL");
      if (!admin || !*admin) throw std::runtime_error("GATEHOUSE_BENCH_PG_URL is not set");
      pg_admin_url_ = admin;
      pg_database_ = tag;
      auto c = store::sql::open_postgres(pg_admin_url_, "");
      c->script("DROP DATABASE IF EXISTS " + pg_database_);
      c->script("CREATE DATABASE " + pg_database_);
      url = with_database(pg_admin_url_, pg_database_);
    }
    store = store::Store::open(url);
    store->migrate();
  }
  ~BenchStore() {
    store.reset();
    try {
      if (!dir_.empty()) std::filesystem::remove_all(dir_);
      if (!pg_database_.empty())
        store::sql::open_postgres(pg_admin_url_, "")->script("DROP DATABASE IF EXISTS " + pg_database_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[micro_bench] cleanup of the %s store failed: %s\n", backend.c_str(), e.what());
    }
  }
  BenchStore(const BenchStore&) = delete;
  BenchStore& operator=(const BenchStore&) = delete;

  // A direct connection to the store's tables (`@` names them), e.g. for seeding rows.
  std::unique_ptr<store::sql::Connection> connect() const {
    return backend == "sqlite" ? store::sql::open_sqlite(file()) : store::sql::open_postgres(url, "mcp_proxy.");
  }
  // SQLite: the temp directory (other files may go there); empty for PostgreSQL.
  const std::filesystem::path& dir() const { return dir_; }

  const std::string backend;
  std::string url;
  std::unique_ptr<store::Store> store;

 private:
  std::string file() const { return (dir_ / "gatehouse.db").string(); }
  // The libpq URL with its database name replaced.
  static std::string with_database(const std::string& url, const std::string& db) {
    auto scheme = url.find("://");
    if (scheme == std::string::npos) throw std::runtime_error("GATEHOUSE_BENCH_PG_URL is not a postgresql:// URL");
    auto slash = url.find('/', scheme + 3);
    auto query = url.find('?', scheme + 3);
    std::string head = url.substr(0, std::min(slash, query));
    std::string tail = query == std::string::npos ? "" : url.substr(query);
    return head + "/" + db + tail;
  }

  std::filesystem::path dir_;
  std::string pg_admin_url_, pg_database_;
};

}  // namespace gh::bench
