#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <random>

#include "jsonrpc/message.hpp"
#include "jsonrpc/reply.hpp"
#include "core/util.hpp"

using namespace gh::jsonrpc;
namespace json = boost::json;

namespace {
std::optional<std::pair<uint64_t, Reply>> pass(std::string text) { return Reply::pass_through(text); }

void mutate(std::string& text, std::string_view alphabet, std::mt19937& rng) {
  for (int e = 0, n = 1 + static_cast<int>(rng() % 3); e < n; ++e) {
    std::size_t at = rng() % (text.size() + 1);
    char c = alphabet[rng() % alphabet.size()];
    switch (rng() % 3) {
      case 0: if (at < text.size()) text[at] = c; break;
      case 1: text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c); break;
      default: if (at < text.size()) text.erase(at, 1);
    }
  }
}

// Whether the text is one that must pass through: one object of exactly "jsonrpc":"2.0", an unsigned
// integer id and a result, with plain keys (decided on the DOM, independently of the scanner).
bool plain_result(std::string_view text) {
  json::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return false;
  auto& o = v.as_object();
  if (o.size() != 3 || !o.contains("result")) return false;
  auto* ver = o.if_contains("jsonrpc");
  auto* id = o.if_contains("id");
  if (!ver || !ver->is_string() || ver->as_string() != "2.0" || !id) return false;
  if (!(id->is_uint64() || (id->is_int64() && id->as_int64() >= 0))) return false;
  auto at = text.find_first_not_of(" \t\n\r:", text.find("\"id\"") + 4);
  if (text[at] == '-') return false;  // -0: an integer, but not written as an unsigned one
  return true;
}
}  // namespace

TEST(Reply, PassesAResultThroughWithOnlyItsIdReplaced) {
  std::string text = R"( { "result" : {"content":[{"type":"text","text":"h\u00e9llo \"x\" ü 😀"}], "z":1.5e-3},)"
                     R"( "id": 42, "jsonrpc":"2.0" } )";
  auto p = pass(text);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->first, 42u);
  EXPECT_FALSE(p->second.is_error());
  EXPECT_FALSE(p->second.tool_error());
  p->second.set_id(json::value("abc"));
  EXPECT_EQ(p->second.serialize(),
            R"({"jsonrpc":"2.0","id":"abc","result":{"content":[{"type":"text","text":"h\u00e9llo \"x\" ü 😀"}], "z":1.5e-3}})");
  p->second.set_id(json::value(7));
  EXPECT_EQ(json::parse(p->second.serialize()),
            json::parse(R"({"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"héllo \"x\" ü 😀"}],"z":1.5e-3}})"));
  // object() parses it, with the id set
  auto& o = p->second.object();
  EXPECT_EQ(o.at("id").as_int64(), 7);
  EXPECT_EQ(o.at("result").at("z").as_double(), 1.5e-3);
  EXPECT_FALSE(p->second.passed_through());
  EXPECT_EQ(json::parse(p->second.serialize()).at("id").as_int64(), 7);
}

TEST(Reply, SeesATopLevelIsErrorOfTheResultOnly) {
  EXPECT_TRUE(pass(R"({"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}})")->second.tool_error());
  EXPECT_FALSE(pass(R"({"jsonrpc":"2.0","id":1,"result":{"isError":false}})")->second.tool_error());
  EXPECT_FALSE(pass(R"({"jsonrpc":"2.0","id":1,"result":{"a":{"isError":true}}})")->second.tool_error());
  EXPECT_FALSE(pass(R"({"jsonrpc":"2.0","id":1,"result":[{"isError":true}]})")->second.tool_error());
  EXPECT_FALSE(pass(R"({"jsonrpc":"2.0","id":1,"result":{"x":"isError","y":true}})")->second.tool_error());
  // a built reply answers the same questions from its object
  Reply built(json::object{{"jsonrpc", "2.0"}, {"id", 1}, {"result", {{"isError", true}}}});
  EXPECT_TRUE(built.tool_error());
  Reply err(make_error(1, code::request_timeout, "late"));
  EXPECT_TRUE(err.is_error());
  EXPECT_EQ(err.error_code(), code::request_timeout);
}

