#include "auth/oidc.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>

#include "core/log.hpp"
#include "core/util.hpp"
#include "http/client.hpp"

namespace gh::auth {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kMaxDocument = 1024 * 1024;

std::string form_encode(std::string_view s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

std::string string_field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}
}  // namespace

Oidc::Oidc(net::any_io_executor ex, const Settings& settings) : ex_(std::move(ex)), settings_(settings) {}

Oidc::~Oidc() { stop(); }

void Oidc::stop() {
  *alive_ = false;
  for (auto& [_, p] : pools_) p->close();
}

net::awaitable<Oidc::Fetched> Oidc::fetch(std::string url, std::string method, std::string body,
                                          std::vector<std::pair<std::string, std::string>> headers) {
  http::Origin origin;
  http::ClientRequest req;
  Fetched out;
  if (!http::Origin::parse(url, origin, req.target)) {
    out.error = "bad URL " + url;
    co_return out;
  }
  auto key = std::string(origin.tls ? "https://" : "http://") + origin.host + ":" + origin.port;
  auto& pool = pools_[key];
  if (!pool) pool = std::make_shared<http::ClientPool>(ex_, origin, 4);
  auto keep = pool;
  req.method = method == "POST" ? boost::beast::http::verb::post : boost::beast::http::verb::get;
  req.set("Accept", "application/json");
  req.set("User-Agent", "gatehouse");
  for (auto& [k, v] : headers) req.set(k, v);
  if (!body.empty()) req.set("Content-Type", "application/x-www-form-urlencoded");
  req.body = std::move(body);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  auto res = co_await keep->request(std::move(req), deadline, {}, deadline, kMaxDocument);
  if (res.ec) {
    out.error = res.ec.message();
    co_return out;
  }
  out.status = res.status;
  out.body = std::move(res.body);
  co_return out;
}

void Oidc::start() {
  auto alive = alive_;
  net::co_spawn(ex_, [this, alive]() -> net::awaitable<void> {
    net::steady_timer t(ex_);
    auto delay = std::chrono::seconds(1);
    while (*alive) {
      bool ok = false;
      if (ready()) ok = co_await refresh_keys();
      else ok = co_await ensure_ready();
      if (!*alive) co_return;
      if (ok && ready()) {
        delay = std::chrono::seconds(3600);  // routine key refresh
      } else {
        delay = std::min<std::chrono::seconds>(delay * 2, std::chrono::seconds(60));
      }
      t.expires_after(delay);
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
    }
  }, net::detached);
}

net::awaitable<bool> Oidc::ensure_ready() {
  if (ready()) co_return true;
  if (discovering_) {
    auto ev = discovering_;
    co_await ev->wait();
    co_return ready();
  }
  if (Clock::now() - last_discovery_ < std::chrono::seconds(1)) co_return false;
  auto alive = alive_;
  auto ev = std::make_shared<Event>(ex_);
  discovering_ = ev;
  last_discovery_ = Clock::now();
  co_await discover();
  if (!*alive) co_return false;
  discovering_.reset();
  ev->set();
  co_return ready();
}

net::awaitable<bool> Oidc::discover() {
  auto alive = alive_;
  auto f = co_await fetch(settings_.oidc_discovery_url);
  if (!*alive) co_return false;
  if (!f.error.empty() || f.status != 200) {
    log::warn("OIDC discovery failed; retrying", {{"url", settings_.oidc_discovery_url}, {"status", f.status},
                                                 {"error", f.error}});
    co_return false;
  }
  boost::system::error_code ec;
  auto doc = json::parse(f.body, ec);
  if (ec || !doc.is_object()) {
    log::warn("OIDC discovery document is not JSON", {{"url", settings_.oidc_discovery_url}});
    co_return false;
  }
  auto& o = doc.as_object();
  discovered_issuer_ = string_field(o, "issuer");
  jwks_uri_ = string_field(o, "jwks_uri");
  token_endpoint_ = string_field(o, "token_endpoint");
  userinfo_endpoint_ = string_field(o, "userinfo_endpoint");
  end_session_endpoint_ = string_field(o, "end_session_endpoint");
  auto auth = string_field(o, "authorization_endpoint");
  if (jwks_uri_.empty() || auth.empty() || token_endpoint_.empty()) {
    log::warn("OIDC discovery document lacks endpoints", {{"url", settings_.oidc_discovery_url}});
    co_return false;
  }
  if (discovered_issuer_ != settings_.oidc_issuer)
    log::warn("OIDC issuer in discovery differs from the configured one; tokens must carry the configured issuer",
              {{"configured", settings_.oidc_issuer}, {"discovered", discovered_issuer_}});
  if (!co_await refresh_keys()) co_return false;
  authorization_endpoint_ = auth;  // ready() from here on
  log::info("OIDC provider ready", {{"issuer", settings_.oidc_issuer}, {"keys", keys_.size()}});
  co_return true;
}

net::awaitable<bool> Oidc::refresh_keys() {
  if (key_fetch_) {  // one fetch at a time; the others wait for its result
    auto ev = key_fetch_;
    co_await ev->wait();
    co_return true;
  }
  auto alive = alive_;
  auto ev = std::make_shared<Event>(ex_);
  key_fetch_ = ev;
  last_key_fetch_ = Clock::now();
  auto f = co_await fetch(jwks_uri_);
  if (!*alive) co_return false;
  key_fetch_.reset();
  ev->set();
  if (!f.error.empty() || f.status != 200) {
    log::warn("JWKS fetch failed; keeping the last good keys", {{"url", jwks_uri_}, {"status", f.status},
                                                                {"error", f.error}, {"keys", keys_.size()}});
    co_return false;
  }
  std::string reason;
  auto keys = parse_jwks(f.body, &reason);
  if (keys.empty()) {
    log::warn("JWKS has no usable key; keeping the last good keys", {{"url", jwks_uri_}, {"reason", reason}});
    co_return false;
  }
  for (auto& old : keys_) {
    bool kept = std::any_of(keys.begin(), keys.end(), [&](const Jwk& k) { return k.kid == old.kid; });
    if (!kept) {
      ++key_generation_;
      log::info("a signing key left the provider's key set; its tokens are no longer accepted", {{"kid", old.kid}});
      break;
    }
  }
  keys_ = std::move(keys);
  log::debug("JWKS refreshed", {{"keys", keys_.size()}});
  co_return true;
}

