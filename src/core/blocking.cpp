#include "core/blocking.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

namespace gh {

bool BlockingPool::stop_and_join_for(std::chrono::milliseconds limit) {
  pool_.stop();  // jobs not started are dropped; those running finish
  struct Done {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  auto d = std::make_shared<Done>();
  std::thread([this, d] {
    pool_.join();
    std::lock_guard lk(d->m);
    d->done = true;
    d->cv.notify_all();
  }).detach();  // (left running when the time is up: the process is about to end)
  std::unique_lock lk(d->m);
  return d->cv.wait_for(lk, limit, [&] { return d->done; });
}

}  // namespace gh
