// Prometheus metrics, kept on the io thread (no atomics needed) and rendered in the text exposition format.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace gh::observability {

class Histogram {
 public:
  static constexpr std::array<double, 13> kBounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,    0.25,  0.5,    1,     2.5,  10};
  void observe(double seconds);
  // Appends the _bucket/_sum/_count lines for `name` with `labels` (already formatted, may be empty).
  void render(std::string& out, std::string_view name, const std::string& labels) const;

 private:
  std::array<uint64_t, kBounds.size()> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Gauges read when rendering.
struct Gauges {
  std::size_t sessions = 0, upstream_processes = 0, upstream_connections = 0, http_connections = 0;
  uint64_t sessions_resumed = 0;
  uint64_t http_connections_refused = 0;
  std::size_t upstream_answer_bytes = 0;
  uint64_t upstream_answers_refused = 0;
  std::size_t analytics_queue = 0;
  uint64_t analytics_dropped = 0, analytics_written = 0, analytics_failed_batches = 0;
  uint64_t analytics_catch_up_batches = 0, analytics_checkpoints = 0;
  std::size_t rate_limit_keys = 0;
  uint64_t rate_limit_fallbacks = 0;
  int redis_up = -1;  // -1: no Redis configured
  int store_up = 1;   // the store answered the last probe (every 5 s)
  std::size_t users = 0;
};

class Metrics {
 public:
  // route: a fixed label ("mcp", "mcp_server", "servers", "openapi", "admin_api", "auth", "metrics", …).
  void request(std::string_view route, int status, double seconds);
  // `tool`: the tool called, or the method. A server's series are bounded: a tool label over 128 bytes or
  // with a control character, and every new one past kMaxToolsPerServer, is counted as "other" (the names
  // are the clients' words; unbounded, they would grow the process and every scrape without end).
  void upstream_call(const std::string& server, const std::string& tool, std::string_view outcome, double seconds);
  static constexpr std::size_t kMaxToolsPerServer = 500;
  void rate_limited(std::string_view scope);  // "user" | "ip"
  void auth_refused(int status);
  std::string render(const Gauges& g) const;

  uint64_t requests_total() const { return requests_; }

 private:
  // Keys compared as views, so that a request finds its histogram without copying its labels (only the first
  // observation of a label set stores them).
  using RouteKey = std::pair<std::string_view, int>;
  using CallKey = std::tuple<std::string_view, std::string_view, std::string_view>;
  struct ViewLess {
    using is_transparent = void;
    static RouteKey view(const RouteKey& k) { return k; }
    static RouteKey view(const std::pair<std::string, int>& k) { return {k.first, k.second}; }
    static CallKey view(const CallKey& k) { return k; }
    static CallKey view(const std::tuple<std::string, std::string, std::string>& k) {
      return {std::get<0>(k), std::get<1>(k), std::get<2>(k)};
    }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const { return view(a) < view(b); }
  };
  std::map<std::pair<std::string, int>, Histogram, ViewLess> requests_by_;
  std::map<std::tuple<std::string, std::string, std::string>, Histogram, ViewLess> upstream_by_;
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> tools_of_;  // each server's tool labels
  std::map<std::string, uint64_t, std::less<>> limited_;
  std::map<int, uint64_t> auth_refused_;
  uint64_t requests_ = 0;
};

// A label value escaped for the exposition format.
std::string label_escape(std::string_view v);

}  // namespace gh::observability
