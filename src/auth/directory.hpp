// The in-memory snapshot of users, groups, memberships and API keys that the hot path reads, and the
// Directory that rebuilds it off the io thread and swaps it in when the store changes (here or, through
// the store's change notification, on another instance).
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "auth/principal.hpp"
#include "core/blocking.hpp"
#include "core/config.hpp"
#include "policy/policy.hpp"
#include "store/store.hpp"

namespace gh::auth {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class SecretBox;

using policy::Route;

class Snapshot {
 public:
  // `box` decrypts tenant credentials (null: none can be used; they are reported as missing).
  static std::shared_ptr<const Snapshot> build(store::Dump dump, uint64_t version, const SecretBox* box = nullptr);

  std::shared_ptr<const Identity> user(std::string_view email) const;  // email lower-case
  std::optional<std::string> email_for_subject(std::string_view subject) const;
  const store::ApiKey* api_key_by_hash(std::string_view sha256_hex) const;
  // Whether the key with this id exists, is not revoked and has not expired at `now`.
  const store::ApiKey* api_key_by_id(std::string_view id) const;
  bool has_group(std::string_view name) const { return groups_.contains(std::string(name)); }
  // Local memberships of an email (for users whose identity comes from elsewhere, e.g. Open WebUI).
  const std::vector<std::string>* groups_of(std::string_view email) const;
  uint64_t version() const { return version_; }
  const policy::GrantIndex& grants() const { return grants_; }
  // The credential set and endpoint for `groups` (sorted) calling `server`.
  Route route(const std::vector<std::string>& groups, const ServerConfig& server) const;
  std::size_t user_count() const { return users_.size(); }

 private:
  uint64_t version_ = 0;
  StringMap<std::shared_ptr<const Identity>> users_;
  StringMap<std::string> subjects_;
  StringMap<store::ApiKey> keys_;
  StringMap<const store::ApiKey*> keys_by_id_;  // into keys_
  StringMap<std::vector<std::string>> memberships_;
  std::unordered_set<std::string> groups_;
  std::unordered_map<std::string, int> priority_;  // group → priority
  policy::GrantIndex grants_;
  // `revision` tells one stored value from the next (a fingerprint of the ciphertext, whose nonce is new on
  // every write; nothing of the value), so a credential set changes with every write, even two within a
  // second, and stays the same across snapshots while the value is unchanged. It appears in logs.
  struct TenantValue {
    std::string group, slot, value, revision;
    bool usable = false;  // decrypted
  };
  StringMap<std::vector<TenantValue>> tenant_values_;  // by server
  struct TenantUrl {
    std::string group, url, revision;  // revision: a fingerprint of the URL
  };
  StringMap<std::vector<TenantUrl>> tenant_urls_;  // by server
};

class Directory {
 public:
  Directory(store::Store& store, BlockingPool& pool, boost::asio::any_io_executor io, const SecretBox* box = nullptr);
  ~Directory();

  // Blocking: loads the first snapshot (at start-up, before serving).
  void load_now();
  std::shared_ptr<const Snapshot> current() const { return current_; }
  // Changes with every installed snapshot and every remember(): what was derived from the directory at one
  // generation (a connection's verified API key) is still true while it is the same.
  uint64_t generation() const { return generation_; }
  // A user by (lower-case) email: one written here but not yet in the snapshot, else the snapshot's.
  std::shared_ptr<const Identity> user(std::string_view email) const;
  // A user created or changed here (sign-in, first use of a token) without waiting for a full reload.
  void remember(std::shared_ptr<const Identity> id);

  // After a write: rebuilds now and returns once a snapshot that includes it is installed; tells the other
  // instances too.
  boost::asio::awaitable<void> changed();
  // Reload whenever the store reports a change (another instance or process wrote).
  void start_watching();
  void stop();

 private:
  void install(std::shared_ptr<const Snapshot> s);
  store::Store& store_;
  BlockingPool& pool_;
  const SecretBox* box_;
  boost::asio::any_io_executor io_;
  std::shared_ptr<const Snapshot> current_;
  // Identities remembered since, keyed by email, with the version a snapshot must reach to include them.
  StringMap<std::pair<uint64_t, std::shared_ptr<const Identity>>> recent_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  uint64_t next_version_ = 1;  // touched only on the io thread (and once in load_now before serving)
  uint64_t generation_ = 0;
  bool reloading_ = false, reload_again_ = false;
};

// Normalises an email for lookups (trimmed, lower-case ASCII).
// Whether text holds characters that do not show (zero-width, direction marks, soft hyphen, …): names
// with them read like others.
bool has_invisible(std::string_view text);

// A group name (admin API, CLI, IdP group sync): 1-128 characters, no slashes, control or invisible
// characters, no surrounding spaces, not . or ..
inline constexpr std::string_view kGroupNameRule =
    "name is required: 1-128 characters, no slashes, invisible characters or surrounding spaces, not . or ..";
bool valid_group_name(std::string_view name);
std::string normalize_email(std::string_view email);
bool plausible_email(std::string_view email);

// A group's stored credentials sealed again for the group's new name `to` (the name is part of what each
// value is sealed with: SecretBox::row_aad). nullopt when one does not open with the keys at hand (its key
// gone): renamed, it could never be opened again; `unreadable` then says which ("server/slot").
std::optional<std::vector<store::TenantKey>> reseal_for_rename(const SecretBox& box, std::vector<store::TenantKey> keys,
                                                               std::string_view to, std::string* unreadable = nullptr);

}  // namespace gh::auth
