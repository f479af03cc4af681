// stdio upstream: a child process in its own process group speaking newline-delimited JSON-RPC.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>

#include "core/fdlimit.hpp"
#include "core/log.hpp"
#include "core/util.hpp"
#include "upstream/connection.hpp"
#include "upstream/process.hpp"

namespace gh::upstream {

namespace {
// What a queued message costs besides its text (the string and its place in the deque), counted against
// kMaxMessage too: a flood of small messages is bounded by memory, not by text alone.
constexpr std::size_t kQueuedMessageOverhead = 64;
constexpr std::size_t kStderrLinesPerSecond = 100;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

std::mutex g_children_mutex;
std::set<pid_t> g_children;  // process groups alive, for the last-resort kill at exit

void track(pid_t pid, bool alive) {
  std::lock_guard lock(g_children_mutex);
  if (alive) g_children.insert(pid);
  else g_children.erase(pid);
}

// The environment a stdio server gets: a few harmless variables of ours (as MCP SDK clients do), then its own.
std::vector<std::string> child_environment(const std::map<std::string, std::string>& own) {
  static const char* kInherit[] = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TZ",
                                   "TMPDIR", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"};
  std::map<std::string, std::string> env;
  for (const char* k : kInherit)
    if (const char* v = std::getenv(k)) env[k] = v;
  for (const auto& [k, v] : own) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}
}  // namespace

std::size_t live_child_groups() {
  std::lock_guard lock(g_children_mutex);
  return g_children.size();
}

void kill_all_children(int sig) {
  std::lock_guard lock(g_children_mutex);
  for (pid_t p : g_children) ::kill(-p, sig);
}

// Stops a child: close stdin (already done by the caller), then SIGTERM, then SIGKILL to the whole group; reaps it.
static net::awaitable<void> reap(net::any_io_executor ex, pid_t pid, std::string server) {
  net::steady_timer t(ex);
  auto start = Clock::now();
  bool termed = false, killed = false;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      // the leader is gone; make sure nothing of its group lingers
      ::kill(-pid, SIGKILL);
      track(pid, false);
      int code = r == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      int sig = r == pid && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      log::info("upstream process exited", {{"server", server}, {"pid", pid}, {"exit_code", code}, {"signal", sig}});
      co_return;
    }
    auto waited = Clock::now() - start;
    if (!termed && waited > std::chrono::seconds(2)) {
      ::kill(-pid, SIGTERM);
      termed = true;
    } else if (!killed && waited > std::chrono::seconds(5)) {
      ::kill(-pid, SIGKILL);
      killed = true;
    }
    t.expires_after(std::chrono::milliseconds(waited < std::chrono::milliseconds(200) ? 10 : 100));
    co_await t.async_wait(kTuple);
  }
}

// In a forked child: marks every descriptor from 3 up close-on-exec (`keep`, the exec status pipe, already is:
// it closes when the exec succeeds). Without CLOSE_RANGE_CLOEXEC (Linux < 5.11) closes them instead.
void close_other_descriptors(int keep) {
  constexpr unsigned kCloexec = 1u << 2;  // CLOSE_RANGE_CLOEXEC
  if (::syscall(SYS_close_range, 3u, ~0u, kCloexec) == 0) return;
  struct rlimit lim{};
  rlim_t top = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 ? std::min<rlim_t>(lim.rlim_max, rlim_t(1) << 20) : 65536;
  for (rlim_t fd = 3; fd < top; ++fd)
    if (int(fd) != keep) ::close(int(fd));
}

class StdioConnection final : public Connection {
 public:
  using Connection::Connection;
  ~StdioConnection() override { stop_transport(); }

