#include "auth/authenticator.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <mutex>

#include "auth/jwt.hpp"
#include "auth/oidc.hpp"
#include "core/log.hpp"
#include "core/util.hpp"
#include "store/openwebui.hpp"

namespace gh::auth {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;

namespace {
// Whether a user's `subject` binds the account to one identity-provider account (OIDC, Entra), which then
// alone signs in to it. An Open WebUI user id ("openwebui:…") does not: Open WebUI is matched by email, and
// the same person signing in through the provider binds the account to the provider's account.
bool idp_bound(std::string_view subject) { return !subject.empty() && !subject.starts_with("openwebui:"); }
// Whether an account whose stored subject is `stored` belongs to an IdP account other than `subject`.
bool bound_to_other(std::string_view stored, std::string_view subject) { return idp_bound(stored) && stored != subject; }
std::string bound_elsewhere(std::string_view email, std::string_view subject) {
  return "email " + std::string(email) + " belongs to another identity (" + std::string(subject) + ")";
}

std::string claim_string(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

std::vector<std::string> claim_strings(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end()) return out;
  if (it->value().is_string()) {
    for (auto part : split(it->value().as_string(), ','))
      if (auto t = trim(part); !t.empty()) out.emplace_back(t);
  } else if (it->value().is_array()) {
    for (auto& v : it->value().as_array())
      if (v.is_string() && !v.as_string().empty()) out.emplace_back(v.as_string());
  }
  return out;
}

AuthResult fail(int status, std::string reason, std::string message) {
  AuthResult r;
  r.status = status;
  r.reason = std::move(reason);
  r.message = std::move(message);
  return r;
}

AuthResult unauthorized(std::string reason) {
  return fail(401, std::move(reason), "Unauthorized: the credentials are missing, invalid or expired");
}

// The store could not create or bind the user now: not remembered (put() skips 503s), tried again next time.
AuthResult directory_unavailable() {
  return fail(503, "user directory unavailable", "Service unavailable: cannot resolve the user now");
}

struct Cidr {
  net::ip::address addr;
  unsigned bits = 0;
  bool contains(const net::ip::address& a) const {
    if (a.is_v4() != addr.is_v4()) {
      if (a.is_v6() && a.to_v6().is_v4_mapped() && addr.is_v4())
        return contains(net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()));
      return false;
    }
    auto x = a.is_v4() ? std::vector<unsigned char>(std::begin(a.to_v4().to_bytes()), std::end(a.to_v4().to_bytes()))
                       : std::vector<unsigned char>(std::begin(a.to_v6().to_bytes()), std::end(a.to_v6().to_bytes()));
    auto y = addr.is_v4() ? std::vector<unsigned char>(std::begin(addr.to_v4().to_bytes()), std::end(addr.to_v4().to_bytes()))
                          : std::vector<unsigned char>(std::begin(addr.to_v6().to_bytes()), std::end(addr.to_v6().to_bytes()));
    unsigned full = bits / 8, rest = bits % 8;
    for (unsigned i = 0; i < full && i < x.size(); ++i)
      if (x[i] != y[i]) return false;
    if (rest && full < x.size()) {
      unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
      if ((x[full] & mask) != (y[full] & mask)) return false;
    }
    return true;
  }
};

}  // namespace

std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto semi = header.find(';');
    auto part = trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    auto eq = part.find('=');
    if (eq == std::string_view::npos) continue;
    if (trim(part.substr(0, eq)) == name) {
      auto v = trim(part.substr(eq + 1));
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return {};
}

namespace {
// Whether `name` starts with `prefix` (lower case, '-'), in any case and with '_' for '-': WSGI and CGI servers
// behind the proxy read X_User_Email as X-User-Email.
bool identity_prefix(std::string_view name, std::string_view prefix) {
  if (name.size() <= prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = name[i];
    if (c == '_') c = '-';
    else if (c >= 'A' && c <= 'Z') c = char(c + 32);
    if (c != prefix[i]) return false;
  }
  return true;
}
}  // namespace

bool strip_identity_headers(http::Request& req) {
  return req.erase_if([](std::string_view name) {
    if (name.size() <= 7 || (name[0] | 0x20) != 'x' || (name[1] != '-' && name[1] != '_')) return false;  // most, at once
    return identity_prefix(name, "x-user-") || identity_prefix(name, "x-gateway-");
  }) != 0;
}

struct Authenticator::Impl {
  const Settings& settings;
  store::Store& store;
  Directory& directory;
  BlockingPool& pool;
  net::any_io_executor io;
  Oidc* oidc;
  std::unique_ptr<store::OpenWebUiDirectory> openwebui;
  std::string secret;
  std::vector<Cidr> proxies;

