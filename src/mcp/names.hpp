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

std::string cursor_encode(std::size_t offset);
// nullopt for anything that is not a cursor we made.
std::optional<std::size_t> cursor_decode(const boost::json::value& v);

}  // namespace gh::mcp