 protected:
  net::awaitable<std::optional<std::string>> start_transport() override {
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, status[2] = {-1, -1};
    auto close_all = [&] {
      for (int* p : {in, out, err, status})
        for (int i = 0; i < 2; ++i)
          if (p[i] >= 0) ::close(std::exchange(p[i], -1));
    };
    if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC) || ::pipe2(status, O_CLOEXEC)) {
      int e = errno;
      close_all();
      co_return std::string("pipe failed: ") + std::strerror(e);
    }
    std::vector<std::string> argv_s{cfg_.command};
    argv_s.insert(argv_s.end(), cfg_.args.begin(), cfg_.args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    auto env_s = child_environment(env_);
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);

    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      int e = errno;
      close_all();
      co_return std::string("fork failed: ") + std::strerror(e);
    }
    if (pid == 0) {
      // Killed with the gateway even when it cannot stop it (SIGKILL, a crash): the server itself, that is; what
      // it starts in turn still sees its stdin close. (The gateway forks on its one io thread, which lives as
      // long as the process: the signal is tied to the thread that forked.)
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the gateway died before the line above
      ::setpgid(0, 0);
      fdlimit::restore_in_child();
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      // Nothing else of the gateway's goes with it: its sockets are not opened close-on-exec (Asio's), and a
      // server holding the listening socket could accept other users' requests.
      close_other_descriptors(status[1]);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      // Dispositions the gateway set survive exec when they are "ignore": SIGPIPE's would make a server's
      // pipelines (`yes | head`) see EPIPE errors instead of ending quietly.
      ::signal(SIGPIPE, SIG_DFL);
      if (!cfg_.cwd.empty() && ::chdir(cfg_.cwd.c_str()) != 0) {
        int e = errno;
        [[maybe_unused]] auto n = ::write(status[1], &e, sizeof e);
        ::_exit(127);
      }
      ::execvpe(argv[0], argv.data(), envp.data());
      int e = errno;
      [[maybe_unused]] auto n = ::write(status[1], &e, sizeof e);
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also from the parent, so the group exists before we might signal it
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    ::close(status[1]);
    int child_errno = 0;
    ssize_t n;
    do n = ::read(status[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    ::close(status[0]);
    pid_ = pid;
    track(pid, true);
    stdin_ = std::make_unique<net::posix::stream_descriptor>(ex_, in[1]);
    stdout_ = std::make_unique<net::posix::stream_descriptor>(ex_, out[0]);
    stderr_ = std::make_unique<net::posix::stream_descriptor>(ex_, err[0]);
    if (n > 0) {
      std::string why = (child_errno == ENOENT ? "command not found: " : "cannot start " ) + cfg_.command + " (" +
                        std::strerror(child_errno) + ")";
      co_return why;
    }
    log::info("upstream process started", {{"server", cfg_.id}, {"pid", pid}, {"command", cfg_.command}});
    ++epoch_;
    auto self = std::static_pointer_cast<StdioConnection>(shared_from_this());
    net::co_spawn(ex_, read_stdout(self, epoch_), net::detached);
    net::co_spawn(ex_, read_stderr(self, epoch_), net::detached);
    watch_exit(pid);
    co_return std::nullopt;
  }

  void send_message(std::string text, uint64_t) override {
    if (!stdin_) return;
    // One message a line. A client's params are passed on as written, and a line break between two tokens
    // is valid JSON: left in, it would end the line there and the rest would reach the server as messages
    // of the client's making (another tool, another id). In valid JSON a raw CR or LF is only whitespace.
    for (char& c : text)
      if (c == '\n' || c == '\r') c = ' ';
    text.push_back('\n');
    // A process that stops reading its input would have the gateway hold every message sent to it: past
    // kMaxMessage waiting, it is treated as broken (its calls fail now, it is restarted with backoff).
    const std::size_t cost = text.size() + kQueuedMessageOverhead;
    if (queued_bytes_ + cost > kMaxMessage) {
      if (!overflowing_) {
        overflowing_ = true;
        auto self = std::static_pointer_cast<StdioConnection>(shared_from_this());
        net::post(ex_, [self, epoch = epoch_, waiting = queued_bytes_] {
          if (self->epoch_ == epoch)
            self->transport_failed("the process does not read its input (" + std::to_string(waiting) +
                                   " bytes waiting)");
        });
      }
      return;
    }
    queued_bytes_ += cost;
    queue_.push_back(std::move(text));
    if (!writing_) {
      writing_ = true;
      net::co_spawn(ex_, write_loop(std::static_pointer_cast<StdioConnection>(shared_from_this()), epoch_),
                    net::detached);
    }
  }

  void stop_transport() override {
    ++epoch_;
    if (exit_watch_) {
      boost::system::error_code ec;
      exit_watch_->close(ec);
      exit_watch_.reset();
    }
    queue_.clear();
    queued_bytes_ = 0;
    overflowing_ = false;
    boost::system::error_code ec;
    if (stdin_) stdin_->close(ec);
    if (stdout_) stdout_->close(ec);
    if (stderr_) stderr_->close(ec);
    stdin_.reset();
    stdout_.reset();
    stderr_.reset();
    if (pid_ > 0) {
      net::co_spawn(ex_, reap(ex_, pid_, cfg_.id), net::detached);
      pid_ = -1;
    }
  }

 private:
  // The end of its output says the process exited — unless something it started (a child, a shell's
  // background job) still holds the pipe. A pidfd becomes readable when the process itself exits; a moment
  // later (its last output read first), the transport fails and the server restarts as after any exit.
  void watch_exit(pid_t pid) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return;  // (Linux before 5.3: the output's end is all there is)
    exit_watch_ = std::make_unique<net::posix::stream_descriptor>(ex_, fd);
    std::weak_ptr<StdioConnection> weak = std::static_pointer_cast<StdioConnection>(shared_from_this());
    exit_watch_->async_wait(net::posix::stream_descriptor::wait_read, [weak, epoch = epoch_](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->epoch_ != epoch) return;
      auto grace = std::make_shared<net::steady_timer>(self->ex_, std::chrono::milliseconds(200));
      grace->async_wait([weak, epoch, grace](boost::system::error_code) {
        auto self = weak.lock();
        if (self && self->epoch_ == epoch)
          self->transport_failed("the process exited; a process it started still holds its output");
      });
    });
  }

  static net::awaitable<void> write_loop(std::shared_ptr<StdioConnection> self, uint64_t epoch) {
    while (!self->queue_.empty() && self->epoch_ == epoch && self->stdin_) {
      std::string msg = std::move(self->queue_.front());
      self->queue_.pop_front();
      self->queued_bytes_ -= msg.size() + kQueuedMessageOverhead;
      auto [ec, n] = co_await net::async_write(*self->stdin_, net::buffer(msg), kTuple);
      if (ec) {
        if (self->epoch_ == epoch) self->transport_failed("cannot write to the process: " + ec.message());
        break;
      }
    }
    self->writing_ = false;
  }

  static net::awaitable<void> read_stdout(std::shared_ptr<StdioConnection> self, uint64_t epoch) {
    std::string buf;
    while (self->epoch_ == epoch && self->stdout_) {
      auto [ec, n] = co_await net::async_read_until(*self->stdout_, net::dynamic_buffer(buf, kMaxMessage), '\n', kTuple);
      if (self->epoch_ != epoch) co_return;
      if (ec) {
        std::string why = ec == net::error::eof ? "the process exited"
                          : ec == net::error::not_found ? "the process wrote a line over 64 MiB"
                                                        : "reading from the process failed: " + ec.message();
        self->transport_failed(why);
        co_return;
      }
      std::string_view line(buf.data(), n - 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!line.empty()) {
        std::string text(line);  // at once: the loop keeps only its own buffer across deliver_text()
        if (!self->deliver_text(text, 0, true))
          log::warn("upstream wrote a line that is not JSON", {{"server", self->cfg_.id},
                                                              {"line", std::string(line.substr(0, 200))}});
      }
      buf.erase(0, n);
    }
  }

  static net::awaitable<void> read_stderr(std::shared_ptr<StdioConnection> self, uint64_t epoch) {
    std::string buf;
    // At most kStderrLinesPerSecond lines a second go to the log; the rest are counted, and the count is
    // logged when the next second's first line is (a chatty or looping server must not flood the log).
    auto window = Clock::now();
    std::size_t in_window = 0, dropped = 0;
    auto log_line = [&](std::string_view line) {
      if (auto now = Clock::now(); now - window >= std::chrono::seconds(1)) {
        if (dropped) log::warn("upstream stderr lines dropped", {{"server", self->cfg_.id}, {"lines", dropped}});
        window = now;
        in_window = dropped = 0;
      }
      if (++in_window > kStderrLinesPerSecond) ++dropped;
      else log::info("upstream stderr", {{"server", self->cfg_.id}, {"line", std::string(line.substr(0, 2000))}});
    };
    while (self->epoch_ == epoch && self->stderr_) {
      auto [ec, n] = co_await net::async_read_until(*self->stderr_, net::dynamic_buffer(buf, 1 << 20), '\n', kTuple);
      if (ec == net::error::not_found) {  // an endless line: log a piece and drop it
        log_line(buf);
        buf.clear();
        continue;
      }
      if (ec || self->epoch_ != epoch) co_return;
      std::string_view line(buf.data(), n - 1);
      if (!line.empty()) log_line(line);
      buf.erase(0, n);
    }
  }

  pid_t pid_ = -1;
  uint64_t epoch_ = 0;
  std::unique_ptr<net::posix::stream_descriptor> stdin_, stdout_, stderr_;
  std::unique_ptr<net::posix::stream_descriptor> exit_watch_;  // the process's pidfd (watch_exit)
  std::deque<std::string> queue_;
  std::size_t queued_bytes_ = 0;  // in queue_ (kMaxMessage at most)
  bool overflowing_ = false;      // a transport failure for it is on its way
  bool writing_ = false;
};

std::shared_ptr<Connection> make_stdio_connection(net::any_io_executor ex, const ServerConfig& cfg,
                                                  std::map<std::string, std::string> env, json::object caps) {
  return std::make_shared<StdioConnection>(std::move(ex), cfg, std::move(env), std::map<std::string, std::string>{},
                                           std::move(caps));
}

}  // namespace gh::upstream
