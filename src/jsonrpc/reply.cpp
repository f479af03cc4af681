#include "jsonrpc/reply.hpp"

#include <array>
#include <charconv>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <cstring>
#include <string_view>
#include <utility>

#include "core/util.hpp"
#include "jsonrpc/message.hpp"

namespace gh::jsonrpc {
namespace json = boost::json;

namespace {

// Nesting allowed in a passed-through message, the top-level object counted: parse_json's, so that a result
// passes through exactly when it would have parsed.
constexpr int kMaxDepth = kMaxJsonDepth;

// The bytes that stand for themselves in a string: printable ASCII but the quote and the backslash.
constexpr auto kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[c] = c != '"' && c != '\\';
  return t;
}();

template <std::size_t N>
bool is(std::string_view s, const char (&lit)[N]) {
  return s.size() == N - 1 && std::memcmp(s.data(), lit, N - 1) == 0;
}

// A validating JSON scanner (RFC 8259; UTF-8 checked, escapes and surrogate pairs checked as Boost.JSON
// does): it only says whether the text is valid and where values end. No allocation, no DOM. Anything it
// rejects takes the parser's path, so it may be stricter than the parser, never looser.
class Scanner {
 public:
  Scanner(const char* begin, const char* end) : p_(begin), end_(end) {}
  const char* pos() const { return p_; }
  bool at_end() const { return p_ == end_; }

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool eat(char c) {
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  template <std::size_t N>
  bool exact(const char (&s)[N]) {
    if (!starts_with(s)) return false;
    p_ += N - 1;
    return true;
  }
  template <std::size_t N>
  bool starts_with(const char (&s)[N]) const {  // a constant length: the comparison is inlined
    return static_cast<std::size_t>(end_ - p_) >= N - 1 && std::memcmp(p_, s, N - 1) == 0;
  }
  // A string at p_; `contents` gets what is between the quotes, `escaped` whether it holds an escape.
  bool string(std::string_view* contents = nullptr, bool* escaped = nullptr) {
    if (!eat('"')) return false;
    const char* begin = p_;
    bool esc = false;
    for (;;) {
      const char* p = p_;  // printable ASCII, the usual case
#ifdef __SSE2__
      // 16 bytes at a time: '"', '\\', or below 0x20 as a signed byte (a control character, or any byte
      // of a multi-byte character: those are checked one by one below).
      const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
      while (end_ - p >= 16) {
        __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        int mask = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(b, backslash)),
                                                  _mm_cmplt_epi8(b, space)));
        if (mask) {
          p += __builtin_ctz(static_cast<unsigned>(mask));
          break;
        }
        p += 16;
      }
#endif
      // then a table lookup a byte, four at a time
      while (end_ - p >= 4 && kPlain[static_cast<unsigned char>(p[0])] && kPlain[static_cast<unsigned char>(p[1])] &&
             kPlain[static_cast<unsigned char>(p[2])] && kPlain[static_cast<unsigned char>(p[3])])
        p += 4;
      while (p < end_ && kPlain[static_cast<unsigned char>(*p)]) ++p;
      p_ = p;
      if (p_ >= end_) return false;
      auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        if (contents) *contents = std::string_view(begin, static_cast<std::size_t>(p_ - begin));
        if (escaped) *escaped = esc;
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        esc = true;
        if (!escape()) return false;
      } else if (!utf8()) {
        return false;
      }
    }
  }
  // An unsigned integer token (no sign, fraction or exponent) that fits 64 bits.
  std::optional<uint64_t> unsigned_integer() {
    const char* begin = p_;
    uint64_t v = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      uint64_t d = static_cast<uint64_t>(*p_ - '0');
      if (v > (UINT64_MAX - d) / 10) return std::nullopt;
      v = v * 10 + d;
      ++p_;
    }
    if (p_ == begin || (*begin == '0' && p_ - begin > 1)) return std::nullopt;
    if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return std::nullopt;
    return v;
  }
  // An integer token (an optional minus, no fraction or exponent) as the parser stores it: int64 when it fits,
  // else uint64; nullopt for anything else.
  std::optional<json::value> integer() {
    bool negative = eat('-');
    auto magnitude = unsigned_integer();
    if (!magnitude) return std::nullopt;
    if (!negative) {
      if (*magnitude <= static_cast<uint64_t>(INT64_MAX)) return json::value(static_cast<int64_t>(*magnitude));
      return json::value(*magnitude);
    }
    if (*magnitude > static_cast<uint64_t>(INT64_MAX) + 1) return std::nullopt;
    return json::value(*magnitude == 0 ? int64_t{0} : static_cast<int64_t>(0 - *magnitude));
  }
  // An object at p_: `member(key, escaped)` reads each member's value (p_ at it) and says whether the
  // object is still acceptable; the closing brace is consumed.
  template <class F>
  bool members(F&& member) {
    if (!eat('{')) return false;
    ws();
    if (eat('}')) return true;
    for (;;) {
      std::string_view key;
      bool escaped = false;
      if (!string(&key, &escaped)) return false;
      ws();
      if (!eat(':')) return false;
      ws();
      if (!member(key, escaped)) return false;
      ws();
      if (eat(',')) {
        ws();
        continue;
      }
      return eat('}');
    }
  }
  // Any value; with `is_error`, an object's member "isError": true sets it (a tool result's flag).
  bool value(int depth, bool* is_error = nullptr) {
    if (p_ >= end_) return false;
    switch (*p_) {
      case '"': return string();
      case '{': return object(depth + 1, is_error);
      case '[': return array(depth + 1);
      case 't': return exact("true");
      case 'f': return exact("false");
      case 'n': return exact("null");
      default: return number();
    }
  }

 private:
  bool object(int depth, bool* is_error) {
    if (depth > kMaxDepth) return false;
    return members([&](std::string_view key, bool escaped) {
      if (is_error && !escaped && is(key, "isError") && starts_with("true")) *is_error = true;
      return value(depth);
    });
  }
  bool array(int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    ws();
    if (eat(']')) return true;
    for (;;) {
      if (!value(depth)) return false;
      ws();
      if (eat(',')) {
        ws();
        continue;
      }
      return eat(']');
    }
  }
  bool digits() {
    const char* begin = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return p_ != begin;
  }
  bool number() {
    eat('-');
    if (p_ >= end_) return false;
    if (*p_ == '0') ++p_;
    else if (!(*p_ >= '1' && *p_ <= '9') || !digits()) return false;
    if (eat('.') && !digits()) return false;
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }
  int hex4() {
    if (end_ - p_ < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = p_[i];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    p_ += 4;
    return v;
  }
  bool escape() {  // p_ at the backslash
    ++p_;
    if (p_ >= end_) return false;
    switch (*p_++) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': return true;
      case 'u': {
        int u = hex4();
        if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;  // a trailing surrogate alone
        if (u < 0xD800 || u > 0xDBFF) return true;
        if (!exact("\\u")) return false;  // a leading surrogate needs its trailing one
        int low = hex4();
        return low >= 0xDC00 && low <= 0xDFFF;
      }
      default: return false;
    }
  }
  bool utf8() {  // p_ at a byte >= 0x80: one well-formed sequence (no overlong forms, surrogates or > U+10FFFF)
    auto c = static_cast<unsigned char>(*p_);
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 1;
    else if (c == 0xE0) n = 2, lo = 0xA0;
    else if (c == 0xED) n = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) n = 2;
    else if (c == 0xF0) n = 3, lo = 0x90;
    else if (c == 0xF4) n = 3, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) n = 3;
    else return false;
    if (end_ - p_ <= n) return false;
    auto c1 = static_cast<unsigned char>(p_[1]);
    if (c1 < lo || c1 > hi) return false;
    for (int i = 2; i <= n; ++i) {
      auto ci = static_cast<unsigned char>(p_[i]);
      if (ci < 0x80 || ci > 0xBF) return false;
    }
    p_ += n + 1;
    return true;
  }

  const char* p_;
  const char* end_;
};

}  // namespace

