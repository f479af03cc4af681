// The admin portal's files: web/ (GATEHOUSE_WEB_DIR) served under /mcp-admin, with a single-page-app
// fallback to index.html, and whitelisted browser libraries from web/node_modules (installed from npm at
// build time, never committed, never loaded from a CDN). Files are read once, off the io thread, and kept.
#pragma once
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <string>

#include "core/blocking.hpp"
#include "http/server.hpp"

namespace gh::app {

class StaticFiles {
 public:
  StaticFiles(std::string root, BlockingPool& pool);
  // `rest` is the path after "/mcp-admin" ("" or "/..."). Answers the exchange.
  boost::asio::awaitable<void> serve(http::Exchange& ex, std::string_view rest);

 private:
  struct File {
    std::string body, type;
    std::string etag;  // a digest of the body, quoted
    bool found = false;
  };
  boost::asio::awaitable<std::shared_ptr<const File>> load(std::string relative);
  std::string root_;
  BlockingPool& pool_;
  std::map<std::string, std::shared_ptr<const File>, std::less<>> cache_;
};

}  // namespace gh::app
