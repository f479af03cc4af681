// Micro benchmarks of identity: authentication per request, the directory snapshot, and the admin list
// queries, over a realistic store (100,000 users, 5,000 groups, 200,000 memberships). See bench/README.md.
//
// The store is seeded once per process (a static fixture, on first use, outside any timing):
//   SQLite   always, in a temporary file (migrated by Store::migrate, then filled by bench_seed_rows)
//   PostgreSQL  only when GATEHOUSE_BENCH_PG_URL is set (a libpq URL of a server where the user may create
//            databases): a fresh database gatehouse_bench_<pid> is created for the run and dropped at exit.
#include <benchmark/benchmark.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "auth/apikeys.hpp"
#include "bench_store.hpp"
#include "auth/authenticator.hpp"
#include "auth/directory.hpp"
#include "auth/jwt.hpp"
#include "core/blocking.hpp"
#include "core/config.hpp"
#include "core/util.hpp"
#include "store/db.hpp"
#include "store/openwebui.hpp"
#include "store/store.hpp"

namespace {

namespace net = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace gh;

constexpr int kUsers = 100'000;
constexpr int kGroups = 5'000;
constexpr int kLargeGroupMembers = 20'000;         // users 0..19,999 are also in group 0
const std::string kLargeGroup = "Everyone-Large";  // group 0
const std::string kSearch = "zephyr";              // in the name of every 100th user: 1% of users
const std::string kAuthUser = "user000042@example.com";

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string user_email(int i) {
  char b[40];
  std::snprintf(b, sizeof b, "user%06d@example.com", i);
  return b;
}
std::string user_name(int i) {
  char b[40];
  std::snprintf(b, sizeof b, i % 100 == 0 ? "Zephyr Person %06d" : "Person %06d", i);
  return b;
}
std::string group_name(int g) {
  if (g == 0) return kLargeGroup;
  char b[24];
  std::snprintf(b, sizeof b, "group-%04d", g);
  return b;
}
// User i is in group 1 + i % 4999 and in a second one: group 0 (the large group) for the first 20,000 users,
// else another of 1..4999. Exactly 2 memberships per user, 200,000 in all.
int first_group(int i) { return 1 + i % (kGroups - 1); }
int second_group(int i) {
  if (i < kLargeGroupMembers) return 0;
  int g = 1 + (i * 7 + 13) % (kGroups - 1);
  return g == first_group(i) ? 1 + g % (kGroups - 1) : g;
}

// ---- bench-only seeding: multi-row INSERTs through the store's SQL layer, in one transaction. The Store
// interface inserts one row per call (and per transaction), far too slow for 300,000 rows.
void bench_seed_rows(store::sql::Connection& c) {
  using store::sql::Value;
  const int64_t t = now_s();
  store::sql::Transaction tx(c, true);
  auto insert_batched = [&](std::string_view head, std::string_view tuple, int cols, int n, auto&& row_values) {
    constexpr int kRows = 200;
    std::vector<std::string> strings;  // keeps the text alive while bound
    std::vector<Value> params;
    for (int start = 0; start < n; start += kRows) {
      int end = std::min(n, start + kRows);
      std::string sql(head);
      strings.clear();
      strings.reserve(static_cast<std::size_t>((end - start) * cols));
      params.clear();
      for (int i = start; i < end; ++i) {
        if (i > start) sql += ',';
        sql += tuple;
        row_values(i, strings, params);
      }
      c.exec(sql, params);
    }
  };
  // text values are pushed into `s` first (reserved, so no reallocation) and bound by view
  insert_batched("INSERT INTO @users (email, name, subject, source, created_at) VALUES ", "(?, ?, '', 'cli', ?)", 2,
                 kUsers, [&](int i, std::vector<std::string>& s, std::vector<Value>& p) {
                   s.push_back(user_email(i));
                   p.emplace_back(std::string_view(s.back()));
                   s.push_back(user_name(i));
                   p.emplace_back(std::string_view(s.back()));
                   p.emplace_back(t);
                 });
  insert_batched("INSERT INTO @groups (name, description, priority, created_at) VALUES ", "(?, '', 0, ?)", 1, kGroups,
                 [&](int g, std::vector<std::string>& s, std::vector<Value>& p) {
                   s.push_back(group_name(g));
                   p.emplace_back(std::string_view(s.back()));
                   p.emplace_back(t);
                 });
  insert_batched("INSERT INTO @user_group_membership (user_email, group_name, source, created_at) VALUES ",
                 "(?, ?, 'manual', ?)", 2, 2 * kUsers, [&](int k, std::vector<std::string>& s, std::vector<Value>& p) {
                   int i = k / 2;
                   s.push_back(user_email(i));
                   p.emplace_back(std::string_view(s.back()));
                   s.push_back(group_name(k % 2 ? second_group(i) : first_group(i)));
                   p.emplace_back(std::string_view(s.back()));
                   p.emplace_back(t);
                 });
  tx.commit();
}

// One seeded store per backend, built on first use.
struct Fixture {
  bench::BenchStore db;
  store::Store* store;
  double seed_s = 0;

