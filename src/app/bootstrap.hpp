// Start-up of the store, shared by `serve` and the CLI: open, migrate, and on an empty store create the
// first admin account with a one-time API key.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "core/config.hpp"
#include "store/store.hpp"

namespace gh::app {

// Opens DATABASE_URL and applies pending migrations (logged). Throws store::StoreError.
// What load_settings cannot check alone (ENCRYPTION_KEY's key material, REDIS_URL's form): throws
// ConfigError naming the setting. `serve` and `check-config` both run it before anything else.
void check_settings(const Settings& settings);
std::unique_ptr<store::Store> open_store(const Settings& settings);

struct Bootstrap {
  std::string email, key;
};
// On a store without users: creates ADMIN_EMAIL as an admin (and member of MCP-Admin) with a one-time API
// key. Returns nothing otherwise, also to the losers when several instances race.
std::optional<Bootstrap> bootstrap_admin(store::Store& store, const Settings& settings);
// Prints the one-time key and where to use it, on stdout.
void print_bootstrap(const Bootstrap& b, const std::string& public_url);

}  // namespace gh::app
