#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/json.hpp>

#include "auth/jwt.hpp"
#include "core/util.hpp"

using namespace gh::auth;
namespace json = boost::json;

namespace {

using PkeyPtr = std::shared_ptr<EVP_PKEY>;

PkeyPtr rsa_keypair(unsigned bits) {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits));
  return PkeyPtr(k, EVP_PKEY_free);
}

PkeyPtr ec_keypair(const char* curve = "P-256") {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve);
  return PkeyPtr(k, EVP_PKEY_free);
}

std::string bn_param(EVP_PKEY* k, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(k, name, &bn) != 1) return {};
  std::string out(pad ? pad : BN_num_bytes(bn), '\0');
  if (pad)
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), pad);
  else
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

json::object rsa_jwk(EVP_PKEY* k, std::string kid = "rsa1") {
  return {{"kty", "RSA"},
          {"kid", kid},
          {"use", "sig"},
          {"n", gh::base64url_encode(bn_param(k, OSSL_PKEY_PARAM_RSA_N))},
          {"e", gh::base64url_encode(bn_param(k, OSSL_PKEY_PARAM_RSA_E))}};
}

json::object ec_jwk(EVP_PKEY* k, std::string kid = "ec1", const char* crv = "P-256", int coord = 32) {
  return {{"kty", "EC"},
          {"kid", kid},
          {"crv", crv},
          {"x", gh::base64url_encode(bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, coord))},
          {"y", gh::base64url_encode(bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, coord))}};
}

std::string digest_sign(EVP_PKEY* k, std::string_view data) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  std::string sig;
  if (EVP_DigestSignInit_ex(ctx, nullptr, "SHA256", nullptr, nullptr, k, nullptr) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1) {
    sig.resize(len);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1)
      sig.resize(len);
    else
      sig.clear();
  }
  EVP_MD_CTX_free(ctx);
  return sig;
}

std::string der_to_jose(std::string_view der) {
  auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (!sig) return {};
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig, &r, &s);
  std::string out(64, '\0');
  BN_bn2binpad(r, reinterpret_cast<unsigned char*>(out.data()), 32);
  BN_bn2binpad(s, reinterpret_cast<unsigned char*>(out.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return out;
}

std::string pem_public(EVP_PKEY* k) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, k);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string b64json(const json::object& o) { return gh::base64url_encode(json::serialize(o)); }

std::string signing_input(const json::object& header, const json::object& claims) {
  return b64json(header) + "." + b64json(claims);
}

std::string rs256_token(EVP_PKEY* k, const json::object& claims, std::string kid = "rsa1") {
  std::string input = signing_input({{"alg", "RS256"}, {"typ", "JWT"}, {"kid", kid}}, claims);
  return input + "." + gh::base64url_encode(digest_sign(k, input));
}

std::string es256_token(EVP_PKEY* k, const json::object& claims, bool der = false) {
  std::string input = signing_input({{"alg", "ES256"}, {"typ", "JWT"}, {"kid", "ec1"}}, claims);
  std::string sig = digest_sign(k, input);
  return input + "." + gh::base64url_encode(der ? sig : der_to_jose(sig));
}

// Key generation is the slow part: share one of each across the suite.
struct Keys {
  PkeyPtr rsa = rsa_keypair(2048);
  PkeyPtr rsa_other = rsa_keypair(2048);
  PkeyPtr ec = ec_keypair();
  PkeyPtr ec_other = ec_keypair();
};
const Keys& keys() {
  static const Keys k;
  return k;
}

Jwk must_jwk(const json::object& o) {
  std::string why;
  auto jwk = parse_jwk(o, &why);
  EXPECT_TRUE(jwk) << why;
  return jwk ? *jwk : Jwk{};
}

Jwt must_parse(std::string_view token) {
  std::string why;
  auto jwt = parse_jwt(token, &why);
  EXPECT_TRUE(jwt) << why;
  return jwt ? *jwt : Jwt{};
}

const json::object kClaims{{"sub", "alice"}, {"exp", 2000000000}};

}  // namespace

