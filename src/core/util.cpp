#include "core/util.hpp"

#include <chrono>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parser.hpp>
#include <openssl/rand.h>

#include <stdexcept>

namespace gh {

boost::json::value parse_json(std::string_view text, boost::system::error_code& ec) {
  auto arena = boost::json::make_shared_resource<boost::json::monotonic_resource>(text.size() * 2 + 512);
  // One parser per thread, reused (what boost::json::parse builds and frees per call): its internal stacks
  // stay allocated between messages. Same checks as parse(): one complete text, nothing after it.
  thread_local boost::json::parser parser;
  parser.reset(std::move(arena));
  parser.write(text.data(), text.size(), ec);
  if (ec) {
    parser.reset();  // drop the partial value (and the arena) now
    return nullptr;
  }
  return parser.release();
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[c >> 4];
    out[2 * i + 1] = kHex[c & 15];
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return to_hex(raw);
}

static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i + 1 == data.size()) {
    uint32_t v = uint8_t(data[i]) << 16;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
  } else if (i + 2 == data.size()) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-' || c == '+') return 62;
    if (c == '_' || c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = val(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  return out;
}

namespace {
constexpr bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }  // isspace in the C locale
}  // namespace

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    auto pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

bool header_has_token(std::string_view header, std::string_view token) {
  // One pass, no allocation (this runs several times per request): each comma-separated element, without
  // its ";parameters" and surrounding whitespace, compared with the token.
  const char* p = header.data();
  const char* const end = p + header.size();
  while (p < end) {
    while (p < end && (is_space(*p) || *p == ',')) ++p;
    const char* start = p;
    while (p < end && *p != ',' && *p != ';') ++p;
    const char* stop = p;
    while (stop > start && is_space(stop[-1])) --stop;
    if (iequals({start, static_cast<std::size_t>(stop - start)}, token)) return true;
    while (p < end && *p != ',') ++p;  // the element's parameters
  }
  return false;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace gh
