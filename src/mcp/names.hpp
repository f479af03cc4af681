// Name mapping for the aggregate endpoint (`<server>__<name>`) and opaque list cursors.
#pragma once
#include <boost/json/value.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace gh::mcp {

inline constexpr std::string_view kSeparator = "__";

std::string prefixed(std::string_view server, std::string_view name);
// Splits "<server>__<name>" at the first separator; false when either side is empty or there is none.
bool split_name(std::string_view full, std::string_view& server, std::string_view& name);

// A page's cursor: the list it belongs to (the method, e.g. "tools/list") and the offset of its first item.
std::string cursor_encode(std::string_view list, std::size_t offset);
// The offset; nullopt for anything that is not a cursor we made for `list` (another list's cursor included).
std::optional<std::size_t> cursor_decode(const boost::json::value& v, std::string_view list);

}  // namespace gh::mcp
