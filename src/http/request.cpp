#include "http/request.hpp"

#include "core/util.hpp"

namespace gh::http {

Request::Request(bhttp::verb method, std::string_view target, unsigned version)
    : method_text_(append(bhttp::to_string(method))), target_(append(target)), method_(method), version_(version) {}

Request::Span Request::append(std::string_view s) {
  Span at{static_cast<uint32_t>(text_.size()), static_cast<uint32_t>(s.size())};
  text_.append(s);
  return at;
}

std::string_view Request::operator[](std::string_view name) const {
  for (const auto& s : fields_)
    if (iequals(view(s.name), name)) return view(s.value);
  return {};
}

void Request::insert(std::string_view name, std::string_view value) {
  fields_.push_back({append(name), append(value)});
}

void Request::insert(bhttp::field name, std::string_view value) { insert(bhttp::to_string(name), value); }

void Request::set(std::string_view name, std::string_view value) {
  erase_if([&](std::string_view n) { return iequals(n, name); });
  insert(name, value);
}

void Request::set(bhttp::field name, std::string_view value) { set(bhttp::to_string(name), value); }

void Request::assign(const bhttp::request_header<>& h, bool keep_alive) {
  clear();
  method_text_ = append(h.method_string());
  target_ = append(h.target());
  method_ = h.method();
  version_ = h.version();
  keep_alive_ = keep_alive;
  for (const auto& f : h) fields_.push_back({append(f.name_string()), append(f.value())});
}

void Request::clear() {
  text_.clear();
  fields_.clear();
  method_text_ = target_ = {};
  method_ = bhttp::verb::get;
  version_ = 11;
  keep_alive_ = true;
}

}  // namespace gh::http
