// JWT/JWK on OpenSSL 3 EVP only. Every check that can refuse a token does so before any signature work, and
// the key decides the algorithm: the token's "alg" header is only ever compared against it, never trusted.
#include "auth/jwt.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>

#include "core/util.hpp"

namespace gh::auth {

namespace {

constexpr int kMinRsaBits = 2048;
constexpr std::size_t kP256CoordBytes = 32;

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM, OSSL_PARAM_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;

template <typename T = bool>
T fail(std::string* reason, std::string_view why, T result = T{}) {
  if (reason) *reason = why;
  return result;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// base64url as RFC 7515 requires it: URL alphabet only, no padding, no leftover bits. The shared decoder is
// lenient ('+', '/', '='), and leniency here would give one token many spellings.
std::optional<std::string> decode_strict(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  for (char c : text)
    if (b64url_value(c) < 0) return std::nullopt;
  if (!text.empty()) {
    int last = b64url_value(text.back());
    if (text.size() % 4 == 2 && (last & 0x0f) != 0) return std::nullopt;
    if (text.size() % 4 == 3 && (last & 0x03) != 0) return std::nullopt;
  }
  return base64url_decode(text);
}

std::optional<json::object> decode_object(std::string_view part) {
  auto raw = decode_strict(part);
  if (!raw) return std::nullopt;
  boost::system::error_code ec;
  json::value v = parse_json(*raw, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

const json::string* string_member(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? &it->value().as_string() : nullptr;
}

enum class Num { absent, ok, bad };

// A NumericDate claim. Fractions are rounded towards the stricter side by the caller's `round`.
Num numeric_claim(const json::object& claims, std::string_view key, int64_t& out, double (*round)(double)) {
  auto it = claims.find(key);
  if (it == claims.end()) return Num::absent;
  const json::value& v = it->value();
  if (v.is_int64()) {
    out = v.as_int64();
    return Num::ok;
  }
  if (v.is_uint64()) {
    out = std::numeric_limits<int64_t>::max();
    return Num::ok;
  }
  if (v.is_double()) {
    double d = round(v.as_double());
    if (!std::isfinite(d)) return Num::bad;
    if (d >= 9.2e18) out = std::numeric_limits<int64_t>::max();
    else if (d <= -9.2e18) out = std::numeric_limits<int64_t>::min();
    else out = static_cast<int64_t>(d);
    return Num::ok;
  }
  return Num::bad;
}

double round_down(double d) { return std::floor(d); }
double round_up(double d) { return std::ceil(d); }

bool is_tenant_id(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-';
  });
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

std::shared_ptr<EVP_PKEY> pkey_from_params(const char* type, OSSL_PARAM_BLD* bld, std::string* reason) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1 || !raw)
    return fail<std::shared_ptr<EVP_PKEY>>(reason, "key rejected by OpenSSL");
  std::shared_ptr<EVP_PKEY> key(raw, EVP_PKEY_free);
  PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1)
    return fail<std::shared_ptr<EVP_PKEY>>(reason, "public key check failed");
  return key;
}

std::shared_ptr<EVP_PKEY> rsa_key(const json::object& jwk, std::string* reason) {
  const json::string* n = string_member(jwk, "n");
  const json::string* e = string_member(jwk, "e");
  if (!n || !e) return fail<std::shared_ptr<EVP_PKEY>>(reason, "RSA key without n/e");
  auto nb = decode_strict(*n), eb = decode_strict(*e);
  if (!nb || !eb || nb->empty() || eb->empty() || eb->size() > 8)
    return fail<std::shared_ptr<EVP_PKEY>>(reason, "RSA n/e malformed");
  BnPtr bn_n(BN_bin2bn(bytes(*nb), static_cast<int>(nb->size()), nullptr));
  BnPtr bn_e(BN_bin2bn(bytes(*eb), static_cast<int>(eb->size()), nullptr));
  if (!bn_n || !bn_e) return fail<std::shared_ptr<EVP_PKEY>>(reason, "out of memory");
  if (BN_num_bits(bn_n.get()) < kMinRsaBits) return fail<std::shared_ptr<EVP_PKEY>>(reason, "RSA key too small");
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
    return fail<std::shared_ptr<EVP_PKEY>>(reason, "out of memory");
  auto key = pkey_from_params("RSA", bld.get(), reason);
  if (key && EVP_PKEY_get_bits(key.get()) < kMinRsaBits)
    return fail<std::shared_ptr<EVP_PKEY>>(reason, "RSA key too small");
  return key;
}

std::shared_ptr<EVP_PKEY> ec_p256_key(const json::object& jwk, std::string* reason) {
  const json::string* crv = string_member(jwk, "crv");
  if (!crv || *crv != "P-256") return fail<std::shared_ptr<EVP_PKEY>>(reason, "EC curve not P-256");
  const json::string* x = string_member(jwk, "x");
  const json::string* y = string_member(jwk, "y");
  if (!x || !y) return fail<std::shared_ptr<EVP_PKEY>>(reason, "EC key without x/y");
  auto xb = decode_strict(*x), yb = decode_strict(*y);
  if (!xb || !yb || xb->size() != kP256CoordBytes || yb->size() != kP256CoordBytes)
    return fail<std::shared_ptr<EVP_PKEY>>(reason, "EC x/y malformed");
  std::string point = "\x04" + *xb + *yb;  // uncompressed SEC1 point; OpenSSL checks it is on the curve
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
    return fail<std::shared_ptr<EVP_PKEY>>(reason, "out of memory");
  return pkey_from_params("EC", bld.get(), reason);
}

bool is_p256(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC") != 1) return false;
  char group[64] = {};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) return false;
  std::string_view g(group, len);
  return g == "prime256v1" || g == "P-256" || g == "secp256r1";
}