  // Verified (or refused) tokens, so that a repeat caller costs a hash lookup.
  struct Cached {
    AuthMethod method = AuthMethod::none;
    std::string key;         // email, or the Open WebUI user id
    bool role_admin = false;
    int64_t expires = 0;     // when the entry stops being valid (token exp, or a short time for refusals)
    int status = 0;          // non-zero: a refusal
    std::string reason;
    uint64_t key_generation = 0;  // OIDC: the provider's key generation when verified
    std::string api_key_id;       // a session made from an API key: that key's id (it must still be valid)
    bool own_session = false;     // verified as our session cookie: accepted only as one
    int64_t account_created = 0;  // a session: the created_at of the account it was issued to (0: not said)
  };
  // Accepted tokens, by the token itself (looked up on every request). Only credentials that verified get in,
  // so the map grows with the users, not with what anyone sends.
  StringMap<Cached> cache;
  // Refusals (a signature or a lookup not repeated for 30 s), by refusal_key: a digest, so that a stream of
  // made-up 16 KB tokens costs at most kRefusedMax small entries.
  StringMap<Cached> refused;
  static constexpr std::size_t kCacheMax = 200000, kRefusedMax = 20000;

  // How a token came (our session cookie or not) and its digest: a refusal on one path says nothing of another.
  static std::string refusal_key(std::string_view token, bool own_session) {
    return (own_session ? "s" : "o") + sha256_raw(token);
  }

  // Open WebUI users by id, with the time they were read.
  struct WebUiUser {
    store::OpenWebUiUser user;
    int64_t fetched = 0;
    uint64_t snapshot_version = 0;
    std::shared_ptr<const Identity> identity;  // merged with local groups of that snapshot
  };
  StringMap<WebUiUser> webui_users;

  std::mutex usage_mu;
  std::map<std::string, int64_t> key_usage;  // API key id → last used

  Impl(const Settings& s, store::Store& st, Directory& d, BlockingPool& p, net::any_io_executor ex, Oidc* o,
       std::unique_ptr<store::OpenWebUiDirectory> w)
      : settings(s), store(st), directory(d), pool(p), io(std::move(ex)), oidc(o), openwebui(std::move(w)) {
    for (auto& p : settings.trusted_proxies) {
      Cidr c;
      auto slash = p.find('/');
      c.addr = net::ip::make_address(p.substr(0, slash));
      unsigned max = c.addr.is_v4() ? 32 : 128;
      c.bits = slash == std::string::npos ? max : std::min<unsigned>(max, std::stoul(p.substr(slash + 1)));
      proxies.push_back(c);
    }
  }

  // Full: expired entries go first; if that frees less than a tenth, all (the hot set refills in microseconds).
  static void make_room(StringMap<Cached>& map, std::size_t max) {
    if (map.size() < max) return;
    auto now = unix_now();
    std::erase_if(map, [now](const auto& kv) { return kv.second.expires <= now; });
    if (map.size() >= max - max / 10) map.clear();
  }

  void put(std::string_view token, Cached c) {
    if (c.status == 503) return;  // unavailable is not a verdict on the token: asked again next time
    if (c.status) {
      make_room(refused, kRefusedMax);
      refused.insert_or_assign(refusal_key(token, c.own_session), std::move(c));
    } else {
      make_room(cache, kCacheMax);
      cache.insert_or_assign(std::string(token), std::move(c));
    }
  }

  // Builds the result for a cached or freshly verified token.
  AuthResult resolve(const Cached& c) {
    if (c.status) return fail(c.status, c.reason, c.status == 403 ? "Forbidden" : "Unauthorized: the credentials are missing, invalid or expired");
    AuthResult r;
    if (!c.api_key_id.empty()) {
      auto* key = directory.current()->api_key_by_id(c.api_key_id);
      auto now = unix_now();
      if (!key || key->revoked_at || (key->expires_at && now >= key->expires_at))
        return unauthorized("session made from API key " + c.api_key_id + ", which is revoked or expired");
      r.principal.key_expires_at = key->expires_at;
    }
    r.principal.method = c.method;
    r.principal.role_admin = c.role_admin;
    r.principal.from_api_key = !c.api_key_id.empty();
    if (c.method == AuthMethod::openwebui) {
      auto it = webui_users.find(c.key);
      if (it == webui_users.end()) return unauthorized("Open WebUI user not loaded");
      r.principal.identity = webui_identity(it->second);
    } else {
      r.principal.identity = directory.user(c.key);
    }
    if (!r.principal.identity) return unauthorized("user " + c.key + " no longer exists");
    if (c.account_created && r.principal.identity->created_at != c.account_created)  // deleted, then made again
      return unauthorized("session of an earlier account " + c.key + ", since deleted");
    if (r.principal.identity->disabled) return fail(403, "user " + r.principal.identity->email + " is disabled",
                                                    "Forbidden: this account is disabled");
    return r;
  }

