// The message-head parsers (http/head.hpp) against Beast's parser: whatever they accept, Beast accepts with
// the same parts; what they refuse is left to Beast, so only acceptance needs checking (and that the usual
// heads are accepted).
#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <random>

#include "core/util.hpp"
#include "http/head.hpp"
#include "http/request.hpp"

namespace bhttp = boost::beast::http;
using gh::http::Request;
using gh::http::ResponseHead;

namespace {

// Edits made of pieces that matter to a head's grammar, whole words included.
const std::vector<std::string> kPieces = {
    "\r", "\n", "\r\n", " ", "\t", ":", ",", ";", "\"", "/", "=", "\x7f", std::string(1, '\0'), "\x80", "\xff",
    "a", "Z", "0", "9", "-", "(", "@", "close", "keep-alive", "upgrade", "Upgrade", "chunked", "HTTP/1.0",
    "HTTP/1.1", "HTTP/2.0", "Content-Length: 5\r\n", "content-length", "Transfer-Encoding: chunked\r\n",
    "Connection: ", "Proxy-Connection: close\r\n", "Expect: 100-continue\r\n", "Upgrade: websocket\r\n",
    "Mcp-Session-Id: s1\r\n", "Content-Type: text/plain\r\n", "Content-Length: 7\r\n", "Content-Length: 05\r\n",
    "Content-Length: 5, 5\r\n", "Connection: close\r\n", " x\r\n", "\t\r\n", "\r\n\r\n", "204", "304", "101", "1"};

void mutate(std::string& text, std::mt19937& rng) {
  for (int e = 0, n = 1 + static_cast<int>(rng() % 3); e < n; ++e) {
    std::size_t at = rng() % (text.size() + 1);
    const std::string& piece = kPieces[rng() % kPieces.size()];
    switch (rng() % 4) {
      case 0: text.replace(at, piece.size(), piece); break;
      case 1: text.insert(at, piece); break;
      case 2: text.erase(at, 1 + rng() % 4); break;
      default:  // at the start of a line: whole fields added
        if (auto eol = text.find("\r\n", at); eol != std::string::npos) text.insert(eol + 2, piece);
    }
  }
}

const std::vector<std::string> kRequests = {
    "POST /mcp/fast HTTP/1.1\r\nHost: 127.0.0.1:8085\r\nContent-Type: application/json\r\n"
    "Accept: application/json, text/event-stream\r\nAuthorization: Bearer gh_abc\r\n"
    "Mcp-Session-Id: 0123abcd\r\nMCP-Protocol-Version: 2025-11-25\r\nContent-Length: 5\r\n\r\nhello",
    "GET /gateway/health?x=1 HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: t/1 (\xc3\xa9)\r\n\r\n",
    "DELETE /mcp HTTP/1.1\r\nconnection: Close\r\nX-Empty:\r\nX-Pad: \t a b \t\r\n\r\n",
    "PATCH /x HTTP/1.1\r\nContent-Length: 0\r\nConnection: keep-alive, te\r\n\r\n",
    "M-SEARCH /x HTTP/1.1\r\nProxy-Connection: keep-alive\r\n\r\n"};

const std::vector<std::string> kResponses = {
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 02:34:07 GMT\r\n"
    "Content-Type: application/json\r\nContent-Length: 81\r\nConnection: keep-alive\r\n\r\n{}",
    "HTTP/1.1 202 Accepted\r\nmcp-session-id: abc-1\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
    "HTTP/1.1 404 \r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n",
    "HTTP/1.1 304 Not Modified\r\nX-A: b\r\n\r\n"};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct BeastRequest {
  bool done = false;
  std::size_t used = 0;
  bhttp::request_parser<bhttp::empty_body> p;
  explicit BeastRequest(const std::string& text) {
    p.eager(false);
    p.body_limit(boost::none);
    p.header_limit(1 << 20);
    boost::system::error_code ec;
    used = p.put(boost::asio::buffer(text), ec);
    done = !ec && p.is_header_done();
  }
};

// The names a request keeps by position (Request::Name), in other cases too, and names it does not.
const std::vector<std::string> kLookedUp = {
    "Host", "origin", "ACCEPT", "Cookie", "Expect", "upgrade", "Connection", "User-Agent", "content-type",
    "Authorization", "Content-Length", "Mcp-Session-Id", "X-Forwarded-For", "Proxy-Connection",
    "Transfer-Encoding", "MCP-Protocol-Version", "X-Missing", "X-A", "Hos", "Hostt", "mcp-session-idx"};
const std::vector<bhttp::field> kLookedUpFields = {
    bhttp::field::host, bhttp::field::origin, bhttp::field::accept, bhttp::field::cookie, bhttp::field::content_type,
    bhttp::field::content_length, bhttp::field::authorization, bhttp::field::user_agent, bhttp::field::connection,
    bhttp::field::transfer_encoding, bhttp::field::referer, bhttp::field::expect};

// Every lookup finds what a scan of the fields in order finds first ("" for none).
void expect_lookups_scan(const Request& r, const std::string& context) {
  auto scan = [&](std::string_view name) {
    for (const auto& f : r)
      if (gh::iequals(f.name_string(), name)) return f.value();
    return std::string_view{};
  };
  for (const auto& name : kLookedUp) EXPECT_EQ(r[name], scan(name)) << name << " in " << context;
  for (auto f : kLookedUpFields) EXPECT_EQ(r[f], scan(bhttp::to_string(f))) << bhttp::to_string(f) << " in " << context;
  for (const auto& f : r) EXPECT_EQ(r[f.name_string()], scan(f.name_string())) << context;
}

void expect_same_request(const std::string& text, std::size_t n, const Request& r, std::uint64_t length) {
  BeastRequest b(text);
  ASSERT_TRUE(b.done) << "accepted what Beast refuses: [" << text << "]";
  ASSERT_EQ(n, b.used) << text;
  const auto& m = b.p.get();
  EXPECT_EQ(r.method_string(), std::string_view(m.method_string())) << text;
  EXPECT_EQ(r.method(), m.method()) << text;
  EXPECT_EQ(r.target(), std::string_view(m.target())) << text;
  EXPECT_EQ(r.version(), m.version()) << text;
  EXPECT_EQ(r.keep_alive(), b.p.keep_alive()) << text;
  EXPECT_EQ(length, b.p.content_length().value_or(0)) << text;
  EXPECT_FALSE(b.p.chunked() || b.p.upgrade()) << text;
  std::vector<std::pair<std::string, std::string>> ours, beasts;
  for (const auto& f : r) ours.emplace_back(f.name_string(), f.value());
  for (const auto& f : m) beasts.emplace_back(f.name_string(), f.value());
  // Beast files a repeated field next to the earlier one of its name; ours stay in arrival order. The same
  // fields, and those of one name in the same order:
  auto by_name = [](auto& v) {
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return lower(a.first) < lower(b.first); });
  };
  by_name(ours);
  by_name(beasts);
  EXPECT_EQ(ours, beasts) << text;
  expect_lookups_scan(r, text);
}

