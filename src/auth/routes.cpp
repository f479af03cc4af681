#include "auth/routes.hpp"

#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <chrono>

#include "admin/api.hpp"
#include "auth/apikeys.hpp"
#include "auth/jwt.hpp"
#include "auth/oidc.hpp"
#include "core/log.hpp"
#include "core/util.hpp"

namespace gh::auth {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;

namespace {

// RFC 9728: the metadata of the resource at the root, or of one under it (`…/mcp`).
bool protected_resource_metadata(std::string_view path) {
  constexpr std::string_view kPath = "/.well-known/oauth-protected-resource";
  return path.starts_with(kPath) && (path.size() == kPath.size() || path[kPath.size()] == '/');
}

// Active API keys a user may make for themselves (POST /auth/apikeys): each is in every instance's snapshot.
constexpr std::size_t kMaxOwnKeys = 50;

std::string enc(std::string_view s) { return boost::urls::encode(s, boost::urls::unreserved_chars); }

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string login_cookie_name(std::string_view state) {
  std::string name(kLoginCookie);
  name += '_';
  name += state;
  return name;
}

// Only local paths: never an open redirect.
std::string safe_return(std::string_view rt) {
  // (and short enough for the login cookie that carries it: a few of them stay well under a proxy's 8 KB of
  // header, and browsers drop a cookie over 4 KB)
  if (rt.empty() || rt.front() != '/' || rt.starts_with("//") || rt.starts_with("/\\") || rt.size() > 1024) return "/";
  for (unsigned char c : rt)
    if (c < 0x20 || c == 0x7f) return "/";
  return std::string(rt);
}

std::map<std::string, std::string, std::less<>> query_of(const http::Request& req) {
  std::map<std::string, std::string, std::less<>> out;
  if (auto t = boost::urls::parse_origin_form(req.target()))
    for (auto p : t->params()) out[std::string(p.key)] = std::string(p.value);
  return out;
}

std::string claim(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

// What /auth/me and the API-key sign-in say about the signed-in user.
json::object describe(const Principal& p, std::string_view auth_method) {
  auto& id = *p.identity;
  json::array groups;
  for (auto& g : id.groups) groups.emplace_back(g);
  return json::object{{"email", id.email},          {"name", id.name},
                      {"groups", std::move(groups)}, {"is_admin", p.is_admin()},
                      {"auth_method", auth_method}};
}

}  // namespace

Routes::Routes(const Settings& settings, Authenticator& auth, Oidc* oidc, store::Store& store, Directory& directory,
               BlockingPool& pool, std::string public_url)
    : settings_(settings), auth_(auth), oidc_(oidc), store_(store), directory_(directory), pool_(pool),
      public_url_(std::move(public_url)), secure_(public_url_.starts_with("https://")) {}

bool Routes::owns(std::string_view path) {
  return path.starts_with("/auth/") || protected_resource_metadata(path);
}

std::string Routes::redirect_uri() const {
  return settings_.oidc_redirect_uri.empty() ? public_url_ + "/auth/callback" : settings_.oidc_redirect_uri;
}

std::string Routes::cookie(std::string_view name, std::string_view value, std::string_view path, int max_age) const {
  std::string c = std::string(name) + "=" + std::string(value) + "; Path=" + std::string(path) +
                  "; HttpOnly; SameSite=Lax; Max-Age=" + std::to_string(max_age);
  if (secure_) c += "; Secure";
  return c;
}

namespace {
net::awaitable<void> redirect(http::Exchange& ex, std::string location, std::vector<std::string> cookies = {}) {
  http::Response res(bhttp::status::found, ex.req.version());
  res.set(bhttp::field::location, location);
  res.set(bhttp::field::cache_control, "no-store");
  for (auto& c : cookies) res.insert(bhttp::field::set_cookie, c);
  res.keep_alive(ex.req.keep_alive());
  res.prepare_payload();
  co_await ex.send(std::move(res));
}

// A page a person reads: `title` and then `body_html` (markup, escaped by the caller). It cannot be framed.
net::awaitable<void> page_html(http::Exchange& ex, bhttp::status status, std::string_view title, std::string body_html,
                               std::vector<std::string> cookies = {}) {
  http::Response res(status, ex.req.version());
  res.set(bhttp::field::content_type, "text/html; charset=utf-8");
  res.set(bhttp::field::cache_control, "no-store");
  res.set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  res.set("X-Frame-Options", "DENY");
  for (auto& c : cookies) res.insert(bhttp::field::set_cookie, c);
  res.body() = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
               "</title><meta name=\"viewport\" content=\"width=device-width\"></head><body style=\"font-family:sans-serif;"
               "max-width:40em;margin:4em auto\"><h1>" + html_escape(title) + "</h1>" + body_html + "</body></html>";
  res.keep_alive(ex.req.keep_alive());
  res.prepare_payload();
  co_await ex.send(std::move(res));
}

// What went wrong and what to do.
net::awaitable<void> page(http::Exchange& ex, bhttp::status status, std::string_view title, std::string_view text,
                          std::vector<std::string> cookies = {}) {
  co_await page_html(ex, status, title, "<p>" + html_escape(text) + "</p><p><a href=\"/auth/login\">Sign in again</a></p>",
                     std::move(cookies));
}

net::awaitable<void> reply(http::Exchange& ex, const admin::Reply& r) {
  co_await ex.send_json(static_cast<bhttp::status>(r.status), r.body);
}
}  // namespace

net::awaitable<void> Routes::handle(http::Exchange& ex, std::string_view path, const AuthResult& auth) {
  auto method = ex.req.method();
  if (protected_resource_metadata(path)) {
    json::array servers;
    if (oidc_) {
      // A multi-tenant Entra issuer is a pattern: name the one allowed tenant's issuer, or else the authority
      // discovery is read from (common/organizations), which a client can discover.
      std::string issuer = settings_.oidc_issuer;
      if (auto at = issuer.find("{tenantid}"); at != std::string::npos) {
        if (settings_.oidc_allowed_tenants.size() == 1) {
          issuer.replace(at, 10, settings_.oidc_allowed_tenants.front());
        } else {
          issuer = settings_.oidc_discovery_url;
          if (auto w = issuer.find("/.well-known/"); w != std::string::npos) issuer.resize(w);
        }
      }
      servers.emplace_back(issuer);
    }
    json::object meta;
    meta["resource"] = public_url_ + "/mcp";
    meta["authorization_servers"] = std::move(servers);
    json::array methods;
    methods.emplace_back("header");
    meta["bearer_methods_supported"] = std::move(methods);
    meta["resource_name"] = "Gatehouse MCP gateway";
    auto scopes = split(settings_.oidc_scopes, ' ');
    json::array sc;
    for (auto s : scopes)
      if (!s.empty()) sc.emplace_back(s);
    if (oidc_) meta["scopes_supported"] = std::move(sc);
    co_await ex.send_json(bhttp::status::ok, gh::to_json(meta));
    co_return;
  }
  if (path == "/auth/login" && method == bhttp::verb::get) co_return co_await login(ex);
  if (path == "/auth/callback" && method == bhttp::verb::get) co_return co_await callback(ex);
  if (path == "/auth/logout" && (method == bhttp::verb::get || method == bhttp::verb::post))
    co_return co_await logout(ex);
  if (path == "/auth/session" && method == bhttp::verb::post) co_return co_await key_sign_in(ex);
  if (path == "/auth/me" && method == bhttp::verb::get) {
    if (auth.status || !auth.principal.authenticated()) {
      // What a sign-in page needs to offer.
      json::object sign_in{{"oidc", oidc_ != nullptr}, {"provider_name", settings_.oidc_provider_name}};
      if (oidc_) sign_in["login_url"] = "/auth/login?return_to=/mcp-admin";
      json::object body{{"error", json::object{{"code", auth.status == 403 ? "forbidden" : "unauthorized"},
                                               {"message", auth.status ? auth.message : "Not signed in"}}},
                        {"sign_in", std::move(sign_in)}};
      auto status = static_cast<bhttp::status>(auth.status ? auth.status : 401);
      co_await ex.send_json(status, gh::to_json(body));
      co_return;
    }
    auto me = describe(auth.principal, to_string(auth.principal.method));
    if (auto c = auth_.cookie_credential(ex.req); !c.empty()) me["csrf_token"] = auth_.csrf_token(c);
    co_await ex.send_json(bhttp::status::ok, gh::to_json(me));
    co_return;
  }
  if (path == "/auth/apikeys" || path.starts_with("/auth/apikeys/")) co_return co_await own_keys(ex, path.substr(13), auth);
  co_await reply(ex, admin::error_reply(404, "not_found", "No such endpoint"));
}

// Signing out is a change: a link or a form on another site must not do it. GET shows a button that posts the
// page's CSRF token (no script needed; the page cannot be framed); POST needs that token, as a form field or as
// the X-CSRF-Token header the portal sends. Without a cookie there is nothing to end: straight to "/".
net::awaitable<void> Routes::logout(http::Exchange& ex) {
  auto credential = auth_.cookie_credential(ex.req);
  std::vector<std::string> cookies;
  cookies.push_back(cookie(kSessionCookie, "", "/", 0));
  if (credential.empty()) co_return co_await redirect(ex, "/", std::move(cookies));
  auto expected = auth_.csrf_token(credential);
  if (ex.req.method() == bhttp::verb::get)
    co_return co_await page_html(ex, bhttp::status::ok, "Sign out of Gatehouse?",
                                 "<form method=\"post\" action=\"/auth/logout\"><input type=\"hidden\" name=\"csrf_token\" value=\"" +
                                     html_escape(expected) + "\"><button type=\"submit\">Sign out</button></form>");
  std::string sent(ex.req["X-CSRF-Token"]);
  if (sent.empty() && header_has_token(ex.req[bhttp::field::content_type], "application/x-www-form-urlencoded"))
    if (auto form = boost::urls::parse_query(ex.req.body()))
      if (auto it = form->find("csrf_token"); it != form->end() && (*it).has_value) sent = (*it).value.decode();
  if (sent.empty() || !constant_time_equal(sent, expected)) {
    log::info("sign-out refused: CSRF token missing or wrong", {{"request_id", ex.request_id}});
    co_return co_await page(ex, bhttp::status::forbidden, "Not signed out",
                            "This sign-out did not come from a Gatehouse page. Open /auth/logout and press the button.");
  }
  co_await redirect(ex, "/", std::move(cookies));
}

net::awaitable<void> Routes::key_sign_in(http::Exchange& ex) {
  // JSON only: a page on another site (or another local port) cannot send that without a CORS preflight, so
  // it cannot sign a visitor's browser in as someone else.
  if (!media_type_is(ex.req[bhttp::field::content_type], "application/json")) {
    auto r = admin::error_reply(415, "unsupported_media_type", "Send {\"api_key\": \"gh_…\"} as application/json");
    co_await reply(ex, r);
    co_return;
  }
  boost::system::error_code ec;
  auto body = json::parse(ex.req.body(), ec);
  std::string key;
  if (!ec && body.is_object())
    if (auto* k = body.as_object().if_contains("api_key"); k && k->is_string()) key = std::string(trim(k->as_string()));
  if (key.empty()) {
    auto r = admin::error_reply(400, "invalid_request", "Send {\"api_key\": \"gh_…\"}");
    co_await reply(ex, r);
    co_return;
  }
  auto who = auth_.principal_for_api_key(key);
  if (who.status) {
    log::info("key sign-in refused", {{"request_id", ex.request_id}, {"reason", who.reason}});
    auto r = admin::error_reply(who.status, who.status == 403 ? "forbidden" : "unauthorized",
                                who.status == 403 ? who.message : "This API key is not valid (revoked, expired or mistyped)");
    co_await reply(ex, r);
    co_return;
  }
  auto session = auth_.issue_session(who.principal, key);
  auto me = describe(who.principal, "session");
  me["csrf_token"] = auth_.csrf_token(session);
  log::info("signed in with an API key", {{"request_id", ex.request_id}, {"email", who.principal.email()}});
  std::string cookie_line = "Set-Cookie: " + cookie(kSessionCookie, session, "/", settings_.session_lifetime_s) + "\r\n";
  co_await ex.send_json(bhttp::status::ok, gh::to_json(me), cookie_line);
}

net::awaitable<void> Routes::login(http::Exchange& ex) {
  if (!oidc_) {
    co_await reply(ex, admin::error_reply(404, "oidc_not_configured",
                                          "No identity provider is configured here; use an API key"));
    co_return;
  }
  if (!co_await oidc_->ensure_ready()) {
    co_await page(ex, bhttp::status::service_unavailable, "Sign-in is unavailable",
                  "Gatehouse cannot reach " + settings_.oidc_provider_name + " right now. Try again in a minute.");
    co_return;
  }
  auto q = query_of(ex.req);
  auto state = random_token(16), nonce = random_token(16), verifier = random_token(32);
  auto challenge = base64url_encode(sha256_raw(verifier));
  json::object claims;
  claims["typ"] = "login";
  claims["st"] = state;
  claims["nn"] = nonce;
  claims["cv"] = verifier;
  claims["rt"] = safe_return(q["return_to"]);
  claims["exp"] = unix_now() + 600;
  auto login_state = auth_.sign(std::move(claims));
  std::string url = oidc_->authorization_endpoint();
  url += url.find('?') == std::string::npos ? '?' : '&';
  url += "response_type=code&client_id=" + enc(settings_.oidc_client_id) + "&redirect_uri=" + enc(redirect_uri()) +
         "&scope=" + enc(settings_.oidc_scopes) + "&state=" + state + "&nonce=" + nonce +
         "&code_challenge=" + challenge + "&code_challenge_method=S256";
  if (auto h = q.find("login_hint"); h != q.end() && !h->second.empty()) url += "&login_hint=" + enc(h->second);
  std::vector<std::string> cookies;
  // One cookie per sign-in, named by its state: sign-ins started in two tabs both finish, and a callback with
  // another state (a link from anywhere) cannot end the one in progress. Sign-ins abandoned (each a cookie for
  // 10 minutes) would add up until the requests are too large to read: from the third one under way, the
  // others are cleared.
  std::vector<std::string> pending;
  for (auto part : split(ex.req[bhttp::field::cookie], ';')) {
    auto name = trim(part.substr(0, part.find('=')));
    if (name.starts_with(std::string(kLoginCookie) + "_")) pending.emplace_back(name);
  }
  if (pending.size() >= 2)
    for (auto& name : pending) cookies.push_back(cookie(name, "", "/auth", 0));
  cookies.push_back(cookie(login_cookie_name(state), login_state, "/auth", 600));
  co_await redirect(ex, url, std::move(cookies));
}

net::awaitable<void> Routes::callback(http::Exchange& ex) {
  auto q = query_of(ex.req);
  auto state = q["state"];
  bool state_ok = !state.empty() && state.size() <= 64 &&
                  std::ranges::all_of(state, [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; });
  auto name = state_ok ? login_cookie_name(state) : std::string();
  std::string reason;
  auto raw = state_ok ? cookie_value(ex.req[bhttp::field::cookie], name) : std::string_view();
  auto st = raw.empty() ? std::nullopt : auth_.verify_own(raw, "login", &reason);
  bool ours = st && constant_time_equal(state, claim(*st, "st"));
  auto fail = [&](bhttp::status status, std::string log_reason, std::string text) -> net::awaitable<void> {
    log::warn("sign-in refused", {{"request_id", ex.request_id}, {"reason", log_reason}});
    std::vector<std::string> cookies;
    if (ours) cookies.push_back(cookie(name, "", "/auth", 0));  // (only this sign-in's: others may be under way)
    co_await page(ex, status, "Sign-in failed", text, std::move(cookies));
  };
  if (!oidc_) co_return co_await fail(bhttp::status::not_found, "no OIDC provider configured", "Sign-in is not configured here.");
  // The state first: an answer to no sign-in started in this browser says nothing, not even its error.
  if (!ours) {
    std::string why = !state_ok ? "no or malformed state" : raw.empty() ? "no login cookie for this state"
                                  : st ? "state mismatch" : "login cookie: " + reason;
    co_return co_await fail(bhttp::status::bad_request, std::move(why),
                            "This sign-in expired or was started in another browser. Start again.");
  }
  if (auto e = q.find("error"); e != q.end())
    co_return co_await fail(bhttp::status::forbidden, "provider error: " + e->second + " " + q["error_description"],
                            settings_.oidc_provider_name + " did not sign you in (" + e->second + ").");
  if (q["code"].empty()) co_return co_await fail(bhttp::status::bad_request, "no code", "The sign-in answer was incomplete. Start again.");

  auto tokens = co_await oidc_->exchange_code(q["code"], claim(*st, "cv"), redirect_uri());
  if (!tokens.error.empty())
    co_return co_await fail(bhttp::status::bad_gateway, tokens.error,
                            "Gatehouse could not complete the sign-in with " + settings_.oidc_provider_name + ". Try again.");
  auto claims = co_await oidc_->verify(tokens.id_token, settings_.oidc_client_id, &reason);
  if (!claims) co_return co_await fail(bhttp::status::bad_request, "ID token refused: " + reason, "The sign-in could not be verified. Start again.");
  if (claim(*claims, "nonce") != claim(*st, "nn"))
    co_return co_await fail(bhttp::status::bad_request, "nonce mismatch", "The sign-in could not be verified. Start again.");
  // Providers that keep the ID token lean put email, name and groups in userinfo.
  if (claim(*claims, "email").empty() || (settings_.oidc_group_sync && !claims->contains(settings_.oidc_groups_claim)))
    if (auto info = co_await oidc_->userinfo(tokens.access_token); info && claim(*info, "sub") == claim(*claims, "sub"))
      for (auto& [k, v] : *info)
        if (!claims->contains(k)) (*claims)[k] = v;

  auto who = co_await auth_.sign_in(*claims);
  if (who.status)
    co_return co_await fail(static_cast<bhttp::status>(who.status), who.reason, who.message);
  log::info("signed in", {{"request_id", ex.request_id}, {"email", who.principal.email()}});
  std::vector<std::string> cookies;
  cookies.push_back(cookie(name, "", "/auth", 0));
  cookies.push_back(cookie(kSessionCookie, auth_.issue_session(who.principal), "/", settings_.session_lifetime_s));
  co_await redirect(ex, safe_return(claim(*st, "rt")), std::move(cookies));
}

net::awaitable<void> Routes::own_keys(http::Exchange& ex, std::string_view rest, const AuthResult& auth) {
  if (auth.status || !auth.principal.authenticated()) {
    auto r = admin::error_reply(auth.status ? auth.status : 401, "unauthorized", "Sign in first");
    co_await reply(ex, r);
    co_return;
  }
  auto email = auth.principal.email();
  auto method = ex.req.method();
  if (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  admin::Reply r;
  bool changed = false;
  if (rest.empty() && method == bhttp::verb::get) {
    auto job = [&] {
      json::array items;
      for (auto& k : store_.list_api_keys(email)) items.push_back(api_key_json(k));
      return admin::Reply{200, gh::to_json(json::object{{"items", std::move(items)}})};
    };
    r = co_await pool_.run(std::move(job));
  } else if (rest.empty() && method == bhttp::verb::post &&
             (auth.principal.method == AuthMethod::apikey || auth.principal.from_api_key)) {
    // A key makes no keys: one without expiry made with a key about to expire (or be revoked) would outlive it.
    r = admin::error_reply(403, "interactive_sign_in_required",
                           "API keys are made after signing in (single sign-on or Open WebUI), not with an API key");
  } else if (rest.empty() && method == bhttp::verb::post) {
    boost::system::error_code ec;
    auto body = ex.req.body().empty() ? json::value(json::object{}) : json::parse(ex.req.body(), ec);
    if (ec || !body.is_object()) {
      r = admin::error_reply(400, "invalid_request", "The body must be a JSON object");
    } else {
      auto& o = body.as_object();
      std::string name;
      if (auto it = o.find("name"); it != o.end() && !it->value().is_null()) {
        if (!it->value().is_string() || !admin::clean_text(it->value().as_string(), 200))
          r = admin::error_reply(400, "invalid_request", "name must be text of at most 200 characters");
        else name = std::string(it->value().as_string());
      }
      int64_t expires = 0;
      if (auto it = o.find("expires_at"); it != o.end() && !it->value().is_null()) {
        if (!it->value().is_int64() || it->value().as_int64() <= unix_now())
          r = admin::error_reply(400, "invalid_request", "expires_at must be a future Unix time in seconds");
        else expires = it->value().as_int64();
      }
      if (!r.status || r.status == 200) {
        auto job = [&] {
          admin::Reply out;
          store_.atomically([&] {  // the count, the key and its audit entry together
            auto now = unix_now();
            std::size_t active = 0;
            for (auto& k : store_.list_api_keys(email)) active += !k.revoked_at && (!k.expires_at || k.expires_at > now);
            if (active >= kMaxOwnKeys) {
              out = admin::error_reply(409, "too_many_keys", "You have " + std::to_string(active) +
                                                                 " active API keys, the most there may be; revoke one first");
              return false;
            }
            auto k = make_api_key(email, name, expires, now);
            store_.create_api_key(k.record);
            store_.append_audit({0, now, email, "apikey.create", email, gh::to_json(json::object{{"after", api_key_json(k.record)}})});
            auto body = api_key_json(k.record);
            body["key"] = k.secret;
            out = admin::Reply{201, gh::to_json(body)};
            return true;
          });
          return out;
        };
        r = co_await pool_.run(std::move(job));
        changed = r.status == 201;
      }
    }
  } else if (!rest.empty() && method == bhttp::verb::delete_) {
    std::string id(rest);
    auto job = [&] {
      admin::Reply out;
      store_.atomically([&] {  // the revocation and its audit entry together
        auto k = store_.get_api_key(id);
        if (!k || k->user_email != email) {
          out = admin::error_reply(404, "not_found", "No such API key of yours");
          return false;
        }
        if (k->revoked_at) {
          out = admin::error_reply(409, "conflict", "This key is already revoked");
          return false;
        }
        auto now = unix_now();
        store_.revoke_api_key(id, now);
        store_.append_audit({0, now, email, "apikey.revoke", email, gh::to_json(json::object{{"before", api_key_json(*k)}})});
        out = admin::Reply{204, ""};
        return true;
      });
      return out;
    };
    r = co_await pool_.run(std::move(job));
    changed = r.status == 204;
  } else {
    r = admin::error_reply(405, "method_not_allowed", "Method not allowed here");
  }
  if (changed) co_await directory_.changed();
  if (r.status == 204) {
    http::Response res(bhttp::status::no_content, ex.req.version());
    res.keep_alive(ex.req.keep_alive());
    co_await ex.send(std::move(res));
    co_return;
  }
  co_await reply(ex, r);
}

}  // namespace gh::auth
