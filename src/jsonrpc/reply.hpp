// Messages passed through as written, both ways (docs/gateway-behaviour.md, "Messages passed through as
// written"). Reply: a JSON-RPC response on its way to the client, either built here (an object) or an
// upstream's result passed through as the bytes it sent — checked to be valid JSON but never parsed into a
// DOM and never written again: only the id is replaced as the response is written out. Whoever needs its
// members (rarely: the OpenAPI mapping, the catalog, the initialize handshake) asks for object(), which
// parses it then. scan_tool_call: the client's tools/call, whose params go upstream as the client wrote them.
#pragma once
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gh::jsonrpc {

class Reply {
 public:
  Reply(boost::json::object o);  // NOLINT: implicit, a built response is a reply
  Reply(Reply&&) noexcept = default;
  Reply& operator=(Reply&&) noexcept = default;
  Reply(const Reply& o);
  Reply& operator=(const Reply& o);
  ~Reply();

  // When `text` is one JSON-RPC result response ({"jsonrpc":"2.0","id":<unsigned integer>,"result":<any
  // valid JSON>}, nothing else), takes the text and returns its id and the reply; otherwise returns nullopt
  // and leaves `text` as it was (error responses, requests, notifications, batches and anything unusual
  // take the parsed path, which validates and explains).
  static std::optional<std::pair<uint64_t, Reply>> pass_through(std::string& text);

  bool is_error() const;                     // an "error" member
  std::optional<int64_t> error_code() const;  // its integer code
  bool tool_error() const;                    // a result with "isError": true
  // The URIs of the resource_link items of a tool's result (a passed-through one is parsed only if its text
  // names one).
  std::vector<std::string> resource_links();
  void set_id(boost::json::value id);
  std::string serialize() const;
  // The response as an object (parses a passed-through result; its id is the one set).
  boost::json::object& object();
  bool passed_through() const { return d_->raw; }

 private:
  // Behind a pointer: a reply is handed on several times between the upstream and the client, and each
  // move of the members themselves costs calls into Boost.JSON's library (a move is now a pointer's).
  struct Data {
    boost::json::object obj;
    bool raw = false;
    bool tool_error = false;
    std::string text;                    // the upstream's message
    std::size_t result_pos = 0, result_len = 0;  // its result, in text
    boost::json::value id;               // the id to write
  };
  Reply();
  std::unique_ptr<Data> d_;  // null only once moved from
};

// A tools/call request that can go upstream with its params as the client wrote them (the other way through,
// the request is not parsed into a DOM either): one object of exactly "jsonrpc":"2.0", an id (an integer or a
// string without escapes), "method":"tools/call" and params, an object with a "name" (a string without
// escapes), no "_meta" (its progress token must be rewritten) and no key with an escape. Anything else is
// nullopt: the parsed path takes it, and validates and explains.
struct ToolCall {
  boost::json::value id;   // as the parser would have made it (int64 when it fits, else uint64; or a string)
  std::string name;
  std::string_view params;  // the params' text, in the scanned text
  std::size_t name_pos = 0;  // where the name's characters start in `params`
};
std::optional<ToolCall> scan_tool_call(std::string_view text);

}  // namespace gh::jsonrpc
