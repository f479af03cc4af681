// Small helpers shared across the code base: strings, encoding, randomness.
#pragma once
#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

namespace gh {

// How deeply a JSON text may nest (the top-level value counted) for parse_json and the message scanners.
inline constexpr int kMaxJsonDepth = 64;
// A JSON parse whose values share one arena, released when the last of them is gone: parsing a message
// makes one allocation instead of one per key, string and container.
boost::json::value parse_json(std::string_view text, boost::system::error_code& ec);
// `text` with every lone surrogate escape (\ud800 without its pair, \udc00 alone) made \ufffd; nullopt when
// it has none. JavaScript's JSON.stringify writes a lone surrogate that way, which RFC 8259 parsers refuse.
std::optional<std::string> mend_lone_surrogates(std::string_view text);

// Byte tests on a word of 8 bytes at once (text scanning on the hot path). As yes/no answers for the whole
// word they are exact (a borrow can only add false hits above a true one); `n` at most 0x80.
inline bool word_has_byte_below(uint64_t w, uint8_t n) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
  return ((w - kOnes * n) & ~w & kHigh) != 0;
}
inline bool word_has_byte(uint64_t w, uint8_t c) {
  return word_has_byte_below(w ^ (0x0101010101010101ULL * c), 1);
}

// The project's JSON writer: the JSON text of a value, the same bytes boost::json::serialize writes (numbers
// with a fraction or an exponent are written by Boost.JSON itself), in a fraction of its time: text is copied
// in runs, 16 bytes (SSE2; else 8) checked at a time for the few that need escaping, where Boost.JSON's
// serializer takes each byte in turn (~9 instructions a byte: a 10 KB tool result paid ~90,000 to be written
// once). Every message, answer, log line and stored JSON text goes through it.
std::string to_json(const boost::json::value& v);
std::string to_json(const boost::json::object& o);
std::string to_json_array(std::span<const boost::json::value> items);  // a JSON array of the items
// A JSON-RPC request's text, {"jsonrpc":"2.0","id":<id>,"method":<method>,"params":<params>} (no params when
// null), written from its parts without building its object first.
std::string to_json_request(uint64_t id, std::string_view method, const boost::json::value& params);
// The same with params given as JSON text, written as they are.
std::string to_json_request_raw(uint64_t id, std::string_view method, std::string_view params_json);

// Wall-clock Unix time in whole seconds (what the store and tokens keep).
int64_t unix_now();
// A number's decimal digits, held in the object (std::to_string without its string), for append_all.
struct Decimal {
  explicit Decimal(uint64_t v)
      : size(static_cast<std::size_t>(std::to_chars(digits, digits + sizeof digits, v).ptr - digits)) {}
  operator std::string_view() const { return {digits, size}; }
  char digits[20];
  std::size_t size;
};
// Appends the pieces with one capacity check (message heads on the hot path: each out-of-line `append` was
// a call, a check and a copy call, ~45 instructions; inlined here, a literal piece is a few moves).
template <class... Pieces>
inline void append_all(std::string& out, const Pieces&... pieces) {
  const std::string_view views[] = {std::string_view(pieces)...};
  std::size_t n = 0;
  for (auto v : views) n += v.size();
  std::size_t at = out.size();
  out.resize(at + n);
  char* d = out.data() + at;
  for (auto v : views) {
    std::memcpy(d, v.data(), v.size());
    d += v.size();
  }
}

// Bytes as lowercase hex (2 characters a byte).
std::string to_hex(std::string_view bytes);
// Cryptographically random bytes as lowercase hex (2 * bytes characters).
std::string random_bytes(std::size_t n);  // from OpenSSL's generator
std::string random_hex(std::size_t bytes);

std::string base64url_encode(std::string_view data);
std::optional<std::string> base64url_decode(std::string_view text);

