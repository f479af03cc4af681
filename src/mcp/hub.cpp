#include "mcp/hub.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>

#include <cstdlib>
#include <set>

#include "core/log.hpp"
#include "core/util.hpp"
#include "jsonrpc/message.hpp"
#include "mcp/names.hpp"

namespace gh::mcp {

namespace {
constexpr std::size_t kCatalogItems = 10000;               // a server's tools, prompts, resources and templates
constexpr std::size_t kCatalogBytes = 16 * 1024 * 1024;    // the same, as JSON
}  // namespace

namespace {
// Tells a session its tools, prompts and resources may have changed.
void lists_changed(Session& s) {
  static constexpr const char* kMethods[] = {"notifications/tools/list_changed", "notifications/prompts/list_changed",
                                             "notifications/resources/list_changed"};
  for (const char* m : kMethods) s.send_unsolicited(jsonrpc::make_notification(m, nullptr));
}
}  // namespace

namespace code = jsonrpc::code;

bool supported_protocol(std::string_view v) { return upstream::supported_protocol_version(v); }

void Channel::push(const json::object& msg) {
  if (gone) return;
  // A client reading slower than progress arrives loses the oldest messages, by count and by bytes.
  auto text = to_json(msg);
  while (!messages.empty() && (messages.size() >= kMaxQueued || queued_bytes + text.size() > kMaxQueuedBytes)) {
    queued_bytes -= messages.front().size();
    messages.pop_front();
  }
  queued_bytes += text.size();
  messages.push_back(std::move(text));
  if (on_first_message) std::exchange(on_first_message, nullptr)();
  wake.set();
}

void Channel::finish(std::optional<jsonrpc::Reply> response) {
  ++finished;
  if (response) responses.push_back(response->serialize());
  wake.set();
}

void Session::send_unsolicited(const json::object& msg) {
  if (closed || !get_attached) return;  // nobody listens: the spec lets a server drop these
  if (outbox.size() >= 256) outbox.pop_front();  // a client that never reads loses the oldest, not our memory
  outbox.push_back(to_json(msg));
  if (outbox_ready) outbox_ready->set();
}

void Session::relay_request(const std::string& server, json::object msg, std::function<void(json::object)> reply,
                            std::shared_ptr<Channel> ch) {
  constexpr std::size_t kMaxRelayed = 64;  // a client that never answers cannot grow this without bound
  if (relayed.size() >= kMaxRelayed) {
    reply(jsonrpc::make_error(nullptr, jsonrpc::code::internal_error, "Too many requests waiting for the client"));
    return;
  }
  int64_t id = ++next_relay_id;
  // the id copied into default storage: the message's arena (the whole upstream body) is not kept alive
  RelayedRequest r{std::move(reply), server, json::value(msg["id"], json::storage_ptr())};
  msg["id"] = id;
  if (ch && !ch->gone) {
    relayed.emplace(id, std::move(r));
    ch->push(msg);
  } else if (get_attached && !closed) {
    relayed.emplace(id, std::move(r));
    send_unsolicited(msg);
  } else {  // no stream of this client is open: say so now rather than let the upstream wait for its timeout
    r.reply(jsonrpc::make_error(nullptr, jsonrpc::code::internal_error, "The client has no open stream to ask"));
  }
}

bool Session::translate_cancel(const std::string& server, json::object& msg) {
  auto* params = msg.if_contains("params");
  if (!params || !params->is_object()) return false;
  auto* rid = params->as_object().if_contains("requestId");
  if (!rid) return false;
  for (auto it = relayed.begin(); it != relayed.end(); ++it) {
    if (it->second.server == server && it->second.upstream_id == *rid) {
      *rid = it->first;
      relayed.erase(it);
      return true;
    }
  }
  return false;
}

namespace {

// A session's in_flight key for a downstream request id: the id's JSON text ("7", "\"abc\""); integers,
// the usual ids, without a serializer.
// Whether `m` is a method of MCP's (2025-11-25) that a server answers.
bool mcp_method(std::string_view m) {
  static constexpr std::string_view kMethods[] = {
      "tools/call", "tools/list", "prompts/get", "prompts/list", "resources/read", "resources/list",
      "resources/templates/list", "resources/subscribe", "resources/unsubscribe", "completion/complete",
      "logging/setLevel", "ping", "tasks/get", "tasks/result", "tasks/list", "tasks/cancel"};
  return std::find(std::begin(kMethods), std::end(kMethods), m) != std::end(kMethods);
}

std::string id_key(const json::value& id) {
  if (id.is_int64()) return std::to_string(id.get_int64());
  if (id.is_uint64()) return std::to_string(id.get_uint64());
  return to_json(id);
}

// Task-augmented requests (MCP 2025-11-25) go only where the client was offered `tasks`: on a server's own
// endpoint with the session's own upstream session (see initialize). Elsewhere the gateway could not relay
// tasks/get or tasks/result to the upstream session that holds the task: such a request's `task` is ignored,
// as the specification asks of a receiver without the capability, and tools that require a task are not listed.
bool offers_tasks(const Session& s, const Server& srv) { return !s.scope.empty() && s.dedicated.contains(srv.cfg.id); }

bool task_required(const json::object& tool) {
  auto* e = tool.if_contains("execution");
  auto* t = e && e->is_object() ? e->as_object().if_contains("taskSupport") : nullptr;
  return t && t->is_string() && t->as_string() == "required";
}

// What a session's own upstream sessions declare: only what the client itself can do of what needs one (a
// server's requests to the client: sampling, elicitation, roots).
json::object own_capabilities(const Session& s) {
  json::object caps;
  for (const char* k : {"sampling", "elicitation", "roots"})
    if (auto* c = s.client_capabilities.if_contains(k)) caps[k] = *c;
  return caps;
}

// A request in flight that the client cancelled, left, or whose session ended: it gets no answer, and is not
// sent if it has not been yet (the connection still starting), else cancelled upstream.
void cancel_in_flight(InFlight& f, std::string_view why) {
  f.cancelled = true;
  if (!f.handle) return;
  f.handle->cancelled = true;
  if (auto conn = f.conn.lock(); conn && f.handle->upstream_id) conn->cancel(f.handle->upstream_id, why);
}

// A request that waits (for a server's catalog) before it is in flight: a notifications/cancelled for it in the
// meantime, or the session's end, is kept here, and the request ends without a response instead of being sent.
class Preparing {
 public:
  Preparing(Session& s, const json::value& id) : s_(s), key_(id_key(id)), mine_(s.preparing.try_emplace(key_, false).second) {}
  Preparing(const Preparing&) = delete;
  Preparing& operator=(const Preparing&) = delete;
  ~Preparing() {
    if (mine_) s_.preparing.erase(key_);
  }
  bool cancelled() const {
    auto it = s_.preparing.find(key_);
    return s_.closed || (it != s_.preparing.end() && it->second);
  }

