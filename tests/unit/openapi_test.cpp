#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "mcp/openapi.hpp"

using namespace gh;
namespace json = boost::json;

TEST(OpenApi, MapsResultsAsMcpoDoes) {
  auto r = json::parse(R"({"content":[{"type":"text","text":"{\"a\":1}"}]})").as_object();
  EXPECT_EQ(json::serialize(mcp::map_tool_result(r)), R"({"a":1})");
  r = json::parse(R"({"content":[{"type":"text","text":"plain words"}]})").as_object();
  EXPECT_EQ(mcp::map_tool_result(r).as_string(), "plain words");
  r = json::parse(R"({"content":[{"type":"text","text":"x"},{"type":"image","data":"QUJD","mimeType":"image/png"}]})").as_object();
  auto v = mcp::map_tool_result(r);
  ASSERT_TRUE(v.is_array());
  EXPECT_EQ(v.as_array()[1].as_string(), "data:image/png;base64,QUJD");
  r = json::parse(R"({"content":[],"structuredContent":{"sum":3}})").as_object();
  EXPECT_EQ(json::serialize(mcp::map_tool_result(r)), R"({"sum":3})");
}

TEST(OpenApi, ChecksArguments) {
  auto schema = json::parse(R"({"type":"object","properties":{"a":{"type":"number"},"s":{"type":["string","null"]},
                                "n":{"type":"integer"}},"required":["a"]})").as_object();
  EXPECT_EQ(mcp::check_arguments(schema, json::parse(R"({"a":1.5})").as_object()), "");
  EXPECT_NE(mcp::check_arguments(schema, json::parse(R"({})").as_object()).find("missing required argument 'a'"), std::string::npos);
  EXPECT_NE(mcp::check_arguments(schema, json::parse(R"({"a":"x"})").as_object()), "");
  EXPECT_EQ(mcp::check_arguments(schema, json::parse(R"({"a":1,"s":null})").as_object()), "");
  EXPECT_NE(mcp::check_arguments(schema, json::parse(R"({"a":1,"n":1.5})").as_object()), "");
  EXPECT_EQ(mcp::check_arguments(schema, json::parse(R"({"a":1,"extra":true})").as_object()), "");
}
