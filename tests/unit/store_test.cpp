// The store against both backends: one typed suite, run on SQLite (a temp file) always and on PostgreSQL
// when GATEHOUSE_TEST_PG_URL names a server (each test gets its own database, dropped afterwards).
#include <gtest/gtest.h>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "core/blocking.hpp"
#include "core/util.hpp"
#include "observability/analytics.hpp"
#include "store/db.hpp"
#include "store/migrations.hpp"
#include "store/openwebui.hpp"
#include "store/store.hpp"

using namespace gh::store;
namespace fs = std::filesystem;

namespace {

const int kLatestVersion = static_cast<int>(migrations().size());

struct SqliteEnv {
  static constexpr bool kPostgres = false;
  SqliteEnv() {
    dir = fs::temp_directory_path() / ("gh-store-" + gh::random_hex(6));
    fs::create_directories(dir);
  }
  ~SqliteEnv() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  bool available() const { return true; }
  // A subdirectory that does not exist yet: open() must create it.
  std::string url() const { return "sqlite://" + (dir / "data" / "gatehouse.db").string(); }
  std::string webui_url() const { return "sqlite:///" + (dir / "webui.db").string(); }
  std::unique_ptr<sql::Connection> webui_conn() const { return sql::open_sqlite((dir / "webui.db").string()); }
  // A second connection to the store's own database (tables unprefixed, as the store writes them with `@`).
  std::unique_ptr<sql::Connection> store_conn() const {
    return sql::open_sqlite((dir / "data" / "gatehouse.db").string());
  }
  fs::path dir;
};

struct PgEnv {
  static constexpr bool kPostgres = true;
  PgEnv() {
    const char* base = std::getenv("GATEHOUSE_TEST_PG_URL");
    if (!base || !*base) return;
    base_ = base;
    name_ = "t_" + gh::random_hex(6);
    sql::open_postgres(base_, "")->script("CREATE DATABASE " + name_);
    boost::urls::url u = boost::urls::parse_uri(base_).value();
    u.set_path("/" + name_);
    url_ = std::string(u.buffer());
  }
  ~PgEnv() {
    if (name_.empty()) return;
    try {
      sql::open_postgres(base_, "")->script("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
    }
  }
  bool available() const { return !name_.empty(); }
  std::string url() const { return url_; }
  std::string webui_url() const { return url_; }
  std::unique_ptr<sql::Connection> webui_conn() const { return sql::open_postgres(url_, ""); }
  std::unique_ptr<sql::Connection> store_conn() const { return sql::open_postgres(url_, "mcp_proxy."); }
  std::string base_, name_, url_;
};

template <class Env>
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env = std::make_unique<Env>();
    if (!env->available()) GTEST_SKIP() << "GATEHOUSE_TEST_PG_URL not set";
    store = Store::open(env->url());
    ASSERT_GT(store->migrate(), 0);
  }
  void TearDown() override {
    store.reset();
    env.reset();
  }

  User user(std::string email, std::string name = "") {
    User u;
    u.email = std::move(email);
    u.name = std::move(name);
    u.source = "oidc";
    return u;
  }
  Group group(std::string name, int priority = 0) {
    Group g;
    g.name = std::move(name);
    g.priority = priority;
    return g;
  }
  ApiKey key(std::string id, std::string email) {
    ApiKey k;
    k.id = id;
    k.user_email = std::move(email);
    k.name = "label " + id;
    k.prefix = "gh_" + id;
    k.hash = "hash-" + id;
    k.created_at = 1000;
    return k;
  }

  std::unique_ptr<Env> env;
  std::unique_ptr<Store> store;
};

using Backends = ::testing::Types<SqliteEnv, PgEnv>;
class BackendNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return T::kPostgres ? "postgresql" : "sqlite";
  }
};
TYPED_TEST_SUITE(StoreTest, Backends, BackendNames);

// Waits (bounded) until `pred` holds; returns whether it did.
template <class F>
bool eventually(F pred, std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace

TYPED_TEST(StoreTest, MigrateIsIdempotentAndVersioned) {
  auto& s = *this->store;
  EXPECT_EQ(s.backend(), TypeParam::kPostgres ? "postgresql" : "sqlite");
  EXPECT_EQ(kLatestVersion, 6);
  EXPECT_EQ(s.schema_version(), kLatestVersion);
  EXPECT_EQ(s.migrate(), 0);
  EXPECT_EQ(s.schema_version(), kLatestVersion);
  // A second instance on the same database finds nothing to do and sees the same data.
  ASSERT_TRUE(s.create_user(this->user("a@x.test")));
  auto other = Store::open(this->env->url());
  EXPECT_EQ(other->migrate(), 0);
  EXPECT_TRUE(other->get_user("a@x.test").has_value());
}

TYPED_TEST(StoreTest, AtomicallyCommitsAllOrNothingAndNestsTransactions) {
  auto& s = *this->store;
  auto audited = [&] {
    int64_t total = 0;
    s.list_audit(AuditFilter{}, &total);
    return total;
  };
  auto entry = [](std::string action) { return AuditEntry{0, 0, "admin@x.test", std::move(action), "t", "{}"}; };
  ASSERT_TRUE(s.create_user(this->user("keep@x.test")));
  ASSERT_TRUE(s.create_group(this->group("g")));
  ASSERT_TRUE(s.add_member("g", "keep@x.test", "admin"));

  // Refused (false): the change and its audit entry are both undone, the nested transaction's too.
  EXPECT_FALSE(s.atomically([&] {
    EXPECT_TRUE(s.create_user(this->user("undone@x.test")));
    EXPECT_TRUE(s.delete_user("keep@x.test"));  // a transaction of its own: a savepoint here
    s.append_audit(entry("user.delete"));
    return false;
  }));
  EXPECT_FALSE(s.get_user("undone@x.test"));
  EXPECT_TRUE(s.get_user("keep@x.test"));
  EXPECT_EQ(s.groups_of("keep@x.test"), std::vector<std::string>{"g"});
  EXPECT_EQ(audited(), 0);

  // A throw: the same, and the store is usable afterwards.
  EXPECT_THROW(s.atomically([&]() -> bool {
    s.create_user(this->user("thrown@x.test"));
    throw StoreError("boom");
  }), StoreError);
  EXPECT_FALSE(s.get_user("thrown@x.test"));

  // A store call failing inside its own (nested) transaction undoes it all.
  EXPECT_THROW(s.atomically([&] {
    s.create_user(this->user("before-error@x.test"));
    s.append_audit(entry("user.create"));
    s.add_member("no-such-group", "before-error@x.test", "admin");
    return true;
  }), StoreError);
  EXPECT_FALSE(s.get_user("before-error@x.test"));
  EXPECT_EQ(audited(), 0);

  // Committed: everything, nested transactions included.
  EXPECT_TRUE(s.atomically([&] {
    EXPECT_TRUE(s.create_user(this->user("new@x.test")));
    EXPECT_TRUE(s.delete_user("keep@x.test"));
    EXPECT_TRUE(s.rename_group("g", "h"));
    s.append_audit(entry("user.delete"));
    return true;
  }));
  EXPECT_TRUE(s.get_user("new@x.test"));
  EXPECT_FALSE(s.get_user("keep@x.test"));
  EXPECT_TRUE(s.get_group("h"));
  EXPECT_EQ(audited(), 1);
}

TYPED_TEST(StoreTest, AtomicallyRunsOneInstanceAfterAnother) {
  // Two instances on one database, each checking then changing: the second sees the first's change.
  auto& a = *this->store;
  auto b = Store::open(this->env->url());
  std::atomic<bool> a_inside{false};
  std::thread first([&] {
    a.atomically([&] {
      a_inside = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      return a.create_user(this->user("first@x.test"));
    });
  });
  while (!a_inside) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  bool saw_first = false;
  b->atomically([&] {
    saw_first = b->get_user("first@x.test").has_value();
    return true;
  });
  first.join();
  EXPECT_TRUE(saw_first);
}

TYPED_TEST(StoreTest, WaitingForAnotherInstancesChangeDoesNotHoldThisStore) {
  if (!TypeParam::kPostgres) GTEST_SKIP() << "SQLite: one process; BEGIN IMMEDIATE waits on the file lock";
  auto& a = *this->store;
  auto b = Store::open(this->env->url());
  ASSERT_TRUE(b->create_user(this->user("reader@x.test")));
  std::atomic<bool> a_inside{false}, a_done{false};
  std::thread first([&] {
    a.atomically([&] {
      a_inside = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(800));
      return true;
    });
    a_done = true;
  });
  while (!a_inside) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread waiting([&] { b->atomically([] { return true; }); });  // waits for the first
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  // Meanwhile the second store still answers.
  EXPECT_TRUE(b->get_user("reader@x.test").has_value());
  EXPECT_FALSE(a_done.load()) << "a read of the waiting store waited for the other instance's change";
  waiting.join();
  first.join();
}

TYPED_TEST(StoreTest, FreshDatabaseHasVersionZero) {
  this->store.reset();
  this->env = std::make_unique<TypeParam>();
  auto s = Store::open(this->env->url());
  EXPECT_EQ(s->schema_version(), 0);
  EXPECT_EQ(s->migrate(), kLatestVersion);
  EXPECT_EQ(s->schema_version(), kLatestVersion);
}

TYPED_TEST(StoreTest, ConcurrentMigrationsApplyOnce) {
  this->store.reset();
  this->env = std::make_unique<TypeParam>();  // a fresh, unmigrated database
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < 3; ++i) stores.push_back(Store::open(this->env->url()));
  std::atomic<int> applied{0}, failed{0};
  std::vector<std::thread> threads;
  for (auto& s : stores)
    threads.emplace_back([&, st = s.get()] {
      try {
        applied += st->migrate();
      } catch (const StoreError&) {
        ++failed;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(applied.load(), kLatestVersion);  // all by one instance, none twice
  EXPECT_EQ(stores[0]->schema_version(), kLatestVersion);
}

TYPED_TEST(StoreTest, UsersCreateDuplicateUpdateDelete) {
  auto& s = *this->store;
  auto u = this->user("Alice@Example.COM", "Alice");
  u.subject = "oidc:https://idp|123";
  u.is_admin = true;
  u.created_at = 42;
  ASSERT_TRUE(s.create_user(u));
  EXPECT_FALSE(s.create_user(this->user("alice@example.com", "Other")));  // same email, other case
  auto got = s.get_user("ALICE@example.com");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->email, "alice@example.com");
  EXPECT_EQ(got->name, "Alice");
  EXPECT_TRUE(got->is_admin);
  EXPECT_FALSE(got->disabled);
  EXPECT_EQ(got->created_at, 42);
  EXPECT_EQ(got->last_seen_at, 0);
  auto by_sub = s.find_user_by_subject("oidc:https://idp|123");
  ASSERT_TRUE(by_sub);
  EXPECT_EQ(by_sub->email, "alice@example.com");
  EXPECT_FALSE(s.find_user_by_subject("oidc:https://idp|999"));
  EXPECT_FALSE(s.find_user_by_subject(""));

  got->name = "Alice B";
  got->disabled = true;
  got->is_admin = false;
  got->email = "ALICE@EXAMPLE.com";
  EXPECT_TRUE(s.update_user(*got));
  EXPECT_FALSE(s.update_user(this->user("nobody@example.com")));
  got = s.get_user("alice@example.com");
  EXPECT_EQ(got->name, "Alice B");
  EXPECT_TRUE(got->disabled);
  EXPECT_FALSE(got->is_admin);
  EXPECT_EQ(got->created_at, 42);  // not touched by update
  // A sign-in writes the subject and the name only: not the rights an administrator changed meanwhile.
  EXPECT_TRUE(s.update_user_sign_in("Alice@example.com", "idp|alice", "Alice C"));
  got = s.get_user("alice@example.com");
  EXPECT_EQ(got->subject, "idp|alice");
  EXPECT_EQ(got->name, "Alice C");
  EXPECT_TRUE(got->disabled);
  EXPECT_FALSE(got->is_admin);
  EXPECT_FALSE(s.update_user_sign_in("nobody@example.com", "x", "y"));

  s.touch_user("alice@EXAMPLE.com", 500);
  s.touch_user("alice@example.com", 400);  // older: ignored
  EXPECT_EQ(s.get_user("alice@example.com")->last_seen_at, 500);

  ASSERT_TRUE(s.create_group(this->group("G1")));
  ASSERT_TRUE(s.add_member("G1", "alice@example.com", "manual"));
  s.create_api_key(this->key("k1", "alice@example.com"));
  ASSERT_TRUE(s.create_user(this->user("bob@example.com")));
  ASSERT_TRUE(s.add_member("G1", "bob@example.com", "manual"));
  EXPECT_EQ(s.count_users(), 2);

  EXPECT_TRUE(s.delete_user("Alice@example.com"));
  EXPECT_FALSE(s.delete_user("alice@example.com"));
  EXPECT_FALSE(s.get_user("alice@example.com"));
  EXPECT_TRUE(s.groups_of("alice@example.com").empty());
  EXPECT_FALSE(s.get_api_key("k1"));
  EXPECT_EQ(s.get_group("G1")->member_count, 1);
  EXPECT_EQ(s.count_users(), 1);
}

TYPED_TEST(StoreTest, ListUsersSearchPagingTotal) {
  auto& s = *this->store;
  for (int i = 0; i < 30; ++i) {
    char email[64];
    std::snprintf(email, sizeof email, "user%02d@%s.test", i, i % 3 == 0 ? "acme" : "other");
    ASSERT_TRUE(s.create_user(this->user(email, i == 7 ? "Zed ACMEfan" : "Plain")));
  }
  ASSERT_TRUE(s.create_user(this->user("pct@x.test", "100% sure")));
  int64_t total = -1;
  auto all = s.list_users("", 0, 10, &total);
  EXPECT_EQ(total, 31);
  ASSERT_EQ(all.size(), 10u);
  EXPECT_EQ(all[0].email, "pct@x.test");
  EXPECT_EQ(all[1].email, "user00@acme.test");
  auto page = s.list_users("", 25, 10, &total);
  ASSERT_EQ(page.size(), 6u);
  EXPECT_EQ(page.back().email, "user29@other.test");

  // Case-insensitive on email and name: 10 acme emails + user07 by name.
  auto hits = s.list_users("AcMe", 0, 100, &total);
  EXPECT_EQ(total, 11);
  ASSERT_EQ(hits.size(), 11u);
  EXPECT_TRUE(std::is_sorted(hits.begin(), hits.end(), [](auto& a, auto& b) { return a.email < b.email; }));
  EXPECT_EQ(hits[3].email, "user07@other.test");
  hits = s.list_users("acme", 8, 2, &total);
  EXPECT_EQ(total, 11);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].email, "user21@acme.test");

  // LIKE wildcards in the query are literal.
  hits = s.list_users("%", 0, 100, &total);
  EXPECT_EQ(total, 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].email, "pct@x.test");
  hits = s.list_users("r_0", 0, 100, &total);
  EXPECT_EQ(total, 0);
  EXPECT_TRUE(hits.empty());
}

