// Structured logging: one JSON object per line on stderr.
#pragma once
#include <boost/json/object.hpp>
#include <string_view>

namespace gh::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
bool parse_level(std::string_view text, Level& out);
bool enabled(Level level);

// Writes {"ts":…,"level":…,"msg":…, …fields}. Thread-safe.
void write(Level level, std::string_view msg, const boost::json::object& fields = {});

inline void debug(std::string_view m, const boost::json::object& f = {}) { if (enabled(Level::debug)) write(Level::debug, m, f); }
inline void info(std::string_view m, const boost::json::object& f = {}) { if (enabled(Level::info)) write(Level::info, m, f); }
inline void warn(std::string_view m, const boost::json::object& f = {}) { if (enabled(Level::warn)) write(Level::warn, m, f); }
inline void error(std::string_view m, const boost::json::object& f = {}) { write(Level::error, m, f); }

}  // namespace gh::log
