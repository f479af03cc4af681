#include "mcp/openapi.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/pct_string_view.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <cmath>
#include <unordered_set>

#include "core/log.hpp"
#include "core/util.hpp"
#include "jsonrpc/message.hpp"
#include "mcp/names.hpp"

namespace gh::mcp {

namespace bhttp = boost::beast::http;
namespace code = jsonrpc::code;

namespace {

std::string detail(std::string_view message) {
  return to_json(json::object{{"detail", json::object{{"message", message}}}});
}

// A server whose tools could not be listed: 503, saying why (not "no such tool", nor an empty document a client
// would take for "no tools").
net::awaitable<void> send_unavailable(http::Exchange& ex, const std::string& server, const std::string& why) {
  co_await ex.send_json(bhttp::status::service_unavailable, detail("Upstream server '" + server + "' is unavailable: " + why),
                        "Retry-After: 5\r\n");
}

// Whether a schema holds a local reference ("$ref": "#…").
bool has_local_ref(const json::value& v) {
  if (auto* o = v.if_object()) {
    if (auto* r = o->if_contains("$ref"); r && r->is_string() && r->as_string().starts_with("#")) return true;
    for (auto& [k, child] : *o)
      if (has_local_ref(child)) return true;
  } else if (auto* a = v.if_array()) {
    for (auto& child : *a)
      if (has_local_ref(child)) return true;
  }
  return false;
}

// A schema with its local references ("#/$defs/X", "#/properties/a", "#") replaced by what they point at,
// and its $defs dropped: Open WebUI reads a request body's schema by following references from the
// document's components (a tool's "#/…" names the document's root there) and, with no check for cycles,
// recurses for ever on a recursive one. So: inlined; a reference back into one being expanded (a tree's
// node) and one that names nothing become {} (any value); at most 20,000 values are written.
json::value inline_refs(const json::value& v, const json::value& root, std::vector<std::string>& expanding,
                        std::size_t& budget) {
  if (budget == 0) return json::object{};
  --budget;
  if (auto* a = v.if_array()) {
    json::array out;
    for (auto& child : *a) out.push_back(inline_refs(child, root, expanding, budget));
    return out;
  }
  auto* o = v.if_object();
  if (!o) return v;
  if (auto* r = o->if_contains("$ref"); r && r->is_string() && r->as_string().starts_with("#")) {
    std::string ref(r->as_string());
    const json::value* target = &root;
    if (ref.size() > 1) {
      if (!ref.starts_with("#/")) target = nullptr;  // ("#anchor": not followed)
      for (auto token : split(std::string_view(ref).substr(std::min<std::size_t>(2, ref.size())), '/')) {
        if (!target) break;
        std::string key;
        for (std::size_t i = 0; i < token.size(); ++i)  // JSON Pointer: ~1 is '/', ~0 is '~'
          key += token[i] == '~' && i + 1 < token.size() ? (token[++i] == '1' ? '/' : '~') : token[i];
        if (auto* obj = target->if_object()) target = obj->if_contains(key);
        else if (auto* arr = target->if_array(); arr && !key.empty() && key.find_first_not_of("0123456789") == std::string::npos &&
                                                  std::stoull(key) < arr->size())
          target = &(*arr)[std::stoull(key)];
        else target = nullptr;
      }
    }
    json::object out;
    if (target && std::find(expanding.begin(), expanding.end(), ref) == expanding.end()) {
      expanding.push_back(ref);
      auto expanded = inline_refs(*target, root, expanding, budget);
      expanding.pop_back();
      if (auto* e = expanded.if_object()) out = std::move(*e);
      else return expanded;
    }
    for (auto& [k, child] : *o)  // keywords beside the reference (2020-12 allows them) are kept
      if (k != "$ref") out[k] = inline_refs(child, root, expanding, budget);
    return out;
  }
  json::object out;
  for (auto& [k, child] : *o)
    if (k != "$defs" && k != "definitions") out[k] = inline_refs(child, root, expanding, budget);
  return out;
}

// An operationId a model can call (letters, digits, '_' and '-', at most 64: what LLM function names may be),
// unique in the document.
std::string function_name(std::string_view name, std::unordered_set<std::string>& used) {
  std::string base;
  for (char c : name.substr(0, 60))
    base += std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ? c : '_';
  if (base.empty()) base = "tool";
  std::string id = base;
  for (int n = 2; !used.insert(id).second; ++n) id = base + "_" + std::to_string(n);
  return id;
}

json::object operation(const Server& srv, const json::object& tool, const std::string& operation_id) {
  std::string name(tool.at("name").as_string());
  json::value schema;
  if (auto* s = tool.if_contains("inputSchema"); s && s->is_object()) schema = s->as_object();
  else schema = json::object{{"type", "object"}};
  if (has_local_ref(schema)) {
    std::vector<std::string> expanding;
    std::size_t budget = 20000;
    schema = inline_refs(schema, schema, expanding, budget);
  }
  std::string description;
  if (auto* d = tool.if_contains("description"); d && d->is_string()) description = d->as_string();
  std::string summary = name;
  if (auto* t = tool.if_contains("title"); t && t->is_string()) summary = t->as_string();
  json::object op{{"operationId", operation_id},
                  {"summary", summary},
                  {"description", description.empty() ? summary : description},
                  {"tags", json::array{json::value(srv.cfg.id)}},
                  {"requestBody", json::object{{"required", true},
                                               {"content", json::object{{"application/json",
                                                                         json::object{{"schema", std::move(schema)}}}}}}},
                  {"responses", json::object{
                                    {"200", json::object{{"description", "Successful Response"},
                                                         {"content", json::object{{"application/json",
                                                                                   json::object{{"schema", json::object{}}}}}}}},
                                    {"422", json::object{{"description", "Invalid arguments"}}},
                                    {"500", json::object{{"description", "The tool failed"}}},
                                    {"503", json::object{{"description", "The tool's server is unavailable"}}}}}};
  return json::object{{"post", std::move(op)}};
}

json::object document(std::string title, std::string description, std::string server_url, json::object paths) {
  json::object components{{"securitySchemes", json::object{{"bearerAuth", json::object{{"type", "http"}, {"scheme", "bearer"}}}}}};
  return json::object{
      {"openapi", "3.1.0"},
      {"info", json::object{{"title", std::move(title)}, {"version", "0.1.0"}, {"description", std::move(description)}}},
      {"servers", json::array{json::object{{"url", std::move(server_url)}}}},
      {"paths", std::move(paths)},
      {"components", std::move(components)},
      {"security", json::array{json::object{{"bearerAuth", json::array{}}}}}};
}

bool type_matches(std::string_view type, const json::value& v) {
  if (type == "string") return v.is_string();
  if (type == "integer")
    return v.is_int64() || v.is_uint64() || (v.is_double() && std::isfinite(v.as_double()) && std::trunc(v.as_double()) == v.as_double());
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_bool();
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "null") return v.is_null();
  return true;
}

}  // namespace