  std::shared_ptr<const Identity> webui_identity(WebUiUser& w) {
    auto snap = directory.current();
    if (w.identity && w.snapshot_version == snap->version()) return w.identity;
    auto email = normalize_email(w.user.email);
    auto local = directory.user(email);
    auto id = std::make_shared<Identity>();
    id->email = email;
    id->name = w.user.name;
    id->groups = w.user.groups;
    if (local) id->groups.insert(id->groups.end(), local->groups.begin(), local->groups.end());
    std::sort(id->groups.begin(), id->groups.end());
    id->groups.erase(std::unique(id->groups.begin(), id->groups.end()), id->groups.end());
    id->is_admin = w.user.role == "admin" || (local && local->is_admin) || id->in_group(kAdminGroup);
    id->disabled = local && local->disabled;
    w.identity = id;
    w.snapshot_version = snap->version();
    return id;
  }

  // A user named by a verified credential: looked up, or created on first use (no groups, not admin). As in
  // browser sign-in (sign_in below), a user bound to another IdP account is refused (null, with `conflict`
  // said), and one not bound to an IdP account yet is bound to this `subject`: an email claim alone never
  // takes over an account that another identity signs in to.
  // A store that fails (down, locked past its timeout) is said in `unavailable` (logged; null returned).
  net::awaitable<std::shared_ptr<const Identity>> find_or_create(std::string email, std::string name,
                                                                std::string subject, std::string source,
                                                                std::string* conflict = nullptr,
                                                                bool* unavailable = nullptr) {
    try {
      co_return co_await find_or_create_now(std::move(email), std::move(name), std::move(subject), std::move(source), conflict);
    } catch (const std::exception& e) {
      log::error("user directory unavailable", {{"error", e.what()}});
      if (unavailable) *unavailable = true;
    }
    co_return nullptr;
  }

  net::awaitable<std::shared_ptr<const Identity>> find_or_create_now(std::string email, std::string name,
                                                                    std::string subject, std::string source,
                                                                    std::string* conflict) {
    if (!subject.empty())
      if (auto e = directory.current()->email_for_subject(subject)) email = *e;
    if (auto id = directory.user(email)) {
      if (!idp_bound(subject) || id->subject == subject) co_return id;
      if (bound_to_other(id->subject, subject)) {
        if (conflict) *conflict = bound_elsewhere(email, id->subject);
        co_return nullptr;
      }
      auto bind = [&, email, subject]() {
        auto u = store.get_user(email);
        if (!u) return false;
        if (bound_to_other(u->subject, subject)) {
          if (conflict) *conflict = bound_elsewhere(email, u->subject);
          return false;
        }
        if (u->subject != subject) {
          store.update_user_sign_in(email, subject, u->name);
          store.notify_changed();
        }
        return true;
      };
      if (!co_await pool.run(std::move(bind))) co_return nullptr;
      co_return id;
    }
    auto job = [&, email, name, subject, source]() -> std::shared_ptr<const Identity> {
      store::User u;
      u.email = email;
      u.name = name;
      u.subject = subject;
      u.source = source;
      u.created_at = u.last_seen_at = unix_now();
      if (!store.create_user(u)) {
        // Another instance created it meanwhile: use what is stored.
        auto stored = store.get_user(email);
        if (!stored) return nullptr;
        u = *stored;
      } else {
        log::info("user created on first sign-in", {{"email", email}, {"source", source}});
      }
      if (idp_bound(subject) && bound_to_other(u.subject, subject)) {
        if (conflict) *conflict = bound_elsewhere(email, u.subject);
        return nullptr;
      }
      auto id = std::make_shared<Identity>();
      id->email = u.email;
      id->name = u.name;
      id->subject = u.subject;
      id->created_at = u.created_at;
      id->groups = store.groups_of(u.email);
      id->is_admin = u.is_admin || id->in_group(kAdminGroup);
      id->disabled = u.disabled;
      store.notify_changed();
      return id;
    };
    auto created = co_await pool.run(std::move(job));
    if (created) directory.remember(created);
    co_return created;
  }

  bool domain_allowed(std::string_view email) const {
    if (settings.oidc_allowed_domains.empty()) return true;
    auto at = email.rfind('@');
    if (at == std::string_view::npos) return false;
    auto domain = email.substr(at + 1);
    for (auto& d : settings.oidc_allowed_domains)
      if (iequals(d, domain)) return true;
    return false;
  }

  bool admin_by_role(const json::object& claims) const {
    if (settings.oidc_admin_roles.empty()) return false;
    for (auto& r : claim_strings(claims, "roles"))
      for (auto& a : settings.oidc_admin_roles)
        if (r == a) return true;
    return false;
  }

  static std::string subject_of(const json::object& claims) {
    auto tid = claim_string(claims, "tid"), oid = claim_string(claims, "oid");
    if (!tid.empty() && !oid.empty()) return "entra:" + tid + "|" + oid;
    return "oidc:" + claim_string(claims, "iss") + "|" + claim_string(claims, "sub");
  }