  explicit Fixture(const std::string& backend) : db(backend, "gatehouse_bench"), store(db.store.get()) {
    auto t0 = std::chrono::steady_clock::now();
    auto seeder = db.connect();
    bench_seed_rows(*seeder);
    // PostgreSQL's autovacuum would analyse the new rows within a minute; do it now so the plans are the
    // steady-state ones. (Gatehouse never runs ANALYZE on SQLite, so neither does the bench.)
    if (backend != "sqlite") seeder->script("ANALYZE");
    seeder.reset();
    seed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "[identity_bench] %s store seeded (%d users, %d groups, %d memberships) in %.1f s\n",
                 backend.c_str(), kUsers, kGroups, 2 * kUsers, seed_s);
  }
};

Fixture& fixture(const std::string& backend) {
  if (backend == "sqlite") {
    static Fixture f("sqlite");
    return f;
  }
  static Fixture f("postgresql");
  return f;
}

// ---- keys and tokens for the signature references
using PkeyPtr = std::shared_ptr<EVP_PKEY>;

std::string bn_param(EVP_PKEY* k, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(k, name, &bn) != 1) return {};
  std::string out(pad ? pad : BN_num_bytes(bn), '\0');
  if (pad)
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), pad);
  else
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

std::string digest_sign(EVP_PKEY* k, std::string_view data) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  std::string sig;
  if (EVP_DigestSignInit_ex(ctx, nullptr, "SHA256", nullptr, nullptr, k, nullptr) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1) {
    sig.resize(len);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1)
      sig.resize(len);
    else
      sig.clear();
  }
  EVP_MD_CTX_free(ctx);
  return sig;
}