TEST(Jwt, Rs256VerifiesWithItsJwk) {
  Jwk jwk = must_jwk(rsa_jwk(keys().rsa.get()));
  EXPECT_EQ(jwk.kty, "RSA");
  EXPECT_EQ(jwk.alg, "RS256");
  EXPECT_EQ(jwk.kid, "rsa1");
  std::string token = rs256_token(keys().rsa.get(), kClaims);
  Jwt jwt = must_parse(token);
  EXPECT_EQ(jwt.alg, "RS256");
  EXPECT_EQ(jwt.kid, "rsa1");
  EXPECT_EQ(jwt.claims.at("sub").as_string(), "alice");
  EXPECT_EQ(jwt.signing_input.data(), token.data());  // a view into the caller's token
  std::string why;
  EXPECT_TRUE(verify_with_jwk(jwt, jwk, &why)) << why;
}

TEST(Jwt, Es256VerifiesWithItsJwk) {
  Jwk jwk = must_jwk(ec_jwk(keys().ec.get()));
  EXPECT_EQ(jwk.kty, "EC");
  EXPECT_EQ(jwk.alg, "ES256");
  std::string token = es256_token(keys().ec.get(), kClaims);  // the Jwt refers into it
  Jwt jwt = must_parse(token);
  EXPECT_EQ(jwt.signature.size(), 64u);
  std::string why;
  EXPECT_TRUE(verify_with_jwk(jwt, jwk, &why)) << why;
}

TEST(Jwt, TamperedPayloadFails) {
  Jwk rsa = must_jwk(rsa_jwk(keys().rsa.get()));
  Jwk ec = must_jwk(ec_jwk(keys().ec.get()));
  std::string forged_payload = b64json({{"sub", "mallory"}, {"exp", 2000000000}});
  for (auto [token, key] : {std::pair{rs256_token(keys().rsa.get(), kClaims), rsa},
                            std::pair{es256_token(keys().ec.get(), kClaims), ec}}) {
    auto d1 = token.find('.'), d2 = token.rfind('.');
    std::string forged = token.substr(0, d1 + 1) + forged_payload + token.substr(d2);
    std::string why;
    EXPECT_FALSE(verify_with_jwk(must_parse(forged), key, &why));
    EXPECT_EQ(why, "bad signature");
  }
}

TEST(Jwt, WrongKeyFails) {
  std::string why;
  EXPECT_FALSE(verify_with_jwk(must_parse(rs256_token(keys().rsa.get(), kClaims)),
                               must_jwk(rsa_jwk(keys().rsa_other.get())), &why));
  EXPECT_EQ(why, "bad signature");
  EXPECT_FALSE(verify_with_jwk(must_parse(es256_token(keys().ec.get(), kClaims)),
                               must_jwk(ec_jwk(keys().ec_other.get())), &why));
  EXPECT_EQ(why, "bad signature");
}

TEST(Jwt, AlgNoneRefused) {
  Jwk rsa = must_jwk(rsa_jwk(keys().rsa.get()));
  for (const char* none : {"none", "None", "NONE", ""}) {
    std::string token = signing_input({{"alg", none}, {"typ", "JWT"}}, kClaims) + ".";
    Jwt jwt = must_parse(token);
    std::string why;
    EXPECT_FALSE(verify_with_jwk(jwt, rsa, &why)) << none;
    EXPECT_FALSE(verify_hs256(jwt, "secret", &why)) << none;
  }
}

TEST(Jwt, Hs256WithPublicKeyAsSecretRefused) {
  // The classic confusion: sign HS256 with the verifier's public key bytes as the HMAC secret.
  std::string pem = pem_public(keys().rsa.get());
  ASSERT_FALSE(pem.empty());
  std::string token = sign_hs256(kClaims, pem);
  Jwt jwt = must_parse(token);
  std::string why;
  EXPECT_TRUE(verify_hs256(jwt, pem, &why)) << why;  // the token itself is well made
  Jwk jwk = must_jwk(rsa_jwk(keys().rsa.get()));
  EXPECT_FALSE(verify_with_jwk(jwt, jwk, &why));
  jwk.alg.clear();  // even without the JWK's own alg, HS* never reaches a public key
  EXPECT_FALSE(verify_with_jwk(jwt, jwk, &why));
  EXPECT_EQ(why, "HMAC alg refused for a public key");
}

