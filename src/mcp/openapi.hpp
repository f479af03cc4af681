// Tools as REST, the mcpo convention Open WebUI speaks: an OpenAPI 3.1 document per server
// (GET /openapi/<server>/openapi.json) and for all of the caller's servers (GET /openapi/openapi.json), and one
// operation per permitted tool (POST /openapi/<server>/<tool>), called with the caller's identity, policy,
// credentials, limits and analytics exactly as over MCP. Results and errors are mapped as mcpo maps them.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <string>
#include <string_view>

#include "core/config.hpp"
#include "http/server.hpp"
#include "mcp/hub.hpp"

namespace gh::mcp {

class OpenApi {
 public:
  OpenApi(Hub& hub, const Settings& settings) : hub_(hub), settings_(settings) {}
  // `rest` is the path after "/openapi" ("/openapi.json", "/<server>/openapi.json", "/<server>/<tool>").
  net::awaitable<void> handle(http::Exchange& ex, std::string_view rest, Caller caller);

 private:
  net::awaitable<void> spec(http::Exchange& ex, std::string server, Caller caller);
  net::awaitable<void> call(http::Exchange& ex, std::string server, std::string tool, Caller caller);
  Hub& hub_;
  const Settings& settings_;
};

// mcpo's mapping of a tools/call result: text that parses as JSON becomes JSON, images become data URIs,
// one item is returned alone, several as a list. Exposed for tests.
json::value map_tool_result(const json::object& result);
// A light check of `args` against a tool's input schema (required properties, top-level JSON types);
// returns an empty string or the first problem.
std::string check_arguments(const json::object& schema, const json::object& args);

}  // namespace gh::mcp
