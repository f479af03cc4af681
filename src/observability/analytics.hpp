// The analytics writer: requests are recorded into a bounded in-memory queue on the io thread (never
// blocking a request; rows are packed into reused memory, see store::AnalyticsBatch) and written to
// api_analytics in short batches by a low-priority thread of its own. A full queue drops and counts; a
// failed batch is retried (kept while the queue has room); after a few failures in a row its rows go one per
// transaction, and a row the database refuses while it answers other queries is dropped, counted and logged
// (it would otherwise hold up every row behind it); shutdown flushes what is left.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "core/blocking.hpp"
#include "store/store.hpp"

namespace gh::observability {

struct AnalyticsStats {
  uint64_t recorded = 0, written = 0, dropped = 0, failed_batches = 0;
  uint64_t catch_up_batches = 0;  // written flat out: more than two batches were waiting
  uint64_t checkpoints = 0;       // SQLite: write-ahead log copied into the database (Store::checkpoint_analytics)
  std::size_t queued = 0;
  std::string cgroup;             // the writer thread's idle cgroup, if it is in one (ANALYTICS_WRITER_CGROUP)
};

class AnalyticsWriter {
 public:
  // `max_queue` bounds the rows waiting (beyond it rows are dropped and counted); as soon as `batch` rows
  // are waiting, a write starts without waiting for the next tick. `urgent` (normal priority) writes what
  // is left at shutdown. `idle` (cgroup::prepare_idle) is where the writer's thread goes; the outcome is logged.
  AnalyticsWriter(store::Store& store, BlockingPool& urgent, boost::asio::any_io_executor io,
                  std::size_t max_queue = 200000, std::size_t batch = 512, const cgroup::Idle& idle = {});
  ~AnalyticsWriter();
  // On the io thread: copies the row's fields into the queue.
  void record(const store::AnalyticsRow& row);
  // Starts the writer (every 200 ms, or as soon as a batch is waiting; each write takes everything queued)
  // and the hourly retention purge.
  void start(int retention_days);
  // Writes everything queued (at shutdown), bounded by `deadline_ms`.
  boost::asio::awaitable<void> flush(int deadline_ms);
  // At shutdown, after flush(): the writer's thread ended (a write still running waited for at most `limit`).
  bool stop_for(std::chrono::milliseconds limit) { return thread_.stop_and_join_for(limit); }
  const AnalyticsStats& stats() const { return stats_; }

 private:
  boost::asio::awaitable<bool> write_some(BlockingPool& on);
  struct Out {
    store::AnalyticsBatch rows;
    std::size_t written = 0;  // rows dealt with, from the first: committed, or refused by the database
    std::size_t refused = 0;  // of those, refused (dropped and counted)
  };
  // On the writer thread: the rows of the transaction that failed one per transaction (a row that fails while
  // the database answers is refused), then the rest as usual.
  static void write_one_by_one(store::Store& store, Out& out);
  int failures_in_a_row_ = 0;
  std::size_t since_checkpoint_ = 0;  // rows written since the last checkpoint_analytics()
  bool checkpoints_apply_ = true;     // false once the store said it has none (PostgreSQL, in-memory SQLite)
  store::Store& store_;
  BlockingPool& urgent_;
  boost::asio::any_io_executor io_;
  std::size_t max_queue_, batch_;
  static constexpr std::size_t kMaxQueueBytes = 64 << 20;  // besides max_queue_ rows: rows are not all small
  static constexpr std::size_t kKeepBytes = 4 << 20;       // a written batch's buffer larger than this is freed
  store::AnalyticsBatch queue_;
  // The batch being written (or, between writes, an empty buffer whose memory the next swap reuses).
  std::shared_ptr<Out> out_ = std::make_shared<Out>();
  AnalyticsStats stats_;
  bool writing_ = false, backing_off_ = false;
  std::unique_ptr<boost::asio::steady_timer> timer_;  // the writer's tick; created by start()
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Batches and purges run on a thread of their own in the SCHED_IDLE class: on a busy machine the request
  // path keeps its cores and the writer takes what is left (a queue that grows says it is not enough); while
  // it keeps up it also pauses between the store's short slices of a batch and in its commit, for other
  // processes (give_core_away); a backlog of more than two batches is written flat out (catch_up_batches). The
  // rows go through a database connection of their own (Store::insert_analytics), so other store calls
  // never wait behind a writer that is kept waiting for a core. Where it can, the thread also goes into a cgroup
  // with cpu.idle = 1 (core/cgroup.hpp), which makes the idle class apply against every other process too.
  // Declared last: joined first.
  BlockingPool thread_;
};

}  // namespace gh::observability
