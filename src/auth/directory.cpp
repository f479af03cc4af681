#include "auth/directory.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>

#include "auth/jwt.hpp"
#include "auth/secrets.hpp"
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
  return !has_invisible(e);  // a second account that reads like the first ("admin@x" + U+200B)
}

bool has_invisible(std::string_view e) {
  // Unicode's default-ignorable code points (zero-width, joiners, direction marks, variation selectors,
  // Hangul fillers, tags, the soft hyphen, the byte-order mark…), C1 controls, and every space other than
  // U+0020 (no-break, em, ideographic, line and paragraph separators): characters that show as nothing or
  // as a plain space, so that a second name would read like the first.
  auto invisible = [](char32_t c) {
    return (c >= 0x80 && c <= 0xA0) || c == 0xAD || c == 0x34F || c == 0x61C || c == 0x115F || c == 0x1160 ||
           c == 0x1680 || c == 0x17B4 || c == 0x17B5 || (c >= 0x180B && c <= 0x180F) || (c >= 0x2000 && c <= 0x200F) ||
           (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0x3164 ||
           (c >= 0xFE00 && c <= 0xFE0F) || c == 0xFEFF || c == 0xFFA0 || (c >= 0xFFF0 && c <= 0xFFF8) ||
           (c >= 0x1BCA0 && c <= 0x1BCA3) || (c >= 0x1D173 && c <= 0x1D17A) || (c >= 0xE0000 && c <= 0xE0FFF);
  };
  std::vector<char32_t> cps;
  for (std::size_t i = 0; i < e.size();) {
    auto b = static_cast<unsigned char>(e[i]);
    int n = b < 0x80 ? 0 : b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : b >= 0xC0 ? 1 : -1;
    if (n < 0 || i + n >= e.size()) return true;  // (not UTF-8: refused as well)
    char32_t c = n == 0 ? b : b & (0x3F >> n);
    for (int k = 1; k <= n; ++k) c = (c << 6) | (static_cast<unsigned char>(e[i + k]) & 0x3F);
    cps.push_back(c);
    i += n + 1;
  }
  // Emoji are written with some of them: text/emoji presentation selectors (U+FE0E, U+FE0F) after a symbol
  // ("☁️"), and the zero-width joiner between two symbols ("👩‍💻"). There they show; after a letter they do not.
  auto symbol = [&](std::size_t k) { return k < cps.size() && cps[k] >= 0x2190 && !invisible(cps[k]); };
  for (std::size_t k = 0; k < cps.size(); ++k) {
    auto c = cps[k];
    if ((c == 0xFE0E || c == 0xFE0F) && k > 0 && symbol(k - 1)) continue;
    if (c == 0x200D && k > 0 && (symbol(k - 1) || (cps[k - 1] == 0xFE0F && k > 1 && symbol(k - 2))) && symbol(k + 1)) continue;
    if (invisible(c)) return true;
  }
  return false;
}

bool valid_group_name(std::string_view n) {
  if (n.empty() || n.size() > 128 || n == "." || n == ".." || has_invisible(n)) return false;
  for (unsigned char c : n)
    if (c < 0x20 || c == 0x7f || c == '/') return false;
  return trim(n).size() == n.size();
}

std::optional<std::vector<store::TenantKey>> reseal_for_rename(const SecretBox& box, std::vector<store::TenantKey> keys,
                                                               std::string_view to, std::string* unreadable) {
  for (auto& k : keys) {
    auto clear = box.open(k.ciphertext, k.key_id, SecretBox::row_aad(k.group, k.server, k.slot));
    if (!clear) {
      if (unreadable) *unreadable = k.server + "/" + k.slot;
      return std::nullopt;
    }
    k.group = std::string(to);
    k.key_id = box.key_id();
    k.ciphertext = box.seal(*clear, SecretBox::row_aad(k.group, k.server, k.slot));
  }
  return keys;
}

std::shared_ptr<const Snapshot> Snapshot::build(store::Dump dump, uint64_t version, const SecretBox* box) {
  auto s = std::make_shared<Snapshot>();
  s->version_ = version;
  for (auto& g : dump.groups) {
    s->groups_.insert(g.name);
    s->priority_[g.name] = g.priority;
  }
  s->grants_ = policy::GrantIndex(dump.grants);
  for (auto& k : dump.tenant_keys) {
    TenantValue v{k.group, k.slot, {}, sha256_hex(k.ciphertext).substr(0, 16), false};
    if (box) {
      if (auto clear = box->open(k.ciphertext, k.key_id, SecretBox::row_aad(k.group, k.server, k.slot))) {
        v.value = std::move(*clear);
        v.usable = true;
      }
    }
    if (!v.usable)
      log::error("a tenant credential cannot be decrypted (ENCRYPTION_KEY missing or changed?)",
                 {{"group", k.group}, {"server", k.server}, {"slot", k.slot}, {"key_id", k.key_id}});
    s->tenant_values_[k.server].push_back(std::move(v));
  }
  for (auto& e : dump.tenant_endpoints)
    s->tenant_urls_[e.server].push_back({e.group, e.url, sha256_hex(e.url).substr(0, 16)});
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
    id->subject = u.subject;
    id->created_at = u.created_at;
    if (!u.subject.empty()) s->subjects_.emplace(u.subject, u.email);
    s->users_.emplace(u.email, std::move(id));
  }
  for (auto& k : dump.api_keys) s->keys_.emplace(k.hash, std::move(k));
  for (auto& [hash, k] : s->keys_) s->keys_by_id_.emplace(k.id, &k);
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

const store::ApiKey* Snapshot::api_key_by_id(std::string_view id) const {
  auto it = keys_by_id_.find(id);
  return it == keys_by_id_.end() ? nullptr : it->second;
}

const store::ApiKey* Snapshot::api_key_by_hash(std::string_view h) const {
  auto it = keys_.find(h);
  return it == keys_.end() ? nullptr : &it->second;
}

Route Snapshot::route(const std::vector<std::string>& groups, const ServerConfig& server) const {
  Route r;
  auto member = [&](const std::string& g) { return std::binary_search(groups.begin(), groups.end(), g); };
  auto priority = [&](const std::string& g) {
    auto it = priority_.find(g);
    return it == priority_.end() ? 0 : it->second;
  };
  // Highest priority wins; equal priorities: the group name first in order, so the choice is stable.
  auto better = [&](const std::string& a, const std::string& b) {
    return priority(a) > priority(b) || (priority(a) == priority(b) && a < b);
  };
  // A tenant endpoint is its group's: the values sent to it come from that group alone (a member of two
  // tenants must not carry one tenant's credential to the other's endpoint).
  const TenantUrl* endpoint = nullptr;
  if (auto urls = tenant_urls_.find(server.id); urls != tenant_urls_.end())
    for (auto& u : urls->second)
      if (member(u.group) && (!endpoint || better(u.group, endpoint->group))) endpoint = &u;
  if (endpoint) {
    r.url = endpoint->url;
    r.key += "url=" + endpoint->group + "@" + endpoint->revision + ";";
  }
  auto values = tenant_values_.find(server.id);
  for (auto& slot : secret_slots(server)) {
    const TenantValue* best = nullptr;
    if (values != tenant_values_.end())
      for (auto& v : values->second)
        if (v.slot == slot && (endpoint ? v.group == endpoint->group : member(v.group)) &&
            (!best || better(v.group, best->group)))
          best = &v;
    if (best && best->usable) {
      r.secrets[slot] = best->value;
      r.key += slot + "=" + best->group + "@" + best->revision + ";";
    } else if (best || endpoint || !std::getenv(slot.c_str())) {
      // The gateway's own value goes only to the configured URL, never to a tenant's endpoint, and never in
      // place of a tenant's value that cannot be decrypted (that tenant's calls would run as the gateway's).
      if (r.error.empty())
        r.error = "Server '" + server.id + "' needs the credential " + slot +
                  (best ? ", and the stored value cannot be decrypted; ask an administrator to store it again"
                   : endpoint ? " for the endpoint of your group " + endpoint->group +
                                    ", and none is stored for that group; ask an administrator to add it (API Keys)"
                              : ", and none is stored for your groups; ask an administrator to add it (API Keys)");
    }
  }
  return r;
}

const std::vector<std::string>* Snapshot::groups_of(std::string_view email) const {
  auto it = memberships_.find(email);
  return it == memberships_.end() ? nullptr : &it->second;
}

Directory::Directory(store::Store& store, BlockingPool& pool, net::any_io_executor io, const SecretBox* box)
    : store_(store), pool_(pool), box_(box), io_(std::move(io)) {}

Directory::~Directory() { stop(); }

void Directory::stop() {
  *alive_ = false;
  store_.stop_watching();
}

void Directory::load_now() {
  auto t0 = std::chrono::steady_clock::now();
  install(Snapshot::build(store_.dump(), next_version_++, box_));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  log::info("directory loaded", {{"users", current_->user_count()}, {"ms", ms}});
}

void Directory::install(std::shared_ptr<const Snapshot> s) {
  if (current_ && s->version() <= current_->version()) return;
  current_ = std::move(s);
  ++generation_;
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
  ++generation_;
}

net::awaitable<void> Directory::changed() {
  uint64_t version = next_version_++;
  auto job = [this, version] {  // named: see BlockingPool::run
    store_.notify_changed();  // a database write: not on the io thread
    return Snapshot::build(store_.dump(), version, box_);
  };
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
        // A reload that fails is tried again (1 s, doubling to 30 s) until one succeeds: the change it was for
        // may have no other notification coming.
        auto retry_in = std::chrono::seconds(1);
        do {
          reload_again_ = false;
          uint64_t version = next_version_++;
          bool failed = false;
          try {
            auto job = [this, version] { return Snapshot::build(store_.dump(), version, box_); };  // named: see BlockingPool::run
            auto snap = co_await pool_.run(std::move(job));
            if (!*alive) co_return;
            install(std::move(snap));
            retry_in = std::chrono::seconds(1);
          } catch (const std::exception& e) {
            log::error("directory reload failed; keeping the previous snapshot",
                       {{"error", e.what()}, {"retry_in_s", retry_in.count()}});
            failed = true;
          }
          if (failed && *alive) {
            net::steady_timer wait(io_, retry_in);
            co_await wait.async_wait(net::use_awaitable);
            if (!*alive) co_return;
            retry_in = std::min(retry_in * 2, std::chrono::seconds(30));
            reload_again_ = true;
          }
        } while (reload_again_ && *alive);
        if (*alive) reloading_ = false;
      }, net::detached);
    });
  });
}

}  // namespace gh::auth
