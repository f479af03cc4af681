// SecretBox: AES-256-GCM sealing of tenant credentials, key ids and rotation, key parsing, masking.
#include <gtest/gtest.h>

#include <string>

#include "auth/secrets.hpp"
#include "core/config.hpp"
#include "core/util.hpp"

using gh::auth::SecretBox;

namespace {

// Standard base64, padded, of 32 bytes of `fill`.
std::string key_b64(char fill) {
  auto url = gh::base64url_encode(std::string(32, fill));  // no padding, url alphabet
  for (auto& c : url) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  return url + "=";
}

const std::string kAad = SecretBox::row_aad("Tenant-Acme", "github", "GITHUB_TOKEN");

// Flips one bit of the decoded byte at `index` (negative: from the end) and re-encodes.
std::string tamper(const std::string& sealed, int index) {
  auto raw = gh::base64url_decode(sealed).value();
  size_t i = index >= 0 ? static_cast<size_t>(index) : raw.size() - static_cast<size_t>(-index);
  raw[i] = static_cast<char>(raw[i] ^ 0x01);
  return gh::base64url_encode(raw);
}

}  // namespace

TEST(SecretBox, RoundTrip) {
  SecretBox box(key_b64('a'));
  auto sealed = box.seal("sk-live-abcdef123456", kAad);
  EXPECT_EQ(sealed.find("sk-live"), std::string::npos);
  // Standard alphabet, padded: 12 + 20 + 16 = 48 bytes → 64 characters.
  EXPECT_EQ(sealed.size(), 64u);
  EXPECT_EQ(sealed.find_first_of("-_"), std::string::npos);
  auto opened = box.open(sealed, box.key_id(), kAad);
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, "sk-live-abcdef123456");
}

TEST(SecretBox, EmptyPlaintextRoundTrip) {
  SecretBox box(key_b64('a'));
  auto sealed = box.seal("", kAad);
  auto opened = box.open(sealed, box.key_id(), kAad);
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, "");
  // Empty associated data works too, and binds as strictly.
  auto no_aad = box.seal("v", "");
  EXPECT_EQ(box.open(no_aad, box.key_id(), ""), "v");
  EXPECT_FALSE(box.open(no_aad, box.key_id(), kAad));
}

TEST(SecretBox, FreshNonceEachSeal) {
  SecretBox box(key_b64('a'));
  auto a = box.seal("same value", kAad);
  auto b = box.seal("same value", kAad);
  EXPECT_NE(a, b);
  EXPECT_NE(gh::base64url_decode(a)->substr(0, 12), gh::base64url_decode(b)->substr(0, 12));
  EXPECT_EQ(box.open(a, box.key_id(), kAad), "same value");
  EXPECT_EQ(box.open(b, box.key_id(), kAad), "same value");
}

TEST(SecretBox, WrongAssociatedDataFails) {
  SecretBox box(key_b64('a'));
  auto sealed = box.seal("secret", kAad);
  // The same ciphertext copied to another row does not open.
  EXPECT_FALSE(box.open(sealed, box.key_id(), SecretBox::row_aad("Tenant-Other", "github", "GITHUB_TOKEN")));
  EXPECT_FALSE(box.open(sealed, box.key_id(), SecretBox::row_aad("Tenant-Acme", "gitlab", "GITHUB_TOKEN")));
  EXPECT_FALSE(box.open(sealed, box.key_id(), SecretBox::row_aad("Tenant-Acme", "github", "OTHER")));
  EXPECT_FALSE(box.open(sealed, box.key_id(), ""));
}

TEST(SecretBox, RowAadIsUnambiguous) {
  EXPECT_NE(SecretBox::row_aad("a", "bc", "d"), SecretBox::row_aad("ab", "c", "d"));
  EXPECT_NE(SecretBox::row_aad("a:1", "b", "c"), SecretBox::row_aad("a", "1:b", "c"));
  EXPECT_EQ(SecretBox::row_aad("g", "s", "k"), SecretBox::row_aad("g", "s", "k"));
}

TEST(SecretBox, TamperedCiphertextOrTagFails) {
  SecretBox box(key_b64('a'));
  auto sealed = box.seal("a credential value", kAad);
  EXPECT_FALSE(box.open(tamper(sealed, 0), box.key_id(), kAad));    // nonce
  EXPECT_FALSE(box.open(tamper(sealed, 12), box.key_id(), kAad));   // ciphertext
  EXPECT_FALSE(box.open(tamper(sealed, -1), box.key_id(), kAad));   // tag
  EXPECT_FALSE(box.open(tamper(sealed, -16), box.key_id(), kAad));  // tag
  auto raw = gh::base64url_decode(sealed).value();
  EXPECT_FALSE(box.open(gh::base64url_encode(raw.substr(0, raw.size() - 1)), box.key_id(), kAad));  // truncated
  EXPECT_FALSE(box.open(gh::base64url_encode(raw.substr(0, 27)), box.key_id(), kAad));  // shorter than nonce+tag
  EXPECT_FALSE(box.open("", box.key_id(), kAad));
  EXPECT_FALSE(box.open("not base64 at all!", box.key_id(), kAad));
  EXPECT_TRUE(box.open(sealed, box.key_id(), kAad));  // the original still opens
}

