#include <gtest/gtest.h>

#include <cstdlib>

#include "admin/api.hpp"
#include "auth/directory.hpp"
#include "auth/secrets.hpp"
#include "policy/policy.hpp"

using namespace gh;

namespace {
store::Grant grant(std::string group, std::string server, std::string mode = "", std::vector<std::string> tools = {}) {
  store::Grant g;
  g.group = std::move(group);
  g.server = std::move(server);
  g.tools_mode = std::move(mode);
  g.tools = std::move(tools);
  return g;
}
}  // namespace

TEST(Policy, GrantsToolListsAndUnion) {
  policy::GrantIndex idx({grant("A", "github"), grant("B", "linear", "allow", {"create_issue"}),
                          grant("C", "linear", "deny", {"delete_issue"}), grant("D", "jira", "allow", {})});
  std::vector<std::string> a{"A"}, b{"B"}, bc{"B", "C"}, none{}, d{"D"};
  EXPECT_TRUE(policy::decide(idx, a, false, "github"));
  EXPECT_TRUE(policy::decide(idx, a, false, "github", "anything"));
  EXPECT_FALSE(policy::decide(idx, a, false, "linear"));
  EXPECT_TRUE(policy::decide(idx, b, false, "linear"));
  EXPECT_TRUE(policy::decide(idx, b, false, "linear", "create_issue"));
  EXPECT_FALSE(policy::decide(idx, b, false, "linear", "delete_issue"));
  EXPECT_TRUE(policy::decide(idx, bc, false, "linear", "list_issues"));  // C's deny-list allows it
  EXPECT_FALSE(policy::decide(idx, bc, false, "linear", "delete_issue"));
  EXPECT_FALSE(policy::decide(idx, none, false, "github"));
  EXPECT_TRUE(policy::decide(idx, none, true, "anything", "at_all"));   // admins
  EXPECT_TRUE(policy::decide(idx, d, false, "jira"));                   // the server, with no tool
  EXPECT_FALSE(policy::decide(idx, d, false, "jira", "search"));
  EXPECT_TRUE(idx.group_has_grants("A"));
  EXPECT_FALSE(idx.group_has_grants("anonymous"));
}

