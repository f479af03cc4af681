// The MCP hub: upstream servers and their catalogs, downstream sessions, and the dispatcher that routes
// every method to the right upstream (rewriting names for the aggregate endpoint).
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/config.hpp"
#include "core/event.hpp"
#include "mcp/session_ids.hpp"
#include "policy/policy.hpp"
#include "upstream/connection.hpp"

namespace gh::mcp {

namespace net = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

bool supported_protocol(std::string_view v);

// What one upstream server offers, as last listed.
struct Catalog {
  bool loaded = false;
  std::shared_ptr<Event> loading;
  std::string error;
  // Set when the load failed because the server could not start through this connection (Hub::unavailable).
  std::weak_ptr<upstream::Connection> unavailable;
  std::vector<json::object> tools, prompts, resources, templates;
  std::unordered_set<std::string> tool_names, prompt_names, resource_uris;
  std::vector<std::string> template_prefixes;  // literal part of each URI template before its first '{'
};

struct ServerStats {
  uint64_t calls = 0, errors = 0;
  double total_ms = 0;
};

class Hub;
struct Session;

// One upstream server as configured, with its shared connection and catalog.
struct Server {
  ServerConfig cfg;
  std::shared_ptr<upstream::Connection> shared;
  std::shared_ptr<upstream::Listener> listener;
  // One connection per tenant credential set / endpoint (Route::key), shared by that tenant's users.
  std::map<std::string, std::shared_ptr<upstream::Connection>, std::less<>> tenants;
  Catalog catalog;  // as listed with the server's own settings (no tenant credentials or endpoint)
  // As listed through a tenant's credentials or endpoint (Route::key): what one tenant's account offers
  // (resource names, prompts, descriptions) is not shown to another's users.
  std::map<std::string, Catalog, std::less<>> tenant_catalogs;
  Catalog& catalog_for(std::string_view route_key);  // made when missing
  // For administrators' views (tool names, counts): the default catalog, else a tenant's that is loaded.
  const Catalog& any_catalog() const {
    if (!catalog.loaded)
      for (auto& [key, c] : tenant_catalogs)
        if (c.loaded) return c;
    return catalog;
  }
  const Catalog* find_catalog(std::string_view route_key) const {
    if (route_key.empty()) return &catalog;
    auto it = tenant_catalogs.find(route_key);
    return it == tenant_catalogs.end() ? nullptr : &it->second;
  }
  ServerStats stats;
  std::size_t dedicated = 0;  // dedicated connections open now
  std::unordered_map<std::string, std::size_t> dedicated_by_owner;  // of them, each user's
  uint64_t changes = 0;       // list_changed notifications seen; a load that overlapped one is not trusted
  bool removed = false;
};

// Where the answer to one POST goes: a lazily chosen JSON body, or an SSE stream as soon as a message
// related to the request (progress, logging, a server→client request) must be sent first.
struct Channel {
  explicit Channel(const net::any_io_executor& ex) : wake(ex) {}
  Event wake;
  static constexpr std::size_t kMaxQueued = 4096, kMaxQueuedBytes = 16 << 20;  // push() drops the oldest beyond
  std::size_t queued_bytes = 0;  // in messages
  std::list<std::string> messages;  // serialized messages for the SSE stream, in order (a list: no allocation while empty)
  std::vector<std::string> responses;  // serialized, in the order they were finished
  std::size_t expected = 0, finished = 0;
  bool gone = false;  // the client went away
  // Set by the hub once a request is sent on to a server the caller may use (its tool in the catalog): only
  // then does analytics credit the server and tool the client named, which are otherwise anyone's words.
  bool routed = false;
  // Called on the first pushed message, so that a single-request answer starts its SSE writer only when needed.
  std::function<void()> on_first_message;
  void push(const json::object& msg);
  void finish(std::optional<jsonrpc::Reply> response);
};

struct InFlight {
  std::weak_ptr<upstream::Connection> conn;
  upstream::CallHandle* handle = nullptr;
  std::weak_ptr<Channel> channel;
  bool cancelled = false;
};

struct RelayedRequest {
  std::function<void(json::object)> reply;
  std::string server;
  json::value upstream_id;
};

// What a caller may do: made once per request by the app layer from the caller's identity (app/access.cpp).
class Rights {
 public:
  virtual ~Rights() = default;
  virtual bool may_use(const ServerConfig& s) const = 0;
  virtual bool may_call(const ServerConfig& s, std::string_view tool) const = 0;  // a tool of a usable server
  virtual policy::Route route(const ServerConfig& s) const = 0;                 // credential set and endpoint
  // Identity headers for servers with forwardIdentity (whole header lines are built by the transport).
  virtual std::vector<std::pair<std::string, std::string>> identity_headers(const ServerConfig& s) const = 0;
  virtual std::string no_access_hint() const = 0;  // said when the caller may use no server at all
};

// Who is making a request, as the hub needs to know it. Copying one shares its rights (no allocation).
struct Caller {
  std::string owner;                    // email ("" = anonymous)
  std::shared_ptr<const Rights> rights;  // null: every server and tool, the servers' defaults, no identity
  bool may_use(const ServerConfig& s) const { return !rights || rights->may_use(s); }
  bool may_call(const ServerConfig& s, std::string_view tool) const { return !rights || rights->may_call(s, tool); }
  policy::Route route(const ServerConfig& s) const { return rights ? rights->route(s) : policy::Route{}; }
  std::vector<std::pair<std::string, std::string>> identity_headers(const ServerConfig& s) const {
    return rights ? rights->identity_headers(s) : std::vector<std::pair<std::string, std::string>>{};
  }
  std::string no_access_hint() const { return rights ? rights->no_access_hint() : std::string(); }
};

// A downstream MCP session (one per initialize).
struct Session : std::enable_shared_from_this<Session> {
  std::string id;
  std::string scope;  // "" = aggregate, else the server id
  std::string owner;  // email of the user who opened it; only they may use it
  Caller caller;      // the caller's rights, set from their identity on every request
  std::string protocol_version;
  json::object client_capabilities;
  bool dedicated_mode = false;  // its own upstream sessions (sampling/elicitation/roots, log level, subscriptions)
  // With its own upstream sessions, the catalogs it sees are those listed through an upstream session that
  // declared what this client did (a server may offer some tools only to clients with roots, say): this
  // suffix of their keys names the capabilities (see Hub::catalog_key), for the servers where it has one.
  std::string catalog_suffix;
  bool closed = false;
  Clock::time_point last_seen = Clock::now();
  struct Dedicated {
    std::shared_ptr<upstream::Connection> conn;
    std::string route;  // the Route::key it was opened with
  };
  std::map<std::string, Dedicated, std::less<>> dedicated;  // by server
  std::vector<std::shared_ptr<upstream::Listener>> listeners;  // of the dedicated connections (held weakly there)
  std::unordered_map<std::string, InFlight> in_flight;  // key: serialized downstream id
  // Requests waiting for a server's catalog before they are in flight, by the same key: cancelled yet?
  std::unordered_map<std::string, bool> preparing;
  std::unordered_map<int64_t, RelayedRequest> relayed;   // server→client requests awaiting the client
  int64_t next_relay_id = 0;
  std::weak_ptr<Channel> latest_channel;  // where an unattributed server→client request goes first
  std::map<std::string, std::string, std::less<>> subscriptions;  // URI → the server it is subscribed with (≤ 1,024)
  std::map<std::string, std::string, std::less<>> links;  // /mcp: a resource_link's URI → the server whose tool returned it (≤ 1,024)
  // the standalone GET stream
  std::unique_ptr<Event> outbox_ready;
  std::deque<std::string> outbox;
  bool get_attached = false;