std::string der_to_jose(std::string_view der) {
  auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (!sig) return {};
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig, &r, &s);
  std::string out(64, '\0');
  BN_bn2binpad(r, reinterpret_cast<unsigned char*>(out.data()), 32);
  BN_bn2binpad(s, reinterpret_cast<unsigned char*>(out.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return out;
}

json::object bench_claims() {
  auto now = now_s();
  return {{"iss", "https://idp.example.com"}, {"aud", "gatehouse"},         {"sub", "bench-subject"},
          {"email", kAuthUser},              {"name", "Bench User"},        {"iat", now},
          {"exp", now + 3600},               {"oid", "00000000-0000-0000-0000-000000000042"}};
}

struct Signed {
  std::string token;
  auth::Jwk jwk;
};

Signed sign_with(const char* type, const char* alg) {
  PkeyPtr k(std::string_view(type) == "RSA" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                                            : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"),
            EVP_PKEY_free);
  if (!k) throw std::runtime_error("EVP_PKEY_Q_keygen failed");
  json::object jwk;
  if (std::string_view(type) == "RSA")
    jwk = {{"kty", "RSA"}, {"kid", "k1"}, {"use", "sig"},
           {"n", base64url_encode(bn_param(k.get(), OSSL_PKEY_PARAM_RSA_N))},
           {"e", base64url_encode(bn_param(k.get(), OSSL_PKEY_PARAM_RSA_E))}};
  else
    jwk = {{"kty", "EC"}, {"kid", "k1"}, {"crv", "P-256"},
           {"x", base64url_encode(bn_param(k.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32))},
           {"y", base64url_encode(bn_param(k.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
  std::string input = base64url_encode(json::serialize(json::object{{"alg", alg}, {"typ", "JWT"}, {"kid", "k1"}})) +
                      "." + base64url_encode(json::serialize(bench_claims()));
  std::string sig = digest_sign(k.get(), input);
  if (std::string_view(type) == "EC") sig = der_to_jose(sig);
  std::string why;
  auto parsed = auth::parse_jwk(jwk, &why);
  if (!parsed) throw std::runtime_error("parse_jwk: " + why);
  return {input + "." + base64url_encode(sig), *parsed};
}

// ---- the authentication fixture (SQLite store): Directory snapshot, Authenticator, credentials
struct AuthFixture {
  net::io_context io;
  BlockingPool pool{1};
  Settings settings;
  std::unique_ptr<auth::Directory> directory;
  std::unique_ptr<auth::Authenticator> authenticator;
  std::string api_key, session_cookie, webui_token;

  AuthFixture() {
    auto& f = fixture("sqlite");
    // An API key for one of the seeded users, and an Open WebUI database naming the same user.
    auto k = auth::make_api_key(kAuthUser, "bench", 0, now_s());
    f.store->create_api_key(k.record);
    api_key = k.secret;

    auto webui_db = (f.db.dir() / "webui.db").string();
    {
      auto c = store::sql::open_sqlite(webui_db);
      c->script(R"sql(
        CREATE TABLE "user" (id TEXT PRIMARY KEY, email TEXT, name TEXT, role TEXT);
        CREATE TABLE "group" (id TEXT PRIMARY KEY, name TEXT);
        CREATE TABLE group_member (group_id TEXT, user_id TEXT);
        INSERT INTO "user" VALUES ('webui-42', 'user000042@example.com', 'Bench User', 'user');
        INSERT INTO "group" VALUES ('wg1', 'WebUI-Team');
        INSERT INTO group_member VALUES ('wg1', 'webui-42');
      )sql");
    }
    settings.webui_secret_key = "bench-webui-secret-0123456789abcdef0123456789";
    settings.openwebui_cache_s = 3600;  // the cached path for the whole run
    directory = std::make_unique<auth::Directory>(*f.store, pool, io.get_executor());
    directory->load_now();
    authenticator = std::make_unique<auth::Authenticator>(settings, *f.store, *directory, pool, io.get_executor(),
                                                          nullptr, store::OpenWebUiDirectory::open("sqlite://" + webui_db));
    authenticator->init_secret();

    auth::Principal p;
    p.identity = directory->user(kAuthUser);
    p.method = auth::AuthMethod::session;
    if (!p.identity) throw std::runtime_error("seeded user missing from the snapshot");
    session_cookie = authenticator->issue_session(p);
    auto now = now_s();
    webui_token = auth::sign_hs256({{"id", "webui-42"}, {"iat", now}, {"exp", now + 3600}}, settings.webui_secret_key);
  }
};

AuthFixture& auth_fixture() {
  static AuthFixture f;
  return f;
}

// Runs the benchmark loop inside one coroutine on the fixture's io_context: one authenticate() per
// iteration, the first (uncached) call made before the timed loop.
void run_auth(benchmark::State& state, const http::Request& req) {
  auto& f = auth_fixture();
  std::string error;
  auto loop = [&]() -> net::awaitable<void> {
    auto first = co_await f.authenticator->authenticate(req, "127.0.0.1");
    if (first.status || !first.principal.authenticated()) {
      error = "first authentication failed: " + std::to_string(first.status) + " " + first.reason;
      co_return;
    }
    int64_t groups = 0;
    for (auto _ : state) {
      auto r = co_await f.authenticator->authenticate(req, "127.0.0.1");
      groups += r.principal.identity ? static_cast<int64_t>(r.principal.identity->groups.size()) : 1000;  // principal looked up
      benchmark::DoNotOptimize(r);
    }
    if (groups != 2 * state.iterations() && groups != 3 * state.iterations())  // 2 local (+1 Open WebUI)
      error = "unexpected principal (groups " + std::to_string(groups) + " over " +
              std::to_string(state.iterations()) + " calls)";
  };
  net::co_spawn(f.io, loop(), net::detached);
  f.io.restart();
  f.io.run();
  if (!error.empty()) state.SkipWithError(error.c_str());
  state.SetItemsProcessed(state.iterations());
}

void BM_Auth_ApiKey(benchmark::State& state) {
  http::Request req;
  req.set(boost::beast::http::field::authorization, "Bearer " + auth_fixture().api_key);
  run_auth(state, req);
}
BENCHMARK(BM_Auth_ApiKey);

void BM_Auth_SessionCookie_Cached(benchmark::State& state) {
  http::Request req;
  req.set(boost::beast::http::field::cookie, "theme=dark; gatehouse_session=" + auth_fixture().session_cookie);
  run_auth(state, req);
}
BENCHMARK(BM_Auth_SessionCookie_Cached);

void BM_Auth_OpenWebUiHs256_Cached(benchmark::State& state) {
  http::Request req;
  req.set(boost::beast::http::field::authorization, "Bearer " + auth_fixture().webui_token);
  run_auth(state, req);
}
BENCHMARK(BM_Auth_OpenWebUiHs256_Cached);

// ---- the uncached references: what a first (or uncacheable) request pays
void BM_Verify_SessionCookie_Uncached(benchmark::State& state) {
  auto& f = auth_fixture();
  for (auto _ : state) {
    std::string why;
    auto claims = f.authenticator->verify_own(f.session_cookie, "session", &why);
    if (!claims) { state.SkipWithError(why.c_str()); break; }
    benchmark::DoNotOptimize(claims);
  }
}
BENCHMARK(BM_Verify_SessionCookie_Uncached);

void BM_Verify_HS256(benchmark::State& state) {
  const std::string secret = "bench-webui-secret-0123456789abcdef0123456789";
  auto token = auth::sign_hs256(bench_claims(), secret);
  std::string why;
  auto jwt = auth::parse_jwt(token, &why);
  for (auto _ : state) {
    bool ok = auth::verify_hs256(*jwt, secret, &why);
    if (!ok) { state.SkipWithError(why.c_str()); break; }
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_Verify_HS256);

void verify_jwk_loop(benchmark::State& state, const Signed& s) {
  std::string why;
  auto jwt = auth::parse_jwt(s.token, &why);
  if (!jwt) { state.SkipWithError(why.c_str()); return; }
  for (auto _ : state) {
    bool ok = auth::verify_with_jwk(*jwt, s.jwk, &why);
    if (!ok) { state.SkipWithError(why.c_str()); break; }
    benchmark::DoNotOptimize(ok);
  }
}

void BM_Verify_RS256_2048(benchmark::State& state) {
  static const Signed s = sign_with("RSA", "RS256");
  verify_jwk_loop(state, s);
}
BENCHMARK(BM_Verify_RS256_2048);

void BM_Verify_ES256_P256(benchmark::State& state) {
  static const Signed s = sign_with("EC", "ES256");
  verify_jwk_loop(state, s);
}
BENCHMARK(BM_Verify_ES256_P256);

// ---- the snapshot and the dump
void BM_Snapshot_Build(benchmark::State& state) {
  auto& f = fixture("sqlite");
  static const store::Dump dump = f.store->dump();
  uint64_t version = 1;
  for (auto _ : state) {
    state.PauseTiming();
    store::Dump copy = dump;  // build() consumes its Dump
    state.ResumeTiming();
    auto snap = auth::Snapshot::build(std::move(copy), version++);
    benchmark::DoNotOptimize(snap);
    state.PauseTiming();
    snap.reset();  // freeing is not part of the build
    state.ResumeTiming();
  }
  state.counters["users"] = static_cast<double>(dump.users.size());
  state.counters["memberships"] = static_cast<double>(dump.memberships.size());
}
BENCHMARK(BM_Snapshot_Build)->Unit(benchmark::kMillisecond)->MinTime(1.0);  // 0.1–0.2 s each: several runs

void BM_Store_Dump(benchmark::State& state, std::string backend) {
  auto& f = fixture(backend);
  std::size_t rows = 0;
  for (auto _ : state) {
    auto d = f.store->dump();
    rows = d.users.size() + d.groups.size() + d.memberships.size() + d.api_keys.size();
    benchmark::DoNotOptimize(d);
  }
  state.counters["rows"] = static_cast<double>(rows);
}

// ---- the admin list queries
// Each call also counts all matches (`total`), as the admin API does for its paging.
enum class Query { users_first_page, users_deep_page, users_search, groups_page, large_group_members, group_members };

void BM_Store_List(benchmark::State& state, std::string backend, Query q) {
  auto& f = fixture(backend);
  auto& st = *f.store;
  int64_t total = 0;
  std::size_t n = 0;
  for (auto _ : state) {
    switch (q) {
      case Query::users_first_page: n = st.list_users("", 0, 50, &total).size(); break;
      case Query::users_deep_page: n = st.list_users("", 90'000, 50, &total).size(); break;
      case Query::users_search: n = st.list_users(kSearch, 0, 50, &total).size(); break;
      case Query::groups_page: n = st.list_groups("", 0, 50, &total).size(); break;
      case Query::large_group_members: n = st.members(kLargeGroup, 0, 50, &total).size(); break;
      case Query::group_members: n = st.members("group-2500", 0, 50, &total).size(); break;
    }
    benchmark::DoNotOptimize(n);
  }
  state.counters["rows"] = static_cast<double>(n);
  state.counters["total"] = static_cast<double>(total);
}

void register_store_benchmarks(const std::string& b) {
  benchmark::RegisterBenchmark(("BM_Store_Dump/" + b).c_str(), BM_Store_Dump, b)
      ->Unit(benchmark::kMillisecond)
      ->MinTime(1.0)    // 0.1–0.3 s each: several runs
      ->UseRealTime();  // the PostgreSQL server's time is not this process's CPU time
  struct { const char* name; Query q; } queries[] = {
      {"list_users/page1", Query::users_first_page},
      {"list_users/offset90000", Query::users_deep_page},
      {"list_users/search_1pct", Query::users_search},
      {"list_groups/page1", Query::groups_page},
      {"members/large_group_20000", Query::large_group_members},
      {"members/small_group", Query::group_members},
  };
  for (auto& x : queries)
    benchmark::RegisterBenchmark(("BM_Store_" + std::string(x.name) + "/" + b).c_str(), BM_Store_List, b, x.q)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
}

const bool registered = [] {
  register_store_benchmarks("sqlite");
  if (const char* pg = std::getenv("GATEHOUSE_BENCH_PG_URL"); pg && *pg) register_store_benchmarks("postgresql");
  return true;
}();

}  // namespace