TEST(Reply, LeavesEverythingElseToTheParserUntouched) {
  auto in_result = [](std::string_view raw) {
    std::string s = R"({"jsonrpc":"2.0","id":1,"result":)";
    s.append(raw);
    s.push_back('}');
    return s;
  };
  for (std::string text : std::vector<std::string>{
           R"({"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}})",  // errors are parsed
           R"({"jsonrpc":"2.0","id":1,"result":{},"extra":1})",
           R"({"id":1,"result":{}})",
           R"({"jsonrpc":"1.0","id":1,"result":{}})",
           R"({"jsonrpc":"2.0 ","id":1,"result":{}})",
           R"({"jsonrpc":"2.0","id":"1","result":{}})",
           R"({"jsonrpc":"2.0","id":-1,"result":{}})",
           R"({"jsonrpc":"2.0","id":1.0,"result":{}})",
           R"({"jsonrpc":"2.0","id":1e2,"result":{}})",
           R"({"jsonrpc":"2.0","id":01,"result":{}})",
           R"({"jsonrpc":"2.0","id":18446744073709551616,"result":{}})",
           R"({"jsonrpc":"2.0","id":1,"id":2,"result":{}})",
           R"({"jsonrpc":"2.0","id":1,"result":{},"result":{}})",
           R"({"jsonrpc":"2.0","id":1})",
           R"({"jsonrpc":"2.0","method":"x","params":{}})",
           R"([{"jsonrpc":"2.0","id":1,"result":{}}])",
           R"({"jsonrpc":"2.0","id":1,"result":{}} x)",
           R"({"jsonrpc":"2.0","id":1,"result":{}}{})",
           R"({"jsonrpc":"2.0","i\u0064":1,"result":{}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":01}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":1.}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":.5}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":1e}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":-}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":tru}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":[1,]}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a":1,}})",
           R"({"jsonrpc":"2.0","id":1,"result":{"a" 1}})",
           R"({"jsonrpc":"2.0","id":1,"result":{'a':1}})",
           R"({"jsonrpc":"2.0","id":1,"result":"\x"})",
           R"({"jsonrpc":"2.0","id":1,"result":"\u12G4"})",
           R"({"jsonrpc":"2.0","id":1,"result":"\ud800"})",
           R"({"jsonrpc":"2.0","id":1,"result":"\udc00"})",
           R"({"jsonrpc":"2.0","id":1,"result":"\ud800\u0041"})",
           in_result("\"\t\""),
           in_result("\"\xc0\xaf\""),          // overlong
           in_result("\"\xed\xa0\x80\""),      // a surrogate
           in_result("\"\xf4\x90\x80\x80\""),  // > U+10FFFF
           in_result("\"\xe2\x82\""),          // cut short
           in_result(std::string(gh::kMaxJsonDepth, '[') + std::string(gh::kMaxJsonDepth, ']')),  // deeper than the parser allows
           R"({"jsonrpc":"2.0","id":1,"result":{})",
           "",
       }) {
    std::string copy = text;
    EXPECT_FALSE(Reply::pass_through(copy)) << text;
    EXPECT_EQ(copy, text);
  }
}

// The scanner's promise, against Boost.JSON's parser on mutated messages: whatever it passes through is
// valid JSON (it parses, with the same result), and every message that is plainly a result passes through.
TEST(Reply, AgreesWithTheParserOnMutatedMessages) {
  const std::vector<std::string> seeds = {
      R"({"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"Echo: hi"}]}})",
      R"({"result":{"structuredContent":{"n":-12.5e+3,"ok":true,"no":false,"z":null,"a":[0,1,[2,{"b":"\n\t\"\\\/\b\f\r\u0041"}]]},"isError":false},"jsonrpc":"2.0","id":18446744073709551615})",
      "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\ud83d\\ude00\",\"e\":[]}}",
      R"({"jsonrpc":"2.0","id":12,"result":[1E5,-0,0.25,"x",{}, [ ] ,{"isError":true}]})",
  };
  const std::string alphabet = "{}[]\":,\\ \t\n-+.0123456789eEtrufalsn/bu\x01\x1f\x7f\x80\xbf\xc2\xe0\xed\xf0\xf4\xff";
  std::mt19937 rng(20261205);
  int passed = 0, plain = 0;
  for (int i = 0; i < 200000; ++i) {
    // the seeds themselves first, then each with 1-3 bytes replaced, inserted or removed
    std::string text = seeds[i % seeds.size()];
    if (i >= static_cast<int>(seeds.size())) mutate(text, alphabet, rng);
    std::string copy = text;
    auto p = Reply::pass_through(copy);
    bool expected = plain_result(text);
    plain += expected;
    if (p) {
      ++passed;
      json::error_code ec;
      auto whole = json::parse(text, ec);
      ASSERT_FALSE(ec) << "passed through, but not JSON: " << text;
      p->second.set_id(json::value("id"));
      auto out = json::parse(p->second.serialize(), ec);
      ASSERT_FALSE(ec) << text;
      EXPECT_EQ(out.at("result"), whole.at("result")) << text;
      EXPECT_EQ(out.at("id"), json::value("id"));
      auto id = whole.at("id");
      EXPECT_EQ(p->first, id.is_uint64() ? id.as_uint64() : static_cast<uint64_t>(id.as_int64())) << text;
    } else {
      EXPECT_EQ(copy, text);
    }
    EXPECT_EQ(static_cast<bool>(p), expected) << text;
  }
  EXPECT_GT(passed, 1000);  // the mutations kept enough messages valid to mean something
  EXPECT_EQ(passed, plain);
}