  void send_unsolicited(const json::object& msg);
  // Sends a server→client request to the client on `ch` (or the GET stream); the reply goes upstream.
  void relay_request(const std::string& server, json::object msg, std::function<void(json::object)> reply,
                     std::shared_ptr<Channel> ch);
  // Rewrites notifications/cancelled for a relayed request to the id the client knows; false to drop it.
  bool translate_cancel(const std::string& server, json::object& msg);
};

class Hub {
 public:
  Hub(net::any_io_executor ex, const Settings& settings);
  ~Hub();

  // Applies a (new) server list: unchanged servers keep their connections and sessions.
  void configure(const std::vector<ServerConfig>& servers);

  std::shared_ptr<Server> find(std::string_view id) const;
  std::vector<std::shared_ptr<Server>> in_scope(std::string_view scope) const;
  // The servers this session's caller may use now.
  std::vector<std::shared_ptr<Server>> in_scope(const Session& s) const;
  // A server by id if it is enabled and the session's caller may use it.
  std::shared_ptr<Server> find_for(const Session& s, std::string_view id) const;

  // Sessions.
  std::shared_ptr<Session> create_session(std::string scope);
  std::shared_ptr<Session> find_session(std::string_view id);
  void close_session(const std::shared_ptr<Session>& s);
  std::size_t session_count() const { return sessions_.size(); }
  uint64_t sessions_resumed() const { return resumed_; }

