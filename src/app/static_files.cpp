#include "app/static_files.hpp"

#include <boost/beast/http.hpp>

#include <filesystem>

#include "auth/jwt.hpp"
#include "core/log.hpp"
#include "core/util.hpp"

namespace gh::app {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;

namespace {
std::string type_of(std::string_view path) {
  auto dot = path.rfind('.');
  auto ext = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  if (ext == "html") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "ico") return "image/x-icon";
  if (ext == "json") return "application/json";
  if (ext == "woff2") return "font/woff2";
  return "application/octet-stream";
}

// Only plain relative paths: letters, digits and -_./, no "..", no hidden files.
bool safe_relative(std::string_view p) {
  if (p.empty() || p.size() > 200 || p.front() == '/') return false;
  if (p.find("..") != std::string_view::npos || p.find("/.") != std::string_view::npos || p.front() == '.') return false;
  for (unsigned char c : p)
    if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '/')) return false;
  return true;
}

// Browser libraries served from npm packages in web/node_modules.
const std::map<std::string, std::string, std::less<>>& vendor_files() {
  static const std::map<std::string, std::string, std::less<>> m{
      {"chart.umd.js", "node_modules/chart.js/dist/chart.umd.js"},
  };
  return m;
}
}  // namespace

StaticFiles::StaticFiles(std::string root, BlockingPool& pool) : root_(std::move(root)), pool_(pool) {}

net::awaitable<std::shared_ptr<const StaticFiles::File>> StaticFiles::load(std::string relative) {
  if (auto it = cache_.find(relative); it != cache_.end()) co_return it->second;
  auto path = root_ + "/" + relative;
  auto job = [path] {
    auto f = std::make_shared<File>();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return std::shared_ptr<const File>(f);  // (a directory: not found)
    if (auto body = read_file(path)) {
      f->body = std::move(*body);
      f->type = type_of(path);
      f->etag = "\"" + auth::sha256_hex(f->body).substr(0, 32) + "\"";
      f->found = true;
    }
    return std::shared_ptr<const File>(f);
  };
  auto file = co_await pool_.run(std::move(job));
  if (file->found) cache_[relative] = file;  // missing files are looked for again (npm ci may come later)
  co_return file;
}

net::awaitable<void> StaticFiles::serve(http::Exchange& ex, std::string_view rest) {
  if (ex.req.method() != bhttp::verb::get && ex.req.method() != bhttp::verb::head) {
    co_await ex.send_json(bhttp::status::method_not_allowed, R"({"error":{"code":"method_not_allowed","message":"GET only"}})");
    co_return;
  }
  std::string relative;
  bool fallback = false;
  if (rest.starts_with("/assets/") && safe_relative(rest.substr(1))) {
    relative = std::string(rest.substr(1));
  } else if (rest.starts_with("/vendor/")) {
    auto it = vendor_files().find(rest.substr(8));
    if (it != vendor_files().end()) relative = it->second;
  } else {
    relative = "index.html";  // the app routes the rest itself
    fallback = true;
  }
  std::shared_ptr<const File> file;
  if (!relative.empty()) file = co_await load(relative);
  if (!file || !file->found) {
    if (fallback) log::error("admin portal files missing", {{"dir", root_}, {"hint", "set GATEHOUSE_WEB_DIR"}});
    auto text = fallback ? std::string("The admin portal's files were not found in ") + root_ +
                               " (GATEHOUSE_WEB_DIR); run `make run` from the repository, or set GATEHOUSE_WEB_DIR."
                         : std::string("Not found");
    http::Response res(bhttp::status::not_found, ex.req.version());
    res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
    res.body() = text;
    res.keep_alive(ex.req.keep_alive());
    res.prepare_payload();
    co_await ex.send(std::move(res));
    co_return;
  }
  http::Response res(bhttp::status::ok, ex.req.version());
  res.set(bhttp::field::content_type, file->type);
  // Everything from this origin only: no CDN, no inline script, no framing.
  res.set("Content-Security-Policy",
          "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  // Asked again every time, answered 304 while unchanged: a new release's files reach an open portal at its
  // next load (with max-age, a page of the new release could import a module of the old one for minutes).
  res.set(bhttp::field::cache_control, "no-cache");
  res.set(bhttp::field::etag, file->etag);
  if (auto inm = ex.req[bhttp::field::if_none_match]; !inm.empty() && (trim(inm) == "*" || header_has_token(inm, file->etag) ||
                                                                 header_has_token(inm, "W/" + file->etag))) {
    res.result(bhttp::status::not_modified);
    res.keep_alive(ex.req.keep_alive());
    co_await ex.send(std::move(res));
    co_return;
  }
  if (ex.req.method() == bhttp::verb::get) res.body() = file->body;
  res.keep_alive(ex.req.keep_alive());
  res.prepare_payload();
  if (ex.req.method() == bhttp::verb::head) res.content_length(file->body.size());
  co_await ex.send(std::move(res));
}

}  // namespace gh::app