void expect_same_response(const std::string& text, std::size_t n, const ResponseHead& h, std::uint64_t length,
                          bool keep_alive) {
  bhttp::response_parser<bhttp::empty_body> p;
  p.eager(false);
  p.body_limit(boost::none);
  boost::system::error_code ec;
  auto used = p.put(boost::asio::buffer(text), ec);
  ASSERT_TRUE(!ec && p.is_header_done()) << "accepted what Beast refuses: [" << text << "] " << ec.message();
  ASSERT_EQ(n, used) << text;
  const auto& m = p.get();
  EXPECT_EQ(h.status, m.result_int()) << text;
  std::string_view type, session;
  for (const auto& f : m) {  // the last of repeated fields, as the client's Beast path keeps
    if (f.name() == bhttp::field::content_type) type = f.value();
    if (gh::iequals(f.name_string(), "mcp-session-id")) session = f.value();
  }
  EXPECT_EQ(h.content_type, type) << text;
  EXPECT_EQ(h.session_id, session) << text;
  EXPECT_EQ(keep_alive, p.keep_alive()) << text;
  EXPECT_FALSE(p.chunked() || p.upgrade() || p.need_eof()) << text;
  bool bodiless = h.status == 204 || h.status == 304;
  EXPECT_EQ(length, bodiless ? 0 : p.content_length().value_or(~0ull)) << text;
}

