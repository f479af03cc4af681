#include "http/head.hpp"

#include <array>
#include <cstring>

#include "core/util.hpp"
#include "http/request.hpp"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace gh::http {

namespace {

// RFC 9110 tchar.
constexpr auto kToken = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 32] = true;
  for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) t[c] = true;
  return t;
}();

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!kToken[c]) return false;
  return true;
}

// The first byte at or after p that is <= `limit` or DEL, or `end`. With limit 0x1f: the end of a field value
// (HTAB, which a value may hold, stops it too); with 0x20: the end of a request target.
const char* first_special(const char* p, const char* end, unsigned char limit) {
#ifdef __SSE2__
  const __m128i lim = _mm_set1_epi8(static_cast<char>(limit)), del = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(x, lim), x);  // x <= limit, unsigned
    if (unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(low, _mm_cmpeq_epi8(x, del)))))
      return p + __builtin_ctz(m);
    p += 16;
  }
#endif
  for (; p < end; ++p) {
    auto c = static_cast<unsigned char>(*p);
    if (c <= limit || c == 0x7f) return p;
  }
  return end;
}

// The first byte at or after p that is not a tchar, or `end`. Sixteen bytes at a time while they are letters,
// digits or '-' (what field names are made of); the table from the first other byte.
const char* token_end(const char* p, const char* end) {
#ifdef __SSE2__
  auto in = [](__m128i x, char lo, char hi) {  // lo <= x <= hi, unsigned
    __m128i d = _mm_sub_epi8(x, _mm_set1_epi8(lo));
    return _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(static_cast<char>(hi - lo))), d);
  };
  while (end - p >= 16) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i ok = _mm_or_si128(_mm_or_si128(in(_mm_or_si128(x, _mm_set1_epi8(0x20)), 'a', 'z'), in(x, '0', '9')),
                              _mm_cmpeq_epi8(x, _mm_set1_epi8('-')));
    if (unsigned m = ~static_cast<unsigned>(_mm_movemask_epi8(ok)) & 0xffffu) {
      p += __builtin_ctz(m);
      break;
    }
    p += 16;
  }
#endif
  while (p < end && kToken[static_cast<unsigned char>(*p)]) ++p;
  return p;
}

bool skip(const char*& p, const char* end, std::string_view s) {
  if (static_cast<std::size_t>(end - p) < s.size() || std::memcmp(p, s.data(), s.size()) != 0) return false;
  p += s.size();
  return true;
}

// "HTTP/1.0" or "HTTP/1.1" -> 10 or 11; 0 for anything else.
unsigned version_at(const char*& p, const char* end) {
  if (!skip(p, end, "HTTP/1.") || p == end || (*p != '0' && *p != '1')) return 0;
  return *p++ == '1' ? 11 : 10;
}

// A field value or reason phrase from p to its CRLF, without surrounding SP/HTAB; p ends past the CRLF.
// False on a byte no value may hold or a bare CR.
bool value_to_eol(const char*& p, const char* end, std::string_view& value) {
  while (p < end && (*p == ' ' || *p == '\t')) ++p;
  const char* first = p;
  const char* q = first_special(p, end, 0x1f);
  while (q < end && *q == '\t') q = first_special(q + 1, end, 0x1f);
  // (A continuation line, obs-fold, begins with SP or HTAB: not a token, so scan_fields refuses it.)
  if (end - q < 2 || q[0] != '\r' || q[1] != '\n') return false;
  const char* last = q;
  while (last > first && (last[-1] == ' ' || last[-1] == '\t')) --last;
  value = {first, static_cast<std::size_t>(last - first)};
  p = q + 2;
  return true;
}

// Calls on_field(name, value) for each field; returns where the empty line ends, or null when a line is outside
// the shape (or incomplete) or on_field said no.
template <class F>
const char* scan_fields(const char* p, const char* end, F&& on_field) {
  for (;;) {
    if (end - p < 2) return nullptr;
    if (p[0] == '\r') return p[1] == '\n' ? p + 2 : nullptr;
    const char* name = p;
    p = token_end(p, end);
    if (p == name || p == end || *p != ':') return nullptr;
    std::string_view n(name, static_cast<std::size_t>(p - name)), value;
    ++p;
    if (!value_to_eol(p, end, value) || !on_field(n, value)) return nullptr;
  }
}