TYPED_TEST(StoreTest, GroupsCreateRenameDeleteList) {
  auto& s = *this->store;
  auto g = this->group("MCP-GitHub", 5);
  g.description = "GitHub tools";
  ASSERT_TRUE(s.create_group(g));
  EXPECT_FALSE(s.create_group(this->group("MCP-GitHub")));
  ASSERT_TRUE(s.create_group(this->group("mcp-github")));  // names are case-sensitive
  ASSERT_TRUE(s.create_group(this->group("Tenant-Acme")));
  ASSERT_TRUE(s.create_user(this->user("a@x.test")));
  ASSERT_TRUE(s.add_member("MCP-GitHub", "a@x.test", "manual"));
  ASSERT_TRUE(s.add_member("MCP-GitHub", "b@x.test", "manual"));

  auto got = s.get_group("MCP-GitHub");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->description, "GitHub tools");
  EXPECT_EQ(got->priority, 5);
  EXPECT_EQ(got->member_count, 2);
  EXPECT_FALSE(got->is_tenant);

  auto t = this->group("Tenant-Acme", 9);
  t.is_tenant = true;
  t.description = "Acme";
  EXPECT_TRUE(s.update_group(t));
  EXPECT_FALSE(s.update_group(this->group("Nope")));
  EXPECT_TRUE(s.get_group("Tenant-Acme")->is_tenant);
  EXPECT_EQ(s.get_group("Tenant-Acme")->priority, 9);

  EXPECT_TRUE(s.rename_group("MCP-GitHub", "MCP-GH"));
  EXPECT_FALSE(s.get_group("MCP-GitHub"));
  EXPECT_EQ(s.get_group("MCP-GH")->member_count, 2);
  EXPECT_EQ(s.get_group("MCP-GH")->priority, 5);
  EXPECT_EQ(s.groups_of("a@x.test"), std::vector<std::string>{"MCP-GH"});
  EXPECT_FALSE(s.rename_group("Missing", "X"));
  EXPECT_THROW(s.rename_group("MCP-GH", "Tenant-Acme"), StoreError);
  EXPECT_EQ(s.get_group("MCP-GH")->member_count, 2);  // the failed rename changed nothing

  int64_t total = 0;
  auto list = s.list_groups("", 0, 10, &total);
  EXPECT_EQ(total, 3);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "MCP-GH");  // bytewise order: upper case first
  EXPECT_EQ(list[0].member_count, 2);
  EXPECT_EQ(list[1].name, "Tenant-Acme");
  EXPECT_EQ(list[2].name, "mcp-github");
  EXPECT_EQ(list[2].member_count, 0);
  list = s.list_groups("ACME", 0, 10, &total);
  EXPECT_EQ(total, 1);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "Tenant-Acme");
  list = s.list_groups("", 1, 1, &total);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "Tenant-Acme");
  EXPECT_EQ(total, 3);

  EXPECT_TRUE(s.delete_group("MCP-GH"));
  EXPECT_FALSE(s.delete_group("MCP-GH"));
  EXPECT_TRUE(s.groups_of("a@x.test").empty());
  EXPECT_TRUE(s.get_user("a@x.test"));  // users stay
}

TYPED_TEST(StoreTest, MembersAddRemoveAndGroupsOf) {
  auto& s = *this->store;
  for (auto n : {"b-group", "A-group", "a-group", "Z"}) ASSERT_TRUE(s.create_group(this->group(n)));
  auto u = this->user("m@x.test", "Member");
  ASSERT_TRUE(s.create_user(u));
  EXPECT_TRUE(s.add_member("b-group", "M@x.test", "manual"));
  EXPECT_FALSE(s.add_member("b-group", "m@x.test", "manual"));
  EXPECT_TRUE(s.add_member("a-group", "m@x.test", "manual"));
  EXPECT_TRUE(s.add_member("A-group", "m@x.test", "idp"));
  EXPECT_TRUE(s.add_member("Z", "m@x.test", ""));
  EXPECT_THROW(s.add_member("missing", "m@x.test", "manual"), StoreError);
  EXPECT_EQ(s.groups_of("M@X.TEST"), (std::vector<std::string>{"A-group", "Z", "a-group", "b-group"}));
  EXPECT_TRUE(s.remove_member("Z", "M@x.test"));
  EXPECT_FALSE(s.remove_member("Z", "m@x.test"));
  EXPECT_EQ(s.groups_of("m@x.test"), (std::vector<std::string>{"A-group", "a-group", "b-group"}));

  // A member who never signed in is listed by email.
  EXPECT_TRUE(s.add_member("b-group", "new@x.test", "manual"));
  int64_t total = 0;
  auto ms = s.members("b-group", 0, 10, &total);
  EXPECT_EQ(total, 2);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[0].email, "m@x.test");
  EXPECT_EQ(ms[0].name, "Member");
  EXPECT_EQ(ms[1].email, "new@x.test");
  EXPECT_EQ(ms[1].name, "");
  ms = s.members("b-group", 1, 10, &total);
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].email, "new@x.test");
  EXPECT_EQ(total, 2);
}

TYPED_TEST(StoreTest, SyncIdpGroupsKeepsManualMemberships) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_user(this->user("u@x.test")));
  ASSERT_TRUE(s.create_group(this->group("Manual")));
  ASSERT_TRUE(s.create_group(this->group("Both")));
  ASSERT_TRUE(s.add_member("Manual", "u@x.test", "manual"));
  ASSERT_TRUE(s.add_member("Both", "u@x.test", "manual"));

  s.sync_idp_groups("U@x.test", {"Both", "Idp-1", "Idp-2", "Idp-1", ""});
  EXPECT_EQ(s.groups_of("u@x.test"), (std::vector<std::string>{"Both", "Idp-1", "Idp-2", "Manual"}));
  ASSERT_TRUE(s.get_group("Idp-1"));  // created
  EXPECT_EQ(s.get_group("Idp-1")->member_count, 1);

  s.sync_idp_groups("u@x.test", {"Idp-2"});
  EXPECT_EQ(s.groups_of("u@x.test"), (std::vector<std::string>{"Both", "Idp-2", "Manual"}));
  s.sync_idp_groups("u@x.test", {});
  EXPECT_EQ(s.groups_of("u@x.test"), (std::vector<std::string>{"Both", "Manual"}));
  EXPECT_TRUE(s.get_group("Idp-1"));  // groups themselves stay

  auto d = s.dump();
  for (auto& m : d.memberships) EXPECT_EQ(m.source, "manual") << m.group_name;
}

TYPED_TEST(StoreTest, ApiKeysCreateGetListRevokeTouch) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_user(this->user("k@x.test")));
  ASSERT_TRUE(s.create_user(this->user("l@x.test")));
  auto k1 = this->key("k1", "K@x.test");
  k1.scopes = "mcp:read";
  k1.expires_at = 9999;
  s.create_api_key(k1);
  auto k2 = this->key("k2", "k@x.test");
  k2.created_at = 2000;
  s.create_api_key(k2);
  s.create_api_key(this->key("k3", "l@x.test"));
  EXPECT_THROW(s.create_api_key(this->key("k1", "k@x.test")), StoreError);     // duplicate id
  EXPECT_THROW(s.create_api_key(this->key("k9", "nobody@x.test")), StoreError);  // no such user

  auto got = s.get_api_key("k1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->user_email, "k@x.test");
  EXPECT_EQ(got->name, "label k1");
  EXPECT_EQ(got->prefix, "gh_k1");
  EXPECT_EQ(got->hash, "hash-k1");
  EXPECT_EQ(got->scopes, "mcp:read");
  EXPECT_EQ(got->created_at, 1000);
  EXPECT_EQ(got->expires_at, 9999);
  EXPECT_EQ(got->last_used_at, 0);
  EXPECT_EQ(got->revoked_at, 0);
  EXPECT_FALSE(s.get_api_key("nope"));

  auto mine = s.list_api_keys("K@X.test");
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0].id, "k1");
  EXPECT_EQ(mine[1].id, "k2");
  EXPECT_EQ(s.list_api_keys("").size(), 3u);

  s.touch_api_keys({{"k1", 300}, {"k2", 200}, {"missing", 1}});
  s.touch_api_keys({{"k1", 100}});  // older: ignored
  EXPECT_EQ(s.get_api_key("k1")->last_used_at, 300);
  EXPECT_EQ(s.get_api_key("k2")->last_used_at, 200);

  EXPECT_TRUE(s.revoke_api_key("k2", 777));
  EXPECT_FALSE(s.revoke_api_key("k2", 888));
  EXPECT_FALSE(s.revoke_api_key("missing", 1));
  EXPECT_EQ(s.get_api_key("k2")->revoked_at, 777);
  auto d = s.dump();
  ASSERT_EQ(d.api_keys.size(), 2u);
  EXPECT_EQ(d.api_keys[0].id, "k1");
  EXPECT_EQ(d.api_keys[1].id, "k3");
}

