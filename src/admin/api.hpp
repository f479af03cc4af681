// The management API under /mcp-admin/api/ (admins only): users, groups, memberships, API keys, audit log.
// Every change is written to the audit log and reaches the snapshot before the answer is sent.
#pragma once
#include <boost/asio/awaitable.hpp>

#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <string_view>
#include <vector>

#include "auth/directory.hpp"
#include "auth/principal.hpp"
#include "auth/secrets.hpp"
#include "core/blocking.hpp"
#include "core/config.hpp"
#include "http/server.hpp"
#include "store/store.hpp"

namespace gh::admin {

// The answer of one API call, before it is written.
struct Reply {
  int status = 200;
  std::string body;  // JSON
};
Reply error_reply(int status, std::string_view code, std::string_view message);
// A name or description as people type it: at most `max` bytes, no control characters (a NUL would be cut
// off by PostgreSQL, silently); `lines` allows line breaks and tabs.
bool clean_text(std::string_view s, std::size_t max, bool lines = false);

// What the API needs to know about the configured servers (read on the io thread before each call).
struct ServerView {
  boost::json::object info;         // as /servers shows it (state, tools, calls, errors, latency)
  std::vector<std::string> slots;   // its ${secret:NAME} credential slots
  std::vector<std::string> tools;   // tool names, when listed
};

class Api {
 public:
  Api(store::Store& store, auth::Directory& directory, BlockingPool& pool, const Settings& settings,
      const auth::SecretBox* secrets, std::function<std::map<std::string, ServerView>()> servers);
  // `path` is the request path after "/mcp-admin/api" (e.g. "/users/a%40b.com"); the caller is an admin.
  boost::asio::awaitable<void> handle(http::Exchange& ex, std::string_view path, const auth::Principal& caller);

 private:
  store::Store& store_;
  auth::Directory& directory_;
  BlockingPool& pool_;
  const Settings& settings_;
  const auth::SecretBox* secrets_;
  std::function<std::map<std::string, ServerView>()> servers_;
  // An analytics report runs (on the io thread, as every handle()): another is answered 503 at once instead of
  // waiting, on the blocking pool, for the store's one report connection while holding a pool thread.
  bool report_running_ = false;
};

// A tenant endpoint URL as admins may store it: http(s), a host, and not a link-local or cloud-metadata
// address unless `allow_private` (ALLOW_LINK_LOCAL_ENDPOINTS). Returns an empty string or why not.
std::string check_endpoint_url(std::string_view url, bool allow_private);

}  // namespace gh::admin
