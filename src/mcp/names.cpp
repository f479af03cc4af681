#include "mcp/names.hpp"

#include <charconv>

#include "core/util.hpp"

namespace gh::mcp {

std::string prefixed(std::string_view server, std::string_view name) {
  std::string out;
  out.reserve(server.size() + kSeparator.size() + name.size());
  out.append(server).append(kSeparator).append(name);
  return out;
}

bool split_name(std::string_view full, std::string_view& server, std::string_view& name) {
  auto pos = full.find(kSeparator);
  if (pos == std::string_view::npos || pos == 0) return false;
  server = full.substr(0, pos);
  name = full.substr(pos + kSeparator.size());
  return !name.empty();
}

std::string cursor_encode(std::string_view list, std::size_t offset) {
  std::string raw(list);
  raw.append(":").append(std::to_string(offset));
  return base64url_encode(raw);
}

std::optional<std::size_t> cursor_decode(const boost::json::value& v, std::string_view list) {
  if (!v.is_string()) return std::nullopt;
  auto raw = base64url_decode(v.as_string());
  if (!raw || raw->size() <= list.size() + 1 || !raw->starts_with(list) || (*raw)[list.size()] != ':') return std::nullopt;
  const char* digits = raw->data() + list.size() + 1;
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(digits, raw->data() + raw->size(), n);
  if (ec != std::errc() || p != raw->data() + raw->size()) return std::nullopt;
  return n;
}

}  // namespace gh::mcp
