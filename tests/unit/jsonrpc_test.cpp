#include <cmath>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <random>

#include "core/util.hpp"
#include "jsonrpc/message.hpp"

using namespace gh::jsonrpc;
namespace json = boost::json;

static Kind kind_of(std::string_view text, std::string* why = nullptr) { return classify(json::parse(text), why); }

TEST(JsonRpc, ClassifiesRequestsNotificationsAndResponses) {
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1,"method":"ping"})"), Kind::request);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":"a","method":"tools/list","params":{}})"), Kind::request);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","method":"notifications/initialized"})"), Kind::notification);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1,"result":{}})"), Kind::response);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}})"), Kind::response);
}

TEST(JsonRpc, RejectsMalformedEnvelopes) {
  std::string why;
  EXPECT_EQ(kind_of(R"([1])", &why), Kind::invalid);
  EXPECT_EQ(kind_of(R"({"id":1,"method":"ping"})", &why), Kind::invalid);
  EXPECT_NE(why.find("jsonrpc"), std::string::npos);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"1.0","id":1,"method":"ping"})"), Kind::invalid);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":null,"method":"ping"})"), Kind::invalid);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1.5,"method":"ping"})"), Kind::invalid);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1,"method":""})"), Kind::invalid);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1,"method":"x","params":3})"), Kind::invalid);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1}})"), Kind::invalid);
  EXPECT_EQ(kind_of(R"({"jsonrpc":"2.0","id":1})"), Kind::invalid);
}

TEST(JsonRpc, ParseBodyReportsParseErrorsAndBatches) {
  auto bad = parse_body("{nope");
  EXPECT_EQ(bad.error_code, code::parse_error);
  auto empty = parse_body("[]");
  EXPECT_EQ(empty.error_code, code::invalid_request);
  auto batch = parse_body(R"([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}])");
  EXPECT_EQ(batch.error_code, 0);
  EXPECT_TRUE(batch.batch);
  EXPECT_EQ(batch.messages.size(), 2u);
  auto one = parse_body(R"({"jsonrpc":"2.0","id":1,"method":"ping"})");
  EXPECT_FALSE(one.batch);
  EXPECT_EQ(one.messages.size(), 1u);
}

TEST(JsonRpc, KeepsIdTypeExactly) {
  auto s = json::serialize(make_result(json::value("7"), json::object{}));
  EXPECT_NE(s.find(R"("id":"7")"), std::string::npos);
  auto n = json::serialize(make_result(json::value(7), json::object{}));
  EXPECT_NE(n.find(R"("id":7)"), std::string::npos);
  auto e = json::parse(error_text(nullptr, code::parse_error, "Parse error"));
  EXPECT_TRUE(e.at("id").is_null());
  EXPECT_EQ(e.at("error").at("code").as_int64(), -32700);
}

// A number too large for a double parses as infinity; it is written as a JSON number that reads back as
// infinity again (Boost.JSON 1.81 writes `Infinity`, which is not JSON).
TEST(ToJson, InfinityIsWrittenAsAJsonNumber) {
  boost::system::error_code ec;
  auto v = gh::parse_json(R"([1e400,-1e400,1.5,{"n":1e999}])", ec);
  ASSERT_FALSE(ec);
  auto text = gh::to_json(v);
  EXPECT_EQ(text, R"([1e999,-1e999,1.5E0,{"n":1e999}])");
  auto back = gh::parse_json(text, ec);
  ASSERT_FALSE(ec);
  EXPECT_TRUE(std::isinf(back.as_array()[0].as_double()));
}

// Tool results nest deeper than Boost.JSON's default 32 levels; kMaxJsonDepth is the limit.
TEST(ParseJson, NestsToTheGatewaysLimit) {
  boost::system::error_code ec;
  auto nested = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
  gh::parse_json(nested(gh::kMaxJsonDepth), ec);
  EXPECT_FALSE(ec);
  gh::parse_json(nested(gh::kMaxJsonDepth + 1), ec);
  EXPECT_TRUE(ec);
}

// JavaScript writes a lone surrogate as an escape the parser refuses; mended to U+FFFD, pairs and other
// escapes (an escaped backslash before a u) left as they are.
TEST(ParseJson, LoneSurrogateEscapesAreMended) {
  EXPECT_FALSE(gh::mend_lone_surrogates(R"({"a":"\ud83d\ude00 \\ud800 \n"})").has_value());
  auto m = gh::mend_lone_surrogates(R"({"a":"x\ud800y","b":"\udc00","c":"\uD83D\u0041","d":"\ud83d\ude00"})");
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, R"({"a":"x\ufffdy","b":"\ufffd","c":"\ufffd\u0041","d":"\ud83d\ude00"})");
  boost::system::error_code ec;
  gh::parse_json(R"({"a":"x\ud800y"})", ec);
  EXPECT_TRUE(ec);  // (what makes the mending needed)
  auto v = gh::parse_json(*m, ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(v.at("a").as_string(), "x\xEF\xBF\xBDy");
}