// JOSE carries ECDSA signatures as fixed-width r||s; OpenSSL verifies DER.
std::optional<std::string> jose_to_der(std::string_view sig) {
  if (sig.size() != 2 * kP256CoordBytes) return std::nullopt;
  BnPtr r(BN_bin2bn(bytes(sig), kP256CoordBytes, nullptr));
  BnPtr s(BN_bin2bn(bytes(sig) + kP256CoordBytes, kP256CoordBytes, nullptr));
  EcdsaSigPtr es(ECDSA_SIG_new());
  if (!r || !s || !es || ECDSA_SIG_set0(es.get(), r.get(), s.get()) != 1) return std::nullopt;
  r.release();  // owned by es now
  s.release();
  int len = i2d_ECDSA_SIG(es.get(), nullptr);
  if (len <= 0) return std::nullopt;
  std::string der(static_cast<std::size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(es.get(), &p) != len) return std::nullopt;
  return der;
}

bool digest_verify_sha256(EVP_PKEY* key, std::string_view data, std::string_view sig) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  return ctx && EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) == 1 &&
         EVP_DigestVerify(ctx.get(), bytes(sig), sig.size(), bytes(data), data.size()) == 1;
}

}  // namespace

std::optional<Jwt> parse_jwt(std::string_view token, std::string* reason, std::size_t max_bytes) {
  using R = std::optional<Jwt>;
  if (token.size() > max_bytes) return fail<R>(reason, "token too large");
  std::size_t d1 = token.find('.');
  std::size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return fail<R>(reason, "token must have three parts");
  Jwt jwt;
  auto header = decode_object(token.substr(0, d1));
  if (!header) return fail<R>(reason, "header is not base64url JSON object");
  auto claims = decode_object(token.substr(d1 + 1, d2 - d1 - 1));
  if (!claims) return fail<R>(reason, "payload is not base64url JSON object");
  auto signature = decode_strict(token.substr(d2 + 1));
  if (!signature) return fail<R>(reason, "signature is not base64url");
  const json::string* alg = string_member(*header, "alg");
  if (!alg) return fail<R>(reason, "header alg missing or not a string");
  if (header->contains("crit")) return fail<R>(reason, "crit header not supported");
  if (auto it = header->find("kid"); it != header->end()) {
    if (!it->value().is_string()) return fail<R>(reason, "header kid not a string");
    jwt.kid = it->value().as_string();
  }
  jwt.alg = *alg;
  jwt.header = std::move(*header);
  jwt.claims = std::move(*claims);
  jwt.signing_input = token.substr(0, d2);
  jwt.signature = std::move(*signature);
  return jwt;
}

bool verify_hs256(const Jwt& jwt, std::string_view secret, std::string* reason) {
  if (jwt.alg != "HS256") return fail(reason, "alg is not HS256");
  if (secret.empty()) return fail(reason, "empty HMAC secret");
  if (!constant_time_equal(hmac_sha256_raw(secret, jwt.signing_input), jwt.signature))
    return fail(reason, "bad signature");
  return true;
}

