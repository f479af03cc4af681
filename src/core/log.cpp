#include "core/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "core/util.hpp"

namespace gh::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::mutex g_mutex;

const char* name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}
}  // namespace

void set_level(Level level) { g_level.store(static_cast<int>(level)); }
bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

bool parse_level(std::string_view t, Level& out) {
  if (t == "debug") out = Level::debug;
  else if (t == "info") out = Level::info;
  else if (t == "warn" || t == "warning") out = Level::warn;
  else if (t == "error") out = Level::error;
  else return false;
  return true;
}

void write(Level level, std::string_view msg, const boost::json::object& fields) {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[80];  // room for any int in each field (GCC checks the worst case)
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  boost::json::object line;
  line.reserve(fields.size() + 3);
  line["ts"] = ts;
  line["level"] = name(level);
  line["msg"] = msg;
  for (const auto& kv : fields) line[kv.key()] = kv.value();
  std::string out = gh::to_json(line);
  // Valid UTF-8 for log shippers: a client's bytes (a Host, an Origin) may be anything; Boost.JSON escapes
  // control characters but passes other bytes on as they are.
  gh::sanitize_text(out.data(), out.size(), false);
  out.push_back('\n');
  std::lock_guard lock(g_mutex);
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
}

}  // namespace gh::log
