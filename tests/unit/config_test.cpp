#include <gtest/gtest.h>

#include "core/budget.hpp"
#include "core/config.hpp"
#include "core/fdlimit.hpp"

using namespace gh;

static std::string setting_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.setting;
  }
  return "";
}

TEST(Config, ParsesAllTransportsAndGatehouseFields) {
  Environment env{{"TOKEN", "t0k"}};
  auto servers = parse_servers(R"({"mcpServers":{
    "local":{"command":"node","args":["a.js","stdio"],"env":{"K":"${env:TOKEN}","S":"${secret:GITHUB_TOKEN}"},"cwd":"/tmp",
             "description":"d","timeoutMs":1500},
    "remote":{"type":"streamable-http","url":"https://example.test/mcp","headers":{"Authorization":"Bearer ${secret:API}"},
              "maxConnections":16},
    "legacy":{"type":"sse","url":"http://127.0.0.1:9/sse","enabled":false}}})", env);
  ASSERT_EQ(servers.size(), 3u);
  std::map<std::string, ServerConfig> by_id;
  for (auto& s : servers) by_id[s.id] = s;
  EXPECT_EQ(by_id["local"].transport, Transport::stdio);
  EXPECT_EQ(by_id["local"].args.size(), 2u);
  EXPECT_EQ(by_id["local"].env["K"], "t0k");
  EXPECT_EQ(by_id["local"].env["S"], "${secret:GITHUB_TOKEN}");  // resolved per tenant later
  EXPECT_EQ(by_id["local"].timeout_ms, 1500);
  EXPECT_EQ(by_id["remote"].transport, Transport::streamable_http);
  EXPECT_EQ(by_id["remote"].max_connections, 16);
  EXPECT_EQ(by_id["legacy"].max_connections, 512);
  EXPECT_EQ(by_id["legacy"].transport, Transport::sse);
  EXPECT_FALSE(by_id["legacy"].enabled);
  EXPECT_EQ(secret_slots(by_id["local"]), std::vector<std::string>{"GITHUB_TOKEN"});
  EXPECT_EQ(secret_slots(by_id["remote"]), std::vector<std::string>{"API"});
}