 private:
  Session& s_;
  std::string key_;
  bool mine_;
};

// On /mcp an update names a URI without saying whose: one `server` sends about another server's resource is not
// its to announce (it would have the client read that resource again).
bool foreign_update(const Hub& hub, const Session& s, const std::string& server, const json::object& msg) {
  if (!s.scope.empty() || jsonrpc::method_of(msg) != "notifications/resources/updated") return false;
  auto* p = msg.if_contains("params");
  auto* uri = p && p->is_object() ? p->as_object().if_contains("uri") : nullptr;
  if (!uri || !uri->is_string()) return false;
  std::string_view owner;
  if (auto sub = s.subscriptions.find(std::string_view(uri->as_string())); sub != s.subscriptions.end()) owner = sub->second;
  else if (auto srv = hub.route_uri(s, uri->as_string())) owner = srv->cfg.id;
  if (owner.empty() || owner == server) return false;
  log::debug("dropped a resource update for another server's URI", {{"server", server}});
  return true;
}

// Messages on a call's own stream: to the POST channel that is waiting for it.
struct ChannelSink final : upstream::CallSink {
  ChannelSink(const Hub& h, std::weak_ptr<Channel> c, std::weak_ptr<Session> s, std::string srv)
      : hub(h), ch(std::move(c)), session(std::move(s)), server(std::move(srv)) {}
  void notify(json::object msg) override {
    auto s = session.lock();
    if (jsonrpc::method_of(msg) == "notifications/cancelled" && (!s || !s->translate_cancel(server, msg))) return;
    if (s && foreign_update(hub, *s, server, msg)) return;
    if (auto c = ch.lock(); c && !c->gone) c->push(msg);
    else if (s) s->send_unsolicited(msg);
  }
  void server_request(json::object msg, std::function<void(json::object)> reply) override {
    auto s = session.lock();
    if (!s || s->closed) {
      reply(jsonrpc::make_error(nullptr, code::internal_error, "The client session is gone"));
      return;
    }
    auto method = jsonrpc::method_of(msg);
    auto cap = method.substr(0, method.find('/'));  // sampling, elicitation, roots
    if (!s->client_capabilities.contains(cap)) {
      reply(jsonrpc::make_error(nullptr, code::method_not_found,
                                "The client did not declare the " + std::string(cap) + " capability"));
      return;
    }
    s->relay_request(server, std::move(msg), std::move(reply), ch.lock());
  }
  const Hub& hub;
  std::weak_ptr<Channel> ch;
  std::weak_ptr<Session> session;
  std::string server;
};

// Messages of a dedicated upstream session that belong to no call: to its downstream session.
struct SessionListener final : upstream::Listener {
  SessionListener(Hub& h, std::weak_ptr<Session> s, std::string srv) : hub(h), session(std::move(s)), server(std::move(srv)) {}
  void list_changed(std::string_view method) override {
    if (auto s = session.lock(); s && still_allowed(*s)) hub.list_changed(server, method, s.get(), "");
  }
  void unsolicited(json::object msg) override {
    auto s = session.lock();
    if (!s || !still_allowed(*s)) return;
    if (jsonrpc::method_of(msg) == "notifications/cancelled" && !s->translate_cancel(server, msg)) return;
    if (foreign_update(hub, *s, server, msg)) return;
    s->send_unsolicited(msg);
  }
  void unsolicited_request(json::object msg, std::function<void(json::object)> reply) override {
    auto s = session.lock();
    if (!s || s->closed || !still_allowed(*s)) {
      reply(jsonrpc::make_error(nullptr, code::internal_error, "The client session is gone"));
      return;
    }
    s->relay_request(server, std::move(msg), std::move(reply), stream_for(*s));
  }
  // The stream for a request the server sent outside any call's own stream (a stdio server has no other; an
  // HTTP server's GET stream): that of a call in flight on this connection — the session's latest such call
  // first — else the session's latest call's while it still waits for answers (relay_request falls back to the
  // GET stream). Not simply the latest call's: a quick call to another server made meanwhile has ended, and the
  // request would be refused while the stream of the call that caused it is still open.
  std::shared_ptr<Channel> stream_for(Session& s) {
    auto open = [](const std::shared_ptr<Channel>& ch) { return ch && !ch->gone && ch->finished < ch->expected; };
    auto latest = s.latest_channel.lock();
    if (auto own = s.dedicated.find(server); own != s.dedicated.end()) {
      std::shared_ptr<Channel> found;
      for (auto& [key, call] : s.in_flight) {
        auto ch = call.channel.lock();
        if (!open(ch) || call.conn.lock() != own->second.conn) continue;
        if (ch == latest) return ch;
        found = ch;
      }
      if (found) return found;
    }
    return open(latest) ? latest : nullptr;
  }
  // Rights are read again for every message, not only when the session asked: after a grant is revoked
  // nothing more of this server reaches the session, and its upstream session is closed.
  bool still_allowed(Session& s) {
    auto srv = hub.find(server);
    if (srv && s.caller.may_use(srv->cfg)) return true;
    log::info("upstream message dropped: the session may no longer use the server", {{"server", server}});
    hub.drop_dedicated(s.shared_from_this(), server);
    return false;
  }
  Hub& hub;
  std::weak_ptr<Session> session;
  std::string server;
};

}  // namespace

// Messages of a shared upstream session (the server's, or a tenant credential set's: `route_key`) that belong to
// no call: only list changes are meaningful, and only to the sessions that read that session's catalog.
struct SharedListener final : upstream::Listener {
  SharedListener(Hub& h, std::string srv, std::string key = {}) : hub(h), server(std::move(srv)), route_key(std::move(key)) {}
  void list_changed(std::string_view method) override { hub.list_changed(server, method, nullptr, route_key); }
  void unsolicited(json::object msg) override {
    log::debug("dropped an unattributable upstream notification",
               {{"server", server}, {"method", jsonrpc::method_of(msg)}});
  }
  void unsolicited_request(json::object msg, std::function<void(json::object)> reply) override {
    reply(jsonrpc::make_error(nullptr, code::method_not_found,
                              "Gatehouse cannot relay this request on a shared upstream session"));
  }
  Hub& hub;
  std::string server, route_key;
};

// A shared upstream session declares sampling and elicitation so that servers which offer tools only to
// capable clients list them in the shared catalog; such requests are relayed when the call's stream is
// known and the client declared the capability, and refused otherwise.
static json::object shared_capabilities() {
  return json::object{{"sampling", json::object{}}, {"elicitation", json::object{}}};
}

Hub::Hub(net::any_io_executor ex, const Settings& settings) : ex_(std::move(ex)), settings_(settings) {}

Hub::~Hub() { stop_upstreams(); }

void Hub::configure(const std::vector<ServerConfig>& configs) {
  std::map<std::string, std::shared_ptr<Server>, std::less<>> next;
  std::vector<std::shared_ptr<Server>> replaced;  // kept ids whose configuration changed
  std::vector<ServerConfig> touched;              // added, changed (as now) and removed (as was) servers
  bool changed = configs.size() != servers_.size();
  for (const auto& cfg : configs) {
    auto it = servers_.find(cfg.id);
    if (it != servers_.end()) {
      // Kept, with its connections and sessions, unless what it runs or how it is reached changed (its
      // description is only shown).
      auto& kept = it->second->cfg;
      ServerConfig same = cfg;
      same.description = kept.description;
      if (kept == same) {
        if (kept.description != cfg.description) kept.description = cfg.description;
        next.emplace(cfg.id, it->second);
        continue;
      }
    }
    changed = true;
    auto srv = std::make_shared<Server>();
    srv->cfg = cfg;
    srv->listener = std::make_shared<SharedListener>(*this, cfg.id);
    next.emplace(cfg.id, srv);
    touched.push_back(cfg);
    if (it != servers_.end()) {
      replaced.push_back(srv);
      log::info("server changed", {{"server", cfg.id}});
    } else {
      log::info("server added", {{"server", cfg.id}, {"transport", to_string(cfg.transport)}});
    }
  }
  for (auto& [id, srv] : servers_) {
    auto it = next.find(id);
    if (it != next.end() && it->second == srv) continue;
    srv->removed = true;
    if (srv->shared) srv->shared->close("server configuration changed");
    for (auto& [key, conn] : srv->tenants) conn->close("server configuration changed");
    srv->tenants.clear();
    for (auto& [sid, s] : sessions_) release_dedicated(*s, id, "server configuration changed");
    if (it == next.end()) {
      touched.push_back(srv->cfg);
      log::info("server removed", {{"server", id}});
    }
  }
  servers_ = std::move(next);
  // Sessions scoped to a server that no longer exists end.
  std::vector<std::shared_ptr<Session>> orphaned;
  for (auto& [id, sess] : sessions_)
    if (!sess->scope.empty() && !servers_.count(sess->scope)) orphaned.push_back(sess);
  for (auto& sess : orphaned) close_session(sess);
  if (!changed) return;
  // Every list of an aggregate session may have changed, and those of a session scoped to a replaced server
  // (which the new process or endpoint may list differently) — for the callers who may use a server that
  // changed (as in list_changed: other servers' activity is not theirs to see).
  for (auto& [id, s] : sessions_) {
    if (!s->scope.empty()) {
      auto it = servers_.find(s->scope);
      if (it == servers_.end() || std::find(replaced.begin(), replaced.end(), it->second) == replaced.end()) continue;
    }
    if (std::none_of(touched.begin(), touched.end(), [&](const ServerConfig& c) { return s->caller.may_use(c); }))
      continue;
    lists_changed(*s);
  }
}

std::shared_ptr<Server> Hub::find(std::string_view id) const {
  auto it = servers_.find(id);
  return it == servers_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Server>> Hub::in_scope(std::string_view scope) const {
  std::vector<std::shared_ptr<Server>> out;
  if (!scope.empty()) {
    if (auto s = find(scope); s && s->cfg.enabled) out.push_back(s);
    return out;
  }
  for (const auto& [id, s] : servers_)
    if (s->cfg.enabled) out.push_back(s);
  return out;
}


std::shared_ptr<upstream::Connection> Hub::new_connection(Server& srv, json::object caps, const policy::Route& route) {
  // ${secret:NAME} slots: the tenant's value, else the gateway's environment — but never that to a tenant's
  // own endpoint (Snapshot::route refuses such a route before it gets here), which gets only the headers that
  // carry the tenant's values (ServerConfig::tenant_headers).
  std::vector<std::string> used;
  auto lookup = [&route, &used](std::string_view name) -> std::optional<std::string> {
    if (auto it = route.secrets.find(std::string(name)); it != route.secrets.end()) return used.emplace_back(it->second);
    if (!route.url.empty()) return std::nullopt;
    if (const char* v = std::getenv(std::string(name).c_str())) return used.emplace_back(v);
    return std::nullopt;
  };
  std::map<std::string, std::string> env, headers;
  for (const auto& [k, v] : srv.cfg.env) env[k] = expand_secrets(v, lookup).value_or("");
  for (const auto& [k, v] : srv.cfg.headers)
    if (route.url.empty() || srv.cfg.tenant_headers.count(k)) headers[k] = expand_secrets(v, lookup).value_or("");
  ServerConfig cfg = srv.cfg;
  if (!route.url.empty()) cfg.url = route.url;  // the tenant's own upstream
  auto conn = upstream::make_connection(ex_, cfg, std::move(env), std::move(headers), std::move(caps));
  conn->set_default_timeout(std::chrono::milliseconds(settings_.upstream_timeout_ms));
  conn->set_secret_values(std::move(used));
  return conn;
}

std::shared_ptr<upstream::Connection> Hub::shared_connection(Server& srv) {
  if (srv.shared && srv.shared->state() != upstream::State::closed) return srv.shared;
  auto conn = new_connection(srv, shared_capabilities());
  if (srv.removed) {  // a call that was under way during a reload: answer it, start nothing
    conn->close("the server was removed from the configuration");
    return conn;
  }
  srv.shared = conn;
  srv.shared->set_listener(srv.listener);
  return srv.shared;
}

void Hub::use_own_upstreams(Session& s) {
  if (s.dedicated_mode) return;
  s.dedicated_mode = true;
  // A control character no route key holds, then which of the three capabilities the client declared — not
  // their JSON, which the client makes up: at most eight catalogs per credential set, whatever clients send.
  s.catalog_suffix = "\x1f";
  for (const auto& kv : own_capabilities(s)) s.catalog_suffix += kv.key().front();
}

void Hub::drop_dedicated(const std::shared_ptr<Session>& s, const std::string& server) {
  // Posted: the connection may be delivering the message that led here.
  net::post(ex_, [this, weak = std::weak_ptr<Session>(s), server] {
    if (auto s = weak.lock()) release_dedicated(*s, server, "the session may no longer use this server");
  });
}

void Hub::release_dedicated(Session& s, const std::string& server, std::string_view why) {
  auto it = s.dedicated.find(server);
  if (it == s.dedicated.end()) return;
  if (!why.empty()) it->second.conn->close(why);
  s.dedicated.erase(it);
  if (auto srv = find(server)) {
    --srv->dedicated;
    if (auto o = srv->dedicated_by_owner.find(s.owner); o != srv->dedicated_by_owner.end() && --o->second == 0)
      srv->dedicated_by_owner.erase(o);
  }
}

std::shared_ptr<upstream::Connection> Hub::connection_for(Session& s, Server& srv, std::string* error,
                                                          const policy::Route* known) {
  // Dedicated upstream sessions per server, all transports alike, and of one user (half of them: an agent
  // opens many sessions, the MCP conformance suite 32 with one key): past the cap a session shares, so one
  // user's sessions cannot take every slot.
  constexpr std::size_t kMaxDedicated = 64, kMaxDedicatedPerOwner = kMaxDedicated / 2;
  // Tenant connections per server: a few tenants' keys each, never one per user.
  constexpr std::size_t kMaxTenants = 64;
  std::optional<policy::Route> own;
  const policy::Route& route = known ? *known : own.emplace(s.caller.route(srv.cfg));
  if (!route.error.empty()) {
    if (error) *error = route.error;
    return nullptr;
  }
  if (s.dedicated_mode && !srv.removed && !s.closed) {
    auto it = s.dedicated.find(srv.cfg.id);
    if (it != s.dedicated.end()) {
      bool same_route = it->second.route == route.key;
      if (same_route && it->second.conn->state() != upstream::State::closed) return it->second.conn;
      // Closed, or opened with credentials or an endpoint the caller no longer has (left the tenant, a value
      // replaced or deleted): its slot is free again, and a new one is opened with the current route.
      if (!same_route) log::info("dedicated upstream session closed: the caller's credentials changed", {{"server", srv.cfg.id}});
      release_dedicated(s, srv.cfg.id, same_route ? "" : "the caller's credentials for this server changed");
    }
    auto& mine = srv.dedicated_by_owner[s.owner];
    if (srv.dedicated < kMaxDedicated && mine < kMaxDedicatedPerOwner) {
      auto conn = new_connection(srv, own_capabilities(s), route);
      auto listener = std::make_shared<SessionListener>(*this, s.weak_from_this(), srv.cfg.id);
      conn->set_listener(listener);
      s.dedicated[srv.cfg.id] = {conn, route.key};
      s.listeners.push_back(listener);
      ++srv.dedicated;
      ++mine;
      return conn;
    }
    if (mine == 0) srv.dedicated_by_owner.erase(s.owner);
    log::warn("dedicated upstream cap reached; using the shared session",
              {{"server", srv.cfg.id}, {"open", srv.dedicated}, {"cap", srv.dedicated >= kMaxDedicated ? "server" : "user"}});
  }
  if (route.key.empty()) return shared_connection(srv);
  if (auto it = srv.tenants.find(route.key); it != srv.tenants.end()) {
    if (it->second->state() != upstream::State::closed) return it->second;
    srv.tenants.erase(it);
  }
  if (srv.removed) return shared_connection(srv);  // answers "removed" without starting anything
  if (srv.tenants.size() >= kMaxTenants) {
    if (error) *error = "Server '" + srv.cfg.id + "' has too many tenant credential sets in use; try again later";
    log::warn("tenant connection cap reached", {{"server", srv.cfg.id}, {"cap", kMaxTenants}});
    return nullptr;
  }
  auto conn = new_connection(srv, shared_capabilities(), route);
  conn->set_listener(std::make_shared<SharedListener>(*this, srv.cfg.id, route.key));
  srv.tenants.emplace(route.key, conn);
  log::info("tenant upstream connection", {{"server", srv.cfg.id}, {"credential_set", route.key}});
  return conn;
}

bool Hub::may_call(const Session& s, const Server& srv, std::string_view tool) const {
  return s.caller.may_call(srv.cfg, tool);
}

// ---- sessions ----

std::shared_ptr<Session> Hub::create_session(std::string scope) {
  if (sessions_.size() >= settings_.max_sessions) return nullptr;
  auto s = std::make_shared<Session>();
  s->id = random_hex(16);
  s->scope = std::move(scope);
  sessions_.emplace(s->id, s);
  return s;
}

std::shared_ptr<Session> Hub::transient_session(std::string scope, Caller caller) {
  auto s = std::make_shared<Session>();
  s->id = "transient-" + random_hex(8);
  s->scope = std::move(scope);
  s->owner = caller.owner;
  s->caller = std::move(caller);
  s->protocol_version = std::string(upstream::kLatestProtocol);
  return s;
}

net::awaitable<std::vector<std::pair<std::shared_ptr<Server>, const json::object*>>> Hub::permitted_tools(
    std::shared_ptr<Session> s, bool listing, std::vector<std::pair<std::string, std::string>>* unavailable) {
  std::vector<std::pair<std::shared_ptr<Server>, const json::object*>> out;
  auto servers = in_scope(*s);
  co_await load_catalogs(*s, servers, listing);
  for (auto& srv : servers) {
    auto& cat = catalog_of(*s, *srv);
    if (!cat.loaded && unavailable)
      unavailable->emplace_back(srv->cfg.id, cat.error.empty() ? std::string("its tools are still being listed") : cat.error);
    for (auto& t : cat.tools)
      if (auto* n = t.if_contains("name"); n && n->is_string() && may_call(*s, *srv, n->as_string()) &&
                                           (offers_tasks(*s, *srv) || !task_required(t)))
        out.emplace_back(srv, &t);
  }
  co_return out;
}

void Hub::seal_session(const std::shared_ptr<Session>& s) {
  if (!ids_ || s->closed) return;
  SessionTicket t{s->scope, s->owner, s->protocol_version, own_capabilities(*s), unix_now(), {}};
  sessions_.erase(s->id);
  s->id = ids_->issue(t);
  sessions_.emplace(s->id, s);
}

net::awaitable<std::optional<SessionTicket>> Hub::resumable(const std::string& id, const std::string& scope,
                                                            const Caller& caller, std::string& why, bool* store_down) {
  std::optional<SessionTicket> t;
  if (ids_) t = ids_->verify(id, unix_now(), &why);
  else why = "not an id this gateway issued";  // (none is resumable: SESSION_MAX_AGE_S=0)
  if (!t) co_return std::nullopt;
  // Checked again after the record is read: a reload or the session's end may come meanwhile.
  auto check = [&] {
    // Another user's id, or one of another endpoint, is answered like an unknown one (as session_of does).
    if (t->scope != scope) why = "opened on another endpoint";
    else if (!ids_->belongs_to(*t, caller.owner)) why = "opened by another user";
    else if (!scope.empty() && !find(scope)) why = "its server is no longer configured";
    else if (ended_.contains(id)) why = "ended";
    else return true;
    return false;
  };
  if (!check()) co_return std::nullopt;
  if (was_ended) {
    std::optional<bool> ended = co_await was_ended(id);  // (not inside a condition: GCC 12's coroutines)
    if (!ended || *ended) {
      why = ended ? "ended" : "the store cannot tell whether it ended";
      if (ended) remember_ended(id);  // its next request asks nobody
      else if (store_down) *store_down = true;
      co_return std::nullopt;
    }
  }
  if (!check()) co_return std::nullopt;
  co_return t;
}

net::awaitable<std::shared_ptr<Session>> Hub::resume_session(std::string id, std::string scope, Caller caller,
                                                             std::string& why, bool& busy) {
  busy = false;
  auto t = co_await resumable(id, scope, caller, why);
  if (!t) co_return nullptr;
  // Another request of this session may have opened it again while the record was read.
  if (auto it = sessions_.find(id); it != sessions_.end()) {
    it->second->caller = std::move(caller);  // this request's rights, as session_of gives them
    co_return it->second;
  }
  if (draining_ || sessions_.size() >= settings_.max_sessions) {
    busy = true;
    co_return nullptr;
  }
  auto s = std::make_shared<Session>();
  s->id = std::move(id);
  s->scope = std::move(scope);
  s->owner = caller.owner;
  s->caller = std::move(caller);
  s->protocol_version = supported_protocol(t->protocol_version) ? t->protocol_version : std::string(upstream::kLatestProtocol);
  s->client_capabilities = std::move(t->capabilities);
  if (!own_capabilities(*s).empty()) use_own_upstreams(*s);
  // Server→client requests of the instance that opened it may still await the client: ids of their own.
  s->next_relay_id = int64_t(std::stoull(random_hex(4), nullptr, 16)) << 20;
  sessions_.emplace(s->id, s);
  ++resumed_;
  co_return s;
}

net::awaitable<bool> Hub::end_session(std::string id) {
  // Recorded first, when another instance could open it (a 200 to the client means none does); a failure
  // ends nothing.
  if (ids_ && record_end && ids_->verify(id, unix_now())) {
    bool recorded = co_await record_end(id);
    if (!recorded) co_return false;
  }
  // Looked up after the record: the copy held before may have closed, and another opened meanwhile.
  if (auto it = sessions_.find(id); it != sessions_.end()) close_session(std::shared_ptr<Session>(it->second));
  if (ids_) remember_ended(id);
  co_return true;
}

void Hub::ended_elsewhere(const std::vector<std::string>& ids) {
  for (auto& id : ids) {
    if (ended_.contains(id)) continue;
    remember_ended(id);
    if (auto it = sessions_.find(id); it != sessions_.end()) {
      log::info("session ended on another instance", {{"session", id}});
      close_session(std::shared_ptr<Session>(it->second));
    }
  }
}

void Hub::remember_ended(const std::string& id) {
  if (!ended_.insert(id).second) return;
  auto now = unix_now();
  ended_order_.emplace_back(now, id);
  // Kept while the id could be resumed, at most 10,000 (each id twice, up to ~800 bytes: a few MB at most;
  // older ones the record still has, and the poll reads the last 30 s of them again).
  while (!ended_order_.empty() &&
         (ended_order_.size() > 10'000 || now - ended_order_.front().first > ids_->max_age_s())) {
    ended_.erase(ended_order_.front().second);
    ended_order_.pop_front();
  }
}

std::shared_ptr<Session> Hub::find_session(std::string_view id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  it->second->last_seen = Clock::now();
  return it->second;
}

void Hub::close_session(const std::shared_ptr<Session>& s) {
  s->closed = true;
  for (auto& [key, f] : s->in_flight) cancel_in_flight(f, "the client session ended");
  while (!s->dedicated.empty()) release_dedicated(*s, std::string(s->dedicated.begin()->first), "client session ended");
  for (auto& [id, r] : s->relayed) r.reply(jsonrpc::make_error(nullptr, code::internal_error, "The client session ended"));
  s->relayed.clear();
  if (s->outbox_ready) s->outbox_ready->set();
  sessions_.erase(s->id);
}

void Hub::sweep() {
  auto now = Clock::now();
  auto idle = std::chrono::seconds(settings_.session_idle_timeout_s);
  std::vector<std::shared_ptr<Session>> expired;
  for (auto& [id, s] : sessions_)
    if (!s->get_attached && s->in_flight.empty() && now - s->last_seen > idle) expired.push_back(s);
  for (auto& s : expired) {
    log::info("session expired", {{"session", s->id}});
    close_session(s);
  }
  auto stdio_idle = std::chrono::seconds(settings_.stdio_idle_timeout_s);
  for (auto& [id, srv] : servers_) {
    if (srv->shared && srv->cfg.transport == Transport::stdio && srv->shared->state() == upstream::State::ready &&
        srv->shared->in_flight() == 0 && now - srv->shared->last_used() > stdio_idle) {
      log::info("stopping idle upstream", {{"server", id}});
      srv->shared->close("idle");
      srv->shared.reset();
    }
    // Tenant connections of every transport are reaped when idle (a tenant's process or HTTP session).
    for (auto it = srv->tenants.begin(); it != srv->tenants.end();) {
      auto& c = it->second;
      bool idle_now = c->in_flight() == 0 && now - c->last_used() > stdio_idle;
      if (c->state() == upstream::State::closed || idle_now) {
        if (idle_now) log::info("stopping idle tenant upstream", {{"server", id}, {"credential_set", it->first}});
        c->close("idle");
        it = srv->tenants.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void Hub::start_draining() {
  draining_ = true;
  for (auto& [id, s] : sessions_)
    if (s->outbox_ready) s->outbox_ready->set();  // GET streams end; calls under way go on
}

void Hub::stop_upstreams() {
  for (auto& [id, s] : sessions_)
    for (auto& [sid, d] : s->dedicated) d.conn->close("shutting down");
  for (auto& [id, srv] : servers_) {
    if (srv->shared) srv->shared->close("shutting down");
    for (auto& [key, conn] : srv->tenants) conn->close("shutting down");
  }
}

void Hub::list_changed(const std::string& server, std::string_view method, Session* own, const std::string& route_key) {
  auto srv = find(server);
  if (!srv) return;
  // Only the catalog the speaking upstream session lists is stale, and only the sessions that read it hear of
  // it: one user's (or tenant's) upstream must not make everyone's lists load again, nor show them its activity.
  auto key = own ? catalog_key(*own, *srv) : route_key;
  if (srv->find_catalog(key)) srv->catalog_for(key).loaded = false;  // listed again on next use
  ++srv->changes;
  json::object note = jsonrpc::make_notification(method, nullptr);
  if (own) {
    own->send_unsolicited(note);
    return;
  }
  for (auto& [id, s] : sessions_)  // (only to those who may use the server: its activity is not theirs to see)
    if ((s->scope.empty() || s->scope == server) && s->caller.may_use(srv->cfg) && catalog_key(*s, *srv) == key)
      s->send_unsolicited(note);
}

// ---- catalog ----

Catalog& Server::catalog_for(std::string_view route_key) {
  if (route_key.empty()) return catalog;
  if (auto it = tenant_catalogs.find(route_key); it != tenant_catalogs.end()) return it->second;
  // A stored value's every change makes a new key: the catalogs of keys no connection uses any more go.
  // (A key with a capabilities suffix — Session::catalog_suffix — goes with its credential set.)
  if (tenant_catalogs.size() >= 64)
    std::erase_if(tenant_catalogs, [&](auto& kv) {
      std::string_view route = std::string_view(kv.first).substr(0, kv.first.find('\x1f'));
      return !kv.second.loading && !route.empty() && !tenants.contains(route);
    });
  return tenant_catalogs[std::string(route_key)];
}

std::string Hub::catalog_key(const Session& s, const Server& srv) const {
  auto key = s.caller.route(srv.cfg).key;
  return own_catalog(s, srv) ? key + s.catalog_suffix : key;
}

const Catalog& Hub::catalog_of(const Server& srv, std::string_view route_key) {
  static const Catalog none;  // not listed yet for this tenant
  auto* c = srv.find_catalog(route_key);
  return c ? *c : none;
}

net::awaitable<void> Hub::load_catalog(std::shared_ptr<Server> srv, std::shared_ptr<upstream::Connection> conn,
                                       std::string route_key) {
  {
    auto& cat = srv->catalog_for(route_key);
    if (cat.loaded) co_return;
    if (cat.loading) {
      auto ev = cat.loading;
      co_await ev->wait();
      co_return;
    }
  }
  auto ev = std::make_shared<Event>(ex_);
  srv->catalog_for(route_key).loading = ev;
  Catalog fresh;
  // A list_changed during the load (servers often send one right after initialize) may describe a newer list
  // than the one we got: list again, a few times at most.
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto changes_before = srv->changes;
    fresh = Catalog{};
    if (!conn || conn->state() == upstream::State::closed) {
      if (!route_key.empty()) {  // never through another tenant's (or the default) credentials
        fresh.error = "the connection closed while listing";
        break;
      }
      conn = shared_connection(*srv);
    }
    if (auto err = co_await conn->ensure_ready()) {
      fresh.error = *err;
      fresh.unavailable = conn;
    } else {
      const auto& caps = conn->server_capabilities();
      struct Kind {
        const char* cap;
        const char* method;
        const char* key;
        const char* id;  // the field an item must have as a string (items without it are dropped)
        std::vector<json::object>* out;
      } kinds[] = {{"tools", "tools/list", "tools", "name", &fresh.tools},
                   {"prompts", "prompts/list", "prompts", "name", &fresh.prompts},
                   {"resources", "resources/list", "resources", "uri", &fresh.resources},
                   {"resources", "resources/templates/list", "resourceTemplates", "uriTemplate", &fresh.templates}};
      // A catalog is kept for as long as the server runs (one per credential set): at most kCatalogItems
      // items and kCatalogBytes of them (as JSON), whatever a server's pages say; a cursor seen before ends a
      // list. Items without their name (uri) are dropped, and so is an item listed again under the same one.
      std::size_t items_kept = 0, bytes_kept = 0;
      bool truncated = false;
      for (auto& k : kinds) {
        if (!caps.contains(k.cap)) continue;
        json::value cursor;
        std::set<std::string> cursors_seen, ids_seen;  // (an item listed twice is kept once)
        for (int page = 0; page < 100 && !truncated; ++page) {
          json::object params;
          if (!cursor.is_null()) params["cursor"] = cursor;
          upstream::CallOptions opts;
          opts.timeout = conn->timeout();
          auto reply = co_await conn->call(k.method, std::move(params), opts);
          auto& resp = reply.object();
          auto* r = resp.if_contains("result");
          if (!r || !r->is_object()) {
            // templates/list is optional even for servers with resources; any other failure is not cached
            if (std::string_view(k.method) != "resources/templates/list") {
              log::warn("listing failed", {{"server", srv->cfg.id}, {"method", k.method},
                                           {"error", to_json(resp)}});
              fresh.error = std::string(k.method) + " failed: " + to_json(resp.contains("error") ? resp["error"] : json::value(nullptr));
            }
            break;
          }
          if (auto* items = r->as_object().if_contains(k.key); items && items->is_array())
            for (auto& it : items->as_array()) {
              auto* id = it.is_object() ? it.as_object().if_contains(k.id) : nullptr;
              if (!id || !id->is_string() || !ids_seen.emplace(id->as_string()).second) continue;
              std::size_t bytes = json::serialize(it).size();
              if (items_kept + 1 > kCatalogItems || bytes_kept + bytes > kCatalogBytes) {
                truncated = true;
                break;
              }
              ++items_kept;
              bytes_kept += bytes;
              k.out->push_back(it.as_object());
            }
          auto* next = r->as_object().if_contains("nextCursor");
          if (!next || !next->is_string() || next->as_string().empty()) break;
          if (!cursors_seen.emplace(next->as_string()).second) {
            log::warn("listing stopped: a cursor came back", {{"server", srv->cfg.id}, {"method", k.method}});
            break;
          }
          cursor = *next;
        }
      }
      if (truncated)
        log::warn("catalog cut short", {{"server", srv->cfg.id}, {"items", items_kept}, {"bytes", bytes_kept},
                                        {"max_items", kCatalogItems}, {"max_bytes", kCatalogBytes}});
      for (auto& t : fresh.tools)
        if (auto* n = t.if_contains("name"); n && n->is_string()) fresh.tool_names.emplace(n->as_string());
      for (auto& p : fresh.prompts)
        if (auto* n = p.if_contains("name"); n && n->is_string()) fresh.prompt_names.emplace(n->as_string());
      for (auto& r : fresh.resources)
        if (auto* u = r.if_contains("uri"); u && u->is_string()) fresh.resource_uris.emplace(u->as_string());
      for (auto& t : fresh.templates)
        if (auto* u = t.if_contains("uriTemplate"); u && u->is_string()) {
          std::string_view tpl = u->as_string();
          fresh.template_prefixes.emplace_back(tpl.substr(0, tpl.find('{')));
        }
      fresh.loaded = fresh.error.empty();
    }
    if (!fresh.loaded || srv->changes == changes_before) break;
  }
  if (!srv->removed) {
    auto& cat = srv->catalog_for(route_key);
    cat = std::move(fresh);
    if (!cat.loaded) log::warn("server unavailable for listing", {{"server", srv->cfg.id}, {"error", cat.error}});
  }
  ev->set();
}

net::awaitable<void> Hub::load_catalogs(Session& s, const std::vector<std::shared_ptr<Server>>& servers, bool listing) {
  auto done = std::make_shared<Event>(ex_);
  auto remaining = std::make_shared<std::size_t>(0);
  for (auto& srv : servers) {
    // Listed through the caller's own connection: the server's defaults may lack credentials it has. A session
    // meant to have upstream sessions of its own gets one first (if a slot is free): whether it has one decides
    // which catalog it sees (catalog_key).
    std::string error;
    std::shared_ptr<upstream::Connection> conn;
    if (s.dedicated_mode && !s.dedicated.contains(srv->cfg.id)) conn = connection_for(s, *srv, &error);
    auto key = catalog_key(s, *srv);
    if (srv->catalog_for(key).loaded) continue;
    if (!conn) conn = connection_for(s, *srv, &error);
    if (!conn) {
      if (auto& cat = srv->catalog_for(key); cat.error.empty()) cat.error = error;
      continue;
    }
    ++*remaining;
    net::co_spawn(ex_, load_catalog(srv, conn, std::move(key)), [done, remaining](std::exception_ptr) {
      if (--*remaining == 0) done->set();
    });
  }
  if (!*remaining) co_return;
  if (!listing || servers.size() < 2 || settings_.list_wait_ms == 0) co_return co_await done->wait();
  // One server that does not start or answer must not hold every list for its timeout: what the others
  // offer is listed now; the rest follows as list_changed.
  if (co_await done->wait_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(settings_.list_wait_ms)))
    co_return;
  log::info("listed without servers still loading", {{"session", s.id}, {"loading", *remaining}, {"waited_ms", settings_.list_wait_ms}});
  net::co_spawn(ex_, [done, session = s.weak_from_this()]() -> net::awaitable<void> {
    co_await done->wait();
    if (auto s = session.lock()) lists_changed(*s);
  }, net::detached);
}

std::vector<std::shared_ptr<Server>> Hub::in_scope(const Session& s) const {
  auto out = in_scope(s.scope);
  std::erase_if(out, [&](auto& srv) { return !s.caller.may_use(srv->cfg); });
  return out;
}

std::shared_ptr<Server> Hub::find_for(const Session& s, std::string_view id) const {
  auto srv = find(id);
  if (!srv || !srv->cfg.enabled || !s.caller.may_use(srv->cfg)) return nullptr;
  return srv;
}

std::shared_ptr<Server> Hub::route_uri(const Session& s, std::string_view uri) const {
  auto servers = in_scope(s);
  for (auto& srv : servers)
    if (catalog_of(s, *srv).resource_uris.count(std::string(uri))) return srv;
  if (auto link = s.links.find(uri); link != s.links.end())  // a link one of its tools returned
    if (auto srv = find_for(s, link->second)) return srv;
  std::shared_ptr<Server> best;
  std::size_t best_len = 0;
  for (auto& srv : servers)
    for (auto& p : catalog_of(s, *srv).template_prefixes)
      if (uri.starts_with(p) && (p.size() > best_len || !best)) {
        best = srv;
        best_len = p.size();
      }
  if (best) return best;
  if (servers.size() == 1) return servers.front();
  return nullptr;
}

// ---- META_TOOLS_MODE: three tools that search, describe and call the caller's permitted tools ----

namespace {
constexpr std::string_view kSearchTool = "gatehouse__search_tools";
constexpr std::string_view kDescribeTool = "gatehouse__describe_tool";
constexpr std::string_view kCallTool = "gatehouse__call_tool";

json::object text_result(std::string text, bool is_error = false) {
  json::object r{{"content", json::array{json::object{{"type", "text"}, {"text", std::move(text)}}}}};
  if (is_error) r["isError"] = true;
  return r;
}

bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return true;
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b)); });
  return it != hay.end();
}
}  // namespace

