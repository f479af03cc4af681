#include "http/wire.hpp"

#include <boost/beast/http/status.hpp>

namespace gh::http {

namespace bhttp = boost::beast::http;

namespace {
void append_fields(std::string& out, const bhttp::fields& f) {
  for (const auto& field : f) {
    out.append(field.name_string());
    out.append(": ");
    out.append(field.value());
    out.append("\r\n");
  }
  out.append("\r\n");
}
}  // namespace

std::string response_head(const bhttp::response_header<>& h) {
  std::string out;
  out.reserve(256);
  out.append(h.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  out.append(std::to_string(h.result_int()));
  out.push_back(' ');
  auto reason = h.reason();
  out.append(reason.empty() ? bhttp::obsolete_reason(h.result()) : reason);
  out.append("\r\n");
  append_fields(out, h);
  return out;
}

}  // namespace gh::http
