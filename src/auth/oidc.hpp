// An OpenID Connect provider as Gatehouse uses it: discovery, the JWKS key cache, token verification
// (ID tokens and bearer access tokens), the authorization-code exchange and userinfo.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/jwt.hpp"
#include "core/config.hpp"
#include "core/event.hpp"

namespace gh::http {
class ClientPool;
}

namespace gh::auth {

struct TokenResponse {
  std::string id_token, access_token;
  std::string error;  // set when the exchange failed (for the log)
};

class Oidc {
 public:
  Oidc(boost::asio::any_io_executor ex, const Settings& settings);
  ~Oidc();

  // Fetches discovery and keys in the background until it succeeds; refreshes keys hourly.
  void start();
  void stop();
  bool ready() const { return !authorization_endpoint_.empty(); }
  // Discovers now if not done yet (one attempt at a time, at most one per second); returns ready().
  boost::asio::awaitable<bool> ensure_ready();
  const std::string& issuer_template() const { return settings_.oidc_issuer; }
  const std::string& authorization_endpoint() const { return authorization_endpoint_; }
  const std::string& end_session_endpoint() const { return end_session_endpoint_; }
  // Changes whenever a key disappears from the provider's set: tokens verified before must be checked again.
  uint64_t key_generation() const { return key_generation_; }

  // Verifies a JWT from this provider: signature by a JWKS key (refetching once on an unknown kid,
  // rate-limited), then iss/aud/exp/nbf/tid. `audience` empty = settings' audience. Returns the claims.
  boost::asio::awaitable<std::optional<json::object>> verify(std::string_view token, std::string_view audience,
                                                            std::string* reason);
  boost::asio::awaitable<TokenResponse> exchange_code(std::string code, std::string verifier, std::string redirect_uri);
  boost::asio::awaitable<std::optional<json::object>> userinfo(std::string access_token);

 private:
  struct Fetched {
    unsigned status = 0;
    std::string body;
    std::string error;
  };
  boost::asio::awaitable<Fetched> fetch(std::string url, std::string method = "GET", std::string body = {},
                                        std::vector<std::pair<std::string, std::string>> headers = {});
  boost::asio::awaitable<bool> discover();
  boost::asio::awaitable<bool> refresh_keys();
  const Jwk* find_key(std::string_view kid, std::string_view alg) const;

  boost::asio::any_io_executor ex_;
  const Settings& settings_;
  std::map<std::string, std::shared_ptr<http::ClientPool>> pools_;
  std::string authorization_endpoint_, token_endpoint_, userinfo_endpoint_, jwks_uri_, end_session_endpoint_;
  std::string discovered_issuer_;
  std::vector<Jwk> keys_;
  uint64_t key_generation_ = 0;
  std::chrono::steady_clock::time_point last_key_fetch_{};
  std::shared_ptr<Event> key_fetch_;  // set while a fetch is in flight: others wait on it
  std::shared_ptr<Event> discovering_;
  std::chrono::steady_clock::time_point last_discovery_{};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace gh::auth