TYPED_TEST(StoreTest, AuditAppendListFilters) {
  auto& s = *this->store;
  s.append_audit({0, 100, "admin@x.test", "group.create", "G1", R"({"after":{"name":"G1"}})"});
  s.append_audit({0, 200, "admin@x.test", "user.update", "u@x.test", "{}"});
  s.append_audit({0, 300, "cli", "group.create", "G2", ""});
  s.append_audit({0, 400, "admin@x.test", "group.create", "G3", "{}"});
  int64_t total = 0;
  auto all = s.list_audit({}, &total);
  EXPECT_EQ(total, 4);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].target, "G3");  // newest first
  EXPECT_GT(all[0].id, all[1].id);
  EXPECT_EQ(all[3].details, R"({"after":{"name":"G1"}})");
  EXPECT_EQ(all[1].details, "{}");

  AuditFilter f;
  f.actor = "admin@x.test";
  f.action = "group.create";
  auto hits = s.list_audit(f, &total);
  EXPECT_EQ(total, 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].target, "G3");
  EXPECT_EQ(hits[1].target, "G1");

  AuditFilter g;
  g.since = 200;
  g.until = 300;
  hits = s.list_audit(g, &total);
  EXPECT_EQ(total, 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].actor, "cli");
  EXPECT_EQ(hits[1].action, "user.update");

  AuditFilter p;
  p.limit = 1;
  p.offset = 1;
  hits = s.list_audit(p, &total);
  EXPECT_EQ(total, 4);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].target, "G2");
  AuditFilter t;
  t.target = "u@x.test";
  EXPECT_EQ(s.list_audit(t, &total).size(), 1u);
}

TYPED_TEST(StoreTest, MetaPutIfAbsentKeepsTheFirstValue) {
  auto& s = *this->store;
  EXPECT_FALSE(s.get_meta("session_secret"));
  EXPECT_EQ(s.put_meta_if_absent("session_secret", "first"), "first");
  auto other = Store::open(this->env->url());
  EXPECT_EQ(other->put_meta_if_absent("session_secret", "second"), "first");
  EXPECT_EQ(s.get_meta("session_secret"), "first");
}

TYPED_TEST(StoreTest, SessionEndsAreSeenByEveryInstanceAndPurgedByTime) {
  auto& s = *this->store;
  EXPECT_FALSE(s.session_ended("a.b"));
  EXPECT_TRUE(s.sessions_ended_within(30).empty());
  s.record_session_end("a.b");
  s.record_session_end("a.b");  // a repeat is no error
  s.record_session_end("c.d");
  auto other = Store::open(this->env->url());
  EXPECT_TRUE(other->session_ended("a.b"));
  EXPECT_FALSE(other->session_ended("a.c"));
  auto within = other->sessions_ended_within(30);
  std::sort(within.begin(), within.end());
  EXPECT_EQ(within, (std::vector<std::string>{"a.b", "c.d"}));
  EXPECT_EQ(s.purge_session_ends(gh::unix_now() - 3600), 0);
  EXPECT_EQ(s.purge_session_ends(gh::unix_now() + 3600), 2);
  EXPECT_FALSE(other->session_ended("a.b"));
  EXPECT_TRUE(other->sessions_ended_within(30).empty());
}

TYPED_TEST(StoreTest, DumpHasEverything) {
  auto& s = *this->store;
  auto a = this->user("a@x.test", "A");
  a.is_admin = true;
  ASSERT_TRUE(s.create_user(a));
  ASSERT_TRUE(s.create_user(this->user("b@x.test", "B")));
  auto t = this->group("Tenant-Acme", 3);
  t.is_tenant = true;
  ASSERT_TRUE(s.create_group(t));
  ASSERT_TRUE(s.create_group(this->group("Empty")));
  ASSERT_TRUE(s.add_member("Tenant-Acme", "a@x.test", "manual"));
  ASSERT_TRUE(s.add_member("Tenant-Acme", "b@x.test", "idp"));
  s.create_api_key(this->key("k1", "a@x.test"));
  s.put_grant({"Tenant-Acme", "jira", "", {}, 1});
  s.put_grant({"Empty", "github", "deny", {"delete"}, 2});
  s.put_tenant_key({"Tenant-Acme", "jira", "TOKEN", "sealed-2", "kid", 3});
  s.put_tenant_key({"Tenant-Acme", "github", "TOKEN", "sealed-1", "kid", 4});
  s.put_tenant_endpoint({"Tenant-Acme", "jira", "https://acme.example/jira", 5});

  auto d = s.dump();
  ASSERT_EQ(d.users.size(), 2u);
  EXPECT_EQ(d.users[0].email, "a@x.test");
  EXPECT_TRUE(d.users[0].is_admin);
  EXPECT_EQ(d.users[1].name, "B");
  ASSERT_EQ(d.groups.size(), 2u);
  EXPECT_EQ(d.groups[0].name, "Empty");
  EXPECT_EQ(d.groups[0].member_count, 0);
  EXPECT_EQ(d.groups[1].name, "Tenant-Acme");
  EXPECT_EQ(d.groups[1].member_count, 2);
  EXPECT_TRUE(d.groups[1].is_tenant);
  EXPECT_EQ(d.groups[1].priority, 3);
  ASSERT_EQ(d.memberships.size(), 2u);
  EXPECT_EQ(d.memberships[0].user_email, "a@x.test");
  EXPECT_EQ(d.memberships[0].source, "manual");
  EXPECT_EQ(d.memberships[1].source, "idp");
  ASSERT_EQ(d.api_keys.size(), 1u);
  EXPECT_EQ(d.api_keys[0].hash, "hash-k1");
  ASSERT_EQ(d.grants.size(), 2u);
  EXPECT_EQ(d.grants[0].group, "Empty");
  EXPECT_EQ(d.grants[0].tools_mode, "deny");
  EXPECT_EQ(d.grants[0].tools, std::vector<std::string>{"delete"});
  EXPECT_EQ(d.grants[1].server, "jira");
  EXPECT_EQ(d.grants[1].updated_at, 1);
  ASSERT_EQ(d.tenant_keys.size(), 2u);
  EXPECT_EQ(d.tenant_keys[0].server, "github");
  EXPECT_EQ(d.tenant_keys[0].ciphertext, "sealed-1");
  EXPECT_EQ(d.tenant_keys[1].ciphertext, "sealed-2");
  EXPECT_EQ(d.tenant_keys[1].key_id, "kid");
  ASSERT_EQ(d.tenant_endpoints.size(), 1u);
  EXPECT_EQ(d.tenant_endpoints[0].url, "https://acme.example/jira");
  EXPECT_EQ(d.tenant_endpoints[0].updated_at, 5);
}

TYPED_TEST(StoreTest, UpgradesFromVersionOneKeepingRows) {
  // A database left at version 1 (grants and endpoints without updated_at) gains the column, rows intact.
  this->store.reset();
  this->env = std::make_unique<TypeParam>();
  {
    auto seed = Store::open(this->env->url());  // creates the SQLite file's directory
  }
  {
    auto c = this->env->store_conn();
    c->begin(true);
    if (TypeParam::kPostgres) c->script("CREATE SCHEMA mcp_proxy");
    c->script("CREATE TABLE @schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
    c->script(TypeParam::kPostgres ? migrations().at(0).postgresql : migrations().at(0).sqlite);
    c->exec("INSERT INTO @schema_migrations (version, applied_at) VALUES (1, 1)");
    c->exec("INSERT INTO @groups (name) VALUES (?)", {"G"});
    c->exec("INSERT INTO @group_tenant_mapping (group_name, tenant_id, tools_mode, tools) VALUES (?, ?, ?, ?)",
            {"G", "github", "allow", R"(["a"])"});
    c->exec("INSERT INTO @tenant_server_endpoints (tenant_id, server_id, endpoint_url) VALUES (?, ?, ?)",
            {"G", "github", "https://g.example/mcp"});
    // 10,000 analytics rows, one a second (SQLite's migration 5 indexes them in ranges of ids).
    c->exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) "
            "INSERT INTO @api_analytics (timestamp, method, endpoint, status_code) "
            "SELECT 1700000000 + i, 'POST', '/mcp', CASE WHEN i % 10 = 0 THEN 500 ELSE 200 END FROM n");
    c->commit();
  }
  auto s = Store::open(this->env->url());
  EXPECT_EQ(s->schema_version(), 1);
  EXPECT_EQ(s->migrate(), kLatestVersion - 1);
  EXPECT_EQ(s->schema_version(), kLatestVersion);
  auto grants = s->list_grants("G");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].tools, std::vector<std::string>{"a"});
  EXPECT_EQ(grants[0].updated_at, 0);
  auto eps = s->list_tenant_endpoints("G");
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].url, "https://g.example/mcp");
  EXPECT_EQ(eps[0].updated_at, 0);
  auto r = s->analytics_report({.since = 1'700'005'001, .until = 1'700'006'000});
  EXPECT_EQ(r.requests, 1000);
  EXPECT_EQ(r.errors, 100);
  const AnalyticsQuery all{.since = 0, .until = 1'800'000'000};
  EXPECT_EQ(s->analytics_report(all).requests, 10000);
  EXPECT_EQ(s->analytics_report({}).requests, 0);  // until 0 is 1970, not "no end"
  EXPECT_EQ(s->purge_analytics(1'700'009'001), 9000);
  EXPECT_EQ(s->analytics_report(all).requests, 1000);
  if (!TypeParam::kPostgres) {  // the B-tree on the timestamp is gone; the ranges (of 4,096 ids) replace it
    auto c = this->env->store_conn();
    EXPECT_EQ(c->scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'api_analytics'"), 0);
    EXPECT_EQ(c->scalar("SELECT COUNT(*) FROM api_analytics_ranges"), 1);  // 8192–10000; the others purged
  }
}

TYPED_TEST(StoreTest, GrantsPutReplaceListDelete) {
  auto& s = *this->store;
  for (auto n : {"b-team", "A-team"}) ASSERT_TRUE(s.create_group(this->group(n)));
  Grant all{"b-team", "github", "", {}, 100};
  s.put_grant(all);
  Grant allow{"A-team", "jira", "allow", {"search", "get \"issue\"", "créer"}, 0};
  s.put_grant(allow);
  s.put_grant({"A-team", "github", "deny", {"delete_repo"}, 300});
  s.put_grant({"b-team", "confluence", "", {}, 400});

  auto list = s.list_grants("");
  ASSERT_EQ(list.size(), 4u);  // by group (bytewise), then server
  EXPECT_EQ(list[0].group, "A-team");
  EXPECT_EQ(list[0].server, "github");
  EXPECT_EQ(list[0].tools_mode, "deny");
  EXPECT_EQ(list[0].tools, std::vector<std::string>{"delete_repo"});
  EXPECT_EQ(list[0].updated_at, 300);
  EXPECT_EQ(list[1].server, "jira");
  EXPECT_EQ(list[1].tools_mode, "allow");
  EXPECT_EQ(list[1].tools, allow.tools);
  EXPECT_GT(list[1].updated_at, 0);  // stamped by the store when unset
  EXPECT_EQ(list[2].group, "b-team");
  EXPECT_EQ(list[2].server, "confluence");
  EXPECT_EQ(list[3].server, "github");
  EXPECT_EQ(list[3].tools_mode, "");
  EXPECT_TRUE(list[3].tools.empty());
  EXPECT_EQ(list[3].updated_at, 100);

  auto mine = s.list_grants("b-team");
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[0].server, "confluence");
  EXPECT_TRUE(s.list_grants("nobody").empty());

  // Storage format: "every tool" is a NULL mode; tools are a JSON array.
  std::vector<std::pair<bool, std::string>> raw;
  this->env->store_conn()->query(
      "SELECT tools_mode IS NULL, tools FROM @group_tenant_mapping WHERE group_name = ? ORDER BY tenant_id",
      {"A-team"}, [&](const sql::Row& r) { raw.emplace_back(r.boolean(0), r.str(1)); });
  ASSERT_EQ(raw.size(), 2u);
  EXPECT_FALSE(raw[0].first);
  EXPECT_EQ(raw[0].second, R"(["delete_repo"])");
  bool mode_null = false;
  this->env->store_conn()->query(
      "SELECT tools_mode IS NULL FROM @group_tenant_mapping WHERE group_name = ? AND tenant_id = ?",
      {"b-team", "github"}, [&](const sql::Row& r) { mode_null = r.boolean(0); });
  EXPECT_TRUE(mode_null);

  // Replace: same (group, server) keeps one row with the new values.
  s.put_grant({"b-team", "github", "allow", {"list"}, 500});
  mine = s.list_grants("b-team");
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(mine[1].tools_mode, "allow");
  EXPECT_EQ(mine[1].tools, std::vector<std::string>{"list"});
  EXPECT_EQ(mine[1].updated_at, 500);
  s.put_grant({"b-team", "github", "", {}, 600});
  EXPECT_EQ(s.list_grants("b-team")[1].tools_mode, "");

  EXPECT_THROW(s.put_grant({"b-team", "github", "everything", {}, 0}), StoreError);
  EXPECT_THROW(s.put_grant({"b-team", "", "", {}, 0}), StoreError);

  EXPECT_TRUE(s.delete_grant("b-team", "github"));
  EXPECT_FALSE(s.delete_grant("b-team", "github"));
  EXPECT_FALSE(s.delete_grant("B-TEAM", "confluence"));  // group names are case-sensitive
  EXPECT_EQ(s.list_grants("").size(), 3u);
}

TYPED_TEST(StoreTest, TenantKeysPutReplaceListDelete) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_group(this->group("Tenant-B")));
  ASSERT_TRUE(s.create_group(this->group("Tenant-A")));
  s.put_tenant_key({"Tenant-B", "github", "TOKEN", "c-b-gh", "kid1", 10});
  s.put_tenant_key({"Tenant-A", "jira", "USER", "c-a-jira-user", "kid1", 20});
  s.put_tenant_key({"Tenant-A", "jira", "PASSWORD", "c-a-jira-pw", "kid1", 0});
  s.put_tenant_key({"Tenant-A", "github", "TOKEN", "c-a-gh", "kid2", 30});

  auto all = s.list_tenant_keys("");
  ASSERT_EQ(all.size(), 4u);  // by group, server, slot
  EXPECT_EQ(all[0].group, "Tenant-A");
  EXPECT_EQ(all[0].server, "github");
  EXPECT_EQ(all[0].ciphertext, "c-a-gh");
  EXPECT_EQ(all[0].key_id, "kid2");
  EXPECT_EQ(all[0].updated_at, 30);
  EXPECT_EQ(all[1].slot, "PASSWORD");
  EXPECT_GT(all[1].updated_at, 0);
  EXPECT_EQ(all[2].slot, "USER");
  EXPECT_EQ(all[3].group, "Tenant-B");

  auto b = s.list_tenant_keys("Tenant-B");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].ciphertext, "c-b-gh");

  s.put_tenant_key({"Tenant-B", "github", "TOKEN", "c-b-gh-2", "kid2", 40});
  b = s.list_tenant_keys("Tenant-B");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].ciphertext, "c-b-gh-2");
  EXPECT_EQ(b[0].key_id, "kid2");
  EXPECT_EQ(b[0].updated_at, 40);

  EXPECT_THROW(s.put_tenant_key({"Tenant-B", "github", "", "c", "k", 0}), StoreError);
  EXPECT_TRUE(s.delete_tenant_key("Tenant-A", "jira", "USER"));
  EXPECT_FALSE(s.delete_tenant_key("Tenant-A", "jira", "USER"));
  EXPECT_FALSE(s.delete_tenant_key("Tenant-A", "jira", "user"));
  EXPECT_EQ(s.list_tenant_keys("Tenant-A").size(), 2u);
}

