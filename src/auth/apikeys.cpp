#include "auth/apikeys.hpp"

#include "auth/authenticator.hpp"
#include "auth/jwt.hpp"
#include "core/util.hpp"

namespace gh::auth {

NewApiKey make_api_key(std::string user_email, std::string name, int64_t expires_at, int64_t now) {
  NewApiKey k;
  k.secret = std::string(kApiKeyPrefix) + random_token(32);
  k.record.id = random_hex(8);
  k.record.user_email = std::move(user_email);
  k.record.name = std::move(name);
  k.record.prefix = k.secret.substr(0, 11);
  k.record.hash = sha256_hex(k.secret);
  k.record.created_at = now;
  k.record.expires_at = expires_at;
  return k;
}

boost::json::object api_key_json(const store::ApiKey& k) {
  auto t = [](int64_t v) -> boost::json::value { return v ? boost::json::value(v) : boost::json::value(nullptr); };
  return {{"id", k.id},          {"user_email", k.user_email}, {"name", k.name},
          {"prefix", k.prefix},  {"created_at", t(k.created_at)}, {"expires_at", t(k.expires_at)},
          {"last_used_at", t(k.last_used_at)}, {"revoked_at", t(k.revoked_at)}};
}

}  // namespace gh::auth
