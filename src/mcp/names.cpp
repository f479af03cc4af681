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

std::string cursor_encode(std::size_t offset) { return base64url_encode("o:" + std::to_string(offset)); }

std::optional<std::size_t> cursor_decode(const boost::json::value& v) {
  if (!v.is_string()) return std::nullopt;
  auto raw = base64url_decode(v.as_string());
  if (!raw || !raw->starts_with("o:") || raw->size() == 2) return std::nullopt;
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(raw->data() + 2, raw->data() + raw->size(), n);
  if (ec != std::errc() || p != raw->data() + raw->size()) return std::nullopt;
  return n;
}

}  // namespace gh::mcp