json::array Hub::meta_tools() const {
  auto schema = [](json::object props, json::array required) {
    return json::object{{"type", "object"}, {"properties", std::move(props)}, {"required", std::move(required)}};
  };
  json::array tools;
  tools.push_back(json::object{
      {"name", kSearchTool},
      {"description", "Search the tools you may use, by words in their name or description. Returns names and descriptions; "
                      "use gatehouse__describe_tool for a tool's arguments and gatehouse__call_tool to call it."},
      {"inputSchema", schema({{"query", {{"type", "string"}, {"description", "words to look for (empty: every tool)"}}},
                              {"limit", {{"type", "integer"}, {"minimum", 1}, {"maximum", 100}, {"default", 20}}}},
                             {})}});
  tools.push_back(json::object{
      {"name", kDescribeTool},
      {"description", "The full definition of one tool (its input schema), by the name gatehouse__search_tools returned."},
      {"inputSchema", schema({{"name", {{"type", "string"}}}}, {"name"})}});
  tools.push_back(json::object{
      {"name", kCallTool},
      {"description", "Call one tool by name with its arguments."},
      {"inputSchema", schema({{"name", {{"type", "string"}}}, {"arguments", {{"type", "object"}}}}, {"name"})}});
  return tools;
}

net::awaitable<std::optional<jsonrpc::Reply>> Hub::meta_call(std::shared_ptr<Session> s, json::value params_v, json::value id,
                                                           std::shared_ptr<Channel> ch) {
  auto& params = params_v.as_object();
  auto* n = params.if_contains("name");
  if (!n || !n->is_string()) co_return jsonrpc::make_error(id, code::invalid_params, "params.name must be a string");
  std::string tool(n->as_string());
  json::object args;
  if (auto* a = params.if_contains("arguments"); a && a->is_object()) args = a->as_object();
  auto arg_string = [&](std::string_view k) {
    auto* v = args.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  auto servers = in_scope(*s);
  co_await load_catalogs(*s, servers);
  // The permitted tools, with prefixed names; the same policy as everywhere else.
  auto find_tool = [&](std::string_view full) -> const json::object* {
    std::string_view server_id, name;
    if (!split_name(full, server_id, name)) return nullptr;
    auto srv = find_for(*s, server_id);
    if (!srv) return nullptr;
    const auto& cat = catalog_of(*s, *srv);
    if (!cat.loaded || !may_call(*s, *srv, name)) return nullptr;
    for (auto& t : cat.tools)
      if (auto* tn = t.if_contains("name"); tn && tn->is_string() && tn->as_string() == name) return &t;
    return nullptr;
  };
  if (tool == kSearchTool) {
    auto query = arg_string("query");
    int64_t limit = 20;
    if (auto* l = args.if_contains("limit"); l && l->is_int64()) limit = std::clamp<int64_t>(l->as_int64(), 1, 100);
    json::array found;
    std::size_t total = 0;
    for (auto& srv : servers) {
      for (auto& t : catalog_of(*s, *srv).tools) {
        auto* tn = t.if_contains("name");
        if (!tn || !tn->is_string() || !may_call(*s, *srv, tn->as_string())) continue;
        auto full = prefixed(srv->cfg.id, tn->as_string());
        std::string desc = t.contains("description") && t.at("description").is_string() ? std::string(t.at("description").as_string()) : "";
        if (!icontains(full, query) && !icontains(desc, query)) continue;
        ++total;
        if (static_cast<int64_t>(found.size()) < limit) found.push_back(json::object{{"name", full}, {"description", desc}});
      }
    }
    json::object structured{{"tools", found}, {"total", total}};
    auto r = text_result(to_json(structured));
    r["structuredContent"] = std::move(structured);
    co_return jsonrpc::make_result(id, std::move(r));
  }
  if (tool == kDescribeTool) {
    auto name = arg_string("name");
    auto* t = find_tool(name);
    if (!t) co_return jsonrpc::make_result(id, text_result("Unknown tool: " + name, true));
    json::object copy = *t;
    copy["name"] = name;
    co_return jsonrpc::make_result(id, text_result(to_json(copy)));
  }
  if (tool == kCallTool) {
    auto name = arg_string("name");
    if (!find_tool(name)) co_return jsonrpc::make_result(id, text_result("Unknown tool: " + name, true));
    std::string_view server_id, plain;
    split_name(name, server_id, plain);
    auto srv = find_for(*s, server_id);
    json::object inner{{"name", plain}};
    if (auto* a = args.if_contains("arguments"); a && a->is_object()) inner["arguments"] = *a;
    else inner["arguments"] = json::object{};
    if (auto* meta = params.if_contains("_meta")) inner["_meta"] = *meta;  // progress tokens carry through
    json::value inner_v(std::move(inner));
    std::string call_method = "tools/call";
    auto out = co_await forward(s, srv, call_method, std::move(inner_v), id, ch);
    co_return out;
  }
  co_return jsonrpc::make_error(id, code::invalid_params, "Unknown tool: " + tool);
}

// ---- dispatch ----

net::awaitable<json::object> Hub::initialize(std::shared_ptr<Session> s, const json::object& params) {
  std::string requested;
  if (auto* v = params.if_contains("protocolVersion"); v && v->is_string()) requested = v->as_string();
  s->protocol_version = supported_protocol(requested) ? requested : std::string(upstream::kLatestProtocol);
  if (auto* c = params.if_contains("capabilities"); c && c->is_object()) s->client_capabilities = c->as_object();
  if (!own_capabilities(*s).empty()) use_own_upstreams(*s);
  json::object result;
  result["protocolVersion"] = s->protocol_version;
  if (s->scope.empty()) {
    result["capabilities"] = json::object{{"tools", {{"listChanged", true}}},
                                          {"prompts", {{"listChanged", true}}},
                                          {"resources", {{"subscribe", true}, {"listChanged", true}}},
                                          {"logging", json::object{}},
                                          {"completions", json::object{}}};
    result["serverInfo"] = json::object{{"name", "gatehouse"}, {"title", "Gatehouse MCP gateway"}, {"version", "0.1.0"}};
    result["instructions"] =
        "Tools, prompts and resources of several MCP servers. Names are <server>__<name>.";
    if (in_scope(*s).empty())
      if (auto hint = s->caller.no_access_hint(); !hint.empty()) result["instructions"] = hint;
  } else {
    auto srv = find(s->scope);
    std::string route_error;
    auto conn = connection_for(*s, *srv, &route_error);
    std::optional<std::string> err = route_error;
    if (conn) err = co_await conn->ensure_ready();
    json::object caps;
    if (!err) {
      caps = conn->server_capabilities();
      if (auto* i = conn->server_info().if_object()) result["serverInfo"] = *i;
      if (!conn->instructions().empty()) result["instructions"] = conn->instructions();
    } else {
      caps = json::object{{"tools", {{"listChanged", true}}}, {"prompts", json::object{}}, {"resources", json::object{}}};
    }
    caps.erase("experimental");
    if (!s->dedicated.contains(s->scope)) caps.erase("tasks");  // see dispatch: only on the session's own upstream session
    result["capabilities"] = std::move(caps);
    if (!result.contains("serverInfo"))
      result["serverInfo"] = json::object{{"name", "gatehouse/" + s->scope}, {"version", "0.1.0"}};
  }
  co_return result;
}


net::awaitable<json::object> Hub::list(std::shared_ptr<Session> s, std::string_view method, const json::object& params,
                                       const json::value& id) {
  std::size_t offset = 0;
  if (auto* c = params.if_contains("cursor"); c && !c->is_null()) {
    auto off = cursor_decode(*c, method);
    if (!off) co_return jsonrpc::make_error(id, code::invalid_params, "Invalid cursor");
    offset = *off;
  }
  auto servers = in_scope(*s);
  co_await load_catalogs(*s, servers, true);
  bool aggregate = s->scope.empty();
  // One server's endpoint says why it has nothing to list; the aggregate lists what the others offer.
  if (!aggregate && !servers.empty())
    if (const auto& cat = catalog_of(*s, *servers.front()); !cat.loaded)
      co_return jsonrpc::make_error(id, code::internal_error, "Upstream server '" + s->scope + "' is unavailable: " + cat.error);
  const char* key = method == "tools/list"       ? "tools"
                    : method == "prompts/list"   ? "prompts"
                    : method == "resources/list" ? "resources"
                                                 : "resourceTemplates";
  json::array items;
  std::size_t index = 0, page = settings_.list_page_size;
  bool more = false;
  for (auto& srv : servers) {
    const auto& cat = catalog_of(*s, *srv);
    const auto& list = method == "tools/list"       ? cat.tools
                       : method == "prompts/list"   ? cat.prompts
                       : method == "resources/list" ? cat.resources
                                                    : cat.templates;
    bool tools = method == "tools/list", tasks = offers_tasks(*s, *srv);
    for (const auto& item : list) {
      if (tools && s->caller.rights) {
        auto* n = item.if_contains("name");
        if (!n || !n->is_string() || !may_call(*s, *srv, n->as_string())) continue;
      }
      if (tools && !tasks && task_required(item)) continue;
      if (index++ < offset) continue;
      if (items.size() == page) {
        more = true;
        break;
      }
      if (aggregate && (method == "tools/list" || method == "prompts/list")) {
        json::object copy = item;
        copy["name"] = prefixed(srv->cfg.id, item.at("name").as_string());
        items.push_back(std::move(copy));
      } else {
        items.push_back(item);
      }
    }
    if (more) break;
  }
  if (offset > index) co_return jsonrpc::make_error(id, code::invalid_params, "Invalid cursor");
  json::object result;
  result[key] = std::move(items);
  if (more) result["nextCursor"] = cursor_encode(method, offset + page);
  co_return jsonrpc::make_result(id, std::move(result));
}

net::awaitable<std::optional<jsonrpc::Reply>> Hub::forward(std::shared_ptr<Session> s, std::shared_ptr<Server> srv,
                                                           std::string method, json::value params, json::value id,
                                                           std::shared_ptr<Channel> ch, std::string raw_params,
                                                           std::string_view tool, const policy::Route* route) {
  // The client went away while the request waited (its server's tools being listed first): nothing is sent,
  // as a call in flight then is cancelled (abandon).
  if (ch && ch->gone) co_return std::nullopt;
  std::string key = id_key(id);
  if (s->in_flight.count(key))
    co_return jsonrpc::make_error(id, code::invalid_request, "A request with this id is already in progress");
  std::string route_error;
  auto conn = connection_for(*s, *srv, &route_error, route);
  if (!conn) co_return jsonrpc::make_error(id, code::internal_error, route_error);
  if (ch) ch->routed = true;
  // The metrics label: the tool for tools/call, else the method if MCP has it (a vendor method's name on
  // /mcp/<server> is the client's word: "other").
  std::string call_label = !tool.empty() ? std::string(tool) : mcp_method(method) ? method : std::string("other");
  if (tool.empty() && method == "tools/call" && params.is_object())
    if (auto* n = params.as_object().if_contains("name"); n && n->is_string()) call_label = n->as_string();
  upstream::CallHandle handle;
  // Only this call erases its entry, and a node's address survives rehashing: no lookup when it ends.
  InFlight& entry = s->in_flight.try_emplace(key, InFlight{conn, &handle, ch, false}).first->second;
  if (ch) s->latest_channel = ch;
  upstream::CallOptions opts;
  opts.timeout = conn->timeout();
  opts.sink = std::make_shared<ChannelSink>(*this, ch, s, srv->cfg.id);
  if (srv->cfg.forward_identity) opts.headers = s->caller.identity_headers(srv->cfg);
  opts.raw_params = std::move(raw_params);
  auto started = Clock::now();
  auto resp = co_await conn->call(method, std::move(params), std::move(opts), &handle);
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  srv->stats.calls++;
  srv->stats.total_ms += ms;
  // A call its client cancelled (or left, or whose session ended) is no failure of the server's: the
  // connection ends it with the timeout's error code, but it is counted apart, and not as an error.
  bool cancelled = entry.cancelled;
  bool failed = resp.is_error() && !cancelled;
  if (failed) srv->stats.errors++;
  if (on_call) {
    std::string_view outcome = cancelled                                       ? "cancelled"
                               : !failed                                       ? (resp.tool_error() ? "tool_error" : "ok")
                               : resp.error_code() == code::request_timeout ? "timeout"
                                                                              : "error";
    on_call(srv->cfg.id, call_label, outcome, ms / 1000.0);
  }
  s->in_flight.erase(key);
  if (cancelled) co_return std::nullopt;  // a cancelled request gets no response
  // On /mcp a link a tool returned is read back at its server (links need not be listed anywhere).
  if (s->scope.empty() && method == "tools/call" && !failed)
    for (auto& uri : resp.resource_links())
      if (s->links.size() < 1024 || s->links.contains(uri)) s->links[uri] = srv->cfg.id;
  resp.set_id(std::move(id));
  co_return resp;
}

std::shared_ptr<Server> Hub::named_server(const Session& s, std::string_view full, std::string_view& name) const {
  std::string_view server_id;
  if (s.scope.empty()) {
    if (!split_name(full, server_id, name)) return nullptr;
  } else {
    server_id = s.scope;
    name = full;
  }
  auto srv = find_for(s, server_id);
  return srv && srv->cfg.enabled ? srv : nullptr;
}

bool Hub::may_use_named(const Session& s, const Server& srv, const Catalog& cat, bool tool, std::string_view name) const {
  const auto& names = tool ? cat.tool_names : cat.prompt_names;
  if (cat.loaded && !names.count(std::string(name))) return false;
  return !tool || may_call(s, srv, name);
}

std::optional<jsonrpc::Reply> Hub::unavailable(Session& s, Server& srv, const Catalog& cat, const json::value& id,
                                               std::string_view label) {
  if (cat.loaded || cat.unavailable.expired() || cat.unavailable.lock() != connection_for(s, srv)) return std::nullopt;
  srv.stats.calls++;
  srv.stats.errors++;
  // (the label: an MCP method's name, else "other" — with no catalog a tool name is the client's word, and
  // each would take one of the server's metric labels)
  if (on_call) on_call(srv.cfg.id, mcp_method(label) ? std::string(label) : std::string("other"), "error", 0);
  return jsonrpc::make_error(id, code::internal_error,
                             "Upstream server '" + srv.cfg.id + "' is unavailable: " + cat.error);
}

net::awaitable<std::optional<jsonrpc::Reply>> Hub::call_tool(std::shared_ptr<Session> s, jsonrpc::ToolCall call,
                                                             std::shared_ptr<Channel> ch) {
  std::string_view name;
  auto srv = named_server(*s, call.name, name);
  policy::Route route;  // worked out once: the catalog checked and the connection taken both follow it
  if (srv) route = s->caller.route(srv->cfg);
  const Catalog* cat = srv ? &catalog_of(*s, *srv, route) : nullptr;
  if (srv && !cat->loaded) {
    Preparing waiting(*s, call.id);
    std::vector<std::shared_ptr<Server>> one(1, srv);  // (no braced list in a co_await: GCC 12)
    co_await load_catalogs(*s, one);
    if (waiting.cancelled()) co_return std::nullopt;
    cat = &catalog_of(*s, *srv, route);
  }
  if (!srv || !may_use_named(*s, *srv, *cat, true, name))
    co_return jsonrpc::make_error(call.id, code::invalid_params, "Unknown tool: " + call.name);
  if (auto err = unavailable(*s, *srv, *cat, call.id, name)) co_return err;
  std::string params(call.params);
  if (s->scope.empty()) params.replace(call.name_pos, call.name.size(), name);  // the server's own name for it
  co_return co_await forward(s, srv, "tools/call", nullptr, std::move(call.id), ch, std::move(params), name, &route);
}

net::awaitable<std::optional<jsonrpc::Reply>> Hub::dispatch(std::shared_ptr<Session> s, json::object req,
                                                          std::shared_ptr<Channel> ch) {
  json::value id = req["id"];
  std::string method(jsonrpc::method_of(req));
  const std::string_view m = method;  // compared as a view: GCC 12's string == "literal" is strlen + compare
  json::value params_v = req.contains("params") ? std::move(req["params"]) : json::value(json::object{});
  if (!params_v.is_object()) co_return jsonrpc::make_error(id, code::invalid_params, "params must be an object");
  auto& params = params_v.as_object();
  bool aggregate = s->scope.empty();
  auto error = [&](int c, std::string msg) -> std::optional<json::object> { return jsonrpc::make_error(id, c, msg); };

  if (m == "ping") co_return jsonrpc::make_result(id, json::object{});
  if (m == "initialize") co_return error(code::invalid_request, "The session is already initialized");
  if (aggregate && settings_.meta_tools_mode && (m == "tools/list" || m == "tools/call")) {
    if (m == "tools/list") co_return jsonrpc::make_result(id, json::object{{"tools", meta_tools()}});
    auto out = co_await meta_call(s, params_v, id, ch);
    co_return out;
  }
  if (m == "tools/list" || m == "prompts/list" || m == "resources/list" ||
      m == "resources/templates/list")
    co_return co_await list(s, method, params, id);

  if (m == "tools/call" || m == "prompts/get") {
    auto* n = params.if_contains("name");
    if (!n || !n->is_string()) co_return error(code::invalid_params, "params.name must be a string");
    std::string_view full = n->as_string(), name;
    bool tool = m == "tools/call";
    auto srv = named_server(*s, full, name);
    policy::Route route;  // once, as in call_tool
    if (srv) route = s->caller.route(srv->cfg);
    const Catalog* cat = srv ? &catalog_of(*s, *srv, route) : nullptr;
    if (srv && !cat->loaded) {  // (usually loaded: then no coroutine, event or vector for it)
      Preparing waiting(*s, id);
      std::vector<std::shared_ptr<Server>> one(1, srv);  // (no braced list in a co_await: GCC 12)
      co_await load_catalogs(*s, one);
      if (waiting.cancelled()) co_return std::nullopt;
      cat = &catalog_of(*s, *srv, route);
    }
    if (!srv || !may_use_named(*s, *srv, *cat, tool, name))
      co_return error(code::invalid_params, std::string(tool ? "Unknown tool: " : "Unknown prompt: ") + std::string(full));
    if (auto err = unavailable(*s, *srv, *cat, id, tool ? name : m)) co_return err;
    if (aggregate) params["name"] = std::string(name);  // `name` views into params: copy before replacing
    if (tool && params.contains("task") && !(connection_for(*s, *srv, nullptr, &route) && offers_tasks(*s, *srv)))
      params.erase("task");
    co_return co_await forward(s, srv, method, std::move(params_v), id, ch, {}, {}, &route);
  }

  if (m == "resources/read" || m == "resources/subscribe" || m == "resources/unsubscribe") {
    auto* u = params.if_contains("uri");
    if (!u || !u->is_string()) co_return error(code::invalid_params, "params.uri must be a string");
    {
      Preparing waiting(*s, id);
      co_await load_catalogs(*s, in_scope(*s));
      if (waiting.cancelled()) co_return std::nullopt;
    }
    auto srv = route_uri(*s, u->as_string());
    if (!srv) {
      json::value data = json::object{{"uri", u->as_string()}};
      co_return jsonrpc::make_error(id, code::resource_not_found, "Resource not found", &data);
    }
    if (m == "resources/subscribe") use_own_upstreams(*s);
    if (auto err = unavailable(*s, *srv, catalog_of(*s, *srv), id, method)) co_return err;
    // A subscription lives in an upstream session: on one shared by many users it would be everyone's.
    if (m != "resources/read" && connection_for(*s, *srv) && !s->dedicated.contains(srv->cfg.id)) {
      if (m == "resources/unsubscribe") co_return jsonrpc::make_result(id, json::object{});  // nothing to undo
      co_return error(code::internal_error, "Subscriptions need an upstream session of your own with '" + srv->cfg.id +
                                                "', and none is free now; try again later");
    }
    std::string uri(u->as_string());
    auto reply = co_await forward(s, srv, method, std::move(params_v), id, ch);
    // Which server each subscription is with: an update about that URI from another server is not passed on.
    if (m != "resources/read" && reply && !reply->is_error()) {
      if (m == "resources/unsubscribe") s->subscriptions.erase(uri);
      else if (s->subscriptions.size() < 1024) s->subscriptions[uri] = srv->cfg.id;
    }
    co_return reply;
  }

  if (m == "completion/complete") {
    auto* ref = params.if_contains("ref");
    if (!ref || !ref->is_object()) co_return error(code::invalid_params, "params.ref must be an object");
    auto& r = ref->as_object();
    auto* type = r.if_contains("type");
    std::shared_ptr<Server> srv;
    if (type && type->is_string() && type->as_string() == "ref/prompt") {
      auto* n = r.if_contains("name");
      if (!n || !n->is_string()) co_return error(code::invalid_params, "ref.name must be a string");
      std::string_view server_id = s->scope, name = n->as_string();
      if (aggregate && !split_name(n->as_string(), server_id, name))
        co_return error(code::invalid_params, "Unknown prompt: " + std::string(n->as_string()));
      srv = find_for(*s, server_id);
      if (aggregate && srv) r["name"] = std::string(name);
    } else if (type && type->is_string() && type->as_string() == "ref/resource") {
      auto* u = r.if_contains("uri");
      if (!u || !u->is_string()) co_return error(code::invalid_params, "ref.uri must be a string");
      Preparing waiting(*s, id);
      co_await load_catalogs(*s, in_scope(*s));
      if (waiting.cancelled()) co_return std::nullopt;
      srv = route_uri(*s, u->as_string());
    } else {
      co_return error(code::invalid_params, "ref.type must be ref/prompt or ref/resource");
    }
    if (!srv || !srv->cfg.enabled) co_return error(code::invalid_params, "Unknown completion reference");
    co_return co_await forward(s, srv, method, std::move(params_v), id, ch);
  }

  if (m == "logging/setLevel") {
    static constexpr std::string_view kLevels[] = {"debug", "info",     "notice", "warning",
                                                   "error", "critical", "alert",  "emergency"};
    auto* level = params.if_contains("level");
    if (!level || !level->is_string() ||
        std::find(std::begin(kLevels), std::end(kLevels), std::string_view(level->as_string())) == std::end(kLevels))
      co_return error(code::invalid_params,
                      "params.level must be one of debug, info, notice, warning, error, critical, alert, emergency");
    use_own_upstreams(*s);
    auto servers = in_scope(*s);
    for (auto& srv : servers) {
      auto conn = connection_for(*s, *srv);
      // A level set on an upstream session shared by many users would be everyone's: only on the session's own.
      if (!conn || !s->dedicated.contains(srv->cfg.id) || co_await conn->ensure_ready()) continue;
      if (!conn->server_capabilities().contains("logging")) continue;
      upstream::CallOptions opts;
      opts.timeout = conn->timeout();
      co_await conn->call(method, params, opts);
    }
    co_return jsonrpc::make_result(id, json::object{});
  }

  // A request named like a notification is neither: on an upstream session shared by many users a server that
  // acts on the name alone could take it for one (notifications/cancelled of another user's call).
  if (m.starts_with("notifications/")) co_return error(code::invalid_request, "Invalid request: " + method + " is a notification, sent without an id");
  if (!aggregate) {  // anything else goes to the one server as it is (tasks, vendor methods)
    auto srv = find_for(*s, s->scope);
    // Tasks belong to an upstream session: on one shared by many users, a user could list, read or cancel
    // another's. They are relayed only on the session's own upstream session (dedicated mode), opened now if
    // it is not yet (a session opened again on this instance: it knows no task of the instance before).
    if (srv && m.starts_with("tasks/") && s->dedicated_mode && !s->dedicated.contains(s->scope)) connection_for(*s, *srv);
    if (srv && m.starts_with("tasks/") && !s->dedicated.contains(s->scope))
      co_return error(code::method_not_found, "Method not found: " + method +
                                                  " (tasks need a session of your own with this server: declare sampling, "
                                                  "elicitation or roots)");
    if (srv) co_return co_await forward(s, srv, method, std::move(params_v), id, ch);
  }
  co_return error(code::method_not_found, "Method not found: " + method);
}

void Hub::client_message(const std::shared_ptr<Session>& s, json::object msg) {
  auto method = jsonrpc::method_of(msg);
  if (method.empty()) {  // a response to a relayed server→client request
    auto* idv = msg.if_contains("id");
    if (!idv || !idv->is_int64()) return;
    auto it = s->relayed.find(idv->as_int64());
    if (it == s->relayed.end()) {
      log::debug("response to an unknown relayed request", {{"session", s->id}});
      return;
    }
    auto reply = std::move(it->second.reply);
    s->relayed.erase(it);
    reply(std::move(msg));
    return;
  }
  if (method == "notifications/cancelled") {
    auto* params = msg.if_contains("params");
    if (!params || !params->is_object()) return;
    auto* rid = params->as_object().if_contains("requestId");
    if (!rid) return;
    auto key = id_key(*rid);
    auto it = s->in_flight.find(key);
    if (it == s->in_flight.end()) {
      if (auto p = s->preparing.find(key); p != s->preparing.end()) p->second = true;
      return;
    }
    cancel_in_flight(it->second, "cancelled by the client");
    return;
  }
  if (method == "notifications/roots/list_changed") {
    for (auto& [id, d] : s->dedicated) d.conn->notify(method, nullptr);
    return;
  }
  // notifications/initialized and others need nothing from us
}

void Hub::abandon(const std::shared_ptr<Session>& s, const std::shared_ptr<Channel>& ch) {
  ch->gone = true;
  for (auto& [key, f] : s->in_flight) {
    if (f.channel.lock() == ch) cancel_in_flight(f, "the client disconnected");
  }
  ch->wake.set();
}

// ---- operations ----

namespace {
std::string_view state_of(const Server& srv) {
  return !srv.cfg.enabled ? "disabled" : srv.shared ? upstream::to_string(srv.shared->state()) : "idle";
}
}  // namespace

json::object Hub::health() const {
  json::object ups;
  for (const auto& [id, srv] : servers_)  // (no error texts: this answer is public; /gateway/stats has them)
    ups[id] = json::object{{"transport", to_string(srv->cfg.transport)}, {"state", state_of(*srv)}};
  return json::object{{"status", draining_ ? "draining" : "ok"}, {"sessions", sessions_.size()},
                      {"upstreams", std::move(ups)}};
}

json::object Hub::server_json(const Server& srv, const Caller* caller) const {
  json::object o;
  o["id"] = srv.cfg.id;
  o["transport"] = to_string(srv.cfg.transport);
  o["description"] = srv.cfg.description;
  o["enabled"] = srv.cfg.enabled;
  o["state"] = state_of(srv);
  // A caller sees what their own route lists and last failed with, not the calls of every tenant and user.
  const auto& cat = caller ? catalog_of(srv, caller->route(srv.cfg).key) : srv.any_catalog();
  o["tools"] = cat.loaded ? json::value(cat.tools.size()) : json::value(nullptr);
  o["last_error"] = !cat.loaded && !cat.error.empty() ? json::value(cat.error) : json::value(nullptr);
  if (caller) return o;
  o["calls"] = srv.stats.calls;
  o["errors"] = srv.stats.errors;
  // whole microseconds: Boost.JSON writes doubles in exponent form, which people misread
  o["avg_us"] = srv.stats.calls ? static_cast<uint64_t>(srv.stats.total_ms * 1000.0 / double(srv.stats.calls)) : 0;
  o["tenant_connections"] = srv.tenants.size();
  return o;
}

json::object Hub::servers_json(const Caller* caller) const {
  json::array arr;
  for (const auto& [id, srv] : servers_)
    if (!caller || caller->may_use(srv->cfg)) arr.push_back(server_json(*srv, caller));
  return json::object{{"servers", std::move(arr)}};
}

}  // namespace gh::mcp