TEST(ToolCallScan, FindsTheIdTheNameAndTheParamsAsWritten) {
  std::string text = R"({"jsonrpc":"2.0","id":123001,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello from wrk"}}})";
  auto c = scan_tool_call(text);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id, json::value(123001));
  EXPECT_TRUE(c->id.is_int64());
  EXPECT_EQ(c->name, "echo");
  EXPECT_EQ(c->params, R"({"name":"echo","arguments":{"message":"hello from wrk"}})");
  EXPECT_EQ(c->params.substr(c->name_pos, c->name.size()), "echo");
  // ids as the parser makes them
  for (std::string id : {R"("a-b")", "-7", "0", "9223372036854775807", "9223372036854775808", "18446744073709551615",
                         "-9223372036854775808"}) {
    std::string t = R"( { "params" : { "arguments" : [1, {"x": null}], "name" : "t" } , "method":"tools/call", "id" : )" + id +
                    R"( ,"jsonrpc":"2.0"} )";
    auto d = scan_tool_call(t);
    ASSERT_TRUE(d) << t;
    auto dom = json::parse(t);
    EXPECT_EQ(d->id, dom.at("id")) << t;
    EXPECT_EQ(d->id.kind(), dom.at("id").kind()) << t;
    EXPECT_EQ(json::parse(d->params), dom.at("params"));
  }
}

TEST(ToolCallScan, LeavesEverythingElseToTheParser) {
  for (std::string text : std::vector<std::string>{
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":1}}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_\u006deta":{}}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a"}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u0061"}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call"})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","id":"\u0031","method":"tools/call","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","id":-18446744073709551615,"method":"tools/call","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a"}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"extra":0})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":01}}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":"\ud800"}}})",
           R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}} 1)",
           R"([{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}])",
           R"({"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"a"}})",
       })
    EXPECT_FALSE(scan_tool_call(text)) << text;
}

// Against the parser on mutated requests: what the scanner takes is exactly what the parsed path would
// forward unchanged (a tools/call with these members, no _meta), with the same id and params.
TEST(ToolCallScan, AgreesWithTheParserOnMutatedRequests) {
  const std::vector<std::string> seeds = {
      R"({"jsonrpc":"2.0","id":123001,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello from wrk"}}})",
      R"({"params":{"arguments":{"a":[1,-2.5e3,true,false,null,{"b":"\n\u00e9"}]},"name":"get-sum"},"id":"req-7","method":"tools/call","jsonrpc":"2.0"})",
      "{\"jsonrpc\":\"2.0\",\"id\":-3,\"method\":\"tools/call\",\"params\":{\"name\":\"\xc3\xa9t\xc3\xa9\",\"task\":{\"ttl\":0}}}",
  };
  const std::string alphabet = "{}[]\":,\\ \t-+.0123456789eEtrufalsn_mdp/\x01\x80\xc3\xff";
  std::mt19937 rng(61205);
  int taken = 0;
  for (int i = 0; i < 200000; ++i) {
    // the seeds themselves first, then each with 1-3 bytes replaced, inserted or removed
    std::string text = seeds[i % seeds.size()];
    if (i >= static_cast<int>(seeds.size())) mutate(text, alphabet, rng);
    auto c = scan_tool_call(text);
    if (!c) continue;
    ++taken;
    json::error_code ec;
    auto v = json::parse(text, ec);
    ASSERT_FALSE(ec) << "taken, but not JSON: " << text;
    ASSERT_TRUE(v.is_object()) << text;
    auto& o = v.as_object();
    EXPECT_EQ(o.size(), 4u) << text;
    EXPECT_EQ(classify(v), Kind::request) << text;
    EXPECT_EQ(method_of(o), "tools/call") << text;
    EXPECT_EQ(c->id, o.at("id")) << text;
    EXPECT_EQ(c->id.kind(), o.at("id").kind()) << text;
    auto& params = o.at("params").as_object();
    EXPECT_FALSE(params.contains("_meta")) << text;
    EXPECT_EQ(json::value(c->name), params.at("name")) << text;
    EXPECT_EQ(json::parse(c->params), o.at("params")) << text;
    EXPECT_EQ(c->params.substr(c->name_pos, c->name.size()), c->name) << text;
    EXPECT_EQ(c->params[c->name_pos - 1], '"') << text;
  }
  EXPECT_GT(taken, 1000);
}

// Every kind of byte at every position of strings up to 40 bytes long (the scanner reads 16, then 4, then
// one at a time): it passes a result exactly when the parser accepts it.
TEST(Reply, ChecksEveryByteOfAStringAsTheParserDoes) {
  const std::vector<std::string> inserts = {"\x01", "\x1f", "\"", "\\", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\q",
                                            "\x7f", "\x80", "\xc3\xa9", "\xc3", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                            "\xed\xa0\x80", "\xff", " ", "/"};
  for (std::size_t len = 0; len <= 40; ++len)
    for (std::size_t at = 0; at <= len; ++at)
      for (const auto& ins : inserts) {
        std::string str(len, 'a');
        str.insert(at, ins);
        std::string text = R"({"jsonrpc":"2.0","id":1,"result":{"text":")" + str + R"("}})";
        json::error_code ec;
        auto v = json::parse(text, ec);
        std::string copy = text;
        auto p = Reply::pass_through(copy);
        ASSERT_EQ(static_cast<bool>(p), !ec) << "length " << len << " at " << at << ": " << text;
        if (p) {
          EXPECT_EQ(json::parse(p->second.serialize()).at("result"), v.at("result"));
        }
      }
}
