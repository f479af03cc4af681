#include "mcp/session_ids.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "auth/jwt.hpp"
#include "core/util.hpp"

namespace gh::mcp {

namespace json = boost::json;

namespace {
constexpr std::size_t kMacBytes = 16;
}

SessionIds::SessionIds(std::string_view secret, int64_t max_age_s)
    : key_(auth::hmac_sha256_raw(secret, "gatehouse mcp session ids")), max_age_s_(max_age_s) {}

std::string SessionIds::mac(std::string_view payload) const {
  return base64url_encode(auth::hmac_sha256_raw(key_, payload).substr(0, kMacBytes));
}

std::string SessionIds::owner_tag(std::string_view nonce, std::string_view owner) const {
  return base64url_encode(auth::hmac_sha256_raw(key_, "owner:" + std::string(nonce) + ":" + std::string(owner)).substr(0, 12));
}

std::string SessionIds::issue(const SessionTicket& t) const {
  json::object p;
  auto nonce = random_hex(8);  // two sessions opened in one second by one user still differ
  p["n"] = nonce;
  p["t"] = t.issued_at;
  p["s"] = t.scope;
  p["o"] = owner_tag(nonce, t.owner);
  p["v"] = t.protocol_version;
  if (!t.capabilities.empty()) {
    if (json::serialize(t.capabilities).size() > kMaxCapabilities) return random_hex(16);
    p["c"] = t.capabilities;
  }
  auto payload = base64url_encode(json::serialize(p));
  return payload + "." + mac(payload);
}

std::optional<SessionTicket> SessionIds::verify(std::string_view id, int64_t now, std::string* why) const {
  auto fail = [&](const char* reason) -> std::optional<SessionTicket> {
    if (why) *why = reason;
    return std::nullopt;
  };
  auto dot = id.find('.');
  if (id.size() > kMaxId || dot == std::string_view::npos) return fail("not an id this gateway issued");
  auto payload = id.substr(0, dot);
  if (!auth::constant_time_equal(mac(payload), id.substr(dot + 1))) return fail("bad signature");
  auto text = base64url_decode(payload);
  boost::system::error_code ec;
  auto v = text ? json::parse(*text, ec) : json::value();
  auto* p = v.if_object();
  if (!p) return fail("malformed payload");
  SessionTicket t;
  auto str = [&](const char* k, std::string& out) {
    auto* f = p->if_contains(k);
    if (!f || !f->is_string()) return false;
    out = f->as_string();
    return true;
  };
  auto* issued = p->if_contains("t");
  if (!issued || !issued->is_int64() || !str("n", t.nonce) || !str("s", t.scope) || !str("o", t.owner) ||
      !str("v", t.protocol_version))
    return fail("malformed payload");
  t.issued_at = issued->as_int64();
  if (auto* c = p->if_contains("c")) {
    if (!c->is_object()) return fail("malformed payload");
    t.capabilities = c->as_object();
  }
  if (now - t.issued_at > max_age_s_ || t.issued_at - now > 300) return fail("too old");
  return t;
}

}  // namespace gh::mcp
