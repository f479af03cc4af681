#include "core/util.hpp"

#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/rand.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <cmath>
#include <stdexcept>

namespace gh {

std::optional<std::string> mend_lone_surrogates(std::string_view text) {
  auto unit = [&](std::size_t at) -> int {  // the code unit of a \uXXXX escape starting at `at`, or -1
    if (at + 6 > text.size() || text[at] != '\\' || text[at + 1] != 'u') return -1;
    int v = 0;
    for (std::size_t i = at + 2; i < at + 6; ++i) {
      char c = text[i];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  };
  std::optional<std::string> out;
  std::size_t copied = 0;
  // (a backslash appears in valid JSON only inside strings, as an escape: no need to know where strings are)
  for (std::size_t i = text.find('\\'); i != std::string_view::npos; i = text.find('\\', i)) {
    int u = unit(i);
    if (u < 0xD800 || u > 0xDFFF) {  // another escape (or not one): step over it
      i += 2;
      continue;
    }
    if (u <= 0xDBFF) {
      int next = unit(i + 6);
      if (next >= 0xDC00 && next <= 0xDFFF) {  // a pair
        i += 12;
        continue;
      }
    }
    if (!out) out.emplace();
    out->append(text.substr(copied, i - copied)).append("\\ufffd");
    i += 6;
    copied = i;
  }
  if (out) out->append(text.substr(copied));
  return out;
}

boost::json::value parse_json(std::string_view text, boost::system::error_code& ec) {
  auto arena = boost::json::make_shared_resource<boost::json::monotonic_resource>(text.size() * 2 + 512);
  // One parser per thread, reused (what boost::json::parse builds and frees per call): its internal stacks
  // stay allocated between messages. Same checks as parse(): one complete text, nothing after it.
  thread_local boost::json::parser parser({}, [] {
    boost::json::parse_options o;
    o.max_depth = kMaxJsonDepth;  // (Boost's default is 32: valid tool results nest deeper)
    return o;
  }());
  parser.reset(std::move(arena));
  parser.write(text.data(), text.size(), ec);
  if (ec) {
    parser.reset();  // drop the partial value (and the arena) now
    return nullptr;
  }
  return parser.release();
}

namespace {

// Whether none of 8 bytes needs escaping in a JSON string: no quote, no backslash, none below 0x20.
inline bool plain_word(uint64_t w) {
  return !(word_has_byte_below(w, 0x20) | word_has_byte(w, '"') | word_has_byte(w, '\\'));  // no branches
}

// Writes JSON text into a buffer of its own, kept per thread between calls: no capacity check per byte and
// no zero-filling (std::string's resize), one copy into the result at the end.
class JsonWriter {
 public:
  JsonWriter() : p_(buf().get()), end_(p_ + cap()) {}
  std::string take() {
    std::string out(buf().get(), p_);
    if (cap() > kKeep) {  // a rare large message does not hold its buffer for the thread's life
      buf().reset(new char[kFirst]);
      cap() = kFirst;
    }
    return out;
  }

  void put(char c) {
    room(1);
    *p_++ = c;
  }
  void put(const char* s, std::size_t n) {
    room(n);
    std::memcpy(p_, s, n);
    p_ += n;
  }
  void put(std::string_view s) { put(s.data(), s.size()); }

  void string(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    room(s.size() + 2);  // enough unless something needs escaping
    *p_++ = '"';
    const char* p = s.data();
    const char* const end = p + s.size();
    const char* run = p;  // start of the bytes not yet copied
    while (p < end) {
#ifdef __SSE2__
      // 16 bytes at a time: equal to '"' or '\\', or below 0x20 (unsigned: max(b, 0x20) != b).
      const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
      while (end - p >= 16) {
        __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(b, backslash)),
                                   _mm_xor_si128(_mm_cmpeq_epi8(_mm_max_epu8(b, space), b), _mm_set1_epi8(-1)));
        int mask = _mm_movemask_epi8(bad);
        if (mask) {
          p += __builtin_ctz(static_cast<unsigned>(mask));
          break;
        }
        p += 16;
      }
      if (p == end) break;
#endif
      if (end - p >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        if (plain_word(w)) {
          p += 8;
          continue;
        }
      }
      auto c = static_cast<unsigned char>(*p);
      if (c >= 0x20 && c != '"' && c != '\\') {
        ++p;
        continue;
      }
      put(run, static_cast<std::size_t>(p - run));
      char esc[6] = {'\\', 0, '0', '0', 0, 0};
      switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: esc[1] = 'u', esc[4] = kHex[c >> 4], esc[5] = kHex[c & 15];
      }
      put(esc, esc[1] == 'u' ? 6 : 2);
      run = ++p;
    }
    put(run, static_cast<std::size_t>(p - run));
    put('"');
  }

  void object(const boost::json::object& o) {
    put('{');
    bool first = true;
    for (const auto& kv : o) {
      if (!first) put(',');
      first = false;
      string(kv.key());
      put(':');
      value(kv.value());
    }
    put('}');
  }

  void array(std::span<const boost::json::value> items) {
    put('[');
    bool first = true;
    for (const auto& e : items) {
      if (!first) put(',');
      first = false;
      value(e);
    }
    put(']');
  }

  // Doubles are rare in messages. A number too large for one (1e400) parses as infinity, which Boost.JSON
  // 1.81 writes as `Infinity`: not JSON, and a peer's parser refuses the whole message. It is written as
  // 1e999 instead, a number that reads back as infinity again — what the client sent, in effect (NaN cannot
  // come from JSON text; null if one is ever built in code).
  void number(double d) {
    if (std::isinf(d)) put(d > 0 ? std::string_view("1e999") : std::string_view("-1e999"));
    else if (std::isnan(d)) put("null");
    else put(boost::json::serialize(boost::json::value(d)));
  }

