// JSON-RPC 2.0 envelope: classify, validate and build messages. No I/O.
#pragma once
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace gh::jsonrpc {

namespace code {
inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;
inline constexpr int request_timeout = -32001;  // also "session not found" at the HTTP layer (as the SDK does)
inline constexpr int resource_not_found = -32002;
}  // namespace code

enum class Kind { request, notification, response, invalid };

// What a single JSON value is as a JSON-RPC message; `why` explains `invalid`.
Kind classify(const boost::json::value& v, std::string* why = nullptr);

// A request id is a string or an integer (never null, never fractional).
bool valid_id(const boost::json::value& id);

struct Body {
  bool batch = false;
  std::vector<boost::json::value> messages;
  int error_code = 0;  // parse_error or invalid_request when the body is unusable
  std::string error;
};
// Parses an HTTP body: one message or (when allowed by the caller) a batch array.
Body parse_body(std::string_view text);

boost::json::object make_notification(std::string_view method, boost::json::value params);
boost::json::object make_result(boost::json::value id, boost::json::value result);
boost::json::object make_error(boost::json::value id, int code, std::string_view message,
                               const boost::json::value* data = nullptr);
std::string error_text(boost::json::value id, int code, std::string_view message);

// method name of a request/notification ("" if none)
std::string_view method_of(const boost::json::object& msg);

}  // namespace gh::jsonrpc