TEST(Policy, ParsesToolsJson) {
  std::string mode, why;
  std::vector<std::string> tools;
  EXPECT_TRUE(policy::parse_tools_json("null", mode, tools, &why));
  EXPECT_EQ(mode, "");
  EXPECT_TRUE(policy::parse_tools_json(R"({"allow":["b","a","a"]})", mode, tools, &why));
  EXPECT_EQ(mode, "allow");
  EXPECT_EQ(tools, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(policy::parse_tools_json(R"({"deny":[]})", mode, tools, &why));
  EXPECT_EQ(mode, "deny");
  EXPECT_FALSE(policy::parse_tools_json(R"({"allow":["a"],"deny":["b"]})", mode, tools, &why));
  EXPECT_FALSE(policy::parse_tools_json(R"({"allow":"a"})", mode, tools, &why));
  EXPECT_FALSE(policy::parse_tools_json(R"({"allow":[1]})", mode, tools, &why));
  EXPECT_FALSE(policy::parse_tools_json(R"(["a"])", mode, tools, &why));
}

TEST(Policy, RoutesPickTheHighestPriorityTenantThenTheEnvironment) {
  const std::string key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31
  auth::SecretBox box(key);
  store::Dump d;
  store::Group low, high;
  low.name = "Tenant-Low";
  low.priority = 1;
  high.name = "Tenant-High";
  high.priority = 5;
  d.groups = {low, high};
  auto put = [&](const std::string& g, const std::string& slot, const std::string& value) {
    store::TenantKey k;
    k.group = g;
    k.server = "gh";
    k.slot = slot;
    k.key_id = box.key_id();
    k.ciphertext = box.seal(value, auth::SecretBox::row_aad(g, "gh", slot));
    k.updated_at = 7;
    d.tenant_keys.push_back(k);
  };
  put("Tenant-Low", "TOKEN", "low-token");
  put("Tenant-High", "TOKEN", "high-token");
  d.tenant_endpoints.push_back({"Tenant-Low", "gh", "https://low.example/mcp", 3});
  auto snap = auth::Snapshot::build(d, 1, &box);
  ServerConfig cfg;
  cfg.id = "gh";
  cfg.env = {{"TOKEN", "${secret:TOKEN}"}};
  // Without endpoints the highest-priority group's value; with one, the values of the endpoint's group only
  // (a member of two tenants carries neither's credential to the other's endpoint).
  auto no_endpoints = d;
  no_endpoints.tenant_endpoints.clear();
  auto plain = auth::Snapshot::build(no_endpoints, 1, &box)->route({"Tenant-High", "Tenant-Low"}, cfg);
  EXPECT_EQ(plain.error, "");
  EXPECT_EQ(plain.secrets.at("TOKEN"), "high-token");
  EXPECT_EQ(plain.url, "");
  auto both = snap->route({"Tenant-High", "Tenant-Low"}, cfg);
  EXPECT_EQ(both.error, "");
  EXPECT_EQ(both.secrets.at("TOKEN"), "low-token");
  EXPECT_EQ(both.url, "https://low.example/mcp");
  EXPECT_EQ(both.key.find("low-token"), std::string::npos);  // the key names the set, never a value
  EXPECT_NE(both.key, plain.key);
  auto high_only = snap->route({"Tenant-High"}, cfg);
  EXPECT_EQ(high_only.secrets.at("TOKEN"), "high-token");
  EXPECT_NE(high_only.key, both.key);
  // The endpoint's group has no value, another group of the caller has: refused, not mixed.
  auto mixed = d;
  mixed.tenant_keys.erase(mixed.tenant_keys.begin());  // Tenant-Low's
  auto refused = auth::Snapshot::build(mixed, 1, &box)->route({"Tenant-High", "Tenant-Low"}, cfg);
  EXPECT_NE(refused.error.find("for the endpoint of your group Tenant-Low"), std::string::npos) << refused.error;
  EXPECT_EQ(refused.secrets.count("TOKEN"), 0u);
  ::unsetenv("TOKEN");
  auto none = snap->route({}, cfg);
  EXPECT_NE(none.error.find("TOKEN"), std::string::npos);
  ::setenv("TOKEN", "from-env", 1);
  auto env = snap->route({}, cfg);
  EXPECT_EQ(env.error, "");
  EXPECT_EQ(env.key, "");  // the server's defaults: the shared connection
  // Without the key, stored values cannot be used: the call is refused, also where the gateway has a value of
  // its own (the tenant's calls must not run as the gateway's account).
  auto blind = auth::Snapshot::build(no_endpoints, 2, nullptr);
  EXPECT_NE(blind->route({"Tenant-High"}, cfg).error.find("cannot be decrypted"), std::string::npos);
  EXPECT_EQ(blind->route({"Someone-Else"}, cfg).error, "");  // no stored value: the gateway's own
  ::unsetenv("TOKEN");
}

TEST(Policy, EndpointUrlsAreChecked) {
  EXPECT_EQ(admin::check_endpoint_url("https://acme.example/mcp", false), "");
  EXPECT_EQ(admin::check_endpoint_url("http://10.0.0.5:8080/mcp", false), "");
  EXPECT_NE(admin::check_endpoint_url("ftp://acme.example/", false), "");
  EXPECT_NE(admin::check_endpoint_url("not a url", false), "");
  EXPECT_NE(admin::check_endpoint_url("http://169.254.169.254/latest", false), "");
  EXPECT_NE(admin::check_endpoint_url("http://[fe80::1]/", false), "");
  EXPECT_NE(admin::check_endpoint_url("http://[::ffff:169.254.169.254]/", false), "");
  EXPECT_NE(admin::check_endpoint_url("http://metadata.google.internal/", false), "");
  EXPECT_NE(admin::check_endpoint_url("http://METADATA.google.internal../", false), "");  // trailing dots: same name
  EXPECT_NE(admin::check_endpoint_url("http://[::a9fe:a9fe]/", false), "");              // IPv4-compatible
  EXPECT_NE(admin::check_endpoint_url("http://[64:ff9b::169.254.169.254]/", false), "");  // NAT64
  EXPECT_EQ(admin::check_endpoint_url("http://[::1]:8080/mcp", false), "");
  EXPECT_EQ(admin::check_endpoint_url("http://[2001:db8::a9fe:a9fe]/", false), "");
  EXPECT_NE(admin::check_endpoint_url("http://user:pw@acme.example/", false), "");
  EXPECT_EQ(admin::check_endpoint_url("http://169.254.169.254/latest", true), "");
}
