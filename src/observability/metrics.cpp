#include "observability/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace gh::observability {

namespace {
// The shortest text that reads back as the same double: a histogram's _sum grows for as long as the process
// runs, and six significant digits (printf's %g) would freeze it at a value a rate() then reads as no change.
std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}
void help(std::string& out, const char* name, const char* type, const char* text) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += text;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}
void line(std::string& out, std::string_view name, const std::string& labels, const std::string& value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ';
  out += value;
  out += '\n';
}
}  // namespace

std::string label_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void Histogram::observe(double seconds) {
  for (std::size_t i = 0; i < kBounds.size(); ++i)
    if (seconds <= kBounds[i]) ++counts_[i];
  ++count_;
  sum_ += seconds;
}

void Histogram::render(std::string& out, std::string_view name, const std::string& labels) const {
  std::string prefix = labels.empty() ? "" : labels + ",";
  for (std::size_t i = 0; i < kBounds.size(); ++i)
    line(out, std::string(name) + "_bucket", prefix + "le=\"" + num(kBounds[i]) + "\"", std::to_string(counts_[i]));
  line(out, std::string(name) + "_bucket", prefix + "le=\"+Inf\"", std::to_string(count_));
  line(out, std::string(name) + "_sum", labels, num(sum_));
  line(out, std::string(name) + "_count", labels, std::to_string(count_));
}

void Metrics::request(std::string_view route, int status, double seconds) {
  ++requests_;
  auto it = requests_by_.find(RouteKey(route, status));
  if (it == requests_by_.end()) it = requests_by_.emplace(std::pair<std::string, int>(route, status), Histogram{}).first;
  it->second.observe(seconds);
}

void Metrics::upstream_call(const std::string& server, const std::string& tool, std::string_view outcome, double seconds) {
  auto it = upstream_by_.find(CallKey(server, tool, outcome));
  if (it == upstream_by_.end()) {
    std::string_view label = tool;
    bool fits = tool.size() <= 128 && std::none_of(tool.begin(), tool.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    if (fits) {  // a label the server has (under another outcome) or one more within the bound
      auto& labels = tools_of_[server];
      fits = labels.contains(tool) || (labels.size() < kMaxToolsPerServer && labels.insert(tool).second);
    }
    if (!fits) label = "other";
    it = upstream_by_.find(CallKey(server, label, outcome));
    if (it == upstream_by_.end())
      it = upstream_by_.emplace(std::tuple<std::string, std::string, std::string>(server, label, outcome), Histogram{}).first;
  }
  it->second.observe(seconds);
}

void Metrics::rate_limited(std::string_view scope) {
  auto it = limited_.find(scope);
  if (it == limited_.end()) it = limited_.emplace(std::string(scope), 0).first;
  ++it->second;
}

void Metrics::auth_refused(int status) { ++auth_refused_[status]; }

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  out.reserve(8192);
  help(out, "gatehouse_http_request_duration_seconds", "histogram", "HTTP requests by route and status.");
  for (auto& [k, h] : requests_by_)
    h.render(out, "gatehouse_http_request_duration_seconds",
             "route=\"" + label_escape(k.first) + "\",status=\"" + std::to_string(k.second) + "\"");
  help(out, "gatehouse_upstream_call_duration_seconds", "histogram", "Upstream MCP calls by server, tool and outcome.");
  for (auto& [k, h] : upstream_by_)
    h.render(out, "gatehouse_upstream_call_duration_seconds",
             "server=\"" + label_escape(std::get<0>(k)) + "\",tool=\"" + label_escape(std::get<1>(k)) + "\",outcome=\"" +
                 label_escape(std::get<2>(k)) + "\"");
  help(out, "gatehouse_rate_limited_total", "counter", "Requests refused by the rate limiter.");
  for (auto scope : {"user", "ip"}) {
    auto it = limited_.find(scope);
    line(out, "gatehouse_rate_limited_total", std::string("scope=\"") + scope + "\"",
         std::to_string(it == limited_.end() ? 0 : it->second));
  }
  help(out, "gatehouse_auth_refused_total", "counter", "Requests refused by authentication, by status.");
  for (auto& [status, n] : auth_refused_) line(out, "gatehouse_auth_refused_total", "status=\"" + std::to_string(status) + "\"", std::to_string(n));
  auto gauge = [&](const char* name, const char* text, double v) {
    help(out, name, "gauge", text);
    line(out, name, "", num(v));
  };
  auto counter = [&](const char* name, const char* text, uint64_t v) {
    help(out, name, "counter", text);
    line(out, name, "", std::to_string(v));
  };
  gauge("gatehouse_http_connections", "Open client connections.", double(g.http_connections));
  counter("gatehouse_http_connections_refused_total", "Client connections refused at MAX_CONNECTIONS (503).",
          g.http_connections_refused);
  gauge("gatehouse_upstream_answer_bytes", "Bytes of upstream answers held while being read (UPSTREAM_MEMORY_LIMIT_MB).",
        double(g.upstream_answer_bytes));
  counter("gatehouse_upstream_answers_refused_total", "Upstream answers not read: the gateway held UPSTREAM_MEMORY_LIMIT_MB.",
          g.upstream_answers_refused);
  gauge("gatehouse_sessions", "Open downstream MCP sessions.", double(g.sessions));
  counter("gatehouse_sessions_resumed_total",
          "Downstream MCP sessions opened again from their id (opened by another instance, or before a restart or idle drop).",
          g.sessions_resumed);
  gauge("gatehouse_upstream_processes", "Running stdio upstream process groups.", double(g.upstream_processes));
  gauge("gatehouse_upstream_connections", "Upstream connections (shared, tenant and dedicated).", double(g.upstream_connections));
  gauge("gatehouse_analytics_queue", "Analytics rows waiting to be written.", double(g.analytics_queue));
  counter("gatehouse_analytics_dropped_total", "Analytics rows dropped (queue full).", g.analytics_dropped);
  counter("gatehouse_analytics_written_total", "Analytics rows written.", g.analytics_written);
  counter("gatehouse_analytics_failed_batches_total", "Analytics batches that failed (retried).", g.analytics_failed_batches);
  counter("gatehouse_analytics_catch_up_batches_total",
          "Analytics batches written without pauses because the writer was more than two batches behind.",
          g.analytics_catch_up_batches);
  counter("gatehouse_analytics_checkpoints_total",
          "SQLite write-ahead log checkpoints made by the analytics writer (when rows come slowly, or after 400 batches).",
          g.analytics_checkpoints);
  gauge("gatehouse_rate_limit_keys", "Callers tracked by the in-process rate limiter.", double(g.rate_limit_keys));
  counter("gatehouse_rate_limit_fallbacks_total", "Rate-limit decisions made locally because Redis failed.", g.rate_limit_fallbacks);
  if (g.redis_up >= 0) gauge("gatehouse_redis_up", "Whether the shared rate limiter reaches Redis.", g.redis_up);
  gauge("gatehouse_store_up", "Whether the store (SQLite or PostgreSQL) answered its last probe.", g.store_up);
  gauge("gatehouse_users", "Users in the directory snapshot.", double(g.users));
  return out;
}

}  // namespace gh::observability
