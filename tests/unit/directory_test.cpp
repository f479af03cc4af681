// The directory's reload after a change: a reload that fails is tried again until one succeeds.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "auth/directory.hpp"
#include "core/blocking.hpp"
#include "store/db.hpp"
#include "store/store.hpp"

namespace fs = std::filesystem;
using namespace gh;

TEST(Directory, AReloadThatFailsIsTriedAgainUntilItSucceeds) {
  auto dir = fs::temp_directory_path() / ("gh-directory-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string url = "sqlite://" + (dir / "gh.db").string();
  auto store = store::Store::open(url);
  store->migrate();
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });
  BlockingPool pool(1);
  auth::Directory directory(*store, pool, io.get_executor());
  directory.load_now();
  directory.start_watching();
  // The snapshot is the io thread's (it installs them): read there.
  auto knows = [&](const char* email) {
    std::promise<bool> p;
    boost::asio::post(io, [&] { p.set_value(directory.current()->user(email) != nullptr); });
    return p.get_future().get();
  };
  auto has = [&](const char* email) {
    for (int i = 0; i < 100; ++i) {  // up to 10 s
      if (knows(email)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  // Another process (the CLI, say) writes while the directory cannot be read: the reload it causes fails.
  auto other = store::Store::open(url);
  auto raw = store::sql::open_sqlite((dir / "gh.db").string());
  raw->exec("ALTER TABLE api_keys RENAME TO api_keys_away");
  store::User u;
  u.email = "late@x.test";
  ASSERT_TRUE(other->create_user(u));
  other->notify_changed();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // polled (twice a second) and failed
  EXPECT_FALSE(knows("late@x.test"));
  raw->exec("ALTER TABLE api_keys_away RENAME TO api_keys");
  // No further change comes: the retry alone brings the user in.
  EXPECT_TRUE(has("late@x.test"));
  directory.stop();
  work.reset();
  io.stop();
  io_thread.join();
  fs::remove_all(dir);
}
