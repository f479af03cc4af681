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

// The payload, before base64url: a version byte (1), the nonce (8 bytes), the issue time (5 bytes, big-endian),
// the owner tag (9 bytes), the scope and the protocol version (a length byte each, then the text), and the
// capabilities' JSON (the rest, empty when none). Binary, not JSON: the id is in every request's headers,
// and every byte of it is read, hashed and compared on each (75 characters for `/mcp/fast`).
std::string SessionIds::issue(const SessionTicket& t) const {
  std::string caps = t.capabilities.empty() ? std::string() : json::serialize(t.capabilities);
  if (caps.size() > kMaxCapabilities || t.scope.size() > 255 || t.protocol_version.size() > 255) return random_hex(16);
  auto nonce = random_bytes(8);
  std::string p;
  p.reserve(26 + t.scope.size() + t.protocol_version.size() + caps.size());
  p += char(kVersion);
  p += nonce;
  for (int shift = 32; shift >= 0; shift -= 8) p += char((uint64_t(t.issued_at) >> shift) & 0xff);
  p += owner_tag(nonce, t.owner);
  p += char(t.scope.size());
  p += t.scope;
  p += char(t.protocol_version.size());
  p += t.protocol_version;
  p += caps;
  auto payload = base64url_encode(p);
  return payload + "." + mac(payload);
}

std::string SessionIds::owner_tag(std::string_view nonce, std::string_view owner) const {
  return auth::hmac_sha256_raw(key_, "owner:" + std::string(nonce) + ":" + std::string(owner)).substr(0, kTagBytes);
}

bool SessionIds::belongs_to(const SessionTicket& t, std::string_view owner) const {
  return auth::constant_time_equal(t.owner, owner_tag(t.nonce, owner));
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
  auto bytes = base64url_decode(payload);
  std::string_view p = bytes ? std::string_view(*bytes) : std::string_view();
  if (p.size() < 1 + 8 + 5 + kTagBytes + 2 || uint8_t(p[0]) != kVersion) return fail("malformed payload");
  SessionTicket t;
  t.nonce = std::string(p.substr(1, 8));
  for (std::size_t i = 9; i < 14; ++i) t.issued_at = (t.issued_at << 8) | uint8_t(p[i]);
  t.owner = std::string(p.substr(14, kTagBytes));
  p.remove_prefix(14 + kTagBytes);
  auto text = [&](std::string& out) {
    if (p.empty() || p.size() < 1 + std::size_t(uint8_t(p[0]))) return false;
    out = std::string(p.substr(1, uint8_t(p[0])));
    p.remove_prefix(1 + out.size());
    return true;
  };
  if (!text(t.scope) || !text(t.protocol_version)) return fail("malformed payload");
  if (!p.empty()) {
    boost::system::error_code ec;
    auto c = json::parse(p, ec);
    if (ec || !c.is_object()) return fail("malformed payload");
    t.capabilities = std::move(c.as_object());
  }
  if (now - t.issued_at > max_age_s_ || t.issued_at - now > 300) return fail("too old");
  return t;
}

}  // namespace gh::mcp