std::string check_arguments(const json::object& schema, const json::object& args) {
  if (auto* req = schema.if_contains("required"); req && req->is_array())
    for (auto& r : req->as_array())
      if (r.is_string() && !args.contains(r.as_string())) return "missing required argument '" + std::string(r.as_string()) + "'";
  auto* props = schema.if_contains("properties");
  if (!props || !props->is_object()) return {};
  for (auto& [k, v] : args) {
    auto* p = props->as_object().if_contains(k);
    if (!p || !p->is_object()) continue;
    auto* t = p->as_object().if_contains("type");
    if (!t) continue;
    bool ok = false;
    if (t->is_string()) ok = type_matches(t->as_string(), v);
    else if (t->is_array()) {
      for (auto& one : t->as_array())
        if (one.is_string() && type_matches(one.as_string(), v)) ok = true;
    } else ok = true;
    if (!ok) return "argument '" + std::string(k) + "' has the wrong type";
  }
  return {};
}

json::value map_tool_result(const json::object& result) {
  json::array out;
  if (auto* sc = result.if_contains("structuredContent"); sc && !sc->is_null()) return *sc;
  if (auto* content = result.if_contains("content"); content && content->is_array()) {
    for (auto& item : content->as_array()) {
      if (!item.is_object()) continue;
      auto& o = item.as_object();
      auto type = o.contains("type") && o.at("type").is_string() ? std::string_view(o.at("type").as_string()) : "";
      if (type == "text" && o.contains("text") && o.at("text").is_string()) {
        std::string_view text = o.at("text").as_string();
        boost::system::error_code ec;
        auto parsed = json::parse(text, ec);
        out.push_back(ec ? json::value(text) : parsed);
      } else if ((type == "image" || type == "audio") && o.contains("data") && o.at("data").is_string()) {
        std::string mime = o.contains("mimeType") && o.at("mimeType").is_string() ? std::string(o.at("mimeType").as_string())
                                                                                   : std::string(type == "image" ? "image/png" : "audio/wav");
        out.emplace_back("data:" + mime + ";base64," + std::string(o.at("data").as_string()));
      } else if (type == "resource" && o.contains("resource")) {
        out.push_back(o.at("resource"));
      } else {
        out.push_back(item);
      }
    }
  }
  if (out.size() == 1) return out[0];
  return out;
}

