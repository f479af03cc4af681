// Metrics: the upstream-call series a server may have are bounded (their labels are callers' words).
#include <gtest/gtest.h>

#include <string>

#include "observability/metrics.hpp"

using gh::observability::Gauges;
using gh::observability::Metrics;

namespace {
std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

TEST(Metrics, UpstreamCallLabelsAreBoundedPerServer) {
  Metrics m;
  for (std::size_t i = 0; i < Metrics::kMaxToolsPerServer + 100; ++i) {
    m.upstream_call("s", "tool" + std::to_string(i), "ok", 0.001);
    m.upstream_call("s", "tool" + std::to_string(i), "error", 0.001);  // another outcome: not another tool
  }
  m.upstream_call("s", std::string(129, 'x'), "ok", 0.001);
  m.upstream_call("s", "bad\rname", "ok", 0.001);
  m.upstream_call("t", "fine", "ok", 0.001);  // another server has its own bound
  auto text = m.render(Gauges{});
  const std::string count_line = "gatehouse_upstream_call_duration_seconds_count{server=\"s\",";
  EXPECT_EQ(count(text, count_line), 2 * Metrics::kMaxToolsPerServer + 2);  // two outcomes each, plus "other"
  EXPECT_NE(text.find("{server=\"s\",tool=\"tool499\",outcome=\"ok\"} 1"), std::string::npos);
  EXPECT_EQ(text.find("tool=\"tool500\""), std::string::npos);
  EXPECT_NE(text.find("{server=\"s\",tool=\"other\",outcome=\"ok\"} 102"), std::string::npos);
  EXPECT_NE(text.find("{server=\"s\",tool=\"other\",outcome=\"error\"} 100"), std::string::npos);
  EXPECT_NE(text.find("{server=\"t\",tool=\"fine\",outcome=\"ok\"} 1"), std::string::npos);
}

// A histogram's _sum and the gauges are printed so that they read back as the same double: with six
// significant digits a sum past a million seconds moved only in steps of ten, and rate() saw no change.
TEST(Metrics, ValuesKeepTheirPrecision) {
  Metrics m;
  m.request("mcp", 200, 1234567.5);
  m.request("mcp", 200, 0.125);
  Gauges g;
  g.users = 123456789;
  auto text = m.render(g);
  EXPECT_NE(text.find("gatehouse_http_request_duration_seconds_sum{route=\"mcp\",status=\"200\"} 1234567.625\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("gatehouse_users 123456789\n"), std::string::npos);
  EXPECT_NE(text.find("le=\"0.005\""), std::string::npos);  // bucket bounds as written, not 0.005000000000000001
}
