// Serializes an HTTP/1.1 response head into one contiguous string, so a message goes out as one writev of
// (head, body) instead of Beast's generic buffer-sequence serializer (a measurable share of CPU per request).
#pragma once
#include <boost/beast/http/message.hpp>
#include <string>

namespace gh::http {

std::string response_head(const boost::beast::http::response_header<>& h);

}  // namespace gh::http