// gh::to_json writes the bytes boost::json::serialize writes, for every byte value at every position of
// every short length (the 8-byte word checks and the byte loop after them), and for random documents.
TEST(ToJson, WritesWhatBoostJsonWrites) {
  for (int len = 1; len <= 20; ++len)
    for (int pos = 0; pos < len; ++pos)
      for (int b = 0; b < 256; ++b) {
        std::string text(len, 'a');
        text[pos] = static_cast<char>(b);
        json::value v(text);
        ASSERT_EQ(gh::to_json(v), json::serialize(v)) << "length " << len << ", byte " << b << " at " << pos;
      }
  std::mt19937 rng(42);
  auto random_text = [&] {
    std::string t(rng() % 40, ' ');
    for (auto& c : t) c = static_cast<char>(rng() % 4 ? 'a' + rng() % 26 : rng() % 256);
    return t;
  };
  std::function<json::value(int)> random_value = [&](int depth) -> json::value {
    switch (rng() % (depth < 4 ? 9 : 7)) {
      case 0: return nullptr;
      case 1: return rng() % 2 == 0;
      case 2: return static_cast<int64_t>(rng()) - (int64_t{1} << 31) * (rng() % 3);
      case 3: return rng() % 2 ? std::numeric_limits<uint64_t>::max() : uint64_t(rng()) << 20;
      case 4: return std::ldexp(static_cast<double>(rng()), static_cast<int>(rng() % 40) - 20);
      case 5:
      case 6: return json::string(random_text());
      case 7: {
        json::object o;
        for (int i = rng() % 5; i > 0; --i) o[random_text()] = random_value(depth + 1);
        return o;
      }
      default: {
        json::array a;
        for (int i = rng() % 5; i > 0; --i) a.push_back(random_value(depth + 1));
        return a;
      }
    }
  };
  for (int i = 0; i < 2000; ++i) {
    json::value v = random_value(0);
    ASSERT_EQ(gh::to_json(v), json::serialize(v));
    if (v.is_object()) {
      ASSERT_EQ(gh::to_json(v.as_object()), json::serialize(v.as_object()));
    }
  }
  json::value edges{{"min", std::numeric_limits<int64_t>::min()}, {"max", std::numeric_limits<int64_t>::max()},
                    {"zero", 0}, {"neg", -1.5}, {"empty", ""}, {"nested", json::array{json::object{}, json::array{}}}};
  EXPECT_EQ(gh::to_json(edges), json::serialize(edges));
  // Texts longer than the writer's first buffer (4 KiB), which grows in the middle of a string, an escape
  // and an object, and one past the 1 MiB it keeps (the next text starts on a fresh buffer); a batch as one array.
  for (std::size_t n : {4000, 4095, 4096, 5000, 70000, 1200000, 100}) {
    std::string text(n, 'x');
    for (std::size_t i = 0; i < n; i += 997) text[i] = static_cast<char>(i % 3 == 0 ? '"' : i % 3 == 1 ? '\n' : 1);
    json::value big{{"jsonrpc", "2.0"}, {"id", 7}, {"result", {{"content", json::array{{{"type", "text"}, {"text", text}}}}}}};
    ASSERT_EQ(gh::to_json(big), json::serialize(big)) << n;
    std::vector<json::value> batch{big, nullptr, json::value(text), big};
    ASSERT_EQ(gh::to_json_array(batch), json::serialize(json::array(batch.begin(), batch.end()))) << n;
  }
}

TEST(JsonRpc, RequestTextIsTheRequestObjectsText) {
  json::value params{{"name", "echo"}, {"arguments", {{"message", "a \"quoted\"\nline"}}}, {"_meta", {{"progressToken", 3}}}};
  EXPECT_EQ(json::parse(gh::to_json_request(18446744073709551615ull, "tools/call", params)),
            json::parse(R"({"jsonrpc":"2.0","id":18446744073709551615,"method":"tools/call",)"
                        R"("params":{"name":"echo","arguments":{"message":"a \"quoted\"\nline"},"_meta":{"progressToken":3}}})"));
  EXPECT_EQ(gh::to_json_request(1, "ping\"", nullptr), R"({"jsonrpc":"2.0","id":1,"method":"ping\""})");
}
