// Resumable MCP session ids. A session's id carries, signed (HMAC-SHA-256 under a key every instance on the
// same store shares), what any instance needs to serve the session's next request: the endpoint it was
// opened on, whose it is, the protocol version and the client capabilities that need upstream sessions of
// its own. So an instance that does not hold the session (another instance behind a load balancer, this one
// after a restart) opens it again from its id instead of answering 404. What lives only in one instance —
// requests in flight, server→client requests awaiting an answer, a log level or subscriptions set on its own
// upstream sessions — stays there (docs/gateway-behaviour.md, "Sessions across instances").
#pragma once
#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gh::mcp {

// What a session id says of its session. Readable by whoever sees the id (signed, not encrypted): nothing
// in it is secret — the owner appears only as a keyed hash, different in each of their sessions.
struct SessionTicket {
  std::string scope;  // "" = the aggregate endpoint, else the server id
  std::string owner;  // issue(): the user who opens it; from verify(): their tag (see SessionIds::belongs_to)
  std::string protocol_version;
  boost::json::object capabilities;  // the client's sampling/elicitation/roots, as it declared them
  int64_t issued_at = 0;             // Unix seconds
  std::string nonce;
};

class SessionIds {
 public:
  // `secret`: shared by every instance (the gateway's session secret); `max_age_s`: how long after it was
  // opened a session may be opened again from its id.
  SessionIds(std::string_view secret, int64_t max_age_s);

  // A new session's id: "<payload>.<mac>", both base64url (the payload's layout: session_ids.cpp).
  // Capabilities whose JSON is longer than kMaxCapabilities make an id that no instance opens again (it is
  // as random as any other).
  std::string issue(const SessionTicket& t) const;
  // The ticket of an id this gateway issued, not yet too old at `now`; nullopt (and `why`) otherwise.
  std::optional<SessionTicket> verify(std::string_view id, int64_t now, std::string* why = nullptr) const;
  // Whether the ticket's session was opened by `owner` (its id names them by a tag keyed with the session's
  // nonce: not their address, which would be in proxies' logs, nor one tag that links all their sessions).
  bool belongs_to(const SessionTicket& t, std::string_view owner) const;
  int64_t max_age_s() const { return max_age_s_; }

  static constexpr std::size_t kMaxCapabilities = 512;
  static constexpr std::size_t kMaxId = 1024;  // longer headers are not ids we issued

 private:
  static constexpr uint8_t kVersion = 1;
  static constexpr std::size_t kTagBytes = 9;
  std::string mac(std::string_view payload) const;
  std::string owner_tag(std::string_view nonce, std::string_view owner) const;
  std::string key_;
  int64_t max_age_s_;
};

}  // namespace gh::mcp