  // Resumable session ids (session_ids.hpp). Without them (SESSION_MAX_AGE_S=0) ids are random and a
  // session lives only in the instance that opened it, until it ends there.
  void use_session_ids(std::shared_ptr<const SessionIds> ids) { ids_ = std::move(ids); }
  // After initialize: the session's lasting id (resumable with ids on), in place of create_session's.
  void seal_session(const std::shared_ptr<Session>& s);
  // What the id of a session this instance does not hold says, when `caller` may have it opened again on
  // `scope`: nullopt when the id is not one of ours, is too old, names another endpoint or user, or its
  // session was ended (`why` says which; `store_down` is set when the store cannot tell whether it ended).
  net::awaitable<std::optional<SessionTicket>> resumable(const std::string& id, const std::string& scope,
                                                         const Caller& caller, std::string& why,
                                                         bool* store_down = nullptr);
  // Such a session opened again from its id (the state the id carries, fresh upstream sessions); null as for
  // resumable(), or `busy` when the id is fine but MAX_SESSIONS are open or the gateway is shutting down
  // (`draining()` tells which).
  net::awaitable<std::shared_ptr<Session>> resume_session(std::string id, std::string scope, Caller caller,
                                                          std::string& why, bool& busy);
  // The client ends session `id` (DELETE), held here or not: recorded through record_end for every instance
  // (when another could open it), then closed here and remembered as ended. False when the record could not
  // be written: then nothing ended.
  net::awaitable<bool> end_session(std::string id);
  // Sessions ended on other instances (read from the record): closed here if held.
  void ended_elsewhere(const std::vector<std::string>& ids);
  // Records a session's end where every instance reads it; false when it could not.
  std::function<net::awaitable<bool>(std::string id)> record_end;
  // Whether the record says the session was ended; nullopt when it cannot be read (then it is not opened).
  std::function<net::awaitable<std::optional<bool>>(std::string id)> was_ended;

  // A session for one request of a caller without an MCP session (the OpenAPI routes): not registered,
  // nothing outlives it.
  std::shared_ptr<Session> transient_session(std::string scope, Caller caller);
  // The tools of `servers` the session's caller may call, listed if needed (server id, tool) in order; not those that
  // require a task where the session is not offered tasks (see offers_tasks in hub.cpp).
  // `listing`: a list of several servers waits LIST_WAIT_MS at most for those still loading (as tools/list).
  // `unavailable`: the servers whose tools could not be listed, with why.
  net::awaitable<std::vector<std::pair<std::shared_ptr<Server>, const json::object*>>> permitted_tools(
      std::shared_ptr<Session> s, bool listing = false,
      std::vector<std::pair<std::string, std::string>>* unavailable = nullptr);