TEST(Jwt, Rs256AgainstEcKeyRefused) {
  std::string token = rs256_token(keys().rsa.get(), kClaims);
  Jwt jwt = must_parse(token);
  Jwk ec = must_jwk(ec_jwk(keys().ec.get()));
  std::string why;
  EXPECT_FALSE(verify_with_jwk(jwt, ec, &why));
  // Even if the label lies, the key object decides.
  ec.alg = "RS256";
  ec.kty = "RSA";
  EXPECT_FALSE(verify_with_jwk(jwt, ec, &why));
  EXPECT_EQ(why, "RS256 requires an RSA key");
  std::string es_token = es256_token(keys().ec.get(), kClaims);
  Jwt es = must_parse(es_token);
  Jwk rsa = must_jwk(rsa_jwk(keys().rsa.get()));
  rsa.alg.clear();
  EXPECT_FALSE(verify_with_jwk(es, rsa, &why));
  EXPECT_EQ(why, "ES256 requires an EC P-256 key");
}

TEST(Jwt, Es256DerSignatureRefused) {
  std::string token = es256_token(keys().ec.get(), kClaims, /*der=*/true);
  Jwt jwt = must_parse(token);
  EXPECT_NE(jwt.signature.size(), 64u);
  std::string why;
  EXPECT_FALSE(verify_with_jwk(jwt, must_jwk(ec_jwk(keys().ec.get())), &why));
}

TEST(Jwt, JwkAlgMismatchRefused) {
  json::object o = rsa_jwk(keys().rsa.get());
  o["alg"] = "RS256";
  Jwk jwk = must_jwk(o);
  // The token's alg must equal the JWK's alg.
  jwk.alg = "ES256";
  std::string why;
  EXPECT_FALSE(verify_with_jwk(must_parse(rs256_token(keys().rsa.get(), kClaims)), jwk, &why));
  EXPECT_EQ(why, "alg does not match key");
  // A JWK published for an algorithm we do not implement for its type is not usable.
  for (const char* alg : {"RS512", "PS256", "ES256", "HS256"}) {
    o["alg"] = alg;
    EXPECT_FALSE(parse_jwk(o, &why)) << alg;
  }
  json::object e = ec_jwk(keys().ec.get());
  e["alg"] = "RS256";
  EXPECT_FALSE(parse_jwk(e, &why));
}

TEST(Jwt, SmallRsaKeyRefused) {
  PkeyPtr small = rsa_keypair(1024);
  std::string why;
  EXPECT_FALSE(parse_jwk(rsa_jwk(small.get()), &why));
  EXPECT_EQ(why, "RSA key too small");
  // verify_with_jwk checks again, for keys that did not come through parse_jwk.
  Jwk jwk{"small", "RSA", "RS256", small};
  EXPECT_FALSE(verify_with_jwk(must_parse(rs256_token(small.get(), kClaims)), jwk, &why));
  EXPECT_EQ(why, "RSA key too small");
}

TEST(Jwt, JwkRefusesPrivateOrForeignKeys) {
  std::string why;
  json::object o = rsa_jwk(keys().rsa.get());
  o["use"] = "enc";
  EXPECT_FALSE(parse_jwk(o, &why));
  o = rsa_jwk(keys().rsa.get());
  o["d"] = "AQAB";
  EXPECT_FALSE(parse_jwk(o, &why));
  EXPECT_FALSE(parse_jwk({{"kty", "oct"}, {"k", "c2VjcmV0"}}, &why));
  PkeyPtr p384 = ec_keypair("P-384");
  EXPECT_FALSE(parse_jwk(ec_jwk(p384.get(), "p384", "P-384", 48), &why));
  o = ec_jwk(keys().ec.get());
  std::string x = *gh::base64url_decode(std::string_view(o["x"].as_string()));
  x[31] ^= 1;  // no longer on the curve
  o["x"] = gh::base64url_encode(x);
  EXPECT_FALSE(parse_jwk(o, &why));
}