  static std::string email_of(const json::object& claims) {
    // An address the provider says it has not verified names nobody (Entra lets a tenant set any `email`).
    auto* verified = claims.if_contains("email_verified");
    bool unverified = verified && ((verified->is_bool() && !verified->as_bool()) ||
                                   (verified->is_string() && verified->as_string() == "false"));
    // preferred_username and upn name a user only in Microsoft Entra's tokens (those with `tid`), where they
    // are the UPN, in a domain the tenant has verified; elsewhere preferred_username is whatever the user
    // chose (OIDC Core 5.1: not unique, not to be relied on), and would name any account not bound yet.
    bool entra = !claim_string(claims, "tid").empty();
    for (auto key : {"email", "preferred_username", "upn"}) {
      if (unverified && std::string_view(key) == "email") continue;
      if (!entra && std::string_view(key) != "email") break;
      auto v = normalize_email(claim_string(claims, key));
      if (plausible_email(v)) return v;
    }
    return {};
  }

  net::awaitable<AuthResult> verify_oidc(std::string_view token) {
    Cached c;
    if (!oidc) {
      c.status = 401;
      c.reason = "an RS256/ES256 token but no OIDC provider is configured";
    } else {
      std::string reason;
      auto claims = co_await oidc->verify(token, "", &reason);
      if (!claims) {
        c.status = 401;
        c.reason = "OIDC token refused: " + reason;
      } else if (auto email = email_of(*claims); email.empty()) {
        c.status = 401;
        c.reason = "OIDC token has no verified email (nor, from Microsoft Entra, preferred_username or upn)";
      } else if (!domain_allowed(email)) {
        c.status = 403;
        c.reason = "email domain not allowed: " + email;
      } else {
        std::string conflict;
        bool unavailable = false;
        auto id = co_await find_or_create(email, claim_string(*claims, "name"), subject_of(*claims), "oidc", &conflict,
                                          &unavailable);
        if (unavailable) {
          co_return directory_unavailable();
        } else if (!id) {
          c.status = conflict.empty() ? 401 : 403;
          c.reason = conflict.empty() ? "could not create user " + email : conflict;
        } else {
          c.method = AuthMethod::oidc;
          c.key = id->email;
          c.key_generation = oidc->key_generation();
          c.role_admin = admin_by_role(*claims);
          c.expires = expires_at(*claims);
        }
      }
    }
    if (!c.expires) c.expires = unix_now() + 30;  // refusals are remembered briefly (no signature work per retry)
    // ...except those the provider can cure (a rotated key not fetched yet, discovery down): no crypto was spent.
    if (!(c.status && (c.reason.find("no key with kid") != std::string::npos ||
                       c.reason.find("metadata not loaded") != std::string::npos)))
      put(token, c);
    co_return resolve(c);
  }

  net::awaitable<AuthResult> verify_webui(std::string_view token) {
    Cached c;
    std::string reason;
    auto jwt = parse_jwt(token, &reason);
    if (!jwt || !verify_hs256(*jwt, settings.webui_secret_key, &reason)) {
      c.status = 401;
      c.reason = "Open WebUI token refused: " + reason;
    } else {
      ClaimRules rules;
      rules.require_exp = false;  // Open WebUI omits exp when JWT_EXPIRES_IN=-1
      rules.now = unix_now();
      rules.leeway_s = settings.oidc_leeway_s;
      auto id = claim_string(jwt->claims, "id");
      if (!check_claims(jwt->claims, rules, &reason)) {
        c.status = 401;
        c.reason = "Open WebUI token refused: " + reason;
      } else if (id.empty()) {
        c.status = 401;
        c.reason = "Open WebUI token has no id claim";
      } else {
        auto r = co_await load_webui_user(id);
        if (r.status) {
          c.status = r.status;
          c.reason = r.reason;
        } else {
          c.method = AuthMethod::openwebui;
          c.key = id;
          c.expires = expires_at(jwt->claims);
        }
      }
    }
    // Tokens without exp are re-verified now and then, so that a role change in Open WebUI is seen.
    if (!c.expires || c.expires > unix_now() + settings.openwebui_cache_s) c.expires = unix_now() + std::max(settings.openwebui_cache_s, 1);
    put(token, c);
    co_return resolve(c);
  }

