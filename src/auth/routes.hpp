// The browser-facing identity routes: /auth/login, /auth/callback, /auth/logout, /auth/me, the caller's own
// API keys (/auth/apikeys), and the RFC 9728 protected-resource metadata.
#pragma once
#include <boost/asio/awaitable.hpp>

#include <string>

#include "auth/authenticator.hpp"
#include "core/blocking.hpp"
#include "http/server.hpp"
#include "store/store.hpp"

namespace gh::auth {

class Oidc;

class Routes {
 public:
  Routes(const Settings& settings, Authenticator& auth, Oidc* oidc, store::Store& store, Directory& directory,
         BlockingPool& pool, std::string public_url);
  // True if `path` is one of these routes (then handle() answers it).
  static bool owns(std::string_view path);
  boost::asio::awaitable<void> handle(http::Exchange& ex, std::string_view path, const AuthResult& auth);
  // The URL of the protected-resource metadata (for WWW-Authenticate).
  std::string resource_metadata_url() const { return public_url_ + "/.well-known/oauth-protected-resource"; }

 private:
  boost::asio::awaitable<void> login(http::Exchange& ex);
  boost::asio::awaitable<void> logout(http::Exchange& ex);
  boost::asio::awaitable<void> key_sign_in(http::Exchange& ex);
  boost::asio::awaitable<void> callback(http::Exchange& ex);
  boost::asio::awaitable<void> own_keys(http::Exchange& ex, std::string_view rest, const AuthResult& auth);
  std::string cookie(std::string_view name, std::string_view value, std::string_view path, int max_age) const;
  std::string redirect_uri() const;

  const Settings& settings_;
  Authenticator& auth_;
  Oidc* oidc_;
  store::Store& store_;
  Directory& directory_;
  BlockingPool& pool_;
  std::string public_url_;
  bool secure_;
};

}  // namespace gh::auth
