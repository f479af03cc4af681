// Resumable MCP session ids (mcp/session_ids.hpp).
#include <gtest/gtest.h>

#include "auth/jwt.hpp"
#include "core/util.hpp"
#include "mcp/session_ids.hpp"

using gh::mcp::SessionIds;
using gh::mcp::SessionTicket;

namespace {

SessionTicket ticket(int64_t at) {
  SessionTicket t;
  t.scope = "everything";
  t.protocol_version = "2025-06-18";
  t.capabilities = {{"roots", {{"listChanged", true}}}};
  t.issued_at = at;
  return t;
}

}  // namespace

TEST(SessionIds, AnIdCarriesItsSessionToAnotherInstanceWithTheSameSecret) {
  SessionIds a("secret", 3600), b("secret", 3600);
  auto t = ticket(1'000'000);
  t.owner = "ann@example.com";
  auto id = a.issue(t);
  for (char c : id) EXPECT_TRUE(c >= 0x21 && c <= 0x7e) << id;  // visible ASCII, as MCP asks
  EXPECT_EQ(id.find("ann"), std::string::npos) << "the owner's address is not in the id";
  auto got = b.verify(id, 1'000'100);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->scope, "everything");
  EXPECT_EQ(got->protocol_version, "2025-06-18");
  EXPECT_TRUE(b.belongs_to(*got, "ann@example.com"));
  EXPECT_FALSE(b.belongs_to(*got, "bob@example.com"));
  EXPECT_FALSE(b.belongs_to(*got, ""));
  EXPECT_NE(b.verify(a.issue(t), 1'000'100)->owner, got->owner) << "one user's sessions are not linkable by their tag";
  EXPECT_EQ(got->capabilities, t.capabilities);
  EXPECT_EQ(got->issued_at, 1'000'000);
  EXPECT_NE(a.issue(t), id) << "two sessions opened alike get different ids";
}

TEST(SessionIds, ForgedTamperedOldOrForeignIdsAreRefused) {
  SessionIds ids("secret", 3600);
  auto id = ids.issue(ticket(1'000'000));
  std::string why;
  EXPECT_FALSE(SessionIds("another secret", 3600).verify(id, 1'000'000, &why));
  EXPECT_EQ(why, "bad signature");
  // Every single-character change of the payload or the signature is caught.
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (id[i] == '.') continue;
    auto bad = id;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(ids.verify(bad, 1'000'000)) << "changed at " << i;
  }
  // A payload of our making, signed, but with the scope changed, is another payload: its signature fails.
  auto dot = id.find('.');
  auto forged = gh::base64url_encode(R"({"n":"x","t":1000000,"s":"other","o":"","v":"2025-06-18"})") + id.substr(dot);
  EXPECT_FALSE(ids.verify(forged, 1'000'000, &why));
  EXPECT_EQ(why, "bad signature");
  EXPECT_FALSE(ids.verify(id, 1'000'000 + 3601, &why));
  EXPECT_EQ(why, "too old");
  EXPECT_TRUE(ids.verify(id, 1'000'000 + 3600));
  EXPECT_FALSE(ids.verify(id, 1'000'000 - 301)) << "issued in the future (beyond clock skew)";
  EXPECT_FALSE(ids.verify("0123456789abcdef0123456789abcdef", 1'000'000, &why));  // a random id
  EXPECT_EQ(why, "not an id this gateway issued");
  EXPECT_FALSE(ids.verify(std::string(2000, 'a') + ".b", 1'000'000));
  EXPECT_FALSE(ids.verify(".", 1'000'000));
  EXPECT_FALSE(ids.verify("", 1'000'000));
}

TEST(SessionIds, CapabilitiesTooLargeMakeAnIdNoInstanceOpensAgain) {
  SessionIds ids("secret", 3600);
  auto t = ticket(1'000'000);
  t.capabilities = {{"sampling", {{"x", std::string(SessionIds::kMaxCapabilities, 'x')}}}};
  auto id = ids.issue(t);
  EXPECT_FALSE(ids.verify(id, 1'000'000));
  EXPECT_LE(id.size(), 64u);
}

TEST(SessionIds, SignedButMalformedPayloadsAreRefusedNotRead) {
  // What only a holder of the key could make: every truncation of a real payload, and bytes that are no
  // payload at all, each signed as the gateway signs — refused as malformed, never read past their end.
  SessionIds ids("secret", 3600);
  auto key = gh::auth::hmac_sha256_raw("secret", "gatehouse mcp session ids");
  auto sign = [&](std::string_view bytes) {
    auto payload = gh::base64url_encode(bytes);
    return payload + "." + gh::base64url_encode(gh::auth::hmac_sha256_raw(key, payload).substr(0, 16));
  };
  auto id = ids.issue(ticket(1'000'000));
  auto bytes = *gh::base64url_decode(id.substr(0, id.find('.')));
  ASSERT_TRUE(ids.verify(sign(bytes), 1'000'000)) << "the signing here is the gateway's";
  std::string why;
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto got = ids.verify(sign(bytes.substr(0, n)), 1'000'000, &why);
    // A cut inside the capabilities' JSON is malformed; one right after the protocol is a ticket without them.
    if (got) EXPECT_TRUE(got->capabilities.empty()) << n;
    else EXPECT_EQ(why, "malformed payload") << n;
  }
  for (std::string junk : {std::string("\x02"), std::string(40, '\xff'), std::string(40, '\0')})
    EXPECT_FALSE(ids.verify(sign(junk), 1'000'000));
}