  net::awaitable<AuthResult> load_webui_user(const std::string& id) {
    if (!openwebui) co_return unauthorized("Open WebUI token but OPENWEBUI_DATABASE_URL is not set");
    std::optional<store::OpenWebUiUser> user;
    try {
      auto job = [this, id] { return openwebui->find(id); };
      user = co_await pool.run(std::move(job));
    } catch (const std::exception& e) {
      log::error("Open WebUI database lookup failed", {{"error", e.what()}});
      co_return fail(503, "Open WebUI database unavailable", "Service unavailable: cannot resolve the user now");
    }
    if (!user) co_return unauthorized("Open WebUI user " + id + " not found");
    if (user->role == "pending")
      co_return fail(403, "Open WebUI user " + user->email + " is pending approval",
                     "Forbidden: your account is pending approval by an administrator");
    auto email = normalize_email(user->email);
    if (!plausible_email(email)) co_return unauthorized("Open WebUI user " + id + " has no usable email");
    // Make sure a local account exists so admins can see the user and add groups.
    if (!directory.user(email)) {
      bool unavailable = false;
      co_await find_or_create(email, user->name, "openwebui:" + id, "openwebui", nullptr, &unavailable);
      if (unavailable) co_return directory_unavailable();
    }
    WebUiUser w;
    w.user = std::move(*user);
    w.fetched = unix_now();
    webui_users.insert_or_assign(id, std::move(w));
    co_return AuthResult{};
  }

  // A connection's last accepted API key (see authenticate_now).
  struct KeyMemo final : http::ConnectionMemo {
    std::string token;
    uint64_t generation = 0;  // the directory's, when verified
    int64_t expires_at = 0;   // the key's; 0: none
    int64_t used_at = 0;      // last written to key_usage
    std::string key_id;
    Principal principal;
  };

  void note_usage(const std::string& key_id, int64_t now) {
    std::lock_guard lock(usage_mu);
    key_usage[key_id] = now;
  }

  AuthResult verify_api_key(std::string_view token, std::unique_ptr<http::ConnectionMemo>* memo = nullptr) {
    KeyMemo* m = memo && *memo ? dynamic_cast<KeyMemo*>(memo->get()) : nullptr;
    if (m && m->generation == directory.generation() && constant_time_equal(m->token, token)) {
      auto now = unix_now();
      if (!m->expires_at || now < m->expires_at) {
        if (now != m->used_at) note_usage(m->key_id, m->used_at = now);
        AuthResult r;
        r.principal = m->principal;
        return r;
      }
    }
    auto hash = sha256_hex(token);
    auto snap = directory.current();
    auto* key = snap->api_key_by_hash(hash);
    if (!key) return unauthorized("unknown API key " + std::string(token.substr(0, 11)) + "…");
    auto now = unix_now();
    if (key->revoked_at) return unauthorized("API key " + key->id + " was revoked");
    if (key->expires_at && now >= key->expires_at) return unauthorized("API key " + key->id + " expired");
    Cached c;
    c.method = AuthMethod::apikey;
    c.key = key->user_email;
    note_usage(key->id, now);
    auto r = resolve(c);
    r.principal.key_expires_at = key->expires_at;
    if (memo && !r.status) {
      auto fresh = std::make_unique<KeyMemo>();
      fresh->token = token;
      fresh->generation = directory.generation();
      fresh->expires_at = key->expires_at;
      fresh->used_at = now;
      fresh->key_id = key->id;
      fresh->principal = r.principal;
      *memo = std::move(fresh);
    }
    return r;
  }
};

Authenticator::Authenticator(const Settings& settings, store::Store& store, Directory& directory, BlockingPool& pool,
                             net::any_io_executor io, Oidc* oidc, std::unique_ptr<store::OpenWebUiDirectory> openwebui)
    : impl_(std::make_unique<Impl>(settings, store, directory, pool, std::move(io), oidc, std::move(openwebui))) {}

Authenticator::~Authenticator() = default;

void Authenticator::init_secret() {
  if (!impl_->settings.session_secret.empty()) {
    impl_->secret = impl_->settings.session_secret;
    return;
  }
  // One secret for every instance on this store, created by whichever starts first.
  impl_->secret = impl_->store.put_meta_if_absent("session_secret", random_token(48));
}

std::string Authenticator::sign(json::object claims) const { return sign_hs256(claims, impl_->secret); }

std::optional<json::object> Authenticator::verify_own(std::string_view token, std::string_view typ,
                                                      std::string* reason) const {
  auto jwt = parse_jwt(token, reason);
  if (!jwt || !verify_hs256(*jwt, impl_->secret, reason)) return std::nullopt;
  ClaimRules rules;
  rules.now = unix_now();
  rules.leeway_s = 0;
  if (!check_claims(jwt->claims, rules, reason)) return std::nullopt;
  if (claim_string(jwt->claims, "typ") != typ) {
    *reason = "not a " + std::string(typ) + " token";
    return std::nullopt;
  }
  return std::move(jwt->claims);
}

std::string Authenticator::derived_key(std::string_view purpose) const {
  return hmac_sha256_raw(impl_->secret, "derived:" + std::string(purpose));
}

