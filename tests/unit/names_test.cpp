#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <random>

#include "core/util.hpp"
#include "http/server.hpp"
#include "mcp/hub.hpp"
#include "mcp/names.hpp"

using namespace gh::mcp;

TEST(Names, PrefixAndSplitRoundTrip) {
  std::string_view server, name;
  auto full = prefixed("github", "create_issue");
  EXPECT_EQ(full, "github__create_issue");
  ASSERT_TRUE(split_name(full, server, name));
  EXPECT_EQ(server, "github");
  EXPECT_EQ(name, "create_issue");
  // tool names may themselves contain the separator: the server id never does
  ASSERT_TRUE(split_name("fs__read__file", server, name));
  EXPECT_EQ(server, "fs");
  EXPECT_EQ(name, "read__file");
}

TEST(Names, SplitRejectsMissingParts) {
  std::string_view server, name;
  EXPECT_FALSE(split_name("echo", server, name));
  EXPECT_FALSE(split_name("__echo", server, name));
  EXPECT_FALSE(split_name("srv__", server, name));
}

TEST(Cursor, RoundTripsAndRejectsForeignValues) {
  for (std::size_t off : {0u, 1u, 500u, 123456u}) {
    auto c = cursor_encode("tools/list", off);
    auto back = cursor_decode(boost::json::value(c), "tools/list");
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, off);
    // Another list's cursor is not one of this list's (its offset counts other items).
    EXPECT_FALSE(cursor_decode(boost::json::value(c), "prompts/list").has_value());
    EXPECT_FALSE(cursor_decode(boost::json::value(c), "tools/lis").has_value());
  }
  EXPECT_FALSE(cursor_decode(boost::json::value("not-a-cursor"), "tools/list").has_value());
  EXPECT_FALSE(cursor_decode(boost::json::value(5), "tools/list").has_value());
  EXPECT_FALSE(cursor_decode(boost::json::value(gh::base64url_encode("tools/list:12x")), "tools/list").has_value());
  EXPECT_FALSE(cursor_decode(boost::json::value(gh::base64url_encode("tools/list:")), "tools/list").has_value());
  EXPECT_FALSE(cursor_decode(boost::json::value(gh::base64url_encode("o:12")), "tools/list").has_value());
}

TEST(Util, Base64UrlRoundTrip) {
  for (std::string s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto d = gh::base64url_decode(gh::base64url_encode(s));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, s);
  }
  EXPECT_FALSE(gh::base64url_decode("a").has_value());
  EXPECT_FALSE(gh::base64url_decode("a$bc").has_value());
}

TEST(Util, AcceptHeaderTokens) {
  EXPECT_TRUE(gh::header_has_token("application/json, text/event-stream", "text/event-stream"));
  EXPECT_TRUE(gh::header_has_token("Application/JSON;q=0.9", "application/json"));
  EXPECT_FALSE(gh::header_has_token("application/jsonx", "application/json"));
  EXPECT_FALSE(gh::header_has_token("", "application/json"));
  EXPECT_TRUE(gh::header_has_token(" ,\ttext/html , application/json ;q=1", "application/json"));
  EXPECT_TRUE(gh::header_has_token("text/html;level=1, */*", "*/*"));
  EXPECT_FALSE(gh::header_has_token("text/html;application/json", "application/json"));  // a parameter, not an element
  EXPECT_FALSE(gh::header_has_token(", ,", "application/json"));
}

TEST(Util, AcceptHeaderTokensMatchTheElementDefinition) {
  // header_has_token has a fast path (the token as written); on random headers made of the characters that
  // matter it must agree with the definition: some comma-separated element, without its parameters and
  // surrounding whitespace, equals the token ignoring ASCII case.
  auto reference = [](std::string_view header, std::string_view token) {
    for (auto element : gh::split(header, ',')) {
      auto type = element.substr(0, element.find(';'));
      if (gh::iequals(gh::trim(type), token)) return true;
    }
    return false;
  };
  std::mt19937 rng(7);
  const std::vector<std::string> parts = {"application/json", "Application/JSON", "text/event-stream", "*/*", ",", ";",
                                          " ", "\t", "q=1", "x", "application/jsonx", "\"", "="};
  int found = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string h;
    for (int n = rng() % 8; n > 0; --n) h += parts[rng() % parts.size()];
    for (std::string_view token : {"application/json", "text/event-stream", "*/*"}) {
      bool want = reference(h, token);
      found += want;
      ASSERT_EQ(gh::header_has_token(h, token), want) << "header [" << h << "] token " << token;
    }
  }
  EXPECT_GT(found, 2000);  // the random headers do contain the tokens, often
}

