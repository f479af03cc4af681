// Gatehouse API keys: "gh_" + 43 base64url characters (256 random bits); stored as a SHA-256 hash (the key
// has full entropy, so a slow hash adds nothing) with a visible prefix for lists and logs.
#pragma once
#include <boost/json/object.hpp>

#include <string>

#include "store/store.hpp"

namespace gh::auth {

struct NewApiKey {
  store::ApiKey record;
  std::string secret;  // shown once
};

NewApiKey make_api_key(std::string user_email, std::string name, int64_t expires_at, int64_t now);
// The key as the APIs show it (never the hash or the secret).
boost::json::object api_key_json(const store::ApiKey& k);

}  // namespace gh::auth
