#include <gtest/gtest.h>

#include <boost/json.hpp>

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
