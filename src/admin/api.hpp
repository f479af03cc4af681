// The management API under /mcp-admin/api/ (admins only): users, groups, memberships, API keys, audit log.
// Every change is written to the audit log and reaches the snapshot before the answer is sent.
#pragma once
#include <boost/asio/awaitable.hpp>

#include <string_view>

#include "auth/directory.hpp"
#include "auth/principal.hpp"
#include "core/blocking.hpp"
#include "http/server.hpp"
#include "store/store.hpp"

namespace gh::admin {

// The answer of one API call, before it is written.
struct Reply {
  int status = 200;
  std::string body;  // JSON
};
Reply error_reply(int status, std::string_view code, std::string_view message);

class Api {
 public:
  Api(store::Store& store, auth::Directory& directory, BlockingPool& pool);
  // `path` is the request path after "/mcp-admin/api" (e.g. "/users/a%40b.com"); the caller is an admin.
  boost::asio::awaitable<void> handle(http::Exchange& ex, std::string_view path, const auth::Principal& caller);

 private:
  store::Store& store_;
  auth::Directory& directory_;
  BlockingPool& pool_;
};

}  // namespace gh::admin