  void value(const boost::json::value& v) {
    switch (v.kind()) {
      case boost::json::kind::null: put("null"); break;
      case boost::json::kind::bool_: put(v.get_bool() ? std::string_view("true") : std::string_view("false")); break;
      case boost::json::kind::int64: integer(v.get_int64()); break;
      case boost::json::kind::uint64: integer(v.get_uint64()); break;
      case boost::json::kind::double_: number(v.get_double()); break;
      case boost::json::kind::string: string(v.get_string()); break;
      case boost::json::kind::object: object(v.get_object()); break;
      case boost::json::kind::array: array(v.get_array()); break;
    }
  }

  template <class Int>
  void integer(Int i) {
    room(24);
    p_ = std::to_chars(p_, end_, i).ptr;
  }

 private:
  void room(std::size_t n) {
    if (static_cast<std::size_t>(end_ - p_) < n) grow(n);
  }
  void grow(std::size_t n) {
    std::size_t used = static_cast<std::size_t>(p_ - buf().get());
    std::size_t want = std::max(cap() * 2, used + n);
    std::unique_ptr<char[]> bigger(new char[want]);  // not zero-filled
    std::memcpy(bigger.get(), buf().get(), used);
    buf() = std::move(bigger);
    cap() = want;
    p_ = buf().get() + used;
    end_ = buf().get() + want;
  }
  // The thread's buffer: 4 KiB at first, grown as messages need and kept up to 1 MiB.
  static constexpr std::size_t kFirst = 4096, kKeep = 1 << 20;
  static std::unique_ptr<char[]>& buf() {
    thread_local std::unique_ptr<char[]> b(new char[kFirst]);
    return b;
  }
  static std::size_t& cap() {
    thread_local std::size_t c = kFirst;
    return c;
  }

  char* p_;
  char* end_;
};

}  // namespace

std::string to_json(const boost::json::value& v) {
  JsonWriter w;
  w.value(v);
  return w.take();
}

std::string to_json(const boost::json::object& o) {
  JsonWriter w;
  w.object(o);
  return w.take();
}

namespace {
// {"jsonrpc":"2.0","id":<id>,"method":<method>…}, `params(w)` writing what goes before the closing brace.
template <class Params>
std::string request_text(uint64_t id, std::string_view method, Params&& params) {
  JsonWriter w;
  w.put(R"({"jsonrpc":"2.0","id":)");
  w.integer(id);
  w.put(R"(,"method":)");
  w.string(method);
  params(w);
  w.put('}');
  return w.take();
}
}  // namespace

std::string to_json_request(uint64_t id, std::string_view method, const boost::json::value& params) {
  return request_text(id, method, [&](JsonWriter& w) {
    if (params.is_null()) return;
    w.put(R"(,"params":)");
    w.value(params);
  });
}

std::string to_json_request_raw(uint64_t id, std::string_view method, std::string_view params_json) {
  return request_text(id, method, [&](JsonWriter& w) {
    w.put(R"(,"params":)");
    w.put(params_json);
  });
}

std::string to_json_array(std::span<const boost::json::value> items) {
  JsonWriter w;
  w.array(items);
  return w.take();
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

std::string random_bytes(std::size_t n) {
  std::string raw(n, '\0');
  if (n && RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return raw;
}

std::string random_hex(std::size_t bytes) { return to_hex(random_bytes(bytes)); }

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

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

bool header_has_token(std::string_view header, std::string_view token) {
  // Clients nearly always write the token as given (lower case): found by a plain search and bounded by
  // the start or a comma before (after spaces) and the end, a comma or a ';' after (before spaces), it is
  // one of the elements. Otherwise (another case, or absent) the general pass decides.
  if (!token.empty()) {
    for (auto at = header.find(token); at != std::string_view::npos; at = header.find(token, at + 1)) {
      auto before = at;
      while (before > 0 && is_space(header[before - 1])) --before;
      auto after = at + token.size();
      while (after < header.size() && is_space(header[after])) ++after;
      if ((before == 0 || header[before - 1] == ',') &&
          (after == header.size() || header[after] == ',' || header[after] == ';'))
        return true;
    }
  }
  // One pass, no allocation: each comma-separated element, without its ";parameters" and surrounding
  // whitespace, compared with the token.
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

namespace {
// The length of the well-formed multi-byte UTF-8 sequence at p (lead byte >= 0x80, `left` bytes there), 0 if
// it is not one: the length from the lead byte, then continuation bytes 10xxxxxx (overlong and surrogate forms
// are rejected by the lead's range and the second byte's bounds).
std::size_t utf8_sequence(const char* p, std::size_t left) {
  auto b = static_cast<unsigned char>(p[0]);
  std::size_t len = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
  if (!len || len > left) return 0;
  auto b1 = static_cast<unsigned char>(p[1]);
  unsigned char lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
  unsigned char hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
  if (b1 < lo || b1 > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if ((static_cast<unsigned char>(p[k]) & 0xC0) != 0x80) return 0;
  return len;
}
}  // namespace

void sanitize_text_slow(char* p, std::size_t n, bool ascii_only) {
  for (std::size_t i = 0; i < n;) {
    auto b = static_cast<unsigned char>(p[i]);
    if (b < 0x80) {
      if (b < 0x20 || b == 0x7f) p[i] = '?';
      ++i;
      continue;
    }
    if (std::size_t len = ascii_only ? 0 : utf8_sequence(p + i, n - i)) {
      i += len;
    } else {
      p[i] = '?';
      ++i;
    }
  }
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) ++i;
    else if (std::size_t len = utf8_sequence(s.data() + i, s.size() - i)) i += len;
    else return false;
  }
  return true;
}

}  // namespace gh