TEST(Jwt, MalformedTokensRefused) {
  std::string good = rs256_token(keys().rsa.get(), kClaims);
  auto d1 = good.find('.'), d2 = good.rfind('.');
  std::string header = good.substr(0, d1), payload = good.substr(d1 + 1, d2 - d1 - 1), sig = good.substr(d2 + 1);
  auto refused = [](std::string_view token, std::size_t max = kMaxTokenBytes) {
    std::string why;
    bool ok = parse_jwt(token, &why, max).has_value();
    EXPECT_FALSE(ok) << token.substr(0, 80);
    EXPECT_FALSE(why.empty());
    return why;
  };
  EXPECT_EQ(refused(header + "." + payload), "token must have three parts");
  EXPECT_EQ(refused(good + "." + sig), "token must have three parts");
  EXPECT_EQ(refused(""), "token must have three parts");
  refused(header + ".ey!J." + sig);                   // invalid character
  refused(header + "." + payload + "." + sig + "=");  // padding
  refused(header + "=." + payload + "." + sig);
  refused(header + "." + payload + "+." + sig);        // base64 (not url) alphabet
  refused("." + payload + "." + sig);                  // empty header
  refused(header + "." + gh::base64url_encode("[1,2]") + "." + sig);      // payload not an object
  refused(gh::base64url_encode("\"RS256\"") + "." + payload + "." + sig);  // header not an object
  refused(header + "." + gh::base64url_encode("{\"a\":") + "." + sig);    // not JSON
  refused(b64json({{"typ", "JWT"}}) + "." + payload + "." + sig);          // no alg
  refused(b64json({{"alg", 256}}) + "." + payload + "." + sig);            // alg not a string
  EXPECT_EQ(refused(b64json({{"alg", "RS256"}, {"crit", json::array{"exp"}}}) + "." + payload + "." + sig),
            "crit header not supported");
  std::string big = gh::base64url_encode(json::serialize(json::object{{"pad", std::string(kMaxTokenBytes, 'x')}}));
  EXPECT_EQ(refused(header + "." + big + "." + sig), "token too large");
  EXPECT_EQ(refused(good, good.size() - 1), "token too large");
  std::string why;
  EXPECT_TRUE(parse_jwt(good, &why, good.size())) << why;
}

TEST(Jwt, Hs256RoundTripAndWrongSecret) {
  json::object claims{{"id", "6c1f0a2e-1111-2222-3333-444455556666"}, {"exp", 1900000000}};
  std::string token = sign_hs256(claims, "s3cret");
  Jwt jwt = must_parse(token);
  EXPECT_EQ(jwt.header.at("alg").as_string(), "HS256");
  EXPECT_EQ(jwt.header.at("typ").as_string(), "JWT");
  EXPECT_EQ(jwt.claims, claims);
  std::string why;
  EXPECT_TRUE(verify_hs256(jwt, "s3cret", &why)) << why;
  EXPECT_FALSE(verify_hs256(jwt, "s3cres", &why));
  EXPECT_EQ(why, "bad signature");
  EXPECT_FALSE(verify_hs256(jwt, "", &why));
  EXPECT_EQ(expires_at(jwt.claims), 1900000000);
  // verify_hs256 accepts HS256 only, not the other HMAC sizes or a public-key alg.
  std::string input = signing_input({{"alg", "HS512"}}, claims);
  std::string hs512 = input + "." + gh::base64url_encode(hmac_sha256_raw("s3cret", input));
  EXPECT_FALSE(verify_hs256(must_parse(hs512), "s3cret", &why));
  EXPECT_EQ(why, "alg is not HS256");
}

TEST(Jwt, Hs256KnownVector) {
  const char* token =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIy"
      "fQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
  Jwt jwt = must_parse(token);
  std::string why;
  EXPECT_TRUE(verify_hs256(jwt, "your-256-bit-secret", &why)) << why;
  EXPECT_EQ(jwt.claims.at("name").as_string(), "John Doe");
  EXPECT_FALSE(verify_hs256(jwt, "your-256-bit-secreT", &why));
}

