// Server-Sent Events codec (WHATWG): an encoder and an incremental, bounded decoder.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace gh::sse {

struct Event {
  std::string event;  // "message" when the stream gave no event field
  std::string data;
  std::string id;
  int retry_ms = -1;
};

// Formats one event; multi-line data is split into several data: lines.
std::string encode(std::string_view data, std::string_view id = {}, std::string_view event = "message");

class Decoder {
 public:
  using Callback = std::function<void(Event&&)>;
  explicit Decoder(std::size_t max_event_bytes = 64 * 1024 * 1024) : max_(max_event_bytes) {}
  // Feeds bytes; calls `cb` for every complete event. Returns false when an event exceeds the bound
  // (the decoder is then unusable).
  bool feed(std::string_view bytes, const Callback& cb);
  const std::string& last_event_id() const { return last_id_; }
  int retry_ms() const { return retry_ms_; }  // the last retry: field, or -1
  std::size_t buffered() const { return buf_.size() + data_.size(); }  // of an event not complete yet

 private:
  void line(std::string_view l, const Callback& cb);
  std::size_t max_;
  std::string buf_;
  std::string data_, event_, last_id_;
  bool has_data_ = false;
  int retry_ms_ = -1;
  bool skip_lf_ = false;
};

}  // namespace gh::sse
