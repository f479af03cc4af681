#include "http/sse.hpp"

#include <charconv>

namespace gh::sse {

std::string encode(std::string_view data, std::string_view id, std::string_view event) {
  std::string out;
  out.reserve(data.size() + id.size() + 32);
  if (!event.empty()) {
    out += "event: ";
    out += event;
    out += '\n';
  }
  if (!id.empty()) {
    out += "id: ";
    out += id;
    out += '\n';
  }
  // A line ends at CR, LF or CRLF for the reader (an upstream's answer passed on as written may hold a lone CR
  // as JSON whitespace): each of them starts another data: line.
  std::size_t start = 0;
  while (true) {
    auto nl = data.find_first_of("\r\n", start);
    out += "data: ";
    out += data.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    out += '\n';
    if (nl == std::string_view::npos) break;
    start = nl + (data[nl] == '\r' && nl + 1 < data.size() && data[nl + 1] == '\n' ? 2 : 1);
  }
  out += '\n';
  return out;
}

bool Decoder::feed(std::string_view bytes, const Callback& cb) {
  std::size_t i = 0;
  if (skip_lf_ && !bytes.empty() && bytes[0] == '\n') i = 1;
  skip_lf_ = false;
  while (i < bytes.size()) {
    auto pos = bytes.find_first_of("\r\n", i);
    if (pos == std::string_view::npos) {
      buf_.append(bytes.substr(i));
      if (buf_.size() + data_.size() > max_) return false;
      return true;
    }
    std::string_view l;
    if (buf_.empty()) {
      l = bytes.substr(i, pos - i);
      line(l, cb);
    } else {
      buf_.append(bytes.substr(i, pos - i));
      line(buf_, cb);
      buf_.clear();
    }
    if (bytes[pos] == '\r') {
      if (pos + 1 < bytes.size()) {
        if (bytes[pos + 1] == '\n') ++pos;
      } else {
        skip_lf_ = true;
      }
    }
    i = pos + 1;
    if (data_.size() > max_) return false;
  }
  return true;
}

void Decoder::line(std::string_view l, const Callback& cb) {
  if (l.empty()) {  // dispatch
    if (has_data_) {
      Event e;
      e.event = event_.empty() ? "message" : event_;
      e.data = std::move(data_);
      e.id = last_id_;
      cb(std::move(e));
    }
    data_.clear();
    event_.clear();
    has_data_ = false;
    return;
  }
  if (l.front() == ':') return;  // comment
  auto colon = l.find(':');
  std::string_view field = l.substr(0, colon), value;
  if (colon != std::string_view::npos) {
    value = l.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
  } else if (field == "retry") {
    int ms = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
    if (ec == std::errc() && p == value.data() + value.size() && ms >= 0) retry_ms_ = ms;
  }
}

}  // namespace gh::sse