TEST(Config, ErrorsNameTheSetting) {
  Environment env;
  EXPECT_EQ(setting_of([&] { parse_servers("{", env); }), "MCP_SERVERS_FILE");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"servers":{}})", env); }), "mcpServers");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a__b":{"command":"x"}}})", env); }), "mcpServers.a__b");
  // A trailing '_' would make "<id>__<tool>" split at the wrong "__" ("a_" + "b" -> "a___b" -> "a" + "_b").
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a_":{"command":"x"}}})", env); }), "mcpServers.a_");
  EXPECT_NO_THROW(parse_servers(R"({"mcpServers":{"a_b-c":{"command":"x"}}})", env));
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"type":"ws","url":"http://x"}}})", env); }),
            "mcpServers.a.type");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"args":[]}}})", env); }), "mcpServers.a.command");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"type":"sse","url":"ftp://x"}}})", env); }),
            "mcpServers.a.url");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"x","timeoutMs":-1}}})", env); }),
            "mcpServers.a.timeoutMs");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"url":"http://x/","maxConnections":0}}})", env); }),
            "mcpServers.a.maxConnections");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"x","maxConnections":4}}})", env); }),
            "mcpServers.a.maxConnections");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"x","colour":1}}})", env); }),
            "mcpServers.a.colour");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"${env:NOPE}"}}})", env); }),
            "mcpServers.a.command");
  // Session 28's review: a port out of range, a header the gateway writes itself (two Host fields went out),
  // a ${secret: never closed (sent as literal text).
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"url":"http://x:99999/"}}})", env); }), "mcpServers.a.url");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"url":"http://x/","headers":{"Host":"evil"}}}})", env); }),
            "mcpServers.a.headers.Host");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"url":"http://x/","headers":{"content-length":"1"}}}})", env); }),
            "mcpServers.a.headers.content-length");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"url":"http://x/","headers":{"X-Key":"${secret:KEY"}}}})", env); }),
            "mcpServers.a.headers.X-Key");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"x","env":{"K":"${secret:}"}}}})", env); }),
            "mcpServers.a.env.K");
  EXPECT_NO_THROW(parse_servers(R"({"mcpServers":{"a":{"url":"http://x:8080/","headers":{"X-Key":"${secret:KEY}"}}}})", env));
}

TEST(Config, SettingsDefaultsAndValidation) {
  auto s = load_settings({});
  EXPECT_EQ(s.host, "127.0.0.1");
  EXPECT_EQ(s.port, 8085);
  EXPECT_EQ(s.servers_file, "config/servers.json");
  EXPECT_EQ(setting_of([] { load_settings({{"GATEWAY_PORT", "70000"}}); }), "GATEWAY_PORT");
  EXPECT_EQ(setting_of([] { load_settings({{"GATEWAY_PORT", "80a"}}); }), "GATEWAY_PORT");
  EXPECT_EQ(setting_of([] { load_settings({{"GATEWAY_HOST", "not an ip"}}); }), "GATEWAY_HOST");
  EXPECT_EQ(setting_of([] { load_settings({{"DEBUG", "maybe"}}); }), "DEBUG");
  EXPECT_EQ(setting_of([] { load_settings({{"LOG_LEVEL", "loud"}}); }), "LOG_LEVEL");
  EXPECT_EQ(setting_of([] { load_settings({{"PUBLIC_URL", "example.com"}}); }), "PUBLIC_URL");
  EXPECT_EQ(load_settings({{"DEBUG", "true"}}).log_level, "debug");
  EXPECT_EQ(load_settings({{"GATEWAY_PORT", "0"}}).port, 0);
  EXPECT_EQ(s.max_connections, 0u);  // derived from the open-file limit
  EXPECT_EQ(load_settings({{"MAX_CONNECTIONS", "5000"}}).max_connections, 5000u);
  EXPECT_EQ(setting_of([] { load_settings({{"MAX_CONNECTIONS", "0"}}); }), "MAX_CONNECTIONS");
  EXPECT_EQ(s.upstream_memory_mb, -1);  // from the memory the process may use
  EXPECT_EQ(load_settings({{"UPSTREAM_MEMORY_LIMIT_MB", "0"}}).upstream_memory_mb, 0);  // no limit
  EXPECT_EQ(setting_of([] { load_settings({{"UPSTREAM_MEMORY_LIMIT_MB", "-1"}}); }), "UPSTREAM_MEMORY_LIMIT_MB");
  EXPECT_EQ(s.session_max_age_s, 86400);
  EXPECT_EQ(load_settings({{"SESSION_MAX_AGE_S", "0"}}).session_max_age_s, 0);  // resumable ids off
  EXPECT_EQ(setting_of([] { load_settings({{"SESSION_MAX_AGE_S", "-1"}}); }), "SESSION_MAX_AGE_S");
  EXPECT_EQ(setting_of([] { load_settings({{"SESSION_MAX_AGE_S", "2592001"}}); }), "SESSION_MAX_AGE_S");
}

TEST(Config, DefaultConnectionCapLeavesDescriptorsForTheRest) {
  EXPECT_EQ(fdlimit::default_max_connections(1024), 768u);
  EXPECT_EQ(fdlimit::default_max_connections(20000), 18976u);
  EXPECT_EQ(fdlimit::default_max_connections(1 << 20), (1u << 20) - 1024);
}

TEST(Config, DotenvParsing) {
  auto env = parse_dotenv("# comment\nA=1\nexport B = two \nC=\"quoted # not comment\"\nD=x # trailing\n\n");
  EXPECT_EQ(env["A"], "1");
  EXPECT_EQ(env["B"], "two");
  EXPECT_EQ(env["C"], "quoted # not comment");
  EXPECT_EQ(env["D"], "x");
  EXPECT_EQ(setting_of([] { parse_dotenv("JUSTAWORD\n"); }), ".env");
  // An uncommented example line: the empty value stays empty, not the comment (session 28's review: a
  // secret became "# signs X-Gateway-Token…"); a comment after quotes; a byte-order mark; a tab before '#'.
  auto ex = parse_dotenv("\xEF\xBB\xBF" "FIRST=1\nSECRET=     # signs tokens\nQ=\"x y\" # c\nT=a\t# c\nH=a#b\nS='#x'\n");
  EXPECT_EQ(ex["FIRST"], "1");
  EXPECT_EQ(ex["SECRET"], "");
  EXPECT_EQ(ex["Q"], "x y");
  EXPECT_EQ(ex["T"], "a");
  EXPECT_EQ(ex["H"], "a#b");
  EXPECT_EQ(ex["S"], "#x");
  EXPECT_EQ(setting_of([] { parse_dotenv("Q=\"open\n"); }), ".env");
  EXPECT_EQ(setting_of([] { parse_dotenv("Q=\"a\" b\n"); }), ".env");
  // '#' inside a value is text; quotes inside a quoted value stay (as before)
  auto more = parse_dotenv("A=ops#1@example.com   # the first administrator\nB=\"a\\\"b\"\nC='it's'\nD=\"x # y\" # z\n");
  EXPECT_EQ(more["A"], "ops#1@example.com");
  EXPECT_EQ(more["B"], "a\\\"b");
  EXPECT_EQ(more["C"], "it's");
  EXPECT_EQ(more["D"], "x # y");
  // Settings load_settings checks whole: a CIDR's prefix length, an SQLite URL with no file.
  EXPECT_EQ(setting_of([] { load_settings({{"TRUSTED_PROXIES", "127.0.0.1/abc"}}); }), "TRUSTED_PROXIES");
  EXPECT_EQ(setting_of([] { load_settings({{"TRUSTED_PROXIES", "127.0.0.1/"}}); }), "TRUSTED_PROXIES");
  EXPECT_EQ(setting_of([] { load_settings({{"TRUSTED_PROXIES", "10.0.0.0/33"}}); }), "TRUSTED_PROXIES");
  EXPECT_NO_THROW(load_settings({{"TRUSTED_PROXIES", "10.0.0.0/8,::1/128,192.168.1.1"}}));
  EXPECT_EQ(setting_of([] { load_settings({{"DATABASE_URL", "sqlite://"}}); }), "DATABASE_URL");
}

TEST(Config, ExpandSecretsReportsTheMissingSlot) {
  auto lookup = [](std::string_view n) -> std::optional<std::string> {
    if (n == "A") return "alpha";
    return std::nullopt;
  };
  EXPECT_EQ(expand_secrets("Bearer ${secret:A}", lookup).value(), "Bearer alpha");
  std::string missing;
  EXPECT_FALSE(expand_secrets("${secret:A}-${secret:B}", lookup, &missing).has_value());
  EXPECT_EQ(missing, "B");
  // Several slots, text between and after them; an unclosed one stays literal text.
  EXPECT_EQ(expand_secrets("${secret:A}:${secret:A}/x ${secret:A", lookup).value(), "alpha:alpha/x ${secret:A");
  EXPECT_EQ(expand_secrets("no slots", lookup).value(), "no slots");
}

TEST(Config, RateLimitGroupsAreBounded) {
  auto s = load_settings({{"RATE_LIMIT_GROUPS", "MCP-Admin=1000, Big=60000000000"}});
  EXPECT_EQ(s.rate_limit_groups.at("Big"), 60'000'000'000LL);
  for (const char* bad : {"Big=60000000001", "Big=0", "Big", "=5", "Big=9223372036854775807"})
    EXPECT_EQ(setting_of([&] { load_settings({{"RATE_LIMIT_GROUPS", bad}}); }), "RATE_LIMIT_GROUPS") << bad;
}

TEST(Config, SqliteFileOfADatabaseUrl) {
  EXPECT_EQ(sqlite_file("sqlite://./data/g.db").value(), "./data/g.db");
  EXPECT_EQ(sqlite_file("sqlite:///abs/g.db").value(), "/abs/g.db");
  EXPECT_EQ(sqlite_file("sqlite::memory:").value(), ":memory:");
  EXPECT_EQ(sqlite_file("sqlite://").value(), "");
  EXPECT_FALSE(sqlite_file("postgresql://u@h/db").has_value());
}

TEST(Config, ListSettingsAreSplitAndTrimmed) {
  auto s = load_settings({{"ALLOWED_ORIGINS", "https://a.example, https://b.example ,"}, {"ALLOWED_HOSTS", "gw.example"}});
  EXPECT_EQ(s.allowed_origins, (std::vector<std::string>{"https://a.example", "https://b.example"}));
  EXPECT_EQ(s.allowed_hosts, std::vector<std::string>{"gw.example"});
}

TEST(Config, IdentitySettings) {
  auto s = load_settings({});
  EXPECT_EQ(s.database_url, "sqlite://./data/gatehouse.db");
  EXPECT_FALSE(s.oidc_enabled());
  auto ms = load_settings({{"MICROSOFT_CLIENT_ID", "app"}, {"MICROSOFT_CLIENT_SECRET", "sec"},
                           {"MICROSOFT_CLIENT_TENANT_ID", "0b2a6f1e-aaaa-bbbb-cccc-123456789abc"}});
  EXPECT_TRUE(ms.oidc_enabled());
  EXPECT_EQ(ms.oidc_issuer, "https://login.microsoftonline.com/0b2a6f1e-aaaa-bbbb-cccc-123456789abc/v2.0");
  EXPECT_EQ(ms.oidc_discovery_url,
            "https://login.microsoftonline.com/0b2a6f1e-aaaa-bbbb-cccc-123456789abc/v2.0/.well-known/openid-configuration");
  EXPECT_EQ(ms.oidc_audience, "app");
  EXPECT_EQ(ms.oidc_provider_name, "Microsoft");
  // Multi-tenant issuers need a tenant allow-list.
  EXPECT_EQ(setting_of([] {
              load_settings({{"MICROSOFT_CLIENT_ID", "app"}, {"MICROSOFT_CLIENT_TENANT_ID", "organizations"}});
            }),
            "OIDC_ALLOWED_TENANTS");
  auto multi = load_settings({{"MICROSOFT_CLIENT_ID", "app"}, {"MICROSOFT_CLIENT_TENANT_ID", "common"},
                              {"OIDC_ALLOWED_TENANTS", "t1,t2"}});
  EXPECT_EQ(multi.oidc_issuer, "https://login.microsoftonline.com/{tenantid}/v2.0");
  EXPECT_EQ(multi.oidc_allowed_tenants.size(), 2u);
  EXPECT_EQ(setting_of([] { load_settings({{"OIDC_ISSUER", "https://idp.example"}}); }), "OIDC_CLIENT_ID");
  EXPECT_EQ(setting_of([] { load_settings({{"OIDC_ISSUER", "not a url"}, {"OIDC_CLIENT_ID", "x"}}); }), "OIDC_ISSUER");
  EXPECT_EQ(setting_of([] { load_settings({{"DATABASE_URL", "mysql://x"}}); }), "DATABASE_URL");
  EXPECT_EQ(setting_of([] { load_settings({{"WEBUI_SECRET_KEY", "k"}}); }), "OPENWEBUI_DATABASE_URL");
  EXPECT_EQ(setting_of([] { load_settings({{"API_GATEWAY_MODE", "true"}}); }), "TRUSTED_PROXIES");
  EXPECT_EQ(setting_of([] { load_settings({{"TRUSTED_PROXIES", "10.0.0.0/8,bogus"}}); }), "TRUSTED_PROXIES");
  EXPECT_EQ(setting_of([] { load_settings({{"SESSION_SECRET", "short"}}); }), "SESSION_SECRET");
  auto d = load_settings({{"OIDC_ISSUER", "http://127.0.0.1:9/"}, {"OIDC_CLIENT_ID", "c"}});
  EXPECT_EQ(d.oidc_discovery_url, "http://127.0.0.1:9/.well-known/openid-configuration");
}

TEST(Budget, SharesStayUnderTheLimitAndAreGivenBack) {
  gh::budget::set_limit(100);
  {
    gh::budget::Share a, b;
    EXPECT_TRUE(a.resize(60));
    EXPECT_FALSE(b.resize(50));  // 110 > 100: refused, nothing taken
    EXPECT_EQ(b.size(), 0u);
    EXPECT_TRUE(b.resize(40));
    EXPECT_TRUE(a.resize(10));   // shrinking is always allowed
    EXPECT_TRUE(b.resize(90));
    EXPECT_EQ(gh::budget::counts().held, 100u);
    EXPECT_EQ(gh::budget::counts().refused, 1u);
  }
  EXPECT_EQ(gh::budget::counts().held, 0u);  // given back when they end
  EXPECT_EQ(gh::budget::default_limit(std::size_t(512) << 20), std::size_t(128) << 20);  // a quarter
  EXPECT_EQ(gh::budget::default_limit(std::size_t(64) << 30), std::size_t(1) << 30);    // at most 1 GiB
  EXPECT_GT(gh::budget::available_memory(), 0u);
  gh::budget::set_limit(0);
  gh::budget::Share unlimited;
  EXPECT_TRUE(unlimited.resize(std::size_t(1) << 40));
}