TEST(Util, IequalsFoldsAsciiCaseOnly) {
  EXPECT_TRUE(gh::iequals("Mcp-Session-Id", "mcp-session-id"));
  EXPECT_TRUE(gh::iequals("", ""));
  EXPECT_FALSE(gh::iequals("accept", "accepts"));
  EXPECT_FALSE(gh::iequals("a[", "A{"));  // '[' and '{' differ by the case bit but are not letters
  EXPECT_FALSE(gh::iequals("\xC4", "\xE4"));  // nor are bytes outside ASCII
}

TEST(Util, IequalsAgreesWithAByteAtATimeFoldOnEveryPairOfBytes) {
  auto fold = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; };
  // Every pair of bytes, at each position of words up to 17 bytes (the word-at-a-time loop and its tail).
  for (std::size_t len : {1u, 7u, 8u, 9u, 16u, 17u}) {
    for (std::size_t at : {std::size_t{0}, len / 2, len - 1}) {
      std::string a(len, 'k'), b(len, 'K');
      for (int x = 0; x < 256; ++x)
        for (int y = 0; y < 256; ++y) {
          a[at] = static_cast<char>(x);
          b[at] = static_cast<char>(y);
          ASSERT_EQ(gh::iequals(a, b), fold(x) == fold(y)) << "len " << len << " at " << at << " bytes " << x << "," << y;
        }
    }
  }
}

TEST(Http, HeaderLookupByFieldAndByName) {
  gh::http::Request req;
  req.set(boost::beast::http::field::content_type, "application/json");
  req.insert("MCP-Session-Id", "abc");
  req.insert("X-Twice", "first");
  req.insert("x-twice", "second");
  EXPECT_EQ(req[boost::beast::http::field::content_type], "application/json");
  EXPECT_EQ(req["content-type"], "application/json");
  EXPECT_EQ(req["Mcp-Session-Id"], "abc");
  EXPECT_EQ(req["X-TWICE"], "first");  // the first of repeated fields, as basic_fields::find
  EXPECT_EQ(req[boost::beast::http::field::accept], "");
  EXPECT_EQ(req["Mcp-Session"], "");
}

TEST(Util, RandomHexIsFreshEachTime) {
  auto a = gh::random_hex(16), b = gh::random_hex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

// A call's SSE queue (progress, relayed requests) keeps at most kMaxQueued messages and kMaxQueuedBytes: a
// client that reads slower than an upstream writes loses the oldest, the gateway keeps bounded memory.
TEST(Channel, QueueIsBoundedByCountAndBytes) {
  boost::asio::io_context io;
  Channel ch(io.get_executor());
  boost::json::object big{{"pad", std::string(1 << 20, 'x')}};
  for (int i = 0; i < 40; ++i) ch.push(big);  // 40 MiB offered
  EXPECT_LE(ch.queued_bytes, Channel::kMaxQueuedBytes);
  EXPECT_EQ(ch.messages.size(), Channel::kMaxQueuedBytes / (1 << 20) - 1);
  std::size_t sum = 0;
  for (auto& m : ch.messages) sum += m.size();
  EXPECT_EQ(sum, ch.queued_bytes);
  Channel small(io.get_executor());
  for (std::size_t i = 0; i < Channel::kMaxQueued + 10; ++i) small.push(boost::json::object{{"i", i}});
  EXPECT_EQ(small.messages.size(), Channel::kMaxQueued);
  EXPECT_EQ(small.messages.front(), R"({"i":10})");
}