std::optional<Jwk> parse_jwk(const json::object& jwk, std::string* reason) {
  using R = std::optional<Jwk>;
  const json::string* kty = string_member(jwk, "kty");
  if (!kty) return fail<R>(reason, "JWK without kty");
  if (auto it = jwk.find("use"); it != jwk.end() && !(it->value().is_string() && it->value().as_string() == "sig"))
    return fail<R>(reason, "JWK use is not sig");
  if (auto it = jwk.find("key_ops"); it != jwk.end()) {
    const json::array* ops = it->value().if_array();
    if (!ops || std::find(ops->begin(), ops->end(), json::value("verify")) == ops->end())
      return fail<R>(reason, "JWK key_ops without verify");
  }
  for (std::string_view priv : {"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
    if (jwk.contains(priv)) return fail<R>(reason, "JWK has private parts");
  Jwk out;
  if (auto it = jwk.find("kid"); it != jwk.end()) {
    if (!it->value().is_string()) return fail<R>(reason, "JWK kid not a string");
    out.kid = it->value().as_string();
  }
  std::string expected_alg;
  if (*kty == "RSA") {
    expected_alg = "RS256";
    out.key = rsa_key(jwk, reason);
  } else if (*kty == "EC") {
    expected_alg = "ES256";
    out.key = ec_p256_key(jwk, reason);
  } else {
    return fail<R>(reason, "JWK kty not supported");
  }
  if (!out.key) return std::nullopt;
  if (auto it = jwk.find("alg"); it != jwk.end()) {
    // A key published for another algorithm (RS384, PS256…) is not one we can verify with safely.
    if (!it->value().is_string() || it->value().as_string() != expected_alg)
      return fail<R>(reason, "JWK alg not supported for its key type");
  }
  out.kty = *kty;
  out.alg = expected_alg;
  return out;
}

std::vector<Jwk> parse_jwks(std::string_view json_text, std::string* reason) {
  std::vector<Jwk> keys;
  boost::system::error_code ec;
  json::value doc = parse_json(json_text, ec);
  if (ec || !doc.is_object()) return fail(reason, "JWKS is not a JSON object", std::move(keys));
  auto it = doc.as_object().find("keys");
  if (it == doc.as_object().end() || !it->value().is_array())
    return fail(reason, "JWKS without keys array", std::move(keys));
  for (const json::value& k : it->value().as_array()) {
    if (!k.is_object()) continue;
    if (auto jwk = parse_jwk(k.as_object(), nullptr)) keys.push_back(std::move(*jwk));
  }
  if (keys.empty()) return fail(reason, "JWKS has no usable keys", std::move(keys));
  return keys;
}

bool verify_with_jwk(const Jwt& jwt, const Jwk& key, std::string* reason) {
  if (!key.key) return fail(reason, "no key");
  if (jwt.alg.empty() || jwt.alg == "none" || jwt.alg == "None" || jwt.alg == "NONE")
    return fail(reason, "alg none refused");
  if (jwt.alg.size() >= 2 && (jwt.alg[0] == 'H' || jwt.alg[0] == 'h') && (jwt.alg[1] == 'S' || jwt.alg[1] == 's'))
    return fail(reason, "HMAC alg refused for a public key");
  if (!key.alg.empty() && jwt.alg != key.alg) return fail(reason, "alg does not match key");
  EVP_PKEY* pkey = key.key.get();
  if (jwt.alg == "RS256") {
    // The key object, not its label, decides: an RSA-PSS or EC key never verifies RS256.
    if (EVP_PKEY_is_a(pkey, "RSA") != 1) return fail(reason, "RS256 requires an RSA key");
    if (EVP_PKEY_get_bits(pkey) < kMinRsaBits) return fail(reason, "RSA key too small");
    if (!digest_verify_sha256(pkey, jwt.signing_input, jwt.signature)) return fail(reason, "bad signature");
    return true;
  }
  if (jwt.alg == "ES256") {
    if (!is_p256(pkey)) return fail(reason, "ES256 requires an EC P-256 key");
    auto der = jose_to_der(jwt.signature);
    if (!der) return fail(reason, "ES256 signature is not 64 bytes r||s");
    if (!digest_verify_sha256(pkey, jwt.signing_input, *der)) return fail(reason, "bad signature");
    return true;
  }
  return fail(reason, "alg not supported");
}

bool check_claims(const json::object& claims, const ClaimRules& rules, std::string* reason) {
  const int64_t leeway = std::clamp<int64_t>(rules.leeway_s, 0, 24 * 3600);
  const int64_t now = rules.now;
  // Written as now - leeway / now + leeway so that extreme claim values cannot overflow.
  int64_t exp = 0, nbf = 0, iat = 0;
  switch (numeric_claim(claims, "exp", exp, round_down)) {
    case Num::bad: return fail(reason, "exp not numeric");
    case Num::absent:
      if (rules.require_exp) return fail(reason, "exp missing");
      break;
    case Num::ok:
      if (now - leeway > exp) return fail(reason, "token expired");
  }
  switch (numeric_claim(claims, "nbf", nbf, round_up)) {
    case Num::bad: return fail(reason, "nbf not numeric");
    case Num::absent: break;
    case Num::ok:
      if (now + leeway < nbf) return fail(reason, "not yet valid");
  }
  switch (numeric_claim(claims, "iat", iat, round_up)) {
    case Num::bad: return fail(reason, "iat not numeric");
    case Num::absent: break;
    case Num::ok:
      if (iat > now + leeway) return fail(reason, "issued in the future");
  }

  const json::string* tid = string_member(claims, "tid");
  if (!rules.issuers.empty()) {
    const json::string* iss = string_member(claims, "iss");
    if (!iss) return fail(reason, "issuer missing");
    bool tid_ok = tid && is_tenant_id(*tid);
    bool matched = false;
    for (const std::string& want : rules.issuers) {
      if (want.find("{tenantid}") != std::string::npos) {
        if (tid_ok && *iss == replace_all(want, "{tenantid}", std::string_view(*tid))) matched = true;
      } else if (*iss == want) {
        matched = true;
      }
      if (matched) break;
    }
    if (!matched) return fail(reason, "issuer mismatch");
  }

  if (!rules.audiences.empty()) {
    auto it = claims.find("aud");
    if (it == claims.end()) return fail(reason, "audience missing");
    auto wanted = [&](const json::value& v) {
      return v.is_string() &&
             std::find(rules.audiences.begin(), rules.audiences.end(), std::string_view(v.as_string())) !=
                 rules.audiences.end();
    };
    bool matched = false;
    if (const json::array* arr = it->value().if_array())
      matched = std::any_of(arr->begin(), arr->end(), wanted);
    else
      matched = wanted(it->value());
    if (!matched) return fail(reason, "audience mismatch");
  }

  if (!rules.allowed_tenants.empty()) {
    if (!tid || std::find(rules.allowed_tenants.begin(), rules.allowed_tenants.end(), std::string_view(*tid)) ==
                    rules.allowed_tenants.end())
      return fail(reason, "tenant not allowed");
  }
  return true;
}

int64_t expires_at(const json::object& claims) {
  int64_t exp = 0;
  return numeric_claim(claims, "exp", exp, round_down) == Num::ok ? exp : 0;
}

std::string sign_hs256(const json::object& claims, std::string_view secret) {
  std::string input = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  input += '.';
  input += base64url_encode(gh::to_json(claims));
  std::string sig = base64url_encode(hmac_sha256_raw(secret, input));
  input += '.';
  input += sig;
  return input;
}

std::string sha256_raw(std::string_view data) {
  // Hashed for every API-key request: the algorithm is fetched once (EVP_sha256() would look it up in the
  // provider store, under a lock, on every call) and each thread reuses one context.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!sha256 || !ctx || EVP_DigestInit_ex2(ctx.get(), sha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 || EVP_DigestFinal_ex(ctx.get(), md, &len) != 1)
    throw std::runtime_error("SHA-256 failed");
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string sha256_hex(std::string_view data) { return to_hex(sha256_raw(data)); }

std::string hmac_sha256_raw(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t len = 0;
  static const unsigned char kEmpty = 0;  // OpenSSL wants a non-null key pointer even for an empty key
  const unsigned char* k = key.empty() ? &kEmpty : bytes(key);
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, k, key.size(), bytes(data), data.size(), mac,
                 sizeof mac, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<char*>(mac), len);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Lengths are public (a MAC's length is fixed); only the contents are compared in constant time.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_token(std::size_t bytes_count) { return base64url_encode(random_bytes(bytes_count)); }

}  // namespace gh::auth
