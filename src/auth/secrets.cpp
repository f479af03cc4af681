// AES-256-GCM over OpenSSL's EVP interface. Neither key text nor plaintext ever reaches an exception
// message or a log line: errors name the setting and say what is wrong with its shape only.
#include "auth/secrets.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>
#include <stdexcept>

#include "auth/jwt.hpp"
#include "core/config.hpp"
#include "core/util.hpp"

namespace gh::auth {
namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// Standard alphabet with padding, no line breaks.
std::string base64_encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Overwrites a string's bytes before it is freed (key material).
void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
}

std::string decode_key(std::string_view text, const char* setting) {
  text = trim(text);
  if (text.empty()) throw ConfigError(setting, "is empty; want base64 of 32 random bytes");
  // base64url_decode takes both alphabets and optional padding.
  auto bytes = base64url_decode(text);
  if (!bytes) throw ConfigError(setting, "is not valid base64; want base64 of 32 random bytes");
  if (bytes->size() != kKeyBytes) {
    auto n = bytes->size();
    wipe(*bytes);
    throw ConfigError(setting, "decodes to " + std::to_string(n) + " bytes; want exactly 32");
  }
  // A copy, not `std::move(*bytes)`: GCC 12 warns falsely (-Warray-bounds) on moving out of the optional.
  std::string key(bytes->data(), bytes->size());
  wipe(*bytes);
  return key;
}

std::string key_id_of(std::string_view key) {
  std::string input = "gatehouse-key-id:";
  input.append(key);
  auto digest = sha256_raw(input);
  wipe(input);
  return to_hex(std::string_view(digest).substr(0, 8));
}

// Appends "<length>:<bytes>" so that no two (group, server, slot) triples give the same text.
void append_field(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out.append(field);
}

}  // namespace

SecretBox::SecretBox(std::string_view current_b64, const std::vector<std::string>& previous_b64) {
  auto add = [&](std::string_view text, const char* setting) {
    auto bytes = decode_key(text, setting);
    auto id = key_id_of(bytes);
    for (auto& k : keys_)
      if (k.id == id) {  // the same key listed twice: keep the first
        wipe(bytes);
        return;
      }
    keys_.push_back({std::move(id), std::move(bytes)});
  };
  add(current_b64, "ENCRYPTION_KEY");
  for (auto& p : previous_b64)
    if (!trim(p).empty()) add(p, "ENCRYPTION_KEY_PREVIOUS");
}

std::string SecretBox::seal(std::string_view plaintext, std::string_view associated_data) const {
  const auto& key = keys_.front().bytes;
  std::string out(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  auto* body = nonce + kNonceBytes;
  if (RAND_bytes(nonce, static_cast<int>(kNonceBytes)) != 1) throw std::runtime_error("RAND_bytes failed");

  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceBytes), nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, reinterpret_cast<const unsigned char*>(key.data()),
                               nonce) == 1;
  if (ok && !associated_data.empty())
    ok = EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(associated_data.data()),
                           static_cast<int>(associated_data.size())) == 1;
  int written = 0;
  if (ok && !plaintext.empty()) {
    ok = EVP_EncryptUpdate(ctx.get(), body, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                           static_cast<int>(plaintext.size())) == 1;
    written = len;
  }
  if (ok) {
    ok = EVP_EncryptFinal_ex(ctx.get(), body + written, &len) == 1;  // GCM: writes nothing
    written += len;
  }
  if (ok)
    ok = EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes), body + written) == 1;
  if (!ok || static_cast<size_t>(written) != plaintext.size()) throw std::runtime_error("AES-256-GCM seal failed");
  return base64_encode(out);
}

std::optional<std::string> SecretBox::open(std::string_view sealed, std::string_view key_id,
                                           std::string_view associated_data) const {
  const Key* key = nullptr;
  for (auto& k : keys_)
    if (k.id == key_id) key = &k;
  if (!key) return std::nullopt;
  auto raw = base64url_decode(trim(sealed));
  if (!raw || raw->size() < kNonceBytes + kTagBytes) return std::nullopt;

  auto* nonce = reinterpret_cast<const unsigned char*>(raw->data());
  auto* body = nonce + kNonceBytes;
  size_t body_len = raw->size() - kNonceBytes - kTagBytes;
  // EVP_CIPHER_CTX_ctrl takes a non-const tag pointer for SET_TAG; it only reads it.
  auto* tag = reinterpret_cast<unsigned char*>(raw->data()) + kNonceBytes + body_len;

  std::string plain(body_len, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonceBytes), nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, reinterpret_cast<const unsigned char*>(key->bytes.data()),
                               nonce) == 1;
  if (ok && !associated_data.empty())
    ok = EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(associated_data.data()),
                           static_cast<int>(associated_data.size())) == 1;
  int written = 0;
  if (ok && body_len > 0) {
    ok = EVP_DecryptUpdate(ctx.get(), out, &len, body, static_cast<int>(body_len)) == 1;
    written = len;
  }
  if (ok) ok = EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes), tag) == 1;
  // The tag is checked here; on failure the unauthenticated output is wiped, never returned.
  if (ok) {
    ok = EVP_DecryptFinal_ex(ctx.get(), out + written, &len) == 1;
    written += len;
  }
  if (!ok || static_cast<size_t>(written) != body_len) {
    wipe(plain);
    return std::nullopt;
  }
  return plain;
}

bool SecretBox::knows(std::string_view key_id) const {
  for (auto& k : keys_)
    if (k.id == key_id) return true;
  return false;
}

std::string SecretBox::row_aad(std::string_view group, std::string_view server, std::string_view slot) {
  std::string out = "gatehouse-tenant-key:";
  append_field(out, group);
  append_field(out, server);
  append_field(out, slot);
  return out;
}

std::string SecretBox::mask(std::string_view value) {
  static constexpr std::string_view kDots = "\u2022\u2022\u2022\u2022";
  // Counted in UTF-8 characters, so a multi-byte character is never cut in half.
  auto is_continuation = [](char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; };
  size_t chars = 0;
  for (char c : value)
    if (!is_continuation(c)) ++chars;
  if (chars < 8) return std::string(kDots);
  size_t start = value.size();
  for (int seen = 0; seen < 4 && start > 0;) {
    --start;
    if (!is_continuation(value[start])) ++seen;
  }
  std::string out(kDots);
  out.append(value.substr(start));
  return out;
}

}  // namespace gh::auth
