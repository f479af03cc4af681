#include "app/bootstrap.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>

#include "auth/apikeys.hpp"
#include "auth/directory.hpp"
#include "auth/jwt.hpp"
#include "auth/principal.hpp"
#include "auth/secrets.hpp"
#include "store/redis.hpp"
#include "core/log.hpp"

#include "core/util.hpp"

namespace gh::app {

void check_settings(const Settings& settings) {
  if (!settings.encryption_key.empty()) auth::SecretBox(settings.encryption_key, settings.encryption_key_previous);
  if (!settings.redis_url.empty()) {
    try {
      store::RedisClient::check_url(settings.redis_url);
    } catch (const std::invalid_argument& e) {
      throw ConfigError("REDIS_URL", e.what());
    }
  }
}

std::unique_ptr<store::Store> open_store(const Settings& settings) {
  auto store = store::Store::open(settings.database_url);
  int applied = store->migrate();
  log::info("store ready", {{"backend", store->backend()}, {"schema_version", store->schema_version()},
                            {"migrations_applied", applied}});
  return store;
}

std::optional<Bootstrap> bootstrap_admin(store::Store& store, const Settings& settings) {
  if (store.count_users() > 0) return std::nullopt;
  // Only one instance wins the race to bootstrap a shared store.
  auto token = auth::random_token(12);
  if (store.put_meta_if_absent("bootstrap", token) != token) return std::nullopt;
  auto email = auth::normalize_email(settings.admin_email);
  store::User u;
  u.email = email;
  u.name = "Administrator";
  u.source = "bootstrap";
  u.is_admin = true;
  u.created_at = unix_now();
  if (!store.create_user(u)) return std::nullopt;
  store::Group g;
  g.name = std::string(auth::kAdminGroup);
  g.description = "Administrators: see and manage everything";
  g.priority = 1000;
  g.created_at = unix_now();
  store.create_group(g);
  store.add_member(g.name, email, "manual");
  auto key = auth::make_api_key(email, "bootstrap admin key", 0, unix_now());
  store.create_api_key(key.record);
  store.append_audit({0, unix_now(), "system", "bootstrap", email,
                      gh::to_json(boost::json::object{{"after", auth::api_key_json(key.record)}})});
  store.notify_changed();
  log::info("bootstrap admin created", {{"email", email}, {"api_key_prefix", key.record.prefix}});
  return Bootstrap{email, key.secret};
}

void print_bootstrap(const Bootstrap& b, const std::string& public_url) {
  if (public_url.empty()) {  // a start that failed after the account was made: the key is not lost with it
    std::printf("\nGatehouse: created the admin account %s\nAdmin API key (shown once): %s\n\n", b.email.c_str(),
                b.key.c_str());
    std::fflush(stdout);
    return;
  }
  std::printf("\nGatehouse: created the admin account %s\n"
              "Admin API key (shown once): %s\n"
              "Admin portal: %s/mcp-admin\n"
              "MCP endpoint: %s/mcp  (send the key as \"Authorization: Bearer <key>\")\n\n",
              b.email.c_str(), b.key.c_str(), public_url.c_str(), public_url.c_str());
  std::fflush(stdout);
}

}  // namespace gh::app