TYPED_TEST(StoreTest, ReencryptTenantKeysUpdatesRowsInOneTransaction) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_group(this->group("T")));
  s.put_tenant_key({"T", "github", "TOKEN", "old-1", "old", 10});
  s.put_tenant_key({"T", "jira", "TOKEN", "old-2", "old", 20});
  s.put_tenant_key({"T", "jira", "USER", "old-3", "old", 30});

  // Rows deleted meanwhile stay deleted; the value's own time is kept.
  s.reencrypt_tenant_keys({{"T", "github", "TOKEN", "new-1", "new", 0},
                           {"T", "jira", "TOKEN", "new-2", "new", 0},
                           {"T", "gone", "TOKEN", "new-x", "new", 0}});
  auto rows = s.list_tenant_keys("T");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].ciphertext, "new-1");
  EXPECT_EQ(rows[0].key_id, "new");
  EXPECT_EQ(rows[0].updated_at, 10);
  EXPECT_EQ(rows[1].ciphertext, "new-2");
  EXPECT_EQ(rows[2].ciphertext, "old-3");
  EXPECT_EQ(rows[2].key_id, "old");
  s.reencrypt_tenant_keys({});

  // A failure part-way (a trigger refuses the second row) leaves every row as it was.
  auto c = this->env->store_conn();
  if (TypeParam::kPostgres) {
    c->script(
        "CREATE FUNCTION @refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.api_key_encrypted = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$");
    c->script(
        "CREATE TRIGGER refuse_boom BEFORE UPDATE ON @tenant_server_keys FOR EACH ROW EXECUTE FUNCTION "
        "@refuse_boom()");
  } else {
    c->script(
        "CREATE TRIGGER refuse_boom BEFORE UPDATE ON tenant_server_keys WHEN NEW.api_key_encrypted = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END");
  }
  EXPECT_THROW(s.reencrypt_tenant_keys({{"T", "github", "TOKEN", "newer-1", "newer", 0},
                                        {"T", "jira", "TOKEN", "boom", "newer", 0},
                                        {"T", "jira", "USER", "newer-3", "newer", 0}}),
               StoreError);
  rows = s.list_tenant_keys("T");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].ciphertext, "new-1");
  EXPECT_EQ(rows[0].key_id, "new");
  EXPECT_EQ(rows[1].ciphertext, "new-2");
  EXPECT_EQ(rows[2].ciphertext, "old-3");
  // The store is usable afterwards (the transaction was rolled back, not left open).
  s.reencrypt_tenant_keys({{"T", "jira", "USER", "new-3", "new", 0}});
  EXPECT_EQ(s.list_tenant_keys("T")[2].ciphertext, "new-3");
}

TYPED_TEST(StoreTest, TenantEndpointsPutReplaceListDelete) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_group(this->group("Tenant-B")));
  ASSERT_TRUE(s.create_group(this->group("Tenant-A")));
  s.put_tenant_endpoint({"Tenant-B", "jira", "https://b.example/jira", 5});
  s.put_tenant_endpoint({"Tenant-A", "jira", "https://a.example/jira", 0});
  s.put_tenant_endpoint({"Tenant-A", "github", "https://a.example/gh", 7});
  auto all = s.list_tenant_endpoints("");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].group, "Tenant-A");
  EXPECT_EQ(all[0].server, "github");
  EXPECT_EQ(all[0].url, "https://a.example/gh");
  EXPECT_EQ(all[0].updated_at, 7);
  EXPECT_EQ(all[1].server, "jira");
  EXPECT_GT(all[1].updated_at, 0);
  EXPECT_EQ(all[2].group, "Tenant-B");
  EXPECT_EQ(all[2].updated_at, 5);

  s.put_tenant_endpoint({"Tenant-B", "jira", "https://b2.example/jira", 9});
  auto b = s.list_tenant_endpoints("Tenant-B");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].url, "https://b2.example/jira");
  EXPECT_EQ(b[0].updated_at, 9);

  EXPECT_THROW(s.put_tenant_endpoint({"Tenant-B", "", "https://x", 0}), StoreError);
  EXPECT_TRUE(s.delete_tenant_endpoint("Tenant-A", "jira"));
  EXPECT_FALSE(s.delete_tenant_endpoint("Tenant-A", "jira"));
  EXPECT_EQ(s.list_tenant_endpoints("Tenant-A").size(), 1u);
  EXPECT_EQ(s.list_tenant_endpoints("").size(), 2u);
}

TYPED_TEST(StoreTest, GrantsKeysEndpointsNeedAnExistingGroup) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_group(this->group("Real")));
  EXPECT_THROW(s.put_grant({"Missing", "github", "", {}, 0}), StoreError);
  EXPECT_THROW(s.put_grant({"real", "github", "", {}, 0}), StoreError);  // case-sensitive
  EXPECT_THROW(s.put_tenant_key({"Missing", "github", "TOKEN", "c", "k", 0}), StoreError);
  EXPECT_THROW(s.put_tenant_endpoint({"Missing", "github", "https://x", 0}), StoreError);
  EXPECT_THROW(s.put_grant({"", "github", "", {}, 0}), StoreError);
  auto d = s.dump();
  EXPECT_TRUE(d.grants.empty());
  EXPECT_TRUE(d.tenant_keys.empty());
  EXPECT_TRUE(d.tenant_endpoints.empty());
  // The store keeps working after the refusals.
  s.put_grant({"Real", "github", "", {}, 0});
  EXPECT_EQ(s.list_grants("").size(), 1u);
}

TYPED_TEST(StoreTest, RenameWritesTheResealedKeysAndAdminsAreListed) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_group(this->group("Tenant-Old")));
  s.put_tenant_key({"Tenant-Old", "github", "TOKEN", "sealed-for-old", "k1", 1});
  ASSERT_TRUE(s.rename_group("Tenant-Old", "Tenant-New", {{"Tenant-New", "github", "TOKEN", "sealed-for-new", "k2", 1}}));
  auto keys = s.list_tenant_keys("Tenant-New");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].ciphertext, "sealed-for-new");
  EXPECT_EQ(keys[0].key_id, "k2");

  auto flagged = this->user("flag@x.io");
  flagged.is_admin = true;
  auto off = this->user("off@x.io");
  off.is_admin = true;
  off.disabled = true;
  for (auto& u : {flagged, off, this->user("member@x.io"), this->user("plain@x.io")}) ASSERT_TRUE(s.create_user(u));
  ASSERT_TRUE(s.create_group(this->group("MCP-Admin")));
  ASSERT_TRUE(s.add_member("MCP-Admin", "member@x.io", "manual"));
  EXPECT_EQ(s.admin_emails("MCP-Admin"), (std::vector<std::string>{"flag@x.io", "member@x.io"}));
}

TYPED_TEST(StoreTest, TextWithANulIsStoredWholeOrRefused) {
  auto& s = *this->store;
  using namespace std::string_literals;
  auto u = this->user("nul@x.io", "a\0b"s);
  if constexpr (TypeParam::kPostgres) {
    EXPECT_THROW(s.create_user(u), StoreError);  // libpq would cut the value at the NUL
    EXPECT_THROW(s.get_user("nul@x.io\0y"s), StoreError);
  } else {
    ASSERT_TRUE(s.create_user(u));
    EXPECT_EQ(s.get_user("nul@x.io")->name, "a\0b"s);
    EXPECT_FALSE(s.get_user("nul@x.io\0y"s));
  }
}

TYPED_TEST(StoreTest, GrantsKeysEndpointsFollowGroupRenameAndDelete) {
  auto& s = *this->store;
  ASSERT_TRUE(s.create_group(this->group("Tenant-Old")));
  ASSERT_TRUE(s.create_group(this->group("Other")));
  for (auto g : {"Tenant-Old", "Other"}) {
    s.put_grant({g, "github", "allow", {"x"}, 1});
    s.put_tenant_key({g, "github", "TOKEN", std::string("c-") + g, "k", 1});
    s.put_tenant_endpoint({g, "github", std::string("https://") + g, 1});
  }

  ASSERT_TRUE(s.rename_group("Tenant-Old", "Tenant-New"));
  EXPECT_TRUE(s.list_grants("Tenant-Old").empty());
  EXPECT_TRUE(s.list_tenant_keys("Tenant-Old").empty());
  EXPECT_TRUE(s.list_tenant_endpoints("Tenant-Old").empty());
  auto grants = s.list_grants("Tenant-New");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].tools, std::vector<std::string>{"x"});
  auto keys = s.list_tenant_keys("Tenant-New");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].ciphertext, "c-Tenant-Old");
  auto eps = s.list_tenant_endpoints("Tenant-New");
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].url, "https://Tenant-Old");

  ASSERT_TRUE(s.delete_group("Tenant-New"));
  EXPECT_TRUE(s.list_grants("Tenant-New").empty());
  EXPECT_TRUE(s.list_tenant_keys("Tenant-New").empty());
  EXPECT_TRUE(s.list_tenant_endpoints("Tenant-New").empty());
  // The other group's rows are untouched.
  EXPECT_EQ(s.list_grants("").size(), 1u);
  EXPECT_EQ(s.list_tenant_keys("").size(), 1u);
  EXPECT_EQ(s.list_tenant_endpoints("").size(), 1u);
  EXPECT_EQ(s.list_tenant_keys("")[0].group, "Other");
}

