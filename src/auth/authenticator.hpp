// Authentication: from a request's credentials to one Principal. Credentials, in order: Authorization
// Bearer (Gatehouse API key "gh_…", Open WebUI HS256 JWT, OIDC RS256/ES256 JWT), the gatehouse_session
// cookie, Open WebUI's `token` cookie, and identity headers from a trusted proxy (API_GATEWAY_MODE).
// Verified tokens are cached until they expire; who the token names is looked up in the Directory on every
// request, so a disabled user or a changed membership counts at once.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/directory.hpp"
#include "auth/principal.hpp"
#include "core/config.hpp"
#include "http/server.hpp"

namespace gh::store {
class OpenWebUiDirectory;
}

namespace gh::auth {
namespace json = boost::json;

class Oidc;

struct AuthResult {
  Principal principal;
  int status = 0;       // 0: authenticated, or no credentials at all (principal unauthenticated); else 401/403/503
  std::string reason;   // for the log only
  std::string message;  // for the client
};

inline constexpr std::string_view kSessionCookie = "gatehouse_session";
inline constexpr std::string_view kLoginCookie = "gatehouse_login";
inline constexpr std::string_view kApiKeyPrefix = "gh_";

// The value of cookie `name` in a Cookie header ("" if absent).
std::string_view cookie_value(std::string_view cookie_header, std::string_view name);
// Removes X-User-* and X-Gateway-* headers, returning whether any was present.
bool strip_identity_headers(http::Request& req);

class Authenticator {
 public:
  Authenticator(const Settings& settings, store::Store& store, Directory& directory, BlockingPool& pool,
                boost::asio::any_io_executor io, Oidc* oidc,
                std::unique_ptr<store::OpenWebUiDirectory> openwebui);
  ~Authenticator();

  // Blocking, at start-up: the shared secret for our own tokens.
  void init_secret();

  // Who the request is, in two steps so that the usual request needs no coroutine frame.
  // authenticate_now: everything that needs no waiting — Gatehouse API keys, session cookies, tokens verified
  // earlier and still cached, no credentials. nullopt: the credential needs authenticate_waiting() (an Open
  // WebUI or OIDC token seen for the first time, a trusted proxy's headers) with the same request and headers.
  // `identity_headers` are the X-User-* headers as received (already stripped from the request); they are
  // used only in API gateway mode from a trusted proxy.
  // With `memo` (the connection's slot), an API key accepted on a keep-alive connection is not hashed and
  // looked up again while the same key comes back and the directory has not changed (revocation, expiry, a
  // disabled user or changed groups all count at once).
  std::optional<AuthResult> authenticate_now(const http::Request& req, std::string_view peer_ip,
                                             const http::Request* identity_headers = nullptr,
                                             std::unique_ptr<http::ConnectionMemo>* memo = nullptr);
  boost::asio::awaitable<AuthResult> authenticate_waiting(const http::Request& req,
                                                          const http::Request* identity_headers = nullptr);
  // Both steps in one (for callers off the hot path).
  boost::asio::awaitable<AuthResult> authenticate(const http::Request& req, std::string_view peer_ip,
                                                  const http::Request* identity_headers = nullptr);

  // Sign-in through OIDC: from verified ID-token claims (and userinfo) to a user, created on first sign-in,
  // with group sync when configured. Fails with 403 for a disallowed domain or a disabled user.
  boost::asio::awaitable<AuthResult> sign_in(const json::object& claims);

  // Our own signed tokens: the session cookie and the login state.
  // `api_key`: the key the session is made from (key sign-in): the session ends when the key does (revoked or
  // expired) and never outlives it.
  std::string issue_session(const Principal& p, std::string_view api_key = {}) const;
  std::string sign(json::object claims) const;
  std::optional<json::object> verify_own(std::string_view token, std::string_view typ, std::string* reason) const;
  // The CSRF token that goes with a cookie's value (HMAC of it): pages read it from /auth/me and send it back
  // in X-CSRF-Token with every write, which a cross-site form cannot do.
  std::string csrf_token(std::string_view cookie) const;
  // A key for another use of the gateway's session secret (the same on every instance), named by `purpose`.
  std::string derived_key(std::string_view purpose) const;
  // The cookie the request's credential is taken from — ours, or Open WebUI's `token` when it is accepted —
  // and "" when the credential is a header (which a cross-site page cannot send) or absent.
  std::string_view cookie_credential(const http::Request& req) const;
  // A Principal for a Gatehouse API key (the portal's key sign-in); status set when refused.
  AuthResult principal_for_api_key(std::string_view key);

  // The client's address: the peer, or with trusted proxies the first untrusted hop of X-Forwarded-For.
  std::string client_ip(std::string_view peer_ip, std::string_view forwarded_for) const;
  bool trusted_proxy(std::string_view ip) const;

  // Writes API keys' last-used times (called periodically and at shutdown).
  void flush_usage();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gh::auth
