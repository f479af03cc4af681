// Who is calling: one Principal per request, built from an immutable Identity shared with the snapshot.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gh::auth {

inline constexpr std::string_view kAdminGroup = "MCP-Admin";

// A user as the hot path sees it: immutable, shared by the snapshot and every request of that user.
struct Identity {
  std::string email;
  std::string name;
  std::vector<std::string> groups;  // sorted
  bool is_admin = false;            // the user's flag, MCP-Admin membership, or an Open WebUI admin
  bool disabled = false;
  std::string subject;  // the identity provider's account it is bound to ("" = none yet)
  int64_t created_at = 0;  // the account's (a deleted address made again is another account); 0: not stored
  bool in_group(std::string_view g) const;
};

enum class AuthMethod { none, session, oidc, openwebui, apikey, header };
std::string_view to_string(AuthMethod m);

struct Principal {
  std::shared_ptr<const Identity> identity;  // null when unauthenticated
  AuthMethod method = AuthMethod::none;
  bool role_admin = false;  // admin through an IdP role in the presented token
  bool from_api_key = false;  // a gateway session made from an API key (/auth/session): a program's, as the key is
  int64_t key_expires_at = 0;  // an API key's expiry (that of the key a session was made from); 0 = none

  bool authenticated() const { return identity != nullptr; }
  bool is_admin() const { return identity && (identity->is_admin || role_admin); }
  const std::string& email() const;
};

}  // namespace gh::auth
