#include <gtest/gtest.h>

#include "auth/authenticator.hpp"
#include "auth/directory.hpp"

using namespace gh;
using namespace gh::auth;

TEST(AuthCookies, FindsNamedCookie) {
  EXPECT_EQ(cookie_value("a=1; gatehouse_session=abc.def; token=x", "gatehouse_session"), "abc.def");
  EXPECT_EQ(cookie_value("token=\"q\"", "token"), "q");
  EXPECT_EQ(cookie_value("xtoken=1; token2=3", "token"), "");
  EXPECT_EQ(cookie_value("", "token"), "");
}

TEST(AuthHeaders, StripsIdentityHeadersOnly) {
  http::Request req;
  req.set("X-User-Email", "boss@example.com");
  req.set("x-user-admin", "true");
  req.set("X-Gateway-Validated", "true");
  req.set("X-Userish", "keep");
  req.set("Authorization", "Bearer t");
  EXPECT_TRUE(strip_identity_headers(req));
  EXPECT_EQ(req["X-User-Email"], "");
  EXPECT_EQ(req["X-User-Admin"], "");
  EXPECT_EQ(req["X-Gateway-Validated"], "");
  EXPECT_EQ(req["X-Userish"], "keep");
  EXPECT_EQ(req["Authorization"], "Bearer t");
  EXPECT_FALSE(strip_identity_headers(req));
}

TEST(AuthEmails, NormalisesAndChecks) {
  EXPECT_EQ(normalize_email("  Alice@Example.COM "), "alice@example.com");
  EXPECT_TRUE(plausible_email("a@b.c"));
  EXPECT_FALSE(plausible_email("a@@b"));
  EXPECT_FALSE(plausible_email("@b.c"));
  EXPECT_FALSE(plausible_email("a b@c.d"));
  EXPECT_FALSE(plausible_email("a@b.c,d@e.f"));
  // Invisible characters: an address that reads like another one.
  EXPECT_FALSE(plausible_email("admin@localhost\u200b"));
  EXPECT_FALSE(plausible_email("ad\u202emin@x.io"));
  EXPECT_FALSE(plausible_email("\ufeffadmin@x.io"));
  EXPECT_FALSE(plausible_email("ad\u00admin@x.io"));
  EXPECT_FALSE(plausible_email("a\u2066@x.io"));
  EXPECT_TRUE(plausible_email("j\u00f6rg@m\u00fcller.de"));  // other non-ASCII letters are fine
  // Every default-ignorable code point and every space but U+0020 (session 28's review: these got through).
  for (const char* s : {"alice\u2060@x.io", "alice\u2062@x.io", "alice\u2063@x.io", "alice\u00a0@x.io",
                        "alice\u034f@x.io", "alice\u180e@x.io", "alice\ufe0f@x.io", "alice\u3164@x.io",
                        "alice\u3000@x.io", "alice\U000E0041@x.io", "alice\u0085@x.io", "alice\u2028@x.io"})
    EXPECT_FALSE(plausible_email(s)) << s;
  EXPECT_FALSE(plausible_email("alice\xe2\x80@x.io"));  // cut UTF-8
  EXPECT_TRUE(plausible_email("\u4e2d\u6587@x.io"));
  EXPECT_TRUE(auth::valid_group_name("Caf\u00e9 \u2013 Team"));
  EXPECT_FALSE(auth::valid_group_name("Team\u00a0A"));
  // Emoji written with presentation selectors and joiners are visible: allowed after a symbol, not a letter.
  EXPECT_TRUE(auth::valid_group_name("\u2601\ufe0f Cloud"));
  EXPECT_TRUE(auth::valid_group_name("\U0001F469\u200d\U0001F4BB Devs"));
  EXPECT_TRUE(auth::valid_group_name("\u2764\ufe0f\u200d\U0001F525 Fans"));
  EXPECT_FALSE(auth::valid_group_name("Admin\ufe0f"));
  EXPECT_FALSE(auth::valid_group_name("Ad\u200dmin"));
  EXPECT_FALSE(plausible_email("admin\ufe0f@x.io"));
}

TEST(AuthSnapshot, AdminThroughGroupAndFlag) {
  store::Dump d;
  d.users.push_back({.email = "a@x.io", .name = "A", .subject = "oidc:i|1"});
  d.users.push_back({.email = "b@x.io", .is_admin = true});
  d.users.push_back({.email = "c@x.io", .disabled = true});
  d.groups.push_back({.name = std::string(kAdminGroup)});
  d.groups.push_back({.name = "MCP-GitHub"});
  d.memberships.push_back({"a@x.io", "MCP-GitHub", "manual"});
  d.memberships.push_back({"a@x.io", std::string(kAdminGroup), "manual"});
  store::ApiKey k;
  k.id = "k1";
  k.hash = "h1";
  k.user_email = "b@x.io";
  d.api_keys.push_back(k);
  auto s = Snapshot::build(d, 7);
  EXPECT_EQ(s->version(), 7u);
  auto a = s->user("a@x.io");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_admin);
  EXPECT_EQ(a->groups, (std::vector<std::string>{"MCP-Admin", "MCP-GitHub"}));
  EXPECT_TRUE(s->user("b@x.io")->is_admin);
  EXPECT_FALSE(s->user("c@x.io")->is_admin);
  EXPECT_TRUE(s->user("c@x.io")->disabled);
  EXPECT_FALSE(s->user("nobody@x.io"));
  EXPECT_EQ(s->email_for_subject("oidc:i|1").value_or(""), "a@x.io");
  ASSERT_TRUE(s->api_key_by_hash("h1"));
  EXPECT_EQ(s->api_key_by_hash("h1")->user_email, "b@x.io");
  EXPECT_FALSE(s->api_key_by_hash("h2"));
  EXPECT_TRUE(s->has_group("MCP-GitHub"));
}
