// An HTTP request as the server received it. The head's text sits in one buffer with the fields as positions
// in it: no allocation a field (Beast's basic_fields allocates a node for each and files it in a tree), and a
// connection reuses the same buffers from one request to the next. Filled by parse_request_head (head.hpp)
// or, for the heads it leaves to Beast, from Beast's parsed header (assign).
#pragma once
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/verb.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gh::http {

namespace bhttp = boost::beast::http;

class Request {
 public:
  // One header field; valid until the request changes.
  class Field {
   public:
    bhttp::field name() const { return bhttp::string_to_field(name_); }  // (a lookup: the hot path uses names)
    std::string_view name_string() const { return name_; }
    std::string_view value() const { return value_; }

   private:
    friend class Request;
    Field(std::string_view name, std::string_view value) : name_(name), value_(value) {}
    std::string_view name_, value_;
  };
  class const_iterator {
   public:
    using value_type = Field;
    using difference_type = std::ptrdiff_t;
    Field operator*() const { return r_->field_at(i_); }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    friend class Request;
    const_iterator(const Request* r, std::size_t i) : r_(r), i_(i) {}
    const Request* r_;
    std::size_t i_;
  };

  // The names the gateway reads on every request and those the head parser judges: each request keeps where
  // the first field of each is, so that looking one up is a classification, not a scan of every field.
  enum class Name : uint8_t {
    other, host, origin, accept, cookie, expect, upgrade, connection, user_agent, content_type, authorization,
    content_length, mcp_session_id, x_forwarded_for, proxy_connection, transfer_encoding, mcp_protocol_version,
    count_
  };
  static Name name_of(std::string_view name);  // case-insensitive
  static Name name_of(bhttp::field name);

  Request() = default;
  // The start line's parts, for requests made in code (tests): fields are added with set/insert.
  Request(bhttp::verb method, std::string_view target, unsigned version = 11);

  bhttp::verb method() const { return method_; }
  std::string_view method_string() const { return view(method_text_); }
  std::string_view target() const { return view(target_); }
  void target(std::string_view t) { target_ = append(t); }
  unsigned version() const { return version_; }
  bool keep_alive() const { return keep_alive_; }
  std::string& body() { return body_; }
  const std::string& body() const { return body_; }

  // The first field of that name, "" when there is none (as basic_fields' operator[]).
  std::string_view operator[](bhttp::field name) const;
  std::string_view operator[](std::string_view name) const;
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, fields_.size()}; }
  std::size_t size() const { return fields_.size(); }
  // Whether a field of that name (one of Name's, not `other`) appears more than once.
  bool repeated(Name id) const { return repeated_ >> static_cast<unsigned>(id) & 1u; }
  // Every field of that name as one comma-separated list, in order (RFC 9110 §5.3; a proxy may add its own
  // X-Forwarded-For line after the client's): the first field's value itself when there is one field, else
  // joined in `storage`.
  std::string_view list(Name id, std::string& storage) const {
    if (!repeated(id)) return value_of(id);
    return join_all(id, storage);
  }

  void insert(std::string_view name, std::string_view value);
  void insert(bhttp::field name, std::string_view value);
  // Replaces every field of that name.
  void set(std::string_view name, std::string_view value);
  void set(bhttp::field name, std::string_view value);
  // Removes the fields whose name satisfies `pred`; returns how many.
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    auto n = std::erase_if(fields_, [&](const Slot& s) { return pred(view(s.name)); });
    if (n) reindex();
    return n;
  }

  // A head parsed by Beast (the fallback for heads outside parse_request_head's shape) and what its parser
  // said of keep-alive; the body is left as is.
  void assign(const bhttp::request_header<>& h, bool keep_alive);
  // Empties the head; the body stays (its capacity too).
  void clear();

 private:
  friend std::size_t parse_request_head(std::string_view buffered, Request& out, std::uint64_t& content_length);
  struct Span {
    uint32_t at = 0, len = 0;
  };
  struct Slot {
    Span name, value;
  };
  std::string_view view(Span s) const { return {text_.data() + s.at, s.len}; }
  Span append(std::string_view s);
  void push_field(Span name, Span value, Name id);  // keeps first_
  void note_position(std::size_t i, Name id);       // field i is named `id`
  void reindex();
  std::string_view join_all(Name id, std::string& storage) const;
  std::string_view value_of(Name id) const {
    auto i = first_[static_cast<std::size_t>(id)];
    return i ? view(fields_[i - 1].value) : std::string_view{};
  }
  Field field_at(std::size_t i) const {
    const auto& s = fields_[i];
    return {view(s.name), view(s.value)};
  }

  std::string text_;  // the head as received (or the parts appended by insert/set/assign)
  std::vector<Slot> fields_;
  std::array<uint32_t, static_cast<std::size_t>(Name::count_)> first_{};  // 1 + index in fields_; 0: none
  uint32_t repeated_ = 0;  // bit i: a second field named Name(i)
  static_assert(static_cast<unsigned>(Name::count_) <= 32);
  Span method_text_, target_;
  bhttp::verb method_ = bhttp::verb::get;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  std::string body_;
};

}  // namespace gh::http
