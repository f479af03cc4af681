// Micro benchmarks of the analytics writer's store side: Store::insert_analytics with batches of 5,000 rows
// (SQLite: transactions of 512 rows, inserted in slices of 64 as the writer does but without its pauses,
// by multi-row INSERTs from cached statements; PostgreSQL: transactions of 4,096 rows, COPY), into SQLite
// and PostgreSQL. Reports rows/s (items_per_second). See bench/README.md.
//
// Each backend gets an empty, migrated store of its own, created on first use outside any timing (the
// approach of identity_bench.cpp):
//   SQLite      always, a file in a temporary directory, deleted at exit (the gateway's default store)
//   PostgreSQL  only when GATEHOUSE_BENCH_PG_URL is set (a libpq URL of a server where the user may create
//               databases): a fresh database gatehouse_analytics_bench_<pid>, dropped at exit.
// The table grows during the run (as it does in a gateway: rows are only deleted by the retention purge), so
// later batches pay for a bigger primary key and timestamp index; the row count reached is reported.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include "bench_store.hpp"
#include "store/store.hpp"

namespace {

namespace fs = std::filesystem;
using namespace gh;

constexpr int kBatch = 5'000;  // AnalyticsWriter's batch (observability/analytics.hpp)

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An empty migrated store per backend, made on first use (outside any timing).
bench::BenchStore& analytics_fixture(const std::string& backend) {
  if (backend == "sqlite") {
    static bench::BenchStore f("sqlite", "gatehouse_analytics_bench");
    return f;
  }
  static bench::BenchStore f("postgresql", "gatehouse_analytics_bench");
  return f;
}

// Rows like the router records for MCP traffic (router.cpp): mostly tools/call POSTs on /mcp/<server>, a few
// other routes and statuses, 200 users, a handful of user agents and servers, request ids "<prefix>-<n>".
store::AnalyticsBatch make_rows(int n, uint64_t& seq) {
  static const char* const kAgents[] = {
      "claude-code/2.1.3", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
      "python-httpx/0.28.1", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "open-webui/0.6.5"};
  static const char* const kServers[] = {"fast", "everything", "github", "jira", "postgres-ro", "search"};
  static const char* const kTools[] = {"echo", "search_issues", "get_file_contents", "query", "create_ticket", "fetch"};
  std::mt19937_64 rng(seq * 0x9E3779B97F4A7C15ull + 1);
  store::AnalyticsBatch rows;
  const int64_t t = now_s();
  for (int row = 0; row < n; ++row) {
    store::AnalyticsRow r;  // views of b, ip, id and endpoint, which live until rows.add
    uint64_t x = rng(), k = seq++;
    char b[64], ip[32], id[64];
    std::string endpoint;
    r.timestamp = t;
    std::snprintf(b, sizeof b, "user%06d@example.com", static_cast<int>(x % 200));
    r.user_email = b;
    int kind = static_cast<int>((x >> 8) % 100);
    const char* server = kServers[(x >> 16) % 6];
    if (kind < 90) {  // MCP tools/call
      r.method = "POST";
      endpoint = std::string("/mcp/") + server;
      r.endpoint = endpoint;
      r.server = server;
      r.tool = kTools[(x >> 24) % 6];
      r.status = kind < 88 ? 200 : 429;
    } else if (kind < 97) {  // other MCP traffic (initialize, tools/list, SSE GET)
      r.method = kind < 95 ? "POST" : "GET";
      r.endpoint = "/mcp";
      r.status = 200;
    } else {  // admin / servers
      r.method = "GET";
      r.endpoint = kind < 99 ? "/servers" : "/mcp-admin/api/users";
      r.status = kind < 99 ? 200 : 403;
    }
    r.response_ms = 0.05 + static_cast<double>((x >> 32) % 200000) / 1000.0;
    r.user_agent = kAgents[(x >> 40) % 5];
    std::snprintf(ip, sizeof ip, "10.%d.%d.%d", static_cast<int>((x >> 44) % 4), static_cast<int>((x >> 48) % 256),
                  static_cast<int>((x >> 56) % 254 + 1));
    r.client_ip = ip;
    std::snprintf(id, sizeof id, "3f9a1c07-%llu", static_cast<unsigned long long>(k));
    r.request_id = id;
    r.bytes_in = 180 + static_cast<int64_t>((x >> 20) % 400);
    r.bytes_out = 120 + static_cast<int64_t>((x >> 28) % 4000);
    rows.add(r);
  }
  return rows;
}

void BM_Analytics_Insert(benchmark::State& state, std::string backend) {
  auto& f = analytics_fixture(backend);
  const int batch = static_cast<int>(state.range(0));
  static uint64_t seq = 1;
  // Batches are built outside the timing (the writer takes them ready-made from its queue); 4 distinct ones
  // are reused in turn (the table has no unique column besides its generated id).
  std::vector<store::AnalyticsBatch> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(make_rows(batch, seq));
  std::size_t i = 0;
  for (auto _ : state) {
    try {
      std::size_t written = 0;
      f.store->insert_analytics(batches[i++ % batches.size()], written, [] {});  // the writer's slices, no pause
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["table_rows"] = static_cast<double>(f.store->count_analytics());
}

const bool registered = [] {
  auto reg = [](const std::string& b) {
    benchmark::RegisterBenchmark(("BM_Analytics_Insert/" + b).c_str(), BM_Analytics_Insert, b)
        ->Arg(kBatch)
        ->Arg(500)  // a light-load batch (what 200 ms of 2,500 req/s queue)
        ->ArgName("batch")
        ->Unit(benchmark::kMillisecond)
        ->MinTime(1.0)    // 10–100 ms per batch: several batches whatever --benchmark_min_time says
        ->UseRealTime();  // PostgreSQL's work is the server's, not this process's CPU
  };
  reg("sqlite");
  if (const char* pg = std::getenv("GATEHOUSE_BENCH_PG_URL"); pg && *pg) reg("postgresql");
  return true;
}();

}  // namespace
