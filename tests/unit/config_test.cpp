#include <gtest/gtest.h>

#include "core/config.hpp"

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
    "remote":{"type":"streamable-http","url":"https://example.test/mcp","headers":{"Authorization":"Bearer ${secret:API}"}},
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
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"type":"ws","url":"http://x"}}})", env); }),
            "mcpServers.a.type");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"args":[]}}})", env); }), "mcpServers.a.command");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"type":"sse","url":"ftp://x"}}})", env); }),
            "mcpServers.a.url");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"x","timeoutMs":-1}}})", env); }),
            "mcpServers.a.timeoutMs");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"x","colour":1}}})", env); }),
            "mcpServers.a.colour");
  EXPECT_EQ(setting_of([&] { parse_servers(R"({"mcpServers":{"a":{"command":"${env:NOPE}"}}})", env); }),
            "mcpServers.a.command");
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
}

TEST(Config, DotenvParsing) {
  auto env = parse_dotenv("# comment\nA=1\nexport B = two \nC=\"quoted # not comment\"\nD=x # trailing\n\n");
  EXPECT_EQ(env["A"], "1");
  EXPECT_EQ(env["B"], "two");
  EXPECT_EQ(env["C"], "quoted # not comment");
  EXPECT_EQ(env["D"], "x");
  EXPECT_EQ(setting_of([] { parse_dotenv("JUSTAWORD\n"); }), ".env");
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
}

TEST(Config, ListSettingsAreSplitAndTrimmed) {
  auto s = load_settings({{"ALLOWED_ORIGINS", "https://a.example, https://b.example ,"}, {"ALLOWED_HOSTS", "gw.example"}});
  EXPECT_EQ(s.allowed_origins, (std::vector<std::string>{"https://a.example", "https://b.example"}));
  EXPECT_EQ(s.allowed_hosts, std::vector<std::string>{"gw.example"});
}
