// Micro benchmarks of the pure pieces on the request path (make bench builds them as build-release/micro_bench).
#include <benchmark/benchmark.h>

#include <boost/json.hpp>

#include "http/sse.hpp"
#include "jsonrpc/message.hpp"
#include "mcp/names.hpp"

namespace {

const std::string kCall =
    R"({"jsonrpc":"2.0","id":12345,"method":"tools/call","params":{"name":"fast__echo","arguments":{"message":"hello from wrk"}}})";

void BM_ParseAndClassifyRequest(benchmark::State& state) {
  for (auto _ : state) {
    auto body = gh::jsonrpc::parse_body(kCall);
    auto kind = gh::jsonrpc::classify(body.messages.front());
    benchmark::DoNotOptimize(kind);
  }
}
BENCHMARK(BM_ParseAndClassifyRequest);

void BM_RewriteAndSerializeResponse(benchmark::State& state) {
  const std::string upstream = R"({"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Echo: hello from wrk"}]}})";
  for (auto _ : state) {
    auto v = boost::json::parse(upstream);
    v.as_object()["id"] = 12345;
    auto out = boost::json::serialize(v);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_RewriteAndSerializeResponse);

void BM_SplitPrefixedName(benchmark::State& state) {
  std::string_view server, name;
  for (auto _ : state) {
    bool ok = gh::mcp::split_name("github__create_pull_request", server, name);
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_SplitPrefixedName);

void BM_SseEncodeDecode(benchmark::State& state) {
  gh::sse::Decoder decoder;
  std::size_t events = 0;
  for (auto _ : state) {
    auto text = gh::sse::encode(kCall, "42");
    decoder.feed(text, [&](gh::sse::Event&&) { ++events; });
  }
  benchmark::DoNotOptimize(events);
}
BENCHMARK(BM_SseEncodeDecode);

}  // namespace

BENCHMARK_MAIN();
