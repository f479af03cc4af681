#include "jsonrpc/message.hpp"

#include "core/util.hpp"

#include <boost/json/parse.hpp>

namespace gh::jsonrpc {
namespace json = boost::json;

bool valid_id(const json::value& id) { return id.is_string() || id.is_int64() || id.is_uint64(); }

Kind classify(const json::value& v, std::string* why) {
  auto fail = [&](const char* w) {
    if (why) *why = w;
    return Kind::invalid;
  };
  if (!v.is_object()) return fail("a JSON-RPC message must be an object");
  // One pass over the members (this runs for every message, both ways) instead of a lookup per name.
  const json::value *ver = nullptr, *method = nullptr, *id = nullptr, *params = nullptr, *result = nullptr,
                    *error = nullptr;
  for (const auto& kv : v.as_object()) {
    std::string_view k = kv.key();
    if (k == "jsonrpc") ver = &kv.value();
    else if (k == "method") method = &kv.value();
    else if (k == "id") id = &kv.value();
    else if (k == "params") params = &kv.value();
    else if (k == "result") result = &kv.value();
    else if (k == "error") error = &kv.value();
  }
  if (!ver || !ver->is_string() || ver->as_string() != "2.0") return fail("\"jsonrpc\" must be \"2.0\"");
  if (method) {
    if (!method->is_string() || method->as_string().empty()) return fail("\"method\" must be a non-empty string");
    if (params && !params->is_object() && !params->is_array()) return fail("\"params\" must be an object or array");
    if (!id) return Kind::notification;
    if (!valid_id(*id)) return fail("\"id\" must be a string or an integer");
    return Kind::request;
  }
  if (!id) return fail("a message needs \"method\" or \"id\"");
  if (!result == !error) return fail("a response has exactly one of \"result\" and \"error\"");
  if (!valid_id(*id) && !id->is_null()) return fail("\"id\" must be a string or an integer");
  if (error && (!error->is_object() || !error->as_object().contains("code")))
    return fail("\"error\" must be an object with \"code\"");
  return Kind::response;
}

Body parse_body(std::string_view text) {
  Body b;
  json::error_code ec;
  json::value v = parse_json(text, ec);
  if (ec) {
    b.error_code = code::parse_error;
    b.error = "Parse error: " + ec.message();
    return b;
  }
  if (v.is_array()) {
    b.batch = true;
    auto& arr = v.as_array();
    if (arr.empty()) {
      b.error_code = code::invalid_request;
      b.error = "Invalid Request: empty batch";
      return b;
    }
    b.messages.reserve(arr.size());
    for (auto& m : arr) b.messages.push_back(std::move(m));
  } else {
    b.messages.push_back(std::move(v));
  }
  return b;
}

json::object make_notification(std::string_view method, json::value params) {
  json::object o;
  o["jsonrpc"] = "2.0";
  o["method"] = method;
  if (!params.is_null()) o["params"] = std::move(params);
  return o;
}

json::object make_result(json::value id, json::value result) {
  json::object o;
  o.reserve(3);
  o["jsonrpc"] = "2.0";
  o["id"] = std::move(id);
  o["result"] = std::move(result);
  return o;
}

json::object make_error(json::value id, int c, std::string_view message, const json::value* data) {
  json::object err;
  err["code"] = c;
  err["message"] = message;
  if (data) err["data"] = *data;
  json::object o;
  o["jsonrpc"] = "2.0";
  o["id"] = std::move(id);
  o["error"] = std::move(err);
  return o;
}

std::string error_text(json::value id, int c, std::string_view message) {
  return to_json(make_error(std::move(id), c, message));
}

std::string_view method_of(const json::object& msg) {
  if (auto* m = msg.if_contains("method"); m && m->is_string()) return m->as_string();
  return {};
}

}  // namespace gh::jsonrpc
