#include "observability/analytics.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <thread>

#include "core/log.hpp"
#include "store/db.hpp"

namespace gh::observability {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
constexpr int kTickMs = 200;
constexpr int kFailuresBeforeOneByOne = 3;
// Rows come fast: the write-ahead log is checkpointed after this many batches (~400 × 512 rows, ~35 MB).
constexpr std::size_t kBatchesPerCheckpoint = 400;

namespace {
// Called by the store before each slice of a batch (SQLite's are 64 rows, ~40 µs) and every 8 file
// operations of its commit: the writer sleeps a moment (the timer slack, ~50 µs), so that whatever waits for
// this core gets it. SCHED_IDLE alone does not do that for other processes where Linux schedules groups of
// tasks (an autogroup per session, a cgroup per systemd service): the kernel then weighs the gateway's group
// against the other process's, and a client or upstream woken on the writer's core waited out a whole
// 512-row batch (~0.6 ms, seen with `perf sched timehist`), which put 1-connection p99 at twice nginx's;
// after the slices, it waited through the commit's ~50 WAL writes (0.1–0.26 ms; docs/performance.md,
// sessions 13 and 14).
void give_core_away() { std::this_thread::sleep_for(std::chrono::microseconds(1)); }
}  // namespace

AnalyticsWriter::AnalyticsWriter(store::Store& store, BlockingPool& urgent, net::any_io_executor io,
                                 std::size_t max_queue, std::size_t batch, const cgroup::Idle& idle)
    : store_(store), urgent_(urgent), io_(std::move(io)), max_queue_(max_queue), batch_(batch),
      thread_(1, 0, BlockingPool::Class::idle, "gh-analytics", idle.dir) {
  if (idle.dir.empty()) {
    if (!idle.why_not.empty())
      log::info("analytics writer: no idle cgroup; SCHED_IDLE with pauses only", {{"reason", idle.why_not}});
  } else if (!thread_.cgroup_error().empty()) {
    log::warn("analytics writer: could not join its idle cgroup; SCHED_IDLE with pauses only",
              {{"cgroup", idle.dir}, {"error", thread_.cgroup_error()}});
  } else {
    stats_.cgroup = idle.dir;
    log::info("analytics writer: in its idle cgroup", {{"cgroup", idle.dir}});
  }
}

AnalyticsWriter::~AnalyticsWriter() { *alive_ = false; }

void AnalyticsWriter::record(const store::AnalyticsRow& row) {
  ++stats_.recorded;
  if (queue_.size() >= max_queue_ || queue_.bytes() >= kMaxQueueBytes) {
    if (stats_.dropped++ % 10000 == 0)
      log::warn("analytics queue full; dropping rows", {{"queued", queue_.size()}, {"dropped", stats_.dropped}});
    return;
  }
  queue_.add(row);
  stats_.queued = queue_.size();
  // A batch's worth waiting: write now rather than at the next tick (unless backing off after a failure),
  // so that each write is short.
  if (queue_.size() == batch_ && !writing_ && !backing_off_ && timer_) timer_->cancel();
}

net::awaitable<bool> AnalyticsWriter::write_some(BlockingPool& on) {
  if (writing_ || queue_.empty()) co_return true;
  writing_ = true;
  auto alive = alive_;
  auto out = out_;
  out->rows.clear();
  out->rows.swap(queue_);  // the queue continues in the previous batch's memory
  out->written = out->refused = 0;
  stats_.queued = 0;
  // A batch that failed a few times in a row may hold a row the database refuses (a constraint or trigger
  // added by an operator, a value a future schema rejects): its rows then go one per transaction.
  bool one_by_one = failures_in_a_row_ >= kFailuresBeforeOneByOne;
  bool ok = true;
  try {
    auto& store = store_;
    // Pauses on the writer's idle-class thread while it keeps up. Behind by more than two batches (a busy
    // machine leaves it little time), it writes flat out until it has caught up: every pause costs it a
    // wait for a free core again. The shutdown flush never pauses.
    std::function<void()> between;
    if (&on == &thread_) {
      if (out->rows.size() <= 2 * batch_) between = give_core_away;
      else ++stats_.catch_up_batches;
    }
    auto job = [&store, out, one_by_one, between] {  // named: see BlockingPool::run
      if (one_by_one) write_one_by_one(store, *out);
      else store.insert_analytics(out->rows, out->written, between);
    };
    co_await on.run(std::move(job));
  } catch (const std::exception& e) {
    ok = false;
    if (!*alive) co_return false;
    ++stats_.failed_batches;
    log::error("analytics batch failed; will retry",
               {{"rows", out->rows.size() - out->written}, {"error", e.what()}});
    // The rows not written go back in front of those recorded meanwhile, as far as there is room.
    store::AnalyticsBatch retry;
    std::size_t lost = 0;
    auto keep = [&](const store::AnalyticsRow& r) {
      if (retry.size() < max_queue_ && retry.bytes() < kMaxQueueBytes) retry.add(r);
      else ++lost;
    };
    out->rows.for_each(keep, out->written);
    queue_.for_each(keep);
    queue_.swap(retry);
    stats_.dropped += lost;
    stats_.queued = queue_.size();
  }
  if (!*alive) co_return ok;
  // A backlog's memory is given back once it is written: the buffer goes on as the next queue otherwise.
  if (ok && out->rows.bytes() > kKeepBytes) out->rows.release();
  stats_.written += out->written - out->refused;
  since_checkpoint_ += out->written;
  stats_.dropped += out->refused;
  failures_in_a_row_ = ok ? 0 : failures_in_a_row_ + 1;
  writing_ = false;
  co_return ok;
}

void AnalyticsWriter::write_one_by_one(store::Store& store, Out& out) {
  // The transaction that failed started at `written`: its rows one by one, then the rest in bulk again.
  const std::size_t end = out.written + store.analytics_chunk();
  out.rows.for_each([&](const store::AnalyticsRow& r) {
    if (out.written >= end) return;
    store::AnalyticsBatch one;
    one.add(r);
    std::size_t done = 0;
    try {
      store.insert_analytics(one, done);
    } catch (const store::sql::DbError& e) {
      // Only a row whose values the database refuses is dropped. One that cannot be written now (the
      // database read-only after a failover, full, locked, gone) is kept with the rest: a retry will do.
      if (!e.values_refused) throw;
      ++out.refused;
      log::error("analytics row refused by the database; dropped",
                 {{"request_id", r.request_id}, {"endpoint", r.endpoint}, {"error", e.what()}});
    }
    ++out.written;
  }, out.written);
  if (out.written < out.rows.size()) store.insert_analytics(out.rows, out.written);
}

void AnalyticsWriter::start(int retention_days) {
  auto alive = alive_;
  net::co_spawn(io_, [this, alive, retention_days]() -> net::awaitable<void> {
    timer_ = std::make_unique<net::steady_timer>(io_);
    auto next_purge = Clock::now() + std::chrono::seconds(30);
    int backoff_ms = kTickMs;
    while (*alive) {
      timer_->expires_after(std::chrono::milliseconds(backoff_ms));
      co_await timer_->async_wait(net::as_tuple(net::use_awaitable));  // or cancelled by record()
      if (!*alive) co_return;
      const auto before = since_checkpoint_;
      bool ok = co_await write_some(thread_);
      while (ok && *alive && queue_.size() >= batch_) ok = co_await write_some(thread_);  // keep up under load
      if (!*alive) co_return;
      // SQLite's log is copied into the database when rows come slowly (this round wrote fewer than an
      // eighth of a batch) and a batch's worth has been written since the last time, or after many batches:
      // not in the middle of a burst, where it was a fifth of the writer's CPU (docs/performance.md, session
      // 15), nor for every few rows of a quiet hour (each checkpoint syncs both files).
      const bool slow = since_checkpoint_ - before < batch_ / 8;
      if (ok && checkpoints_apply_ &&
          ((slow && since_checkpoint_ >= batch_) || since_checkpoint_ >= kBatchesPerCheckpoint * batch_)) {
        since_checkpoint_ = 0;
        try {
          auto job = [this] { return store_.checkpoint_analytics(give_core_away); };
          if (co_await thread_.run(std::move(job))) ++stats_.checkpoints;
          else checkpoints_apply_ = false;  // no trip to the writer's thread for nothing after this
        } catch (const std::exception& e) {
          log::warn("analytics checkpoint failed", {{"error", e.what()}});
        }
        if (!*alive) co_return;
      }
      backoff_ms = ok ? kTickMs : std::min(backoff_ms * 2, 5000);
      backing_off_ = !ok;
      if (retention_days > 0 && Clock::now() >= next_purge) {
        next_purge = Clock::now() + std::chrono::hours(1);
        auto before = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() -
                      int64_t(retention_days) * 86400;
        try {
          auto job = [this, before] { return store_.purge_analytics(before); };
          auto n = co_await thread_.run(std::move(job));
          if (n > 0) log::info("analytics retention: old rows deleted", {{"rows", n}, {"days", retention_days}});
        } catch (const std::exception& e) {
          log::warn("analytics retention purge failed", {{"error", e.what()}});
        }
      }
    }
  }, net::detached);
}

net::awaitable<void> AnalyticsWriter::flush(int deadline_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(deadline_ms);
  net::steady_timer t(io_);
  while ((!queue_.empty() || writing_) && Clock::now() < deadline) {
    if (writing_) {  // the periodic writer has a batch out: let it finish
      t.expires_after(std::chrono::milliseconds(10));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    if (!co_await write_some(urgent_)) {  // not left to the idle class: the process is about to exit
      t.expires_after(std::chrono::milliseconds(100));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
    }
  }
  if (!queue_.empty()) log::warn("analytics rows not written at shutdown", {{"rows", queue_.size()}});
  else log::info("analytics flushed", {{"written", stats_.written}});
}

}  // namespace gh::observability