const Jwk* Oidc::find_key(std::string_view kid, std::string_view alg) const {
  const Jwk* only = nullptr;
  std::size_t candidates = 0;
  for (auto& k : keys_) {
    if (!kid.empty()) {
      if (k.kid == kid) return &k;
      continue;
    }
    if (k.alg == alg) {  // no kid in the token: acceptable only when one key fits
      only = &k;
      ++candidates;
    }
  }
  return candidates == 1 ? only : nullptr;
}

net::awaitable<std::optional<json::object>> Oidc::verify(std::string_view token, std::string_view audience,
                                                         std::string* reason) {
  auto jwt = parse_jwt(token, reason);
  if (!jwt) co_return std::nullopt;
  if (jwt->alg != "RS256" && jwt->alg != "ES256") {
    *reason = "algorithm " + (jwt->alg.empty() ? std::string("(none)") : jwt->alg) + " not accepted";
    co_return std::nullopt;
  }
  if (!co_await ensure_ready()) {
    *reason = "identity provider metadata not loaded (discovery failing)";
    co_return std::nullopt;
  }
  const Jwk* key = find_key(jwt->kid, jwt->alg);
  if (!key && Clock::now() - last_key_fetch_ >= std::chrono::seconds(settings_.oidc_jwks_min_refresh_s)) {
    // An unknown kid: the provider may have rotated its keys.
    auto alive = alive_;
    co_await refresh_keys();
    if (!*alive) co_return std::nullopt;
    key = find_key(jwt->kid, jwt->alg);
  }
  if (!key) {
    *reason = "no key with kid \"" + jwt->kid + "\" in the provider's key set";
    co_return std::nullopt;
  }
  if (!verify_with_jwk(*jwt, *key, reason)) co_return std::nullopt;
  ClaimRules rules;
  rules.issuers = {settings_.oidc_issuer};  // exact, as OpenID Connect Core §3.1.3.7 requires
  rules.audiences = {std::string(audience.empty() ? std::string_view(settings_.oidc_audience) : audience)};
  rules.allowed_tenants = settings_.oidc_allowed_tenants;
  rules.leeway_s = settings_.oidc_leeway_s;
  rules.now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (!check_claims(jwt->claims, rules, reason)) co_return std::nullopt;
  co_return std::move(jwt->claims);
}

net::awaitable<TokenResponse> Oidc::exchange_code(std::string code, std::string verifier, std::string redirect_uri) {
  TokenResponse out;
  std::string body = "grant_type=authorization_code&code=" + form_encode(code) +
                     "&redirect_uri=" + form_encode(redirect_uri) + "&code_verifier=" + form_encode(verifier);
  std::vector<std::pair<std::string, std::string>> headers;
  if (!settings_.oidc_client_secret.empty()) {
    // client_secret_basic: id and secret form-encoded, then base64 (RFC 6749 §2.3.1).
    std::string cred = form_encode(settings_.oidc_client_id) + ":" + form_encode(settings_.oidc_client_secret);
    std::string b64 = base64url_encode(cred);
    for (auto& c : b64) c = c == '-' ? '+' : c == '_' ? '/' : c;
    while (b64.size() % 4) b64.push_back('=');
    headers.emplace_back("Authorization", "Basic " + b64);
  } else {
    body += "&client_id=" + form_encode(settings_.oidc_client_id);
  }
  auto f = co_await fetch(token_endpoint_, "POST", std::move(body), std::move(headers));
  if (!f.error.empty()) {
    out.error = "token endpoint unreachable: " + f.error;
    co_return out;
  }
  boost::system::error_code ec;
  auto doc = json::parse(f.body, ec);
  if (ec || !doc.is_object()) {
    out.error = "token endpoint answered " + std::to_string(f.status) + " without JSON";
    co_return out;
  }
  auto& o = doc.as_object();
  if (f.status != 200) {
    out.error = "token endpoint answered " + std::to_string(f.status) + ": " + string_field(o, "error") + " " +
                string_field(o, "error_description");
    co_return out;
  }
  out.id_token = string_field(o, "id_token");
  out.access_token = string_field(o, "access_token");
  if (out.id_token.empty()) out.error = "token endpoint returned no id_token";
  co_return out;
}

net::awaitable<std::optional<json::object>> Oidc::userinfo(std::string access_token) {
  if (userinfo_endpoint_.empty() || access_token.empty()) co_return std::nullopt;
  // (a local, not a braced list in the co_await: GCC 12 miscompiles initializer lists in coroutine calls)
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("Authorization", "Bearer " + access_token);
  auto f = co_await fetch(userinfo_endpoint_, "GET", {}, std::move(headers));
  if (!f.error.empty() || f.status != 200) co_return std::nullopt;
  boost::system::error_code ec;
  auto doc = json::parse(f.body, ec);
  if (ec || !doc.is_object()) co_return std::nullopt;
  co_return std::move(doc.as_object());
}

}  // namespace gh::auth