std::optional<std::pair<uint64_t, Reply>> Reply::pass_through(std::string& text) {
  Scanner s(text.data(), text.data() + text.size());
  bool version = false, tool_error = false;
  std::optional<uint64_t> id;
  const char *result = nullptr, *result_end = nullptr;
  s.ws();
  bool ok = s.members([&](std::string_view key, bool escaped) {  // each of the three once, nothing else
    if (escaped) return false;
    if (is(key, "jsonrpc")) return !std::exchange(version, true) && s.exact("\"2.0\"");
    if (is(key, "id")) return !id && (id = s.unsigned_integer());
    if (!is(key, "result") || result) return false;
    result = s.pos();
    if (!s.value(1, &tool_error)) return false;
    result_end = s.pos();
    return true;
  });
  s.ws();
  if (!ok || !s.at_end() || !version || !id || !result) return std::nullopt;
  Reply r;
  r.d_->raw = true;
  r.d_->tool_error = tool_error;
  r.d_->result_pos = static_cast<std::size_t>(result - text.data());
  r.d_->result_len = static_cast<std::size_t>(result_end - result);
  r.d_->text = std::move(text);
  return std::pair<uint64_t, Reply>(*id, std::move(r));
}

std::optional<ToolCall> scan_tool_call(std::string_view text) {
  Scanner s(text.data(), text.data() + text.size());
  bool version = false, method = false;
  std::optional<json::value> id;
  std::optional<std::string_view> name;
  const char *params = nullptr, *params_end = nullptr;
  // A string without escapes, into `out` (unset).
  auto plain_string = [&s](auto& out) {
    std::string_view v;
    bool escaped = false;
    if (out || !s.string(&v, &escaped) || escaped) return false;
    out = v;
    return true;
  };
  s.ws();
  bool ok = s.members([&](std::string_view key, bool escaped) {  // each of the four once, nothing else
    if (escaped) return false;
    if (is(key, "jsonrpc")) return !std::exchange(version, true) && s.exact("\"2.0\"");
    if (is(key, "method")) return !std::exchange(method, true) && s.exact("\"tools/call\"");
    if (is(key, "id")) {
      if (id) return false;
      if (!s.starts_with("\"")) return static_cast<bool>(id = s.integer());
      std::optional<std::string_view> str;
      if (!plain_string(str)) return false;
      id = json::value(json::string_view(str->data(), str->size()));
      return true;
    }
    if (!is(key, "params") || params) return false;
    params = s.pos();
    if (!s.members([&](std::string_view pkey, bool pescaped) {  // the values scanned, the keys looked at
          if (pescaped || is(pkey, "_meta") || is(pkey, "task")) return false;  // (progress tokens, tasks: the full path)
          return is(pkey, "name") ? plain_string(name) : s.value(2);
        }))
      return false;
    params_end = s.pos();
    return true;
  });
  s.ws();
  if (!ok || !s.at_end() || !version || !method || !id || !params || !name) return std::nullopt;
  return ToolCall{std::move(*id), std::string(*name), std::string_view(params, static_cast<std::size_t>(params_end - params)),
                  static_cast<std::size_t>(name->data() - params)};
}

