// Tenant credential values at rest: AES-256-GCM under ENCRYPTION_KEY (32 bytes, base64). Each sealed value
// carries the id of the key that sealed it, so keys can be rotated (ENCRYPTION_KEY_PREVIOUS keeps old keys
// readable until `gatehouse keys rotate` re-seals everything). The associated data binds a value to its
// row (group, server, slot): a ciphertext copied to another row does not open. Pure code, no I/O.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gh::auth {

class SecretBox {
 public:
  // `current` and each of `previous`: base64 (standard or url-safe, padding optional) of exactly 32 bytes.
  // Throws ConfigError naming ENCRYPTION_KEY / ENCRYPTION_KEY_PREVIOUS when a key is malformed.
  SecretBox(std::string_view current_b64, const std::vector<std::string>& previous_b64 = {});

  // 16 hex characters: the first 8 bytes of SHA-256 over "gatehouse-key-id:" + key. Not secret.
  const std::string& key_id() const { return keys_.front().id; }

  // base64(nonce(12) || ciphertext || tag(16)), with a fresh random nonce per call.
  std::string seal(std::string_view plaintext, std::string_view associated_data) const;
  // nullopt when the key id is unknown, the text is malformed, or authentication fails.
  std::optional<std::string> open(std::string_view sealed, std::string_view key_id,
                                  std::string_view associated_data) const;
  bool knows(std::string_view key_id) const;

  // The associated data for a tenant key row.
  static std::string row_aad(std::string_view group, std::string_view server, std::string_view slot);
  // "••••" + the last 4 characters (or fewer for values shorter than 8: only "••••").
  static std::string mask(std::string_view value);

 private:
  struct Key {
    std::string id;
    std::string bytes;  // 32
  };
  std::vector<Key> keys_;  // current first
};

}  // namespace gh::auth
