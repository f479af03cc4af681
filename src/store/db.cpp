// Backend-neutral parts of the SQL layer: placeholder translation, URL redaction, the watcher loop.
#include "store/db.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "store/watch_loop.hpp"

namespace gh::store::sql {

int64_t Connection::scalar(std::string_view sql, std::initializer_list<Value> params) {
  int64_t out = 0;
  bool first = true;
  query(sql, params, [&](const Row& r) {
    if (first) out = r.int64(0);
    first = false;
  });
  return out;
}

int64_t Connection::scalar(std::string_view sql, const std::vector<Value>& params) {
  int64_t out = 0;
  bool first = true;
  query(sql, params, [&](const Row& r) {
    if (first) out = r.int64(0);
    first = false;
  });
  return out;
}

std::string translate(std::string_view sql, Dialect d, std::string_view schema_prefix) {
  std::string out;
  out.reserve(sql.size() + 32);
  int n = 0;
  bool in_literal = false;  // never rewrite inside '…' (e.g. ESCAPE '\')
  for (char c : sql) {
    if (c == '\'') in_literal = !in_literal;
    if (in_literal || (c != '?' && c != '@')) {
      out += c;
    } else if (c == '@') {
      if (d == Dialect::postgresql) out += schema_prefix;
    } else if (d == Dialect::postgresql) {
      out += '$';
      out += std::to_string(++n);
    } else {
      out += '?';
    }
  }
  return out;
}

std::string redact_url(std::string_view url) {
  std::string out(url);
  auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    auto start = scheme + 3;
    auto end = out.find_first_of("/?#", start);
    if (end == std::string::npos) end = out.size();
    auto at = out.rfind('@', end);
    if (at != std::string::npos && at > start) {
      auto colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // libpq also accepts ?password=… in the query string.
  for (auto pos = out.find("password="); pos != std::string::npos; pos = out.find("password=", pos + 1)) {
    auto vstart = pos + 9;
    auto vend = out.find_first_of("&# ", vstart);
    if (vend == std::string::npos) vend = out.size();
    out.replace(vstart, vend - vstart, "***");
  }
  return out;
}

LoopWatcher::LoopWatcher(std::function<void()> cb) : cb_(std::move(cb)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw StoreError("watcher: eventfd failed");
}

LoopWatcher::~LoopWatcher() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void LoopWatcher::start() {
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "gh-store-watch");
    run();
  });
}

void LoopWatcher::stop() {
  stop_ = true;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) {
    // Stopping from inside the callback cannot join its own thread; the thread ends on its own.
    if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();
    else thread_.join();
  }
}

void LoopWatcher::poke() {
  pokes_.fetch_add(1);
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

bool LoopWatcher::wait(int fd, int timeout_ms) {
  if (pending_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due_ - std::chrono::steady_clock::now()).count();
    timeout_ms = std::clamp<int>(static_cast<int>(left) + 1, 0, timeout_ms);
  }
  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {fd, POLLIN, 0}};
  int rc = ::poll(fds, fd >= 0 ? 2 : 1, timeout_ms);
  if (rc < 0 && errno != EINTR) sleep_for(10);
  if (rc > 0 && (fds[0].revents & POLLIN)) {
    uint64_t v;
    [[maybe_unused]] auto n = ::read(wake_fd_, &v, sizeof v);
  }
  auto p = pokes_.load();
  if (p != seen_pokes_) {
    seen_pokes_ = p;
    changed();
  }
  return rc > 0 && fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR));
}

void LoopWatcher::changed() {
  if (!pending_) {
    pending_ = true;
    due_ = std::chrono::steady_clock::now() + kDebounce;
  }
}

void LoopWatcher::fire_if_due() {
  if (!pending_ || stopping() || std::chrono::steady_clock::now() < due_) return;
  pending_ = false;
  try {
    cb_();
  } catch (...) {
    // A failing reload must not kill the watcher; the next change retries.
  }
}

void LoopWatcher::sleep_for(int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!stopping()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) return;
    pollfd p{wake_fd_, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left));
    // Pokes are counted apart (pokes_), so draining the eventfd here loses none; wait() sees them.
    if (p.revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] auto n = ::read(wake_fd_, &v, sizeof v);
    }
  }
}

}  // namespace gh::store::sql
