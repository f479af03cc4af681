// JSON Web Tokens (compact JWS) and JSON Web Keys on OpenSSL: parse, verify HS256/RS256/ES256, check claims,
// sign HS256. Pure code, no I/O. Reasons are for the log, never for the client.
#pragma once
#include <boost/json/object.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

typedef struct evp_pkey_st EVP_PKEY;

namespace gh::auth {

namespace json = boost::json;

struct Jwt {
  json::object header;
  json::object claims;
  std::string alg, kid;         // from the header ("" if absent)
  std::string_view signing_input;  // "<b64 header>.<b64 payload>" inside the token passed to parse_jwt
  std::string signature;        // decoded bytes
};

inline constexpr std::size_t kMaxTokenBytes = 16 * 1024;

// Parses a compact JWS (three base64url parts, JSON objects). Fails (nullopt, `reason` set) when malformed,
// longer than `max_bytes`, or not exactly three parts. Does not verify anything. The Jwt refers into `token`.
std::optional<Jwt> parse_jwt(std::string_view token, std::string* reason, std::size_t max_bytes = kMaxTokenBytes);

// True if the token is signed HS256 with `secret` (constant-time compare). alg must be "HS256".
bool verify_hs256(const Jwt& jwt, std::string_view secret, std::string* reason);

struct Jwk {
  std::string kid;
  std::string kty;  // "RSA" | "EC"
  std::string alg;  // from the JWK if present, else derived: RSA → "RS256", EC P-256 → "ES256"
  std::shared_ptr<EVP_PKEY> key;
};

// One public JWK (kty RSA with n,e; kty EC crv P-256 with x,y). Keys with "use" other than "sig", other
// curves/types, or private parts are refused (nullopt, `reason`).
std::optional<Jwk> parse_jwk(const json::object& jwk, std::string* reason);
// A JWKS document {"keys":[…]}: the usable keys (unusable ones skipped); `reason` set if the document is bad.
std::vector<Jwk> parse_jwks(std::string_view json_text, std::string* reason);

// Verifies the signature with `key`. The token's alg must be the key's algorithm: RS256 ↔ RSA (≥ 2048 bits),
// ES256 ↔ EC P-256 (JOSE r||s, 64 bytes). "none", HS*, and any mismatch are refused.
bool verify_with_jwk(const Jwt& jwt, const Jwk& key, std::string* reason);

struct ClaimRules {
  std::vector<std::string> issuers;    // empty: not checked. An entry may contain "{tenantid}", replaced by the
                                       // token's "tid" claim before comparing (Entra multi-tenant).
  std::vector<std::string> audiences;  // empty: not checked; else "aud" (string or array) must contain one
  std::vector<std::string> allowed_tenants;  // empty: any; else "tid" must be one of these
  bool require_exp = true;
  int64_t leeway_s = 60;
  int64_t now = 0;                     // Unix seconds (injected clock)
};
// Checks iss, aud, tid, exp, nbf, iat-not-in-future against `rules`; numbers must be numeric.
bool check_claims(const json::object& claims, const ClaimRules& rules, std::string* reason);

// The token's "exp" claim, 0 if absent or not a number.
int64_t expires_at(const json::object& claims);

// A compact JWS signed HS256 over {"alg":"HS256","typ":"JWT"} and `claims`.
std::string sign_hs256(const json::object& claims, std::string_view secret);

// Digests and randomness used across auth.
std::string sha256_hex(std::string_view data);
std::string sha256_raw(std::string_view data);
std::string hmac_sha256_raw(std::string_view key, std::string_view data);
bool constant_time_equal(std::string_view a, std::string_view b);
std::string random_token(std::size_t bytes);  // base64url of random bytes

}  // namespace gh::auth