std::string Authenticator::csrf_token(std::string_view cookie) const {
  return base64url_encode(hmac_sha256_raw(impl_->secret, "csrf:" + std::string(cookie)));
}

AuthResult Authenticator::principal_for_api_key(std::string_view key) {
  if (!key.starts_with(kApiKeyPrefix) || key.size() > 200) return unauthorized("not a Gatehouse API key");
  return impl_->verify_api_key(key);
}

std::string Authenticator::issue_session(const Principal& p, std::string_view api_key) const {
  auto now = unix_now();
  json::object claims{{"typ", "session"}, {"sub", p.email()}, {"ra", p.role_admin}, {"iat", now},
                      {"exp", now + impl_->settings.session_lifetime_s}, {"sid", random_token(12)}};
  if (p.identity && p.identity->created_at) claims["uc"] = p.identity->created_at;
  if (!api_key.empty())
    if (auto* key = impl_->directory.current()->api_key_by_hash(sha256_hex(api_key))) {
      claims["kid"] = key->id;
      if (key->expires_at) claims["exp"] = std::min(now + impl_->settings.session_lifetime_s, key->expires_at);
    }
  return sign(std::move(claims));
}

bool Authenticator::trusted_proxy(std::string_view ip) const {
  boost::system::error_code ec;
  auto a = net::ip::make_address(std::string(ip), ec);
  if (ec) return false;
  for (auto& c : impl_->proxies)
    if (c.contains(a)) return true;
  return false;
}

std::string Authenticator::client_ip(std::string_view peer, std::string_view xff) const {
  if (impl_->proxies.empty() || xff.empty() || !trusted_proxy(peer)) return std::string(peer);
  // Walk X-Forwarded-For from the right: the first address that is not one of our proxies is the client.
  auto hops = split(xff, ',');
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    auto hop = trim(*it);
    // Some proxies write a port ("203.0.113.7:51234", "[2001:db8::1]:443") or brackets: the address is the client.
    if (hop.starts_with('[')) {
      if (auto close = hop.find(']'); close != std::string_view::npos) hop = hop.substr(1, close - 1);
    } else if (auto colon = hop.find(':'); colon != std::string_view::npos && hop.find(':', colon + 1) == std::string_view::npos) {
      hop = hop.substr(0, colon);
    }
    boost::system::error_code ec;
    net::ip::make_address(std::string(hop), ec);
    if (ec) break;
    if (!trusted_proxy(hop)) return std::string(hop);
  }
  return std::string(peer);
}

namespace {
enum class CredentialKind { none, bearer, session, webui_cookie, not_bearer };
struct Credential {
  std::string_view token;
  CredentialKind kind = CredentialKind::none;
};
// What the request presents: a Bearer token, else our session cookie, else Open WebUI's (when configured).
Credential credential_of(const http::Request& req, const Settings& settings) {
  if (auto authz = req[bhttp::field::authorization]; !authz.empty()) {
    if (authz.size() > 7 && iequals(authz.substr(0, 7), "bearer ")) return {trim(authz.substr(7)), CredentialKind::bearer};
    return {{}, CredentialKind::not_bearer};
  }
  if (auto cookies = req[bhttp::field::cookie]; !cookies.empty()) {
    if (auto v = cookie_value(cookies, kSessionCookie); !v.empty()) return {v, CredentialKind::session};
    if (auto w = cookie_value(cookies, "token"); !w.empty() && !settings.webui_secret_key.empty())
      return {w, CredentialKind::webui_cookie};
  }
  return {};
}
}  // namespace

std::string_view Authenticator::cookie_credential(const http::Request& req) const {
  auto c = credential_of(req, impl_->settings);
  return c.kind == CredentialKind::session || c.kind == CredentialKind::webui_cookie ? c.token : std::string_view();
}

