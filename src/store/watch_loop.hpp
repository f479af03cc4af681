// Shared plumbing of the change watchers (internal to src/store): a thread, an eventfd to wake it (stop and
// in-process pokes), and the debounce that turns a burst of notifications into one callback.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "store/db.hpp"

namespace gh::store::sql {

class LoopWatcher : public Watcher {
 public:
  explicit LoopWatcher(std::function<void()> cb);
  ~LoopWatcher() override;  // derived classes call stop() first, while their members are alive
  void poke() override;

 protected:
  static constexpr auto kDebounce = std::chrono::milliseconds(50);
  void start();
  void stop();
  bool stopping() const { return stop_.load(); }
  // Waits until `fd` (-1 = none) is readable, the watcher is woken, or `timeout_ms` passes; never past the
  // debounce deadline. Returns true when `fd` is readable. Pokes are recorded as changes.
  bool wait(int fd, int timeout_ms);
  // Records a change: the callback fires kDebounce after the first change of a burst (not after a quiet
  // period), so a steady stream of changes still gets through at a bounded rate.
  void changed();
  // Calls the callback if a burst is due.
  void fire_if_due();
  // Sleeps up to `ms`, returning early when stopping.
  void sleep_for(int ms);
  virtual void run() = 0;

 private:
  std::function<void()> cb_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> pokes_{0};
  uint64_t seen_pokes_ = 0;
  int wake_fd_ = -1;
  bool pending_ = false;
  std::chrono::steady_clock::time_point due_{};
  std::thread thread_;
};

}  // namespace gh::store::sql