// Parses 200,000 mutations of the bases with `check` (which compares an accepted head with Beast's reading);
// returns how many were accepted. Stops at the first failure.
template <class Check>
int accepted_mutations(const std::vector<std::string>& bases, unsigned seed, Check check) {
  std::mt19937 rng(seed);
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string text = bases[rng() % bases.size()];
    mutate(text, rng);
    accepted += check(text);
    if (::testing::Test::HasFailure()) break;
  }
  return accepted;
}

}  // namespace

TEST(RequestHead, ParsesTheUsualHeadsAsBeastDoes) {
  for (const auto& text : kRequests) {
    Request r;
    std::uint64_t length = 0;
    auto n = gh::http::parse_request_head(text, r, length);
    ASSERT_NE(n, 0u) << text;
    expect_same_request(text, n, r, length);
  }
  Request r;
  std::uint64_t length = 0;
  ASSERT_NE(gh::http::parse_request_head(kRequests[0], r, length), 0u);
  EXPECT_EQ(r["mcp-session-id"], "0123abcd");
  EXPECT_EQ(r[bhttp::field::content_length], "5");
  EXPECT_EQ(r["X-Missing"], "");
  EXPECT_TRUE(r.keep_alive());
  EXPECT_EQ(length, 5u);
  // A target that is not a path is Beast's parser's to read (the server rewrites absolute-form, refuses the rest).
  for (std::string_view text : {"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
                                "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"})
    EXPECT_EQ(gh::http::parse_request_head(text, r, length), 0u) << text;
}

TEST(RequestHead, LeavesToBeastWhatItDoesNotKnow) {
  // Each is valid HTTP, but outside the shape: Beast's parser takes them.
  for (std::string text : {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                           "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                           "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                           "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                           "GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n", "GET / HTTP/2.0\r\n\r\n",
                           "GET / HTTP/1.1\r\nHost: a\r\n"}) {  // (not all arrived)
    Request r;
    std::uint64_t length = 0;
    EXPECT_EQ(gh::http::parse_request_head(text, r, length), 0u) << text;
  }
}

TEST(RequestHead, AcceptsOnlyWhatBeastAcceptsAlikeOnMutatedHeads) {
  int accepted = accepted_mutations(kRequests, 20261206, [](const std::string& text) {
    Request r;
    std::uint64_t length = 0;
    auto n = gh::http::parse_request_head(text, r, length);
    if (n) expect_same_request(text, n, r, length);
    return n != 0;
  });
  EXPECT_GT(accepted, 20000);  // the mutations keep many heads in the shape
}

TEST(RequestHead, TakesAFieldNameOnlyWhenEveryByteIsATokenCharacter) {
  // Field names are scanned 16 bytes at a time while they are letters, digits and '-', then by the table:
  // every byte value, at every place of names shorter and longer than 16 bytes (the last ones close to the
  // buffer's end), is taken only where RFC 9110 allows it (tchar); anything else is left to Beast.
  const std::string tchars = "!#$%&'*+-.^_`|~";
  for (int len : {1, 5, 15, 16, 17, 31, 33}) {
    for (int at = 0; at < len; ++at) {
      for (int b = 0; b < 256; ++b) {
        if (b == ':') continue;
        std::string name(static_cast<std::size_t>(len), 'a');
        name[static_cast<std::size_t>(at)] = static_cast<char>(b);
        std::string text = "GET / HTTP/1.1\r\n" + name + ": v\r\n\r\n";
        Request r;
        std::uint64_t length = 0;
        auto n = gh::http::parse_request_head(text, r, length);
        bool tchar = (b < 0x80 && std::isalnum(b)) || (b != 0 && tchars.find(static_cast<char>(b)) != std::string::npos);
        ASSERT_EQ(n != 0, tchar) << "byte " << b << " at " << at << " of " << len;
        if (n) {
          std::vector<std::pair<std::string, std::string>> fields;
          for (const auto& f : r) fields.emplace_back(f.name_string(), f.value());
          EXPECT_EQ(fields, (std::vector<std::pair<std::string, std::string>>{{name, "v"}}));
        }
      }
    }
  }
}