Reply::Reply() : d_(std::make_unique<Data>()) {}
Reply::Reply(json::object o) : Reply() { d_->obj = std::move(o); }
Reply::Reply(const Reply& o) : d_(std::make_unique<Data>(*o.d_)) {}
Reply& Reply::operator=(const Reply& o) {
  if (this != &o) d_ = std::make_unique<Data>(*o.d_);
  return *this;
}
Reply::~Reply() = default;

bool Reply::is_error() const { return !d_->raw && d_->obj.contains("error"); }

std::optional<int64_t> Reply::error_code() const {
  if (d_->raw) return std::nullopt;
  auto* e = d_->obj.if_contains("error");
  auto* c = e && e->is_object() ? e->as_object().if_contains("code") : nullptr;
  if (c && c->is_int64()) return c->as_int64();
  return std::nullopt;
}

bool Reply::tool_error() const {
  if (d_->raw) return d_->tool_error;
  auto* r = d_->obj.if_contains("result");
  auto* ie = r && r->is_object() ? r->as_object().if_contains("isError") : nullptr;
  return ie && ie->is_bool() && ie->as_bool();
}

std::vector<std::string> Reply::resource_links() {
  std::vector<std::string> out;
  if (d_->raw && std::string_view(d_->text).substr(d_->result_pos, d_->result_len).find("\"resource_link\"") == std::string_view::npos)
    return out;
  auto* r = object().if_contains("result");
  auto* content = r && r->is_object() ? r->as_object().if_contains("content") : nullptr;
  if (!content || !content->is_array()) return out;
  for (auto& item : content->as_array())
    if (auto* o = item.if_object(); o && o->contains("type") && o->at("type") == "resource_link")
      if (auto* uri = o->if_contains("uri"); uri && uri->is_string()) out.emplace_back(uri->as_string());
  return out;
}

void Reply::set_id(json::value id) {
  if (d_->raw) d_->id = std::move(id);
  else d_->obj["id"] = std::move(id);
}

std::string Reply::serialize() const {
  const auto& d = *d_;
  if (!d.raw) return to_json(d.obj);
  char digits[24];
  std::string_view id;
  std::string id_text;  // an id that is not an integer (a string, or null)
  if (d.id.is_int64()) {
    id = {digits, static_cast<std::size_t>(std::to_chars(digits, digits + sizeof digits, d.id.get_int64()).ptr - digits)};
  } else {
    id_text = to_json(d.id);
    id = id_text;
  }
  std::string out;
  out.reserve(d.result_len + id.size() + 36);
  out += R"({"jsonrpc":"2.0","id":)";
  out += id;
  out += R"(,"result":)";
  out.append(d.text, d.result_pos, d.result_len);
  out += '}';
  return out;
}

json::object& Reply::object() {
  auto& d = *d_;
  if (!d.raw) return d.obj;
  boost::system::error_code ec;
  auto v = parse_json(std::string_view(d.text).substr(d.result_pos, d.result_len), ec);
  // The scanner let it through, so it parses; should the two ever disagree, say so rather than guess.
  d.obj = ec ? make_error(d.id, code::internal_error, "The upstream's result could not be read")
             : make_result(d.id, std::move(v));
  d.raw = false;
  d.text = std::string();
  return d.obj;
}

}  // namespace gh::jsonrpc
