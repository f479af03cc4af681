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

Request::Name Request::name_of(std::string_view n) {
  switch (n.size()) {  // the length first: most names are none of these
    case 4: return iequals(n, "host") ? Name::host : Name::other;
    case 6:
      if (iequals(n, "origin")) return Name::origin;
      if (iequals(n, "accept")) return Name::accept;
      if (iequals(n, "cookie")) return Name::cookie;
      return iequals(n, "expect") ? Name::expect : Name::other;
    case 7: return iequals(n, "upgrade") ? Name::upgrade : Name::other;
    case 10:
      if (iequals(n, "connection")) return Name::connection;
      return iequals(n, "user-agent") ? Name::user_agent : Name::other;
    case 12: return iequals(n, "content-type") ? Name::content_type : Name::other;
    case 13: return iequals(n, "authorization") ? Name::authorization : Name::other;
    case 14:
      if (iequals(n, "content-length")) return Name::content_length;
      return iequals(n, "mcp-session-id") ? Name::mcp_session_id : Name::other;
    case 15: return iequals(n, "x-forwarded-for") ? Name::x_forwarded_for : Name::other;
    case 16: return iequals(n, "proxy-connection") ? Name::proxy_connection : Name::other;
    case 17: return iequals(n, "transfer-encoding") ? Name::transfer_encoding : Name::other;
    case 20: return iequals(n, "mcp-protocol-version") ? Name::mcp_protocol_version : Name::other;
    default: return Name::other;
  }
}

Request::Name Request::name_of(bhttp::field f) {
  switch (f) {
    case bhttp::field::host: return Name::host;
    case bhttp::field::origin: return Name::origin;
    case bhttp::field::accept: return Name::accept;
    case bhttp::field::cookie: return Name::cookie;
    case bhttp::field::expect: return Name::expect;
    case bhttp::field::upgrade: return Name::upgrade;
    case bhttp::field::connection: return Name::connection;
    case bhttp::field::user_agent: return Name::user_agent;
    case bhttp::field::content_type: return Name::content_type;
    case bhttp::field::authorization: return Name::authorization;
    case bhttp::field::content_length: return Name::content_length;
    case bhttp::field::proxy_connection: return Name::proxy_connection;
    case bhttp::field::transfer_encoding: return Name::transfer_encoding;
    default: return name_of(bhttp::to_string(f));
  }
}

std::string_view Request::operator[](bhttp::field name) const {
  auto id = name_of(name);
  return id != Name::other ? value_of(id) : (*this)[bhttp::to_string(name)];
}

std::string_view Request::operator[](std::string_view name) const {
  if (auto id = name_of(name); id != Name::other) return value_of(id);
  for (const auto& s : fields_)
    if (iequals(view(s.name), name)) return view(s.value);
  return {};
}

std::string_view Request::join_all(Name id, std::string& storage) const {
  storage.clear();
  for (const auto& s : fields_) {
    if (name_of(view(s.name)) != id) continue;
    if (!storage.empty()) storage += ", ";
    storage += view(s.value);
  }
  return storage;
}

void Request::note_position(std::size_t i, Name id) {
  if (id == Name::other) return;
  auto& first = first_[static_cast<std::size_t>(id)];
  if (!first) first = static_cast<uint32_t>(i + 1);
  else repeated_ |= 1u << static_cast<unsigned>(id);
}

void Request::push_field(Span name, Span value, Name id) {
  fields_.push_back({name, value});
  note_position(fields_.size() - 1, id);
}

void Request::reindex() {
  first_.fill(0);
  repeated_ = 0;
  for (std::size_t i = 0; i < fields_.size(); ++i) note_position(i, name_of(view(fields_[i].name)));
}

void Request::insert(std::string_view name, std::string_view value) {
  auto n = append(name);
  push_field(n, append(value), name_of(name));
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
  for (const auto& f : h) insert(f.name_string(), f.value());
}

void Request::clear() {
  text_.clear();
  fields_.clear();
  first_.fill(0);
  repeated_ = 0;
  method_text_ = target_ = {};
  method_ = bhttp::verb::get;
  version_ = 11;
  keep_alive_ = true;
}

}  // namespace gh::http