TEST(ResponseHead, ParsesTheUsualHeadsAsBeastDoes) {
  for (const auto& text : kResponses) {
    ResponseHead h;
    std::uint64_t length = 0;
    bool keep_alive = false;
    auto n = gh::http::parse_response_head(text, h, length, keep_alive);
    ASSERT_NE(n, 0u) << text;
    expect_same_response(text, n, h, length, keep_alive);
  }
  ResponseHead h;
  std::uint64_t length = 0;
  bool keep_alive = false;
  ASSERT_NE(gh::http::parse_response_head(kResponses[1], h, length, keep_alive), 0u);
  EXPECT_EQ(h.status, 202u);
  EXPECT_EQ(h.session_id, "abc-1");
  EXPECT_TRUE(keep_alive);
}

TEST(ResponseHead, LeavesToBeastWhatItDoesNotKnow) {
  for (std::string text : {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                           "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",  // to the end of the stream
                           "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0\r\n\r\n",
                           "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"}) {
    ResponseHead h;
    std::uint64_t length = 0;
    bool keep_alive = false;
    EXPECT_EQ(gh::http::parse_response_head(text, h, length, keep_alive), 0u) << text;
  }
}

TEST(ResponseHead, AcceptsOnlyWhatBeastAcceptsAlikeOnMutatedHeads) {
  int accepted = accepted_mutations(kResponses, 61220262, [](const std::string& text) {
    ResponseHead h;
    std::uint64_t length = 0;
    bool keep_alive = false;
    auto n = gh::http::parse_response_head(text, h, length, keep_alive);
    if (n) expect_same_response(text, n, h, length, keep_alive);
    return n != 0;
  });
  EXPECT_GT(accepted, 20000);
}

TEST(Request, MadeInCodeAndChanged) {
  Request r(bhttp::verb::post, "/x");
  r.insert("X-Twice", "1");
  r.insert(bhttp::field::content_type, "application/json");
  r.insert("x-twice", "2");
  EXPECT_EQ(r.method_string(), "POST");
  EXPECT_EQ(r.target(), "/x");
  EXPECT_EQ(r["X-TWICE"], "1");
  EXPECT_EQ(r[bhttp::field::content_type], "application/json");
  r.set("x-twice", "3");
  EXPECT_EQ(r.size(), 2u);
  EXPECT_EQ(r["X-Twice"], "3");
  EXPECT_EQ(r.erase_if([](std::string_view n) { return gh::iequals(n, "content-type"); }), 1u);
  EXPECT_EQ(r[bhttp::field::content_type], "");
  EXPECT_EQ((*r.begin()).name(), bhttp::field::unknown);
}

TEST(Request, LookupsFindTheFirstFieldOfANameThroughChanges) {
  // Random inserts, sets and erasures of names kept by position and others: each lookup as a scan finds.
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    Request r(bhttp::verb::get, "/");
    for (int step = 0; step < 12; ++step) {
      const auto& name = kLookedUp[rng() % kLookedUp.size()];
      auto value = "v" + std::to_string(step);
      switch (rng() % 4) {
        case 0: r.insert(name, value); break;
        case 1: r.insert(kLookedUpFields[rng() % kLookedUpFields.size()], value); break;
        case 2: r.set(lower(name), value); break;
        default: r.erase_if([&](std::string_view n) { return gh::iequals(n, name); });
      }
      expect_lookups_scan(r, "round " + std::to_string(round) + " step " + std::to_string(step));
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// The heads' writer (Exchange::send_json, ClientPool::request): pieces go after what the string holds, in
// order, numbers in decimal, whatever the string's capacity.
TEST(AppendAll, AppendsEveryPieceInOrderAfterWhatIsThere) {
  using namespace std::string_view_literals;
  std::string out = "HTTP/1.1 ";
  gh::append_all(out, gh::Decimal(200), " "sv, std::string("OK"), "\r\nContent-Length: "sv, gh::Decimal(0), ""sv,
                 "\r\n"sv);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
  std::string big;  // no capacity reserved: the string grows as needed
  std::string piece(1000, 'x');
  gh::append_all(big, piece, gh::Decimal(UINT64_MAX), piece);
  EXPECT_EQ(big, piece + "18446744073709551615" + piece);
  EXPECT_EQ(std::string_view(gh::Decimal(42)), "42");
}