// What Content-Length and Connection say.
struct Framing {
  bool has_length = false, close = false, keep_alive = false;
  std::uint64_t length = 0;

  // False for what this shape leaves to Beast.
  bool note(Request::Name k, std::string_view value) {
    using Name = Request::Name;
    switch (k) {
      case Name::content_length:
        if (has_length || value.empty() || value.size() > 19) return false;
        for (char c : value) {
          if (c < '0' || c > '9') return false;
          length = length * 10 + static_cast<std::uint64_t>(c - '0');
        }
        has_length = true;
        return true;
      case Name::connection:
      case Name::proxy_connection:  // Beast reads it alike
        while (!value.empty()) {
          auto comma = value.find(',');
          auto token = trim(value.substr(0, comma));
          value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
          if (token.empty()) continue;
          if (!is_token(token) || iequals(token, "upgrade")) return false;
          if (iequals(token, "close")) close = true;
          else if (iequals(token, "keep-alive")) keep_alive = true;
        }
        return true;
      case Name::expect:
      case Name::upgrade:
      case Name::transfer_encoding:
        return false;
      default:
        return true;
    }
  }
  // As Beast's parser decides (basic_parser::keep_alive).
  bool keeps_alive(unsigned version) const { return version == 11 ? !close : keep_alive; }
};

}  // namespace

std::size_t parse_request_head(std::string_view buffered, Request& out, std::uint64_t& content_length) {
  out.clear();
  const char* const begin = buffered.data();
  const char* const end = begin + buffered.size();
  const char* p = begin;
  auto span = [begin](const char* from, const char* to) {
    return Request::Span{static_cast<uint32_t>(from - begin), static_cast<uint32_t>(to - from)};
  };
  while (p < end && kToken[static_cast<unsigned char>(*p)]) ++p;
  if (p == begin || p == end || *p != ' ') return 0;
  out.method_text_ = span(begin, p);
  const char* target = ++p;
  p = first_special(p, end, 0x20);
  // (a target that is not a path, such as absolute-form, is Beast's parser's to read: the server rewrites it)
  if (p == target || p == end || *p != ' ' || *target != '/') return 0;
  out.target_ = span(target, p);
  ++p;
  out.version_ = version_at(p, end);
  if (!out.version_ || !skip(p, end, "\r\n")) return 0;
  Framing framing;
  const char* last = scan_fields(p, end, [&](std::string_view name, std::string_view value) {
    auto id = Request::name_of(name);
    if (!framing.note(id, value)) return false;
    out.push_field(span(name.data(), name.data() + name.size()), span(value.data(), value.data() + value.size()), id);
    return true;
  });
  if (!last) return 0;
  auto length = static_cast<std::size_t>(last - begin);
  out.text_.assign(begin, length);
  out.method_ = bhttp::string_to_verb(out.method_string());
  out.keep_alive_ = framing.keeps_alive(out.version_);
  content_length = framing.length;
  return length;
}

std::size_t parse_response_head(std::string_view buffered, ResponseHead& out, std::uint64_t& body_length,
                                bool& keep_alive) {
  const char* p = buffered.data();
  const char* const end = p + buffered.size();
  unsigned version = version_at(p, end);
  if (!version || end - p < 5 || *p++ != ' ') return 0;
  unsigned status = 0;
  for (int i = 0; i < 3; ++i, ++p) {
    if (*p < '0' || *p > '9') return 0;
    status = status * 10 + static_cast<unsigned>(*p - '0');
  }
  std::string_view reason;
  if (*p++ != ' ' || status < 200 || !value_to_eol(p, end, reason)) return 0;
  out = ResponseHead{status, {}, {}};
  Framing framing;
  const char* last = scan_fields(p, end, [&](std::string_view name, std::string_view value) {
    auto k = Request::name_of(name);
    if (k == Request::Name::content_type) out.content_type = value;
    else if (k == Request::Name::mcp_session_id) out.session_id = value;
    return framing.note(k, value);
  });
  bool bodiless = status == 204 || status == 304;
  if (!last || (!bodiless && !framing.has_length)) return 0;
  body_length = bodiless ? 0 : framing.length;
  keep_alive = framing.keeps_alive(version);
  return static_cast<std::size_t>(last - buffered.data());
}

}  // namespace gh::http