TYPED_TEST(StoreTest, DumpOfManyUsers) {
  // Sized, not timed: a bulk load of 2,000 users with memberships comes back whole.
  auto& s = *this->store;
  ASSERT_TRUE(s.create_group(this->group("All")));
  for (int i = 0; i < 2000; ++i) {
    auto email = "bulk" + std::to_string(i) + "@x.test";
    ASSERT_TRUE(s.create_user(this->user(email)));
    if (i % 2 == 0) {
      ASSERT_TRUE(s.add_member("All", email, "idp"));
    }
  }
  auto d = s.dump();
  EXPECT_EQ(d.users.size(), 2000u);
  EXPECT_EQ(d.memberships.size(), 1000u);
  EXPECT_EQ(d.groups.at(0).member_count, 1000);
  int64_t total = 0;
  auto page = s.list_users("bulk49", 0, 5, &total);
  EXPECT_EQ(total, 11);  // bulk49, bulk490…bulk499
  ASSERT_EQ(page.size(), 5u);
  EXPECT_EQ(page[0].email, "bulk490@x.test");  // bytewise: '0' sorts before '@'
  EXPECT_EQ(page[4].email, "bulk494@x.test");
  page = s.list_users("bulk49", 10, 5, &total);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].email, "bulk49@x.test");
}