TEST(Jwt, DigestsAndRandomness) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_raw("abc").size(), 32u);
  // RFC 4231 test case 2
  std::string mac = hmac_sha256_raw("Jefe", "what do ya want for nothing?");
  EXPECT_EQ(mac, std::string("\x5b\xdc\xc1\x46\xbf\x60\x75\x4e\x6a\x04\x24\x26\x08\x95\x75\xc7\x5a\x00\x3f\x08"
                             "\x9d\x27\x39\x83\x9d\xec\x58\xb9\x64\xec\x38\x43",
                             32));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  std::string a = random_token(32), b = random_token(32);
  EXPECT_EQ(a.size(), 43u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), std::string::npos);
}

TEST(JwtClaims, Expiry) {
  ClaimRules rules;
  rules.now = 1000000;
  rules.leeway_s = 60;
  std::string why;
  EXPECT_TRUE(check_claims({{"exp", 1000000}}, rules, &why)) << why;
  EXPECT_TRUE(check_claims({{"exp", 1000000 - 60}}, rules, &why)) << why;  // within leeway
  EXPECT_FALSE(check_claims({{"exp", 1000000 - 61}}, rules, &why));
  EXPECT_EQ(why, "token expired");
  EXPECT_FALSE(check_claims({{"sub", "x"}}, rules, &why));
  EXPECT_EQ(why, "exp missing");
  EXPECT_FALSE(check_claims({{"exp", "2000000000"}}, rules, &why));
  EXPECT_EQ(why, "exp not numeric");
  EXPECT_FALSE(check_claims({{"exp", true}}, rules, &why));
  EXPECT_FALSE(check_claims({{"exp", nullptr}}, rules, &why));
  EXPECT_TRUE(check_claims({{"exp", 1000000.5}}, rules, &why)) << why;
  EXPECT_TRUE(check_claims({{"exp", json::value(uint64_t(18446744073709551615ull))}}, rules, &why)) << why;
  rules.require_exp = false;
  EXPECT_TRUE(check_claims({{"sub", "x"}}, rules, &why)) << why;
  EXPECT_FALSE(check_claims({{"exp", "soon"}}, rules, &why));  // present but not numeric still refused
}

TEST(JwtClaims, NotBeforeAndIssuedAt) {
  ClaimRules rules;
  rules.now = 1000000;
  rules.require_exp = false;
  std::string why;
  EXPECT_TRUE(check_claims({{"nbf", 1000000 + 60}}, rules, &why)) << why;
  EXPECT_FALSE(check_claims({{"nbf", 1000000 + 61}}, rules, &why));
  EXPECT_EQ(why, "not yet valid");
  EXPECT_FALSE(check_claims({{"nbf", "0"}}, rules, &why));
  EXPECT_EQ(why, "nbf not numeric");
  EXPECT_TRUE(check_claims({{"iat", 1000000 + 60}}, rules, &why)) << why;
  EXPECT_FALSE(check_claims({{"iat", 1000000 + 3600}}, rules, &why));
  EXPECT_EQ(why, "issued in the future");
  EXPECT_FALSE(check_claims({{"iat", json::array{1}}}, rules, &why));
  EXPECT_EQ(why, "iat not numeric");
}