std::optional<AuthResult> Authenticator::authenticate_now(const http::Request& req, std::string_view peer_ip,
                                                          const http::Request* identity_headers,
                                                          std::unique_ptr<http::ConnectionMemo>* memo) {
  auto& im = *impl_;
  auto [token, kind] = credential_of(req, im.settings);
  if (kind == CredentialKind::not_bearer) return unauthorized("Authorization header is not a Bearer token");
  if (kind == CredentialKind::none) {
    if (identity_headers && im.settings.api_gateway_mode && trusted_proxy(peer_ip)) return std::nullopt;
    return AuthResult{};
  }
  if (token.size() > kMaxTokenBytes) return unauthorized("token longer than " + std::to_string(kMaxTokenBytes) + " bytes");

  bool own_session = kind == CredentialKind::session;
  if (auto it = im.cache.find(token); it != im.cache.end() && it->second.own_session == own_session) {
    bool stale = it->second.method == AuthMethod::oidc && im.oidc && it->second.key_generation != im.oidc->key_generation();
    if (it->second.expires > unix_now() && !stale) return im.resolve(it->second);
    im.cache.erase(it);
  }
  if (!im.refused.empty()) {
    if (auto it = im.refused.find(Impl::refusal_key(token, own_session)); it != im.refused.end()) {
      if (it->second.expires > unix_now()) return im.resolve(it->second);
      im.refused.erase(it);
    }
  }

  if (kind == CredentialKind::session) {
    std::string reason;
    auto claims = verify_own(token, "session", &reason);
    Impl::Cached c;
    c.own_session = true;
    if (!claims) {
      c.status = 401;
      c.reason = "session cookie refused: " + reason;
      c.expires = unix_now() + 30;
    } else {
      c.method = AuthMethod::session;
      c.key = claim_string(*claims, "sub");
      auto ra = claims->find("ra");
      c.role_admin = ra != claims->end() && ra->value().is_bool() && ra->value().as_bool();
      c.expires = expires_at(*claims);
      c.api_key_id = claim_string(*claims, "kid");
      if (auto uc = claims->find("uc"); uc != claims->end() && uc->value().is_int64()) c.account_created = uc->value().as_int64();
    }
    im.put(token, c);
    return im.resolve(c);
  }
  if (kind == CredentialKind::webui_cookie) return std::nullopt;
  if (token.starts_with(kApiKeyPrefix)) return im.verify_api_key(token, memo);
  if (token.starts_with("sk-")) return unauthorized("Open WebUI API keys (sk-…) are not accepted; use a Gatehouse API key");
  return std::nullopt;  // a JWT not verified yet
}

net::awaitable<AuthResult> Authenticator::authenticate(const http::Request& req, std::string_view peer_ip,
                                                       const http::Request* identity_headers) {
  if (auto now = authenticate_now(req, peer_ip, identity_headers)) co_return std::move(*now);
  co_return co_await authenticate_waiting(req, identity_headers);
}

net::awaitable<AuthResult> Authenticator::authenticate_waiting(const http::Request& req,
                                                               const http::Request* identity_headers) {
  // Only what authenticate_now() left: a trusted proxy's headers, an Open WebUI cookie, a JWT not cached.
  auto& im = *impl_;
  auto [token, kind] = credential_of(req, im.settings);
  if (kind == CredentialKind::none) {  // a trusted proxy's identity headers (authenticate_now checked it is one)
    auto email = normalize_email((*identity_headers)["X-User-Email"]);
    if (!plausible_email(email)) co_return unauthorized("trusted proxy sent no usable X-User-Email");
    bool unavailable = false;
    auto id = co_await im.find_or_create(email, std::string((*identity_headers)["X-User-Name"]), "", "proxy", nullptr,
                                         &unavailable);
    if (unavailable) co_return directory_unavailable();
    if (!id) co_return unauthorized("could not create user " + email);
    Impl::Cached c;
    c.method = AuthMethod::header;
    c.key = id->email;
    co_return im.resolve(c);
  }
  if (kind == CredentialKind::webui_cookie) co_return co_await im.verify_webui(token);
  // A JWT: its header says whose.
  std::string reason;
  auto jwt = parse_jwt(token, &reason);
  if (!jwt) co_return unauthorized("malformed token: " + reason);  // (not remembered: no signature was checked)
  if (jwt->alg == "HS256" && !im.settings.webui_secret_key.empty()) co_return co_await im.verify_webui(token);
  co_return co_await im.verify_oidc(token);
}