  // initialize: negotiates the version and returns the InitializeResult.
  net::awaitable<json::object> initialize(std::shared_ptr<Session> s, const json::object& params);
  // Handles one request; returns its response (id set) or nullopt when it was cancelled.
  // Whether a tools/call on this endpoint may take call_tool() (not while the aggregate endpoint offers
  // only the meta tools: dispatch() answers those).
  bool scans_tool_calls(const std::string& scope) const { return !scope.empty() || !settings_.meta_tools_mode; }
  // A tools/call found by jsonrpc::scan_tool_call: the same checks as dispatch()'s, its params forwarded as
  // the client wrote them (on the aggregate endpoint with the server's prefix cut from the name).
  net::awaitable<std::optional<jsonrpc::Reply>> call_tool(std::shared_ptr<Session> s, jsonrpc::ToolCall call,
                                                          std::shared_ptr<Channel> ch);
  net::awaitable<std::optional<jsonrpc::Reply>> dispatch(std::shared_ptr<Session> s, json::object req,
                                                       std::shared_ptr<Channel> ch);
  // Handles a notification or a response from the client.
  void client_message(const std::shared_ptr<Session>& s, json::object msg);
  // The client went away during these requests: the channel is marked gone (and woken), and the requests are
  // cancelled upstream.
  void abandon(const std::shared_ptr<Session>& s, const std::shared_ptr<Channel>& ch);

  json::object health() const;
  // null: every server with its statistics (administrators' views); else the servers the caller may use,
  // their tool counts and errors as the caller's own route sees them.
  json::object servers_json(const Caller* caller = nullptr) const;
  // One server as /servers shows it (`caller`: see servers_json).
  json::object server_json(const Server& srv, const Caller* caller = nullptr) const;
  const std::map<std::string, std::shared_ptr<Server>, std::less<>>& servers() const { return servers_; }
  bool draining() const { return draining_; }
  // Called after every upstream call: server, tool (or method), outcome ("ok", "error", "tool_error",
  // "timeout", "cancelled": the client cancelled it or left), seconds.
  std::function<void(const std::string&, const std::string&, std::string_view, double)> on_call;
  void start_draining();
  // Stops every upstream connection (shutdown).
  void stop_upstreams();
  // Periodic housekeeping: idle sessions and idle stdio processes.
  void sweep();
  // An upstream session said its `method` list changed: its own session's (`own`), else the shared one's of
  // credential set `route_key` ("" = the server's defaults).
  void list_changed(const std::string& server, std::string_view method, Session* own, const std::string& route_key);
  // Closes the session's own upstream session with that server (soon: posted), e.g. after its grant went.
  void drop_dedicated(const std::shared_ptr<Session>& s, const std::string& server);
  // The server a resource URI on /mcp belongs to: the one listing it, else the one whose tool returned it as a
  // link in this session, else the one with the longest matching template; null if none.
  std::shared_ptr<Server> route_uri(const Session& s, std::string_view uri) const;