// Removes ASCII whitespace (the C locale's isspace set) from both ends.
std::string_view trim(std::string_view s);
std::vector<std::string_view> split(std::string_view s, char sep);
// A whole file's bytes; nullopt when it cannot be opened.
std::optional<std::string> read_file(const std::string& path);
// ASCII case-insensitive equality (header names, tokens, hosts). Inline: it runs dozens of times per request,
// mostly to find a size mismatch. Eight bytes at a time (the last word overlapping the one before): each
// word's A-Z bytes get the case bit (0x20).
inline bool iequals(std::string_view a, std::string_view b) {
  std::size_t n = a.size();
  if (n != b.size()) return false;
  if (n < 8) {
    auto fold = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c; };
    for (std::size_t i = 0; i < n; ++i)
      if (fold(a[i]) != fold(b[i])) return false;
    return true;
  }
  auto lower = [](const char* p) {
    constexpr uint64_t ones = 0x0101010101010101ull, high = 0x80 * ones;
    uint64_t v;
    std::memcpy(&v, p, 8);
    uint64_t seven = v & ~high;                  // each byte's low seven bits
    uint64_t ge_a = seven + (0x80 - 'A') * ones;  // bit 7 set where the byte >= 'A'
    uint64_t gt_z = seven + (0x7f - 'Z') * ones;  // bit 7 set where the byte > 'Z'
    uint64_t upper = (ge_a ^ gt_z) & ~v & high;   // 'A'..'Z', not bytes >= 0x80
    return v | (upper >> 2);
  };
  for (std::size_t i = 0; i + 8 < n; i += 8)
    if (lower(a.data() + i) != lower(b.data() + i)) return false;
  return lower(a.data() + n - 8) == lower(b.data() + n - 8);
}
// Case-insensitive search of a token in a comma-separated header value (e.g. Accept).
bool header_has_token(std::string_view header, std::string_view token);
// Whether a Content-Type's media type (before any ';' parameters) is `type` (lower case), case-insensitively.
// Not "any element of a list": "text/plain, application/json" is text/plain to a browser, which sends it
// cross-site without asking first.
inline bool media_type_is(std::string_view content_type, std::string_view type) {
  auto essence = content_type.substr(0, content_type.find(';'));
  while (!essence.empty() && (essence.back() == ' ' || essence.back() == '\t')) essence.remove_suffix(1);
  while (!essence.empty() && (essence.front() == ' ' || essence.front() == '\t')) essence.remove_prefix(1);
  return iequals(essence, type);
}

// Whether the 8 bytes at p are all printable ASCII (0x20..0x7e), a word at a time (the common case: the
// io thread packs ~100 such bytes per request).
inline bool printable_ascii8(const char* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return !(((x & 0x8080808080808080ULL) != 0) | word_has_byte_below(x, 0x20) | word_has_byte(x, 0x7f));
}

// Whether all of p[0, n) is printable ASCII (what nearly every recorded text is): 8 bytes at a time, the
// last word overlapping the one before it, a text under 8 bytes padded with spaces.
inline bool printable_ascii(const char* p, std::size_t n) {
  if (n < 8) {
    char w[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    std::memcpy(w, p, n);
    return printable_ascii8(w);
  }
  for (std::size_t i = 0; i + 8 < n; i += 8)
    if (!printable_ascii8(p + i)) return false;
  return printable_ascii8(p + n - 8);
}

// Replaces control characters, and bytes outside printable ASCII (`ascii_only`) or of invalid or cut
// UTF-8 sequences, with '?', in place (analytics texts; a JSON log line, whose control characters are
// escaped already).
void sanitize_text_slow(char* p, std::size_t n, bool ascii_only);
// Whether s is well-formed UTF-8 (no overlong forms, no surrogates).
bool valid_utf8(std::string_view s);
inline void sanitize_text(char* p, std::size_t n, bool ascii_only) {
  if (!printable_ascii(p, n)) sanitize_text_slow(p, n, ascii_only);  // nearly always printable
}

}  // namespace gh