TYPED_TEST(StoreTest, NotifyChangedFiresTheWatcherOncePerBurst) {
  auto& s = *this->store;
  std::atomic<int> calls{0};
  s.watch([&] { ++calls; });
  if (TypeParam::kPostgres) std::this_thread::sleep_for(std::chrono::milliseconds(200));  // LISTEN established
  s.notify_changed();
  EXPECT_TRUE(eventually([&] { return calls.load() >= 1; }, std::chrono::milliseconds(1000)));
  auto before = calls.load();
  for (int i = 0; i < 10; ++i) s.notify_changed();
  EXPECT_TRUE(eventually([&] { return calls.load() > before; }, std::chrono::milliseconds(1000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_LE(calls.load() - before, 3) << "a burst of 10 notifications should be debounced";
  s.stop_watching();
  s.stop_watching();  // idempotent
}

TYPED_TEST(StoreTest, AChangeBeforeTheWatcherListensIsSeen) {
  // An instance loads its directory, then starts watching; a change another instance makes in between (before
  // the watcher's first LISTEN or poll) must still reach it: the first LISTEN / read counts as a change.
  auto other = Store::open(this->env->url());
  std::atomic<int> calls{0};
  other->watch([&] { ++calls; });
  this->store->notify_changed();  // at once: the watcher has most likely not connected yet
  EXPECT_TRUE(eventually([&] { return calls.load() > 0; }, std::chrono::milliseconds(3000)));
  other->stop_watching();
}

TYPED_TEST(StoreTest, ChangesReachAnotherInstance) {
  // PostgreSQL: NOTIFY from one instance reaches another's LISTEN. SQLite: another connection's (another
  // process's, e.g. the CLI's) notification is seen by the watcher's poll of a counter. Commits that are
  // not notified (analytics rows, every few hundred milliseconds under traffic) wake nobody.
  auto other = Store::open(this->env->url());
  std::atomic<int> calls{0};
  other->watch([&] { ++calls; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // watcher connected / first version read
  const int before = calls.load();  // SQLite: the first read counts as a change
  AnalyticsBatch rows;
  AnalyticsRow r;
  r.timestamp = 1, r.method = "POST", r.endpoint = "/mcp";
  rows.add(r);
  std::size_t written = 0;
  for (int i = 0; i < 3; ++i) {
    this->store->insert_analytics(rows, written);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  EXPECT_EQ(calls.load(), before) << "analytics commits woke the directory watcher";
  ASSERT_TRUE(this->store->create_user(this->user("w@x.test")));
  this->store->notify_changed();
  EXPECT_TRUE(eventually([&] { return calls.load() > before; }, std::chrono::milliseconds(TypeParam::kPostgres ? 1000 : 2000)));
  EXPECT_TRUE(other->get_user("w@x.test"));
}

TYPED_TEST(StoreTest, OpenWebUiDirectoryReadsBothMembershipForms) {
  {
    auto c = this->env->webui_conn();
    std::string json_type = TypeParam::kPostgres ? "JSON" : "TEXT";
    c->script(R"(CREATE TABLE "user" (id TEXT PRIMARY KEY, email TEXT, name TEXT, role TEXT, oauth_sub TEXT))");
    c->script(R"(CREATE TABLE "group" (id TEXT PRIMARY KEY, user_id TEXT, name TEXT, description TEXT, user_ids )" +
              json_type + ")");
    c->script(R"(CREATE TABLE group_member (id TEXT PRIMARY KEY, group_id TEXT, user_id TEXT))");
    c->exec(R"(INSERT INTO "user" (id, email, name, role) VALUES (?, ?, ?, ?))", {"u1", "one@x.test", "One", "admin"});
    c->exec(R"(INSERT INTO "user" (id, email, name, role) VALUES (?, ?, ?, ?))", {"u2", "two@x.test", "Two", "pending"});
    c->exec(R"(INSERT INTO "user" (id, email, name, role) VALUES (?, ?, ?, ?))", {"u10", "ten@x.test", "Ten", "user"});
    c->exec(R"(INSERT INTO "group" (id, name, user_ids) VALUES (?, ?, ?))", {"g1", "Zeta", R"(["u1","u10"])"});
    c->exec(R"(INSERT INTO "group" (id, name, user_ids) VALUES (?, ?, ?))", {"g2", "Alpha", R"([])"});
    c->exec(R"(INSERT INTO "group" (id, name, user_ids) VALUES (?, ?, ?))", {"g3", "Mid", nullptr});
    c->exec(R"(INSERT INTO "group" (id, name, user_ids) VALUES (?, ?, ?))", {"g4", "Only10", R"(["u10"])"});
    c->exec("INSERT INTO group_member (id, group_id, user_id) VALUES (?, ?, ?)", {"m1", "g2", "u1"});
    c->exec("INSERT INTO group_member (id, group_id, user_id) VALUES (?, ?, ?)", {"m2", "g1", "u1"});  // both forms
    c->exec("INSERT INTO group_member (id, group_id, user_id) VALUES (?, ?, ?)", {"m3", "g3", "u1"});
  }
  auto dir = OpenWebUiDirectory::open(this->env->webui_url());
  auto u1 = dir->find("u1");
  ASSERT_TRUE(u1);
  EXPECT_EQ(u1->email, "one@x.test");
  EXPECT_EQ(u1->name, "One");
  EXPECT_EQ(u1->role, "admin");
  EXPECT_EQ(u1->groups, (std::vector<std::string>{"Alpha", "Mid", "Zeta"}));  // sorted, no duplicate, not Only10
  auto u2 = dir->find("u2");
  ASSERT_TRUE(u2);
  EXPECT_EQ(u2->role, "pending");
  EXPECT_TRUE(u2->groups.empty());
  auto u10 = dir->find("u10");
  ASSERT_TRUE(u10);
  EXPECT_EQ(u10->groups, (std::vector<std::string>{"Only10", "Zeta"}));
  EXPECT_FALSE(dir->find("nobody"));
  EXPECT_FALSE(dir->find(""));
}

TYPED_TEST(StoreTest, OpenWebUiDirectoryWithOnlyOneMembershipForm) {
  {
    auto c = this->env->webui_conn();
    c->script(R"(CREATE TABLE "user" (id TEXT PRIMARY KEY, email TEXT, name TEXT, role TEXT))");
    c->script(R"(CREATE TABLE "group" (id TEXT PRIMARY KEY, name TEXT))");
    c->script(R"(CREATE TABLE group_member (id TEXT PRIMARY KEY, group_id TEXT, user_id TEXT))");
    c->exec(R"(INSERT INTO "user" (id, email, name, role) VALUES (?, ?, ?, ?))", {"u1", "one@x.test", "One", "user"});
    c->exec(R"(INSERT INTO "group" (id, name) VALUES (?, ?))", {"g1", "B"});
    c->exec(R"(INSERT INTO "group" (id, name) VALUES (?, ?))", {"g2", "A"});
    c->exec("INSERT INTO group_member (id, group_id, user_id) VALUES (?, ?, ?)", {"m1", "g1", "u1"});
    c->exec("INSERT INTO group_member (id, group_id, user_id) VALUES (?, ?, ?)", {"m2", "g2", "u1"});
  }
  auto dir = OpenWebUiDirectory::open(this->env->webui_url());
  auto u1 = dir->find("u1");
  ASSERT_TRUE(u1);
  EXPECT_EQ(u1->groups, (std::vector<std::string>{"A", "B"}));
}

// ---- backend-independent parts ----

TEST(StoreUrl, ErrorsNeverShowThePassword) {
  try {
    Store::open("postgresql://gh:s3cr3t-pw@127.0.0.1:1/db?connect_timeout=2");
    FAIL() << "expected StoreError";
  } catch (const StoreError& e) {
    std::string what = e.what();
    EXPECT_EQ(what.find("s3cr3t-pw"), std::string::npos) << what;
    EXPECT_NE(what.find("127.0.0.1"), std::string::npos) << what;
  }
  EXPECT_THROW(Store::open("mysql://root:pw@localhost/x"), StoreError);
  EXPECT_EQ(sql::redact_url("postgresql://u:pw@h:5432/d?password=x&sslmode=require"),
            "postgresql://u:***@h:5432/d?password=***&sslmode=require");
  EXPECT_EQ(sql::redact_url("postgresql://u@h/d"), "postgresql://u@h/d");
}

TYPED_TEST(StoreTest, AnalyticsBatchesAreInsertedInSlicesWithAPauseBetween) {
  // SQLite inserts a transaction's rows (512 at most) 64 at a time and calls `between` before every slice,
  // and after every 8 file reads or writes; the slices are one transaction — nothing is
  // visible to another connection until its commit has ended, and no transaction is committed per slice.
  // PostgreSQL sends the batch in one COPY, no pause.
  auto scan = this->env->store_conn();
  AnalyticsBatch b;
  for (int i = 0; i < 600; ++i) {
    AnalyticsRow r;
    r.timestamp = 1'700'000'000 + i, r.method = "POST", r.endpoint = "/mcp";
    b.add(r);
  }
  std::size_t written = 0;
  std::vector<std::pair<std::size_t, int64_t>> pauses;  // (written, rows another connection sees)
  this->store->insert_analytics(b, written, [&] {
    pauses.emplace_back(written, scan->scalar("SELECT COUNT(*) FROM @api_analytics"));
  });
  EXPECT_EQ(written, 600u);
  EXPECT_EQ(scan->scalar("SELECT COUNT(*) FROM @api_analytics"), 600);
  if (TypeParam::kPostgres) {
    EXPECT_TRUE(pauses.empty());
  } else {
    auto count = [&](std::pair<std::size_t, int64_t> p) { return std::count(pauses.begin(), pauses.end(), p); };
    EXPECT_EQ(count({0, 0}) + count({512, 512}), static_cast<std::ptrdiff_t>(pauses.size()));
    // 8 slices of the first 512 rows (their commit is one write: a pause at most); 2 slices (64 + 24) of
    // the other 88
    EXPECT_GE(count({0, 0}), 8);
    EXPECT_GE(count({512, 512}), 2);
    ASSERT_GE(pauses.size(), 8u);
    EXPECT_EQ(pauses[7], (std::pair<std::size_t, int64_t>{0, 0}));
  }
}

TYPED_TEST(StoreTest, AnalyticsReportsAndRetentionFindEveryRowOfTheirWindow) {
  // Reports and retention read by time (PostgreSQL: a BRIN index; SQLite: ranges of ids with their least
  // and greatest times, migration 5). Rows arrive in nearly increasing time, 2% of them up to ten minutes
  // late (a long call's row), in batches of every size, over several id ranges; every window's report and
  // every purge must agree with a plain scan of the table.
  auto& s = *this->store;
  auto scan = this->env->store_conn();
  std::mt19937 rng(20261205);
  int64_t t = 1'700'000'000;
  auto add = [&](int n) {
    AnalyticsBatch b;
    for (int i = 0; i < n; ++i) {
      AnalyticsRow r;
      t += rng() % 3;
      r.timestamp = rng() % 50 == 0 ? t - 1 - static_cast<int64_t>(rng() % 600) : t;
      r.method = "POST", r.endpoint = "/mcp", r.status = rng() % 5 ? 200 : 500;
      r.response_ms = static_cast<double>(rng() % 1000) / 10;
      b.add(r);
    }
    std::size_t written = 0;
    s.insert_analytics(b, written);
    ASSERT_EQ(written, static_cast<std::size_t>(n));
  };
  auto check = [&](int64_t since, int64_t until) {
    int64_t n = 0, errors = 0;
    scan->query("SELECT COUNT(*), COALESCE(SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END), 0) FROM @api_analytics "
                "WHERE timestamp >= ? AND timestamp <= ?",
                {since, until},
                [&](const sql::Row& row) { n = row.int64(0), errors = row.int64(1); });
    auto r = s.analytics_report({.since = since, .until = until, .bucket_s = 600, .top = 5});
    EXPECT_EQ(r.requests, n) << "window " << since << " .. " << until;
    EXPECT_EQ(r.errors, errors) << "window " << since << " .. " << until;
    int64_t in_timeline = 0;
    for (auto& b : r.timeline) in_timeline += b.requests;
    EXPECT_EQ(in_timeline, n) << "window " << since << " .. " << until;
  };
  auto windows = [&](int64_t from) {
    const int64_t end = 2'000'000'000;  // past every row
    check(0, end);
    check(0, 0);  // 1970: nothing (an `until` of 0 is no open end)
    check(t + 1, end);
    check(from - 1000, from - 1);
    for (int i = 0; i < 30; ++i) {
      int64_t a = from - 700 + static_cast<int64_t>(rng() % static_cast<uint64_t>(t - from + 800));
      int64_t len = i % 3 ? static_cast<int64_t>(rng() % 200) : static_cast<int64_t>(rng() % 10000);
      check(a, a + len);
    }
  };
  const int64_t start = t;
  for (int n : {1, 7, 300, 512, 1000, 2000, 3, 5000, 450, 1, 4096, 900}) add(n);  // 14,370 rows
  windows(start);
  // Retention, three times, the cutoffs moving forward; then more rows (some older than the last cutoff).
  // (start + 14000 takes over 10,000 rows at once: more than one of the purge's chunks.)
  for (int64_t cut : {start + 3000, start + 3000, start + 14000, start + 16000}) {
    int64_t older = scan->scalar("SELECT COUNT(*) FROM @api_analytics WHERE timestamp < ?", {cut});
    int64_t total = s.count_analytics();
    EXPECT_EQ(s.purge_analytics(cut), older) << "cutoff " << cut;
    EXPECT_EQ(s.count_analytics(), total - older);
    EXPECT_EQ(scan->scalar("SELECT COUNT(*) FROM @api_analytics WHERE timestamp < ?", {cut}), 0);
  }
  for (int n : {600, 1, 5000}) add(n);
  windows(start);
}

TYPED_TEST(StoreTest, AnalyticsRowsArriveExactly) {
  // Rows go through the packed batch and each backend's bulk path (multi-row INSERTs / COPY): every value
  // arrives as recorded, including texts COPY must escape, empty texts as NULL, and counts that do not
  // fill a whole statement or transaction; control characters (a NUL would fail a COPY) become '?'.
  auto& s = *this->store;
  std::vector<std::string> agents = {"tab\there", "new\nline", "back\\slash \\N", "cr\rlf", "", "ünï"};
  AnalyticsBatch batch;
  const int n = 1300;  // transactions of 512, 512 and 276 rows; SQLite: the last as statements of 256, 16, 4 × 1
  for (int i = 0; i < n; ++i) {
    std::string email = i % 7 == 0 ? "" : "user" + std::to_string(i % 13) + "@example.com";
    std::string endpoint = "/mcp/s" + std::to_string(i % 3) + (i == 5 ? "\x01\xff" : "");
    std::string id = "req-" + std::to_string(i);
    AnalyticsRow r;
    r.timestamp = 1'700'000'000 + i;
    r.user_email = email;
    r.method = "POST";
    r.endpoint = endpoint;
    r.status = i % 10 == 0 ? 429 : 200;
    r.response_ms = i * 0.25 + 0.0004;  // stored rounded to the microsecond
    r.user_agent = agents[i % agents.size()];
    r.client_ip = "10.0.0." + std::to_string(i % 250);
    r.server = i % 3 ? "fast" : "";
    // A client's tool names: control characters, a broken UTF-8 sequence, valid UTF-8.
    r.tool = i % 3 == 0 ? "" : i == 4 ? std::string_view("ec\0h\to\x7f", 7) : i == 7 ? "t\xff\xe2\x82" : i == 10 ? "t\xc3\xa9\xe2\x82\xac" : "echo";
    r.request_id = id;
    r.bytes_in = i;
    r.bytes_out = 2 * i;
    batch.add(r);
  }
  ASSERT_EQ(batch.size(), static_cast<std::size_t>(n));
  std::size_t written = 0;
  s.insert_analytics(batch, written);
  EXPECT_EQ(written, static_cast<std::size_t>(n));
  EXPECT_EQ(s.count_analytics(), n);
  if (TypeParam::kPostgres) {
    // Migrations 3 and 4: the table's one index is the BRIN one on time (no key on id); deletes stay
    // replicable (REPLICA IDENTITY FULL).
    std::vector<std::string> indexes;
    std::string identity;
    auto c = this->env->store_conn();
    c->query("SELECT c.relname || ' ' || am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
             "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = 'mcp_proxy.api_analytics'::regclass",
             {}, [&](const sql::Row& r) { indexes.push_back(r.str(0)); });
    c->query("SELECT relreplident::text FROM pg_class WHERE oid = 'mcp_proxy.api_analytics'::regclass", {},
             [&](const sql::Row& r) { identity = r.str(0); });
    EXPECT_EQ(indexes, std::vector<std::string>{"api_analytics_timestamp brin"});
    EXPECT_EQ(identity, "f");
  }

  int seen = 0;
  this->env->store_conn()->query(
      "SELECT timestamp, user_email, method, endpoint, status_code, response_time_ms, user_agent, client_ip, "
      "server_id, tool, request_id, bytes_in, bytes_out, user_email IS NULL, server_id IS NULL FROM @api_analytics "
      "ORDER BY id",
      {}, [&](const sql::Row& r) {
        int i = seen++;
        SCOPED_TRACE(i);
        EXPECT_EQ(r.int64(0), 1'700'000'000 + i);
        EXPECT_EQ(r.boolean(13), i % 7 == 0);
        if (i % 7) {
          EXPECT_EQ(r.str(1), "user" + std::to_string(i % 13) + "@example.com");
        }
        EXPECT_EQ(r.str(2), "POST");
        // What the client sent is kept as printable ASCII.
        EXPECT_EQ(r.str(3), "/mcp/s" + std::to_string(i % 3) + (i == 5 ? "??" : ""));
        EXPECT_EQ(r.int64(4), i % 10 == 0 ? 429 : 200);
        EXPECT_NEAR(std::stod(r.str(5)), i * 0.25, 1e-9);
        std::string agent = agents[i % agents.size()];
        for (auto& c : agent)
          if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
        EXPECT_EQ(r.is_null(6), agent.empty());
        EXPECT_EQ(r.str(6), agent);
        EXPECT_EQ(r.str(7), "10.0.0." + std::to_string(i % 250));
        EXPECT_EQ(r.boolean(14), i % 3 == 0);
        EXPECT_EQ(r.str(9), i % 3 == 0 ? "" : i == 4 ? "ec?h?o?" : i == 7 ? "t???" : i == 10 ? "t\xc3\xa9\xe2\x82\xac" : "echo");
        EXPECT_EQ(r.str(10), "req-" + std::to_string(i));
        EXPECT_EQ(r.int64(11), i);
        EXPECT_EQ(r.int64(12), 2 * i);
      });
  EXPECT_EQ(seen, n);

  // A batch resumed after `written` rows (the writer's retry) adds only the rest.
  AnalyticsBatch again;
  batch.for_each([&](const AnalyticsRow& r) { again.add(r); }, n - 10);
  EXPECT_EQ(again.size(), 10u);
  written = 0;
  s.insert_analytics(again, written);
  EXPECT_EQ(s.count_analytics(), n + 10);
}

TYPED_TEST(StoreTest, AnalyticsWriterDropsOnlyTheRowTheDatabaseRefuses) {
  // A row the database refuses (here a trigger / CHECK constraint an operator added) must not hold up the
  // rows behind it forever: after a few failed attempts the writer goes row by row and drops that one only.
  auto c = this->env->store_conn();
  if (TypeParam::kPostgres)
    c->script("ALTER TABLE @api_analytics ADD CONSTRAINT refuse_poison CHECK (tool IS DISTINCT FROM 'poison')");
  else
    c->script("CREATE TRIGGER refuse_poison BEFORE INSERT ON @api_analytics WHEN NEW.tool = 'poison' "
              "BEGIN SELECT RAISE(ABORT, 'poison row'); END");
  boost::asio::io_context io;
  gh::BlockingPool urgent(1);
  gh::observability::AnalyticsWriter writer(*this->store, urgent, io.get_executor(), 1000, 16);
  constexpr int n = 100;
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back("req-" + std::to_string(i));
  for (int i = 0; i < n; ++i) {
    AnalyticsRow r;
    r.timestamp = 1'700'000'000 + i;
    r.method = "POST";
    r.endpoint = "/mcp/fast";
    r.status = 200;
    r.tool = i == 42 ? "poison" : "echo";
    r.request_id = ids[i];
    writer.record(r);
  }
  bool flushed = false;
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> {
    co_await writer.flush(20000);
    flushed = true;
  }, boost::asio::detached);
  io.run();
  ASSERT_TRUE(flushed);
  EXPECT_EQ(this->store->count_analytics(), n - 1);
  EXPECT_EQ(writer.stats().written, static_cast<uint64_t>(n - 1));
  EXPECT_EQ(writer.stats().dropped, 1u);
  EXPECT_EQ(writer.stats().queued, 0u);
  int64_t poisoned = -1;
  c->query("SELECT COUNT(*) FROM @api_analytics WHERE request_id = 'req-42'", {},
           [&](const sql::Row& row) { poisoned = row.int64(0); });
  EXPECT_EQ(poisoned, 0);
}

TYPED_TEST(StoreTest, AnalyticsWriterKeepsRowsADatabaseCannotWriteNow) {
  // A database that refuses every write for a while — read-only after a failover (SQLSTATE 25006), here made so
  // by a trigger — while it still answers queries: the writer keeps its rows and writes them all afterwards.
  if (!TypeParam::kPostgres) GTEST_SKIP() << "PostgreSQL: an error code a trigger can raise";
  auto c = this->env->store_conn();
  c->script("CREATE FUNCTION @read_only_now() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'read-only now' USING ERRCODE = '25006'; END $$");
  c->script("CREATE TRIGGER read_only_now BEFORE INSERT ON @api_analytics FOR EACH ROW EXECUTE FUNCTION @read_only_now()");
  boost::asio::io_context io;
  gh::BlockingPool urgent(1);
  gh::observability::AnalyticsWriter writer(*this->store, urgent, io.get_executor(), 1000, 16);
  constexpr int n = 40;
  for (int i = 0; i < n; ++i) {
    AnalyticsRow r;
    r.timestamp = 1'700'000'000 + i, r.method = "POST", r.endpoint = "/mcp/fast", r.status = 200;
    writer.record(r);
  }
  auto flush = [&](int ms) {
    boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> { co_await writer.flush(ms); }, boost::asio::detached);
    io.restart();
    io.run();
  };
  flush(1500);  // long enough for several failed batches, and the row-by-row attempt after them
  EXPECT_EQ(writer.stats().dropped, 0u);
  EXPECT_EQ(writer.stats().written, 0u);
  EXPECT_EQ(writer.stats().queued, static_cast<uint64_t>(n));
  c->script("DROP TRIGGER read_only_now ON @api_analytics");
  flush(20000);
  EXPECT_EQ(this->store->count_analytics(), n);
  EXPECT_EQ(writer.stats().written, static_cast<uint64_t>(n));
}

// An analytics writer of 16-row batches on an io_context the test runs; rows are recorded in order,
// `per_second` of them to a second.
struct WriterRig {
  WriterRig(Store& s, std::size_t max_queue, int per_second)
      : writer(s, urgent, io.get_executor(), max_queue, 16), per_second(per_second) {}
  void add(int n) {
    for (int i = 0; i < n; ++i, ++next) {
      AnalyticsRow r;
      r.timestamp = 1'700'000'000 + next / per_second, r.method = "POST", r.endpoint = "/mcp/fast", r.status = 200;
      writer.record(r);
    }
  }
  // Runs the io_context until `n` rows are written (10 s at most).
  void run_until_written(uint64_t n) {
    for (int i = 0; i < 1000 && writer.stats().written < n; ++i) io.run_for(std::chrono::milliseconds(10));
    ASSERT_EQ(writer.stats().written, n);
  }
  boost::asio::io_context io;
  gh::BlockingPool urgent{1};
  gh::observability::AnalyticsWriter writer;  // declared last: destroyed first
  int next = 0;
  const int per_second;
};

TYPED_TEST(StoreTest, AnalyticsWriterWritesABacklogFlatOutAndCountsIt) {
  // While at most two batches wait, the writer pauses in its work (for other processes); behind by more, it
  // writes flat out until it has caught up, and counts those batches.
  WriterRig rig(*this->store, 1000, 1);
  auto& writer = rig.writer;
  auto add = [&](int n) { rig.add(n); };
  auto run_until_written = [&](uint64_t n) { rig.run_until_written(n); };
  add(40);  // more than two batches of 16 before the writer starts: its first write is a backlog
  writer.start(0);
  run_until_written(40);
  EXPECT_EQ(writer.stats().catch_up_batches, 1u);
  add(20);  // the 16th asks for a write; it takes all 20 when io runs: keeping up
  run_until_written(60);
  EXPECT_EQ(writer.stats().catch_up_batches, 1u);
  add(33);  // 33 waiting when the write starts: behind again
  run_until_written(93);
  EXPECT_EQ(writer.stats().catch_up_batches, 2u);
  EXPECT_EQ(this->store->count_analytics(), 93);
}

TYPED_TEST(StoreTest, AnalyticsCommitsLeaveTheLogToCheckpointAnalytics) {
  // SQLite: the analytics connection's commits never checkpoint (SQLite's default would, once the log passes
  // 1,000 pages): the rows' pages stay in the write-ahead log until checkpoint_analytics() copies them into
  // the database file, calling `between` as it goes. PostgreSQL has nothing to do.
  AnalyticsBatch b;
  const std::string agent(200, 'a');
  for (int i = 0; i < 30000; ++i) {
    AnalyticsRow r;
    r.timestamp = 1'700'000'000 + i / 100, r.method = "POST", r.endpoint = "/mcp", r.user_agent = agent;
    b.add(r);
  }
  std::size_t written = 0;
  this->store->insert_analytics(b, written);
  ASSERT_EQ(written, 30000u);
  int pauses = 0;
  auto pause = [&] { ++pauses; };
  if constexpr (TypeParam::kPostgres) {
    EXPECT_FALSE(this->store->checkpoint_analytics(pause));
    EXPECT_EQ(pauses, 0);
  } else {
    auto db = this->env->dir / "data" / "gatehouse.db", wal = db;
    wal += "-wal";
    const std::uintmax_t pages = 1500u * 4096;  // ~250 bytes a row: 30,000 rows are ~1,900 pages
    EXPECT_LT(fs::file_size(db), pages / 4);
    EXPECT_GT(fs::file_size(wal), pages);
    EXPECT_TRUE(this->store->checkpoint_analytics(pause));
    EXPECT_GT(fs::file_size(db), pages);
    EXPECT_GT(pauses, 0);
  }
  EXPECT_EQ(this->store->count_analytics(), 30000);
}

TYPED_TEST(StoreTest, AnalyticsWriterCheckpointsWhenRowsComeSlowlyOrAfterManyBatches) {
  // SQLite: no checkpoint after a round that wrote a burst (an eighth of a batch or more), one at the next
  // round that writes less (a batch's worth having been written since the last); one right after a round
  // that brings the rows since the last to 400 batches; none for fewer than a batch. PostgreSQL: none
  // (nothing to checkpoint).
  WriterRig rig(*this->store, 10000, 100);
  auto& writer = rig.writer;
  auto& io = rig.io;
  auto add = [&](int n) { rig.add(n); };
  auto run_until_written = [&](uint64_t n) { rig.run_until_written(n); };
  const uint64_t one = TypeParam::kPostgres ? 0 : 1;
  add(40);
  writer.start(0);
  run_until_written(40);
  EXPECT_EQ(writer.stats().checkpoints, 0u);  // that round wrote a burst
  io.run_for(std::chrono::milliseconds(500));  // the next rounds write nothing: rows came slowly
  EXPECT_EQ(writer.stats().checkpoints, one);
  // 400 batches' rows in one round, twice: a checkpoint after each, though no round is slow in between (the
  // second burst is queued before the loop runs again, and its 16th row starts the next round at once).
  add(6400);
  run_until_written(6440);
  add(6400);
  run_until_written(12840);
  io.run_for(std::chrono::milliseconds(500));  // quiet again, nothing written since the last checkpoint
  EXPECT_EQ(writer.stats().checkpoints, 3 * one);
  add(15);  // less than a batch since the last: left in the log
  run_until_written(12855);
  io.run_for(std::chrono::milliseconds(500));
  EXPECT_EQ(writer.stats().checkpoints, 3 * one);
  EXPECT_EQ(this->store->count_analytics(), 12855);
}

TEST(AnalyticsBatch, PacksAndReusesItsMemory) {
  AnalyticsBatch b;
  std::string big(70'000, 'x');
  AnalyticsRow r;
  r.timestamp = 42, r.status = 201, r.response_ms = 1.5, r.bytes_in = -1, r.bytes_out = 1LL << 40;
  r.user_email = "a@b.c", r.request_id = big;  // longer than a field may be: cut (request id: 128 bytes)
  r.method = big, r.tool = big, r.server = big;  // a client's: cut too (32, 256, 128)
  b.add(r);
  r.method = "POST", r.tool = "", r.server = "";
  r.user_email = "", r.request_id = "r2";
  b.add(r);
  std::vector<AnalyticsRow> out;
  b.for_each([&](const AnalyticsRow& x) { out.push_back(x); });
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].timestamp, 42);
  EXPECT_EQ(out[0].status, 201);
  EXPECT_EQ(out[0].response_ms, 1.5);
  EXPECT_EQ(out[0].bytes_in, -1);
  EXPECT_EQ(out[0].bytes_out, 1LL << 40);
  EXPECT_EQ(out[0].user_email, "a@b.c");
  EXPECT_EQ(out[0].request_id.size(), 128u);
  EXPECT_EQ(out[0].method.size(), 32u);
  EXPECT_EQ(out[0].tool.size(), 256u);
  EXPECT_EQ(out[0].server.size(), 128u);
  EXPECT_EQ(out[1].user_email, "");
  EXPECT_EQ(out[1].request_id, "r2");
  b.clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.bytes(), 0u);
  AnalyticsBatch other;
  other.swap(b);
  EXPECT_TRUE(other.empty());

  // Text is stored as valid UTF-8: what is not (overlong forms, surrogates, beyond U+10FFFF, cut sequences,
  // stray continuation bytes) becomes '?' byte by byte; valid sequences of every length stay.
  const std::pair<std::string, std::string> cases[] = {
      {"\xc0\xaf", "??"},             {"\xed\xa0\x80", "???"},          {"\xf4\x90\x80\x80", "????"},
      {"a\xe2\x82", "a??"},           {"\x80x", "?x"},                   {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"},
  };
  for (auto& [in, want] : cases) {
    AnalyticsBatch one;
    AnalyticsRow t;
    t.tool = in;
    t.user_agent = in;  // the user agent keeps printable ASCII only
    one.add(t);
    one.for_each([&](const AnalyticsRow& x) {
      EXPECT_EQ(x.tool, want) << "input bytes: " << in.size();
      std::string ascii = in;
      for (auto& c : ascii)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
      EXPECT_EQ(x.user_agent, ascii);
    });
  }
}

TEST(AnalyticsBatch, SanitizesAtEveryPositionOfEveryLength) {
  // Printable ASCII is checked 8 bytes at a time (the last word overlapping, short texts padded): a byte to
  // replace is found wherever it sits, in texts of every length around the word size, and the bounds of the
  // printable range (space, '~') stay.
  for (std::size_t len = 1; len <= 20; ++len) {
    for (unsigned char bad : {0x00, 0x01, 0x1f, 0x7f, 0x80, 0xff}) {
      for (std::size_t at = 0; at < len; ++at) {
        std::string in(len, 'a');
        if (len > 3) in[3] = ' ';
        if (len > 11) in[11] = '~';
        if (at != 3 && at != 11) in[at] = static_cast<char>(bad);
        std::string want = in;
        if (at != 3 && at != 11) want[at] = '?';
        AnalyticsBatch one;
        AnalyticsRow t;
        t.endpoint = in;
        t.tool = in;
        one.add(t);
        one.for_each([&](const AnalyticsRow& x) {
          EXPECT_EQ(x.endpoint, want) << "byte " << int(bad) << " at " << at << " of " << len;
          EXPECT_EQ(x.tool, want) << "byte " << int(bad) << " at " << at << " of " << len;
        });
      }
    }
    AnalyticsBatch clean;  // and a clean text of each length is kept as it is
    AnalyticsRow t;
    std::string in(len, '~');
    in[0] = ' ';
    t.tool = in;
    clean.add(t);
    clean.for_each([&](const AnalyticsRow& x) { EXPECT_EQ(x.tool, in) << len; });
  }
}

TEST(StoreUrl, InMemorySqliteWorks) {
  auto s = Store::open("sqlite::memory:");
  EXPECT_EQ(s->migrate(), kLatestVersion);
  User u;
  u.email = "m@x.test";
  EXPECT_TRUE(s->create_user(u));
  EXPECT_EQ(s->count_users(), 1);
  std::atomic<int> calls{0};
  s->watch([&] { ++calls; });
  s->notify_changed();
  EXPECT_TRUE(eventually([&] { return calls.load() >= 1; }, std::chrono::milliseconds(1000)));
}

namespace {
// A SQLite file with a table t (id, v) in a directory of its own (removed at the end), and a commit of rows of
// 1,000 bytes.
struct SqliteScratch {
  explicit SqliteScratch(const std::string& tag)
      : dir(fs::temp_directory_path() / (tag + gh::random_hex(6))), path((dir / "t.db").string()) {
    fs::create_directories(dir);
    sql::open_sqlite(path)->script("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  }
  ~SqliteScratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void insert(sql::Connection& c, int from, int n) const {
    sql::Transaction tx(c, true);
    for (int i = from; i < from + n; ++i) c.exec("INSERT INTO t (id, v) VALUES (?, ?)", {i, text});
    tx.commit();
  }
  fs::path dir;
  std::string path;
  std::string text = std::string(1000, 'x');
};

// What PRAGMA integrity_check says ("ok" for a whole database).
std::string integrity(sql::Connection& c) {
  std::string check;
  c.query("PRAGMA integrity_check", {}, [&](const sql::Row& r) { check += r.str(0); });
  return check;
}

// The write system calls this thread has made so far (Linux's I/O accounting), or -1.
int64_t thread_write_calls() {
  std::ifstream io("/proc/thread-self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value)
    if (key == "syscw:") return value;
  return -1;
}
}  // namespace

TEST(StoreSql, SqliteCallsThePauseEveryEightFileOperationsOnlyWhileAsked) {
  // A checkpoint reads each WAL frame and writes each page, one call apiece, and pauses after every 8; outside
  // a PauseBetweenWrites nothing pauses. A pause that itself reads the database (through another connection)
  // is not paused in turn and sees every committed row. A commit's frames are one write (below): a pause at
  // most.
  SqliteScratch db("gh-pause-");
  {
    auto c = sql::open_sqlite(db.path);
    auto other = sql::open_sqlite(db.path);
    auto insert = [&](int from, int n) { db.insert(*c, from, n); };
    int pauses = 0;
    std::vector<int64_t> seen;
    std::function<void()> pause = [&] {
      ++pauses;
      seen.push_back(other->scalar("SELECT COUNT(*) FROM t"));
    };
    insert(0, 100);  // ~25 pages: no pause asked for
    EXPECT_EQ(pauses, 0);
    {
      sql::PauseBetweenWrites scope(pause);
      insert(100, 100);  // another ~25 pages, one write
      EXPECT_LE(pauses, 1);
      c->script("PRAGMA wal_checkpoint(PASSIVE)");  // ~55 frames read, as many pages written
    }
    EXPECT_GE(pauses, 8);
    EXPECT_LE(pauses, 20);
    int asked = pauses;
    insert(200, 100);
    c->script("PRAGMA wal_checkpoint(PASSIVE)");
    EXPECT_EQ(pauses, asked);
    for (auto v : seen) EXPECT_TRUE(v == 100 || v == 200) << v;  // before the commit's one write, or after
    EXPECT_GE(std::count(seen.begin(), seen.end(), 200), asked - 1);
    EXPECT_EQ(other->scalar("SELECT COUNT(*) FROM t"), 300);
  }
}

TEST(StoreSql, SqliteWritesACommitsWalFramesInOneSystemCall) {
  // SQLite writes each WAL frame as two writes (its header, then the page); the VFS holds them back and writes
  // them at once when the commit's last frame is complete. Another connection sees every commit as soon as
  // it has returned, whatever its size (more than one write's 128 KB too); a transaction whose pages spilled
  // into the WAL reads them back (from the buffer), leaves nothing when rolled back, everything when committed.
  SqliteScratch db("gh-walbuf-");
  {
    auto c = sql::open_sqlite(db.path);
    auto other = sql::open_sqlite(db.path);
    auto insert = [&](int from, int n) { db.insert(*c, from, n); };
    auto count = [](sql::Connection& x) { return x.scalar("SELECT COUNT(*) FROM t"); };
    insert(0, 100);
    auto before = thread_write_calls();
    ASSERT_GE(before, 0) << "no /proc/thread-self/io";
    insert(100, 100);  // ~25 pages: 50 writes without the buffer
    EXPECT_EQ(thread_write_calls() - before, 1);
    EXPECT_EQ(count(*other), 200);
    int next = 200;
    for (int n : {1, 7, 300, 40, 1000}) {  // 300 and 1000 rows: 0.3 and 1 MB of frames
      insert(next, n);
      next += n;
      EXPECT_EQ(count(*other), next) << n;
    }
    c->script("PRAGMA cache_size=8");  // a transaction's pages spill into the WAL before its commit
    for (bool commit : {false, true}) {
      sql::Transaction tx(*c, true);
      for (int i = next; i < next + 400; ++i) c->exec("INSERT INTO t (id, v) VALUES (?, ?)", {i, db.text});
      // Read back inside the transaction: spilled pages come from frames still held back.
      EXPECT_EQ(c->scalar("SELECT COUNT(*) FROM t WHERE length(v) = 1000"), next + 400);
      EXPECT_EQ(count(*other), next);
      if (commit) tx.commit();
    }
    EXPECT_EQ(count(*c), next + 400);
    next += 400;
    EXPECT_EQ(count(*other), next);
    c->script("PRAGMA wal_checkpoint(TRUNCATE)");
    insert(next, 3);
    EXPECT_EQ(count(*other), next + 3);
    EXPECT_EQ(integrity(*other), "ok");
  }
}

TEST(StoreSql, SqliteCommitIsInTheFileOnReturnAndAFailedWriteFailsIt) {
  // In a child process, which then dies without closing anything: a commit that returned is in the WAL file
  // (nothing of it left in the VFS's buffer), and a commit whose frames cannot be written (the file size
  // limit) fails instead of publishing frames that are not there; the database stays whole.
  SqliteScratch db("gh-walcrash-");
  const auto& path = db.path;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 0;
    try {
      auto c = sql::open_sqlite(path);
      auto insert = [&](int from, int n) { db.insert(*c, from, n); };
      insert(0, 50);
      std::signal(SIGXFSZ, SIG_IGN);
      rlimit limit{};
      limit.rlim_cur = limit.rlim_max = fs::file_size(path + "-wal") + 8192;
      setrlimit(RLIMIT_FSIZE, &limit);
      auto other = sql::open_sqlite(path);  // reads what the shared index says is committed
      try {
        insert(50, 20);  // ~6 pages, held back until the commit's last frame: that write fails
        code = 3;
      } catch (const std::exception&) {
      }
      try {
        if (code == 0 && other->scalar("SELECT COUNT(*) FROM t") != 50) code = 4;
      } catch (const std::exception&) {
        code = 5;  // the index announced frames the file does not hold
      }
    } catch (const std::exception&) {
      code = 2;
    }
    std::_Exit(code);  // no destructor, no close
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: the first commit failed; 3: the second did not; 4, 5: another "
                                        "connection then saw other rows or failed to read";
  {
    auto c = sql::open_sqlite(path);
    EXPECT_EQ(c->scalar("SELECT COUNT(*) FROM t"), 50);
    EXPECT_EQ(integrity(*c), "ok");
  }
}

TEST(StoreSql, TranslatesPlaceholdersAndSchemaOutsideLiterals) {
  EXPECT_EQ(sql::translate("SELECT a FROM @t WHERE x = ? AND y LIKE ? ESCAPE '\\' AND z = '?@'",
                           sql::Dialect::postgresql, "mcp_proxy."),
            "SELECT a FROM mcp_proxy.t WHERE x = $1 AND y LIKE $2 ESCAPE '\\' AND z = '?@'");
  EXPECT_EQ(sql::translate("SELECT a FROM @t WHERE x = ?", sql::Dialect::sqlite, "ignored."),
            "SELECT a FROM t WHERE x = ?");
}

TEST(StoreSql, UserListingUsesTheEmailIndexForOrder) {
  // Index-friendly paging: SQLite must walk the primary key, not sort all users (checked on the query plan).
  auto dir = fs::temp_directory_path() / ("gh-plan-" + gh::random_hex(6));
  fs::create_directories(dir);
  {
    auto s = Store::open("sqlite://" + (dir / "g.db").string());
    s->migrate();
    auto c = sql::open_sqlite((dir / "g.db").string());
    std::string plan;
    c->query("EXPLAIN QUERY PLAN SELECT email FROM users ORDER BY email LIMIT 10 OFFSET 20", {},
             [&](const sql::Row& r) { plan += r.str(3) + "\n"; });
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
    plan.clear();
    c->query("EXPLAIN QUERY PLAN SELECT user_email FROM user_group_membership WHERE group_name = 'x'", {},
             [&](const sql::Row& r) { plan += r.str(3) + "\n"; });
    EXPECT_NE(plan.find("INDEX"), std::string::npos) << plan;
  }
  fs::remove_all(dir);
}

// ---- PostgreSQL connection loss ----

class PgReconnect : public ::testing::Test {
 protected:
  void SetUp() override {
    env = std::make_unique<PgEnv>();
    if (!env->available()) GTEST_SKIP() << "GATEHOUSE_TEST_PG_URL not set";
    store = Store::open(env->url());
    store->migrate();
    admin = sql::open_postgres(env->url(), "");
  }
  // Ends the server side of other sessions on the test database, as a server restart would.
  int64_t terminate(std::string_view like) {
    return admin->scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND query LIKE ?",
        {like});
  }
  std::unique_ptr<PgEnv> env;
  std::unique_ptr<Store> store;
  std::unique_ptr<sql::Connection> admin;
};

TEST_F(PgReconnect, StoreReconnectsOnceOutsideTransactions) {
  User u;
  u.email = "r@x.test";
  ASSERT_TRUE(store->create_user(u));
  ASSERT_GE(terminate("%"), 1);
  // The first call after the loss finds the connection broken and reopens it.
  EXPECT_TRUE(store->get_user("r@x.test").has_value());
  EXPECT_EQ(store->count_users(), 1);
}

// A connection's own settings (session_setup: the analytics writer's lock wait, reports' statement limit) and
// the defaults every connection gets (lock_timeout 3 s, statement_timeout 60 s) hold again after it is made
// again (session 28's review: a reconnected report connection fell back to the defaults).
TEST_F(PgReconnect, ConnectionSettingsHoldAfterAReconnection) {
  auto conn = sql::open_postgres(env->url(), "");
  auto setting = [&](const char* name) {
    std::string v;
    conn->query(std::string("SHOW ") + name, {}, [&](const sql::Row& r) { v = r.str(0); });
    return v;
  };
  EXPECT_EQ(setting("lock_timeout"), "3s");
  EXPECT_EQ(setting("statement_timeout"), "1min");
  conn->session_setup("SET statement_timeout = '123s'");
  EXPECT_EQ(setting("statement_timeout"), "123s");
  ASSERT_GE(terminate("SHOW statement_timeout%"), 1);
  EXPECT_EQ(setting("statement_timeout"), "123s");  // (the first call finds the connection broken and makes it again)
  EXPECT_EQ(setting("lock_timeout"), "3s");
}

TEST_F(PgReconnect, WatcherReconnectsAndReportsPossiblyMissedChanges) {
  std::atomic<int> calls{0};
  store->watch([&] { ++calls; });
  ASSERT_TRUE(eventually([&] { return terminate("LISTEN%") > 0; }, std::chrono::milliseconds(2000)));
  // After reconnecting, the watcher calls back once (changes may have been missed meanwhile)…
  EXPECT_TRUE(eventually([&] { return calls.load() >= 1; }, std::chrono::milliseconds(3000)));
  // …and notifications flow again.
  auto before = calls.load();
  EXPECT_TRUE(eventually(
      [&] {
        store->notify_changed();
        return calls.load() > before;
      },
      std::chrono::milliseconds(3000)));
}

TEST_F(PgReconnect, AChangeIsAnnouncedByItsOwnCommit) {
  // Another instance hears of a management change by the commit itself: nothing after it (where the writing
  // instance could crash) is needed. A change that is rolled back says nothing.
  auto other = Store::open(env->url());
  std::atomic<int> calls{0};
  other->watch([&] { ++calls; });
  ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }, std::chrono::milliseconds(3000)));  // its first LISTEN
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto before = calls.load();
  User u;
  u.email = "rolled-back@x.test";
  EXPECT_FALSE(store->atomically([&] { return store->create_user(u) && false; }));
  u.email = "committed@x.test";
  EXPECT_TRUE(store->atomically([&] { return store->create_user(u); }));  // no notify_changed() after it
  EXPECT_TRUE(eventually([&] { return calls.load() > before; }, std::chrono::milliseconds(3000)));
  EXPECT_FALSE(store->get_user("rolled-back@x.test").has_value());
  other->stop_watching();
}

TEST_F(PgReconnect, TheVersionPollFindsAChangeWhoseNotificationNeverCame) {
  store->notify_changed();  // the version row exists
  std::atomic<int> calls{0};
  store->watch([&] { ++calls; });
  ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }, std::chrono::milliseconds(3000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(6000));  // one poll has seen the version
  auto before = calls.load();
  // Bumped without a NOTIFY (as a notification lost on the way would look): seen by the next poll (≤ 5 s).
  admin->exec("UPDATE mcp_proxy.gateway_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
              "WHERE key = 'directory_version'");
  EXPECT_TRUE(eventually([&] { return calls.load() > before; }, std::chrono::milliseconds(8000)));
  store->stop_watching();
}

TEST_F(PgReconnect, AWatcherWhosePollGoesUnansweredConnectsAgain) {
  // A server that stops answering (simulated: the poll waits on a lock held meanwhile) is given up on after
  // 10 s, and connecting again counts as a change that may have been missed.
  store->notify_changed();
  std::atomic<int> calls{0};
  store->watch([&] { ++calls; });
  ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }, std::chrono::milliseconds(3000)));
  auto before = calls.load();
  admin->exec("BEGIN");
  admin->exec("LOCK TABLE mcp_proxy.gateway_meta IN ACCESS EXCLUSIVE MODE");
  EXPECT_TRUE(eventually([&] { return calls.load() > before; }, std::chrono::milliseconds(20000)));
  admin->exec("ROLLBACK");
  store->stop_watching();
}

TEST(PgConnect, AServerThatNeverAnswersIsGivenUpOnAtConnect) {
  // A listening socket nobody accepts on: the TCP handshake completes, the startup message is never answered.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string url = "postgresql://postgres@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x";
  auto started = std::chrono::steady_clock::now();
  std::thread opener([&] { EXPECT_THROW(Store::open(url)->migrate(), std::exception); });
  opener.join();
  // libpq's connect_timeout (10 s) rather than the kernel's: the test binary would otherwise hang here.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
  ::close(fd);
}