TEST(JwtClaims, IssuerAndTenants) {
  ClaimRules rules;
  rules.now = 1000000;
  rules.require_exp = false;
  rules.issuers = {"https://login.microsoftonline.com/{tenantid}/v2.0", "https://idp.example"};
  const std::string tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
  const std::string entra_iss = "https://login.microsoftonline.com/" + tid + "/v2.0";
  std::string why;
  EXPECT_TRUE(check_claims({{"iss", "https://idp.example"}}, rules, &why)) << why;
  EXPECT_FALSE(check_claims({{"iss", "https://idp.example/"}}, rules, &why));
  EXPECT_EQ(why, "issuer mismatch");
  EXPECT_FALSE(check_claims({{"sub", "x"}}, rules, &why));
  EXPECT_TRUE(check_claims({{"iss", entra_iss}, {"tid", tid}}, rules, &why)) << why;
  // the substituted tid must be the token's own
  EXPECT_FALSE(check_claims({{"iss", entra_iss}, {"tid", "00000000-0000-0000-0000-000000000000"}}, rules, &why));
  EXPECT_EQ(why, "issuer mismatch");
  // without a usable tid the template never matches, not even literally
  EXPECT_FALSE(check_claims({{"iss", "https://login.microsoftonline.com/{tenantid}/v2.0"}}, rules, &why));
  EXPECT_FALSE(check_claims({{"iss", "https://login.microsoftonline.com/evil/v2.0"}, {"tid", "evil"}}, rules, &why));
  EXPECT_FALSE(check_claims({{"iss", "https://login.microsoftonline.com/a/b/v2.0"}, {"tid", "a/b"}}, rules, &why));
  rules.allowed_tenants = {"11111111-2222-3333-4444-555555555555"};
  EXPECT_FALSE(check_claims({{"iss", entra_iss}, {"tid", tid}}, rules, &why));
  EXPECT_EQ(why, "tenant not allowed");
  rules.allowed_tenants.push_back(tid);
  EXPECT_TRUE(check_claims({{"iss", entra_iss}, {"tid", tid}}, rules, &why)) << why;
  EXPECT_FALSE(check_claims({{"iss", "https://idp.example"}}, rules, &why));  // no tid at all
  EXPECT_EQ(why, "tenant not allowed");
}

TEST(JwtClaims, Audience) {
  ClaimRules rules;
  rules.now = 1000000;
  rules.require_exp = false;
  rules.audiences = {"api://gatehouse", "gatehouse-client"};
  std::string why;
  EXPECT_TRUE(check_claims({{"aud", "gatehouse-client"}}, rules, &why)) << why;
  EXPECT_TRUE(check_claims({{"aud", json::array{"other", "api://gatehouse"}}}, rules, &why)) << why;
  EXPECT_FALSE(check_claims({{"aud", json::array{"other", 1}}}, rules, &why));
  EXPECT_EQ(why, "audience mismatch");
  EXPECT_FALSE(check_claims({{"aud", "api://gatehouse/"}}, rules, &why));
  EXPECT_EQ(why, "audience mismatch");
  EXPECT_FALSE(check_claims({{"sub", "x"}}, rules, &why));
  EXPECT_EQ(why, "audience missing");
  rules.audiences.clear();
  EXPECT_TRUE(check_claims({{"sub", "x"}}, rules, &why)) << why;
}

TEST(JwtJwks, SkipsUnusableKeys) {
  PkeyPtr small = rsa_keypair(1024);
  PkeyPtr p384 = ec_keypair("P-384");
  json::object enc = rsa_jwk(keys().rsa_other.get(), "enc");
  enc["use"] = "enc";
  json::object priv = ec_jwk(keys().ec_other.get(), "priv");
  priv["d"] = gh::base64url_encode(std::string(32, '\x01'));
  json::array list{rsa_jwk(keys().rsa.get(), "good-rsa"),
                   rsa_jwk(small.get(), "small"),
                   ec_jwk(p384.get(), "p384", "P-384", 48),
                   json::object{{"kty", "oct"}, {"kid", "hmac"}, {"k", "c2VjcmV0"}},
                   json::object{{"kty", "OKP"}, 
                                {"crv", "Ed25519"}, {"x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
                   enc,
                   priv,
                   "not an object",
                   ec_jwk(keys().ec.get(), "good-ec")};
  std::string why;
  auto keys_found = parse_jwks(json::serialize(json::object{{"keys", list}}), &why);
  ASSERT_EQ(keys_found.size(), 2u) << why;
  EXPECT_EQ(keys_found[0].kid, "good-rsa");
  EXPECT_EQ(keys_found[1].kid, "good-ec");
  EXPECT_TRUE(verify_with_jwk(must_parse(es256_token(keys().ec.get(), kClaims)), keys_found[1], &why)) << why;

  why.clear();
  EXPECT_TRUE(parse_jwks("{\"keys\":", &why).empty());
  EXPECT_FALSE(why.empty());
  why.clear();
  EXPECT_TRUE(parse_jwks("{\"keys\":{}}", &why).empty());
  EXPECT_FALSE(why.empty());
  why.clear();
  EXPECT_TRUE(parse_jwks("[]", &why).empty());
  EXPECT_FALSE(why.empty());
}