TEST(SecretBox, KeyIdAndUnknownKeyId) {
  SecretBox a(key_b64('a'));
  SecretBox a_again(key_b64('a'));
  SecretBox b(key_b64('b'));
  EXPECT_EQ(a.key_id().size(), 16u);
  EXPECT_EQ(a.key_id().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(a.key_id(), a_again.key_id());
  EXPECT_NE(a.key_id(), b.key_id());
  EXPECT_TRUE(a.knows(a.key_id()));
  EXPECT_FALSE(a.knows(b.key_id()));

  auto sealed = a.seal("v", kAad);
  EXPECT_FALSE(a.open(sealed, b.key_id(), kAad));
  EXPECT_FALSE(a.open(sealed, "0000000000000000", kAad));
  EXPECT_FALSE(a.open(sealed, "", kAad));
  EXPECT_FALSE(b.open(sealed, a.key_id(), kAad));  // b does not hold key a
}

TEST(SecretBox, PreviousKeysOpenOldValues) {
  SecretBox old_box(key_b64('o'));
  auto sealed = old_box.seal("old secret", kAad);

  SecretBox rotated(key_b64('n'), {key_b64('o')});
  EXPECT_NE(rotated.key_id(), old_box.key_id());  // the current key seals
  EXPECT_TRUE(rotated.knows(old_box.key_id()));
  EXPECT_EQ(rotated.open(sealed, old_box.key_id(), kAad), "old secret");
  // Re-sealing moves the value to the current key.
  auto resealed = rotated.seal(*rotated.open(sealed, old_box.key_id(), kAad), kAad);
  EXPECT_EQ(rotated.open(resealed, rotated.key_id(), kAad), "old secret");
  EXPECT_FALSE(old_box.open(resealed, rotated.key_id(), kAad));

  SecretBox without(key_b64('n'));
  EXPECT_FALSE(without.knows(old_box.key_id()));
  EXPECT_FALSE(without.open(sealed, old_box.key_id(), kAad));
  // Nor does it open under the wrong key by claiming the current key's id.
  EXPECT_FALSE(without.open(sealed, without.key_id(), kAad));

  // Blank entries in the previous list are ignored; the current key repeated there is harmless.
  SecretBox lenient(key_b64('n'), {"", "  ", key_b64('n'), key_b64('o')});
  EXPECT_EQ(lenient.open(sealed, old_box.key_id(), kAad), "old secret");
}

TEST(SecretBox, AcceptsBothAlphabetsWithOrWithoutPaddingAndWhitespace) {
  // Bytes 0xfb 0xff … encode with '+' and '/' (standard) or '-' and '_' (url-safe).
  std::string bytes(32, '\xfb');
  bytes[1] = '\xff';
  auto url = gh::base64url_encode(bytes);
  ASSERT_NE(url.find_first_of("-_"), std::string::npos);
  std::string standard = url;
  for (auto& c : standard) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  SecretBox from_url(url);
  SecretBox from_std(standard + "=");
  SecretBox from_std_unpadded(standard);
  SecretBox from_url_padded("  " + url + "=\n");
  EXPECT_EQ(from_url.key_id(), from_std.key_id());
  EXPECT_EQ(from_url.key_id(), from_std_unpadded.key_id());
  EXPECT_EQ(from_url.key_id(), from_url_padded.key_id());
  EXPECT_EQ(from_std.open(from_url.seal("x", kAad), from_url.key_id(), kAad), "x");
}

TEST(SecretBox, MalformedKeysThrowConfigErrorWithoutTheKeyText) {
  auto expect_config_error = [](auto&& make, const std::string& setting, const std::string& key_text) {
    try {
      make();
      ADD_FAILURE() << "expected ConfigError for " << setting;
    } catch (const gh::ConfigError& e) {
      EXPECT_EQ(e.setting, setting);
      std::string what = e.what();
      EXPECT_NE(what.find(setting), std::string::npos) << what;
      if (!gh::trim(key_text).empty()) {
        EXPECT_EQ(what.find(std::string(gh::trim(key_text))), std::string::npos) << what;
      }
    }
  };
  auto short_key = gh::base64url_encode(std::string(31, 'k'));  // 31 bytes
  auto long_key = gh::base64url_encode(std::string(33, 'k'));
  std::string not_base64 = "this-is-not*base64!but-quite-long-secret-text";
  for (const auto& bad : {short_key, long_key, not_base64}) {
    expect_config_error([&] { SecretBox box(bad); }, "ENCRYPTION_KEY", bad);
    expect_config_error([&] { SecretBox box(key_b64('a'), {key_b64('b'), bad}); }, "ENCRYPTION_KEY_PREVIOUS", bad);
  }
  expect_config_error([&] { SecretBox box(""); }, "ENCRYPTION_KEY", "");
  expect_config_error([&] { SecretBox box("  \n"); }, "ENCRYPTION_KEY", "");
  // A bad current key is reported as such even when the previous keys are fine.
  expect_config_error([&] { SecretBox box(short_key, {key_b64('a')}); }, "ENCRYPTION_KEY", short_key);
}

TEST(SecretBox, Mask) {
  EXPECT_EQ(SecretBox::mask("sk-abcdefgh1234"), "\u2022\u2022\u2022\u20221234");
  EXPECT_EQ(SecretBox::mask("short"), "\u2022\u2022\u2022\u2022");
  EXPECT_EQ(SecretBox::mask(""), "\u2022\u2022\u2022\u2022");
  EXPECT_EQ(SecretBox::mask("1234567"), "\u2022\u2022\u2022\u2022");
  EXPECT_EQ(SecretBox::mask("12345678"), "\u2022\u2022\u2022\u20225678");
  // Multi-byte characters are counted and kept whole.
  EXPECT_EQ(SecretBox::mask("clé-secrète-€€€€"), "\u2022\u2022\u2022\u2022€€€€");
  EXPECT_EQ(SecretBox::mask("ééééééé"), "\u2022\u2022\u2022\u2022");  // 7 characters, 14 bytes
}
