#include "auth/directory.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>

#include "core/log.hpp"
#include "core/util.hpp"

namespace gh::auth {

namespace net = boost::asio;

bool Identity::in_group(std::string_view g) const {
  return std::binary_search(groups.begin(), groups.end(), g, std::less<>());
}

std::string_view to_string(AuthMethod m) {
  switch (m) {
    case AuthMethod::none: return "none";
    case AuthMethod::session: return "session";
    case AuthMethod::oidc: return "oidc";
    case AuthMethod::openwebui: return "openwebui";
    case AuthMethod::apikey: return "apikey";
    case AuthMethod::header: return "header";
  }
  return "none";
}

const std::string& Principal::email() const {
  static const std::string empty;
  return identity ? identity->email : empty;
}

std::string normalize_email(std::string_view email) {
  auto t = trim(email);
  std::string out(t);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

bool plausible_email(std::string_view e) {
  if (e.size() < 3 || e.size() > 254) return false;
  auto at = e.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 >= e.size() || e.find('@', at + 1) != std::string_view::npos)
    return false;
  for (unsigned char c : e)
    if (c <= ' ' || c == 0x7f || c == ',' || c == '"' || c == '<' || c == '>' || c == '\\') return false;
  return true;
}

std::shared_ptr<const Snapshot> Snapshot::build(store::Dump dump, uint64_t version) {
  auto s = std::make_shared<Snapshot>();
  s->version_ = version;
  for (auto& g : dump.groups) s->groups_.insert(g.name);
  for (auto& m : dump.memberships) s->memberships_[m.user_email].push_back(m.group_name);
  for (auto& [email, groups] : s->memberships_) std::sort(groups.begin(), groups.end());
  s->users_.reserve(dump.users.size());
  for (auto& u : dump.users) {
    auto id = std::make_shared<Identity>();
    id->email = u.email;
    id->name = u.name;
    if (auto it = s->memberships_.find(u.email); it != s->memberships_.end()) id->groups = it->second;
    id->is_admin = u.is_admin || id->in_group(kAdminGroup);
    id->disabled = u.disabled;
    if (!u.subject.empty()) s->subjects_.emplace(u.subject, u.email);
    s->users_.emplace(u.email, std::move(id));
  }
  for (auto& k : dump.api_keys) s->keys_.emplace(k.hash, std::move(k));
  return s;
}

std::shared_ptr<const Identity> Snapshot::user(std::string_view email) const {
  auto it = users_.find(email);
  return it == users_.end() ? nullptr : it->second;
}

std::optional<std::string> Snapshot::email_for_subject(std::string_view subject) const {
  auto it = subjects_.find(subject);
  if (it == subjects_.end()) return std::nullopt;
  return it->second;
}

const store::ApiKey* Snapshot::api_key_by_hash(std::string_view h) const {
  auto it = keys_.find(h);
  return it == keys_.end() ? nullptr : &it->second;
}

const std::vector<std::string>* Snapshot::groups_of(std::string_view email) const {
  auto it = memberships_.find(email);
  return it == memberships_.end() ? nullptr : &it->second;
}

Directory::Directory(store::Store& store, BlockingPool& pool, net::any_io_executor io)
    : store_(store), pool_(pool), io_(std::move(io)) {}

Directory::~Directory() { stop(); }

void Directory::stop() {
  *alive_ = false;
  store_.stop_watching();
}

void Directory::load_now() {
  auto t0 = std::chrono::steady_clock::now();
  install(Snapshot::build(store_.dump(), next_version_++));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  log::info("directory loaded", {{"users", current_->user_count()}, {"ms", ms}});
}

void Directory::install(std::shared_ptr<const Snapshot> s) {
  if (current_ && s->version() <= current_->version()) return;
  current_ = std::move(s);
  std::erase_if(recent_, [&](auto& kv) { return kv.second.first <= current_->version(); });
}

std::shared_ptr<const Identity> Directory::user(std::string_view email) const {
  if (!recent_.empty())
    if (auto it = recent_.find(email); it != recent_.end()) return it->second.second;
  return current_->user(email);
}

void Directory::remember(std::shared_ptr<const Identity> id) {
  // Any snapshot numbered from now on is dumped after this write, so it includes it.
  auto email = id->email;
  recent_[email] = {next_version_, std::move(id)};
}

net::awaitable<void> Directory::changed() {
  store_.notify_changed();
  uint64_t version = next_version_++;
  auto job = [this, version] { return Snapshot::build(store_.dump(), version); };  // named: see BlockingPool::run
  auto snap = co_await pool_.run(std::move(job));
  install(std::move(snap));
}

void Directory::start_watching() {
  auto alive = alive_;
  store_.watch([this, alive] {
    // On the store's thread: hop to the io thread, which owns the version counter and the reload flags.
    net::post(io_, [this, alive] {
      if (!*alive) return;
      if (reloading_) {
        reload_again_ = true;
        return;
      }
      reloading_ = true;
      net::co_spawn(io_, [this, alive]() -> net::awaitable<void> {
        do {
          reload_again_ = false;
          uint64_t version = next_version_++;
          try {
            auto job = [this, version] { return Snapshot::build(store_.dump(), version); };  // named: see BlockingPool::run
  auto snap = co_await pool_.run(std::move(job));
            if (!*alive) co_return;
            install(std::move(snap));
          } catch (const std::exception& e) {
            log::error("directory reload failed; keeping the previous snapshot", {{"error", e.what()}});
          }
        } while (reload_again_ && *alive);
        reloading_ = false;
      }, net::detached);
    });
  });
}

}  // namespace gh::auth
