// The analytics writer: requests are recorded into a bounded in-memory queue on the io thread (never
// blocking a request) and written to api_analytics in batches on the blocking pool. A full queue drops and
// counts; a failed batch is retried (kept while the queue has room); shutdown flushes what is left.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/blocking.hpp"
#include "store/store.hpp"

namespace gh::observability {

struct AnalyticsStats {
  uint64_t recorded = 0, written = 0, dropped = 0, failed_batches = 0;
  std::size_t queued = 0;
};

class AnalyticsWriter {
 public:
  AnalyticsWriter(store::Store& store, BlockingPool& pool, boost::asio::any_io_executor io,
                  std::size_t max_queue = 200000, std::size_t batch = 5000);
  ~AnalyticsWriter();
  // On the io thread.
  void record(store::AnalyticsRow row);
  // Starts the periodic writer (every 200 ms, or sooner when a batch is full) and the daily retention purge.
  void start(int retention_days);
  // Writes everything queued (at shutdown), bounded by `deadline_ms`.
  boost::asio::awaitable<void> flush(int deadline_ms);
  const AnalyticsStats& stats() const { return stats_; }

 private:
  boost::asio::awaitable<bool> write_some();
  store::Store& store_;
  BlockingPool& pool_;
  boost::asio::any_io_executor io_;
  std::size_t max_queue_, batch_;
  std::vector<store::AnalyticsRow> queue_;
  AnalyticsStats stats_;
  bool writing_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace gh::observability