net::awaitable<void> OpenApi::handle(http::Exchange& ex, std::string_view rest, Caller caller) {
  // (HEAD as GET: the server sends the fields without the body; a 405 says what is allowed, RFC 9110 §15.5.6)
  const bool read = ex.req.method() == bhttp::verb::get || ex.req.method() == bhttp::verb::head;
  if (rest == "/openapi.json" || rest == "/openapi.json/") {
    if (!read) {
      co_await ex.send_json(bhttp::status::method_not_allowed, detail("Use GET"), "Allow: GET, HEAD\r\n");
      co_return;
    }
    co_await spec(ex, "", std::move(caller));
    co_return;
  }
  auto parts = rest.substr(rest.empty() ? 0 : 1);
  auto slash = parts.find('/');
  if (slash == std::string_view::npos || slash == 0) {
    co_await ex.send_json(bhttp::status::not_found, detail("Not found: use /openapi/<server>/openapi.json"));
    co_return;
  }
  std::string server(parts.substr(0, slash));
  // The tool's name as sent in the path: percent-decoded (a name the client had to encode is found).
  auto encoded = boost::urls::make_pct_string_view(parts.substr(slash + 1));
  if (!encoded) {
    co_await ex.send_json(bhttp::status::not_found, detail("Not found: a malformed percent-encoding in the tool's name"));
    co_return;
  }
  std::string tail = encoded->decode();
  auto srv = hub_.find(server);
  if (!srv || !srv->cfg.enabled || !caller.may_use(srv->cfg)) {
    co_await ex.send_json(bhttp::status::not_found, detail("Unknown tool server: " + server));
    co_return;
  }
  if (tail == "openapi.json" && read) {  // (a POST there calls a tool of that name)
    co_await spec(ex, server, std::move(caller));
    co_return;
  }
  if (ex.req.method() != bhttp::verb::post) {
    co_await ex.send_json(bhttp::status::method_not_allowed, detail("Tools are called with POST"), "Allow: POST\r\n");
    co_return;
  }
  co_await call(ex, server, tail, std::move(caller));
}

net::awaitable<void> OpenApi::spec(http::Exchange& ex, std::string server, Caller caller) {
  // Read before the wait below: a reload meanwhile may remove the server.
  std::string description = "Every tool you may use, from every MCP server behind Gatehouse.";
  if (auto srv = server.empty() ? nullptr : hub_.find(server))
    description = srv->cfg.description.empty() ? "MCP server " + server : srv->cfg.description;
  auto s = hub_.transient_session(server, std::move(caller));
  // Several servers: those still loading after LIST_WAIT_MS are left out (a stuck one held every fetch of the
  // document for its timeout).
  std::vector<std::pair<std::string, std::string>> unavailable;
  auto tools = co_await hub_.permitted_tools(s, true, &unavailable);
  if (!server.empty() && !unavailable.empty()) {
    co_await send_unavailable(ex, server, unavailable[0].second);
    co_return;
  }
  json::object paths;
  std::unordered_set<std::string> used;
  // A path is the tool's name percent-encoded: a '?', '#', '%', '{' or space in it would be read as something else.
  auto path_of = [](std::string_view name) { return boost::urls::encode(name, boost::urls::unreserved_chars); };
  for (auto& [srv, tool] : tools) {
    std::string name(tool->at("name").as_string());
    if (server.empty())
      paths["/" + srv->cfg.id + "/" + path_of(name)] = operation(*srv, *tool, function_name(prefixed(srv->cfg.id, name), used));
    else
      paths["/" + path_of(name)] = operation(*srv, *tool, function_name(name, used));
  }
  std::string title = server.empty() ? "Gatehouse tools" : server;
  // Relative to PUBLIC_URL's path: behind a proxy that serves the gateway under a prefix, the prefix is kept.
  std::string prefix;
  if (auto u = boost::urls::parse_uri(settings_.public_url)) prefix = std::string(u->encoded_path());
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  auto doc = document(title, description, prefix + (server.empty() ? "/openapi" : "/openapi/" + server), std::move(paths));
  co_await ex.send_json(bhttp::status::ok, to_json(doc));
}