 private:
  friend struct SharedListener;
  // The connection this session uses for this server, or null with `error` set (a missing credential).
  // `known`: the caller's route for this server when the caller worked it out already.
  std::shared_ptr<upstream::Connection> connection_for(Session& s, Server& srv, std::string* error = nullptr,
                                                       const policy::Route* known = nullptr);
  std::shared_ptr<upstream::Connection> shared_connection(Server& srv);
  // Ends a session's dedicated connection with `server` (closed with `why`, unless empty) and frees its slot.
  void release_dedicated(Session& s, const std::string& server, std::string_view why);
  std::shared_ptr<upstream::Connection> new_connection(Server& srv, json::object caps, const policy::Route& route = {});
  net::awaitable<void> load_catalog(std::shared_ptr<Server> srv, std::shared_ptr<upstream::Connection> conn,
                                    std::string route_key);
  // From now on the session has upstream sessions of its own (Session::dedicated_mode).
  static void use_own_upstreams(Session& s);
  // The catalog this session sees of `srv`: its tenant's own when its route names one (Server::tenant_catalogs),
  // and with upstream sessions of its own, the one listed through such a session (Session::catalog_suffix).
  std::string catalog_key(const Session& s, const Server& srv) const;
  const Catalog& catalog_of(const Session& s, const Server& srv) const { return catalog_of(srv, catalog_key(s, srv)); }
  static const Catalog& catalog_of(const Session& s, const Server& srv, const policy::Route& route) {
    return own_catalog(s, srv) ? catalog_of(srv, route.key + s.catalog_suffix) : catalog_of(srv, route.key);
  }
  // Whether the session sees `srv`'s catalog listed through an upstream session like its own (it has one).
  static bool own_catalog(const Session& s, const Server& srv) {
    return !s.catalog_suffix.empty() && s.dedicated.contains(srv.cfg.id);
  }
  static const Catalog& catalog_of(const Server& srv, std::string_view key);
  // Loads the catalogs `servers` lack for `s`. `listing` (an aggregate */list): waits LIST_WAIT_MS at most;
  // servers still loading then are left out, and the session hears list_changed once they are in.
  net::awaitable<void> load_catalogs(Session& s, const std::vector<std::shared_ptr<Server>>& servers, bool listing = false);
  bool may_call(const Session& s, const Server& srv, std::string_view tool) const;
  json::array meta_tools() const;
  net::awaitable<std::optional<jsonrpc::Reply>> meta_call(std::shared_ptr<Session> s, json::value params, json::value id,
                                                        std::shared_ptr<Channel> ch);
  net::awaitable<json::object> list(std::shared_ptr<Session> s, std::string_view method, const json::object& params,
                                    const json::value& id);
  // `raw_params`: the params as JSON text (then `params` is null and `tool` names the tool called).
  net::awaitable<std::optional<jsonrpc::Reply>> forward(std::shared_ptr<Session> s, std::shared_ptr<Server> srv,
                                                        std::string method, json::value params, json::value id,
                                                        std::shared_ptr<Channel> ch, std::string raw_params = {},
                                                        std::string_view tool = {}, const policy::Route* route = nullptr);
  // The server that a tools/call or prompts/get `full` name is for, and the name it knows it by (`full` is
  // prefixed on the aggregate endpoint); null when there is none.
  std::shared_ptr<Server> named_server(const Session& s, std::string_view full, std::string_view& name) const;
  // Whether the caller may use that tool or prompt (the server's catalog loaded): an unknown one and a
  // forbidden one look the same, so that list and call agree.
  bool may_use_named(const Session& s, const Server& srv, const Catalog& cat, bool tool, std::string_view name) const;
  // After load_catalogs (and the caller's rights checked): when the load found `srv` unable to start through
  // the connection this call would take, the call's error (counted as a failed call); the call is not sent,
  // which would start the server a second time after its backoff and so double the caller's wait.
  std::optional<jsonrpc::Reply> unavailable(Session& s, Server& srv, const Catalog& cat, const json::value& id,
                                           std::string_view label);

  net::any_io_executor ex_;
  const Settings& settings_;
  std::map<std::string, std::shared_ptr<Server>, std::less<>> servers_;
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::shared_ptr<Session>, StringHash, std::equal_to<>> sessions_;
  std::shared_ptr<const SessionIds> ids_;
  uint64_t resumed_ = 0;
  // Sessions known to have ended (ended here, found in the record, read from it by the poll), by their id
  // until too old to be resumed, oldest first: asked about again, they cost no store query.
  std::unordered_set<std::string, StringHash, std::equal_to<>> ended_;
  std::deque<std::pair<int64_t, std::string>> ended_order_;
  void remember_ended(const std::string& id);
  bool draining_ = false;
};

}  // namespace gh::mcp