net::awaitable<AuthResult> Authenticator::sign_in(const json::object& claims) {
  auto& im = *impl_;
  auto email = Impl::email_of(claims);
  if (email.empty())
    co_return fail(403, "ID token has no verified email (nor, from Microsoft Entra, preferred_username or upn)",
                   "Your identity provider did not send an email address for your account.");
  if (!im.domain_allowed(email))
    co_return fail(403, "email domain not allowed: " + email,
                   "Accounts from this email domain may not sign in here.");
  auto subject = Impl::subject_of(claims);
  auto name = claim_string(claims, "name");
  std::optional<std::vector<std::string>> synced;
  if (im.settings.oidc_group_sync) {
    // Only names the admin API would accept: an IdP group "/Eng/Backend" or ".." would make a group nobody
    // can open or delete here.
    synced.emplace();
    for (auto& g : claim_strings(claims, im.settings.oidc_groups_claim)) {
      // Keycloak's "Full group path" writes "/Engineering": a top-level group is its name. (A nested
      // "/Engineering/Backend" is not a name: skipped, as the log line says; turn the option off there.)
      if (g.size() > 1 && g.front() == '/' && g.find('/', 1) == std::string::npos) g.erase(0, 1);
      if (valid_group_name(g)) synced->push_back(std::move(g));
      else log::warn("IdP group not synced: not a valid group name", {{"email", email}, {"group", g}, {"rule", kGroupNameRule}});
    }
  }
  std::string conflict;
  auto job = [&, email, subject, name, synced]() -> std::shared_ptr<const Identity> {
    auto& st = im.store;
    bool changed = false;
    std::optional<store::User> u;
    if (auto e = st.find_user_by_subject(subject)) u = e;
    if (!u) u = st.get_user(email);
    if (u && bound_to_other(u->subject, subject)) {
      conflict = bound_elsewhere(email, u->subject);
      return nullptr;
    }
    auto now = unix_now();
    if (!u) {
      store::User n;
      n.email = email;
      n.name = name;
      n.subject = subject;
      n.source = "oidc";
      n.created_at = n.last_seen_at = now;
      if (st.create_user(n)) {
        log::info("user created on first sign-in", {{"email", email}, {"source", "oidc"}});
        changed = true;
      }
      u = st.get_user(email);
      if (!u) return nullptr;
      if (bound_to_other(u->subject, subject)) {  // created meanwhile by another sign-in, of another account
        conflict = bound_elsewhere(email, u->subject);
        return nullptr;
      }
      if (u->subject != subject) {  // created meanwhile by an administrator: bound now
        st.update_user_sign_in(u->email, subject, u->name);
        u->subject = subject;
        changed = true;
      }
    } else {
      bool dirty = false;
      if (u->subject != subject) u->subject = subject, dirty = true;  // (not bound to an IdP account yet)
      if (!name.empty() && u->name != name) u->name = name, dirty = true;
      if (dirty) st.update_user_sign_in(u->email, u->subject, u->name);
      st.touch_user(u->email, now);
      changed = changed || dirty;
    }
    auto in_admin_group = [](const std::vector<std::string>& g) { return std::ranges::count(g, kAdminGroup) > 0; };
    std::vector<std::string> before;
    if (synced) before = st.groups_of(u->email);
    bool was_in_admin_group = synced && in_admin_group(before);
    if (synced) st.sync_idp_groups(u->email, *synced);
    auto out = std::make_shared<Identity>();
    out->email = u->email;
    out->name = u->name;
    out->subject = u->subject;
    out->created_at = u->created_at;
    out->groups = st.groups_of(u->email);
    if (synced) {
      std::ranges::sort(before);
      auto after = out->groups;
      std::ranges::sort(after);
      changed = changed || before != after;
    }
    if (synced && was_in_admin_group != in_admin_group(out->groups)) {
      // An IdP group named MCP-Admin makes administrators: in the audit log as any other way of becoming one.
      store::AuditEntry e;
      e.timestamp = now;
      e.actor = "idp";
      e.action = was_in_admin_group ? "group.member.remove" : "group.member.add";
      e.target = std::string(kAdminGroup);
      json::array who{json::value(u->email)};
      e.details = json::serialize(json::object{{was_in_admin_group ? "before" : "after",
                                                json::object{{was_in_admin_group ? "removed" : "added", who},
                                                             {"source", "IdP group sync"}}}});
      st.append_audit(e);
      log::info(was_in_admin_group ? "administrator rights removed by IdP group sync" : "administrator rights given by IdP group sync",
                {{"email", u->email}});
    }
    out->is_admin = u->is_admin || out->in_group(kAdminGroup);
    out->disabled = u->disabled;
    // Other instances reload their directory only when it changed: a sign-in that changed nothing (most of
    // them) would otherwise rebuild every instance's directory and drop every connection's checked API key.
    if (changed) st.notify_changed();
    return out;
  };
  std::shared_ptr<const Identity> id;
  try {
    id = co_await im.pool.run(std::move(job));
  } catch (const std::exception& e) {
    log::error("sign-in: user directory unavailable", {{"email", email}, {"error", e.what()}});
    co_return fail(503, "user directory unavailable",
                   "Signing in is not possible right now (the user directory is unavailable). Try again in a minute.");
  }
  if (!id) {
    std::string why = conflict.empty() ? "sign-in could not create the user" : conflict;
    co_return fail(403, std::move(why), "This account cannot sign in here; ask an administrator.");
  }
  im.directory.remember(id);
  if (id->disabled) co_return fail(403, "user " + email + " is disabled", "This account is disabled.");
  AuthResult r;
  r.principal.identity = id;
  r.principal.method = AuthMethod::session;
  r.principal.role_admin = im.admin_by_role(claims);
  co_return r;
}

void Authenticator::flush_usage() {
  std::map<std::string, int64_t> usage;
  {
    std::lock_guard lock(impl_->usage_mu);
    usage.swap(impl_->key_usage);
  }
  if (usage.empty()) return;
  std::vector<std::pair<std::string, int64_t>> rows(usage.begin(), usage.end());
  try {
    impl_->store.touch_api_keys(rows);
  } catch (const std::exception& e) {
    log::warn("could not record API key use", {{"error", e.what()}});
  }
}

}  // namespace gh::auth