net::awaitable<void> OpenApi::call(http::Exchange& ex, std::string server, std::string tool, Caller caller) {
  // A body is JSON, said so (as FastAPI/mcpo ask): a form or a no-CORS fetch from another site cannot send
  // that Content-Type.
  if (auto ctype = ex.req[bhttp::field::content_type]; !ctype.empty() && !media_type_is(ctype, "application/json")) {
    co_await ex.send_json(bhttp::status::unsupported_media_type, detail("Send the arguments as Content-Type: application/json"));
    co_return;
  }
  json::object args;
  if (!ex.req.body().empty()) {
    boost::system::error_code ec;
    auto v = json::parse(ex.req.body(), ec);
    if (ec || !v.is_object()) {
      co_await ex.send_json(bhttp::status::unprocessable_entity, detail("The body must be a JSON object of the tool's arguments"));
      co_return;
    }
    args = std::move(v.as_object());
  }
  auto s = hub_.transient_session(server, std::move(caller));
  // Unknown or not permitted: the same 404 (the list and the call agree).
  std::vector<std::pair<std::string, std::string>> unavailable;
  auto tools = co_await hub_.permitted_tools(s, false, &unavailable);
  const json::object* def = nullptr;
  for (auto& [srv, t] : tools)
    if (t->at("name").as_string() == tool) def = t;
  if (!def && !unavailable.empty()) {
    co_await send_unavailable(ex, server, unavailable[0].second);
    co_return;
  }
  if (!def) {
    co_await ex.send_json(bhttp::status::not_found, detail("Unknown tool: " + tool));
    co_return;
  }
  // For analytics: only a tool the caller may call (a name in the path is anyone's word).
  ex.mcp_server = server;
  ex.mcp_tool = tool;
  if (auto* schema = def->if_contains("inputSchema"); schema && schema->is_object())
    if (auto why = check_arguments(schema->as_object(), args); !why.empty()) {
      co_await ex.send_json(bhttp::status::unprocessable_entity, detail("Invalid arguments: " + why));
      co_return;
    }
  json::object req{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/call"},
                   {"params", json::object{{"name", tool}, {"arguments", std::move(args)}}}};
  // A client that goes away cancels the call upstream (notifications/cancelled), as on /mcp.
  auto ch = std::make_shared<Channel>(co_await net::this_coro::executor);
  ex.on_disconnect([this, s, ch] { hub_.abandon(s, ch); });
  auto resp = co_await hub_.dispatch(s, std::move(req), ch);
  ex.stop_watching();
  if (ch->gone) {
    log::info("client left before the tool answered", {{"request_id", ex.request_id}, {"server", server}, {"tool", tool}});
    ex.wrote_response(499);
    ex.close_after();
    co_return;
  }
  if (!resp) {
    co_await ex.send_json(bhttp::status::internal_server_error, detail("The call was cancelled"));
    co_return;
  }
  auto& answer = resp->object();
  if (auto* e = answer.if_contains("error"); e && e->is_object()) {
    auto& err = e->as_object();
    int64_t c = err.contains("code") && err.at("code").is_int64() ? err.at("code").as_int64() : code::internal_error;
    std::string msg = err.contains("message") && err.at("message").is_string() ? std::string(err.at("message").as_string()) : "error";
    auto status = c == code::parse_error || c == code::invalid_request ? bhttp::status::bad_request
                  : c == code::method_not_found                        ? bhttp::status::not_found
                  : c == code::invalid_params                          ? bhttp::status::unprocessable_entity
                                                                       : bhttp::status::internal_server_error;
    co_await ex.send_json(status, detail(msg));
    co_return;
  }
  auto* r = answer.if_contains("result");
  if (!r || !r->is_object()) {
    co_await ex.send_json(bhttp::status::bad_gateway, detail("The tool server sent no result"));
    co_return;
  }
  auto& result = r->as_object();
  if (auto* ie = result.if_contains("isError"); ie && ie->is_bool() && ie->as_bool()) {
    // The tool's own words: its first text item (as mcpo answers), else what the result maps to.
    std::string text;
    if (auto* content = result.if_contains("content"); content && content->is_array())
      for (auto& item : content->as_array())
        if (auto* o = item.if_object(); o && o->contains("text") && o->at("text").is_string() && text.empty())
          text = o->at("text").as_string();
    if (text.empty()) {
      auto mapped = map_tool_result(result);
      text = mapped.is_string() ? std::string(mapped.as_string()) : to_json(mapped);
    }
    co_await ex.send_json(bhttp::status::internal_server_error, detail(text));
    co_return;
  }
  co_await ex.send_json(bhttp::status::ok, to_json(map_tool_result(result)));
}

}  // namespace gh::mcp
