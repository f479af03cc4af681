// Read-only lookups in Open WebUI's own tables. Which membership form exists ("group_member" table and/or
// the older "group".user_ids JSON array) is detected once at open; both are read when both exist.
#include "store/openwebui.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <filesystem>
#include <mutex>

#include "store/db.hpp"

namespace gh::store {
namespace {

using sql::Row;

// Open WebUI's URLs are SQLAlchemy's: "sqlite:///" + path, so "sqlite:///./data/webui.db" is relative and
// "sqlite:////app/data/webui.db" absolute. "sqlite:///abs/webui.db" is read as /abs/webui.db when only that
// exists (a common way of writing an absolute path).
std::string sqlite_path_of(const std::string& url) {
  std::string_view u(url);
  if (!u.starts_with("sqlite:")) return url;  // a bare path
  u.remove_prefix(7);
  if (u.starts_with("///")) {
    std::string rel(u.substr(3));
    std::error_code ec;
    if (!rel.empty() && rel[0] != '/' && !std::filesystem::exists(rel, ec) && std::filesystem::exists("/" + rel, ec))
      return "/" + rel;
    return rel;
  }
  if (u.starts_with("//")) u.remove_prefix(2);
  return std::string(u);
}

class Directory final : public OpenWebUiDirectory {
 public:
  explicit Directory(std::unique_ptr<sql::Connection> c) : c_(std::move(c)) {
    if (c_->dialect() == sql::Dialect::sqlite) {
      has_member_table_ = c_->scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'group_member'") > 0;
      has_user_ids_ = c_->scalar("SELECT COUNT(*) FROM pragma_table_info('group') WHERE name = 'user_ids'") > 0;
    } else {
      has_member_table_ = c_->scalar(
                              "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                              "AND table_name = 'group_member'") > 0;
      has_user_ids_ = c_->scalar(
                          "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                          "AND table_name = 'group' AND column_name = 'user_ids'") > 0;
    }
  }

  std::optional<OpenWebUiUser> find(std::string_view id) override {
    std::lock_guard lk(mu_);
    std::optional<OpenWebUiUser> out;
    c_->query("SELECT id, email, name, role FROM \"user\" WHERE id = ?", {id}, [&](const Row& r) {
      out = OpenWebUiUser{r.str(0), r.str(1), r.str(2), r.str(3), {}};
    });
    if (!out) return out;
    auto& groups = out->groups;
    if (has_member_table_) {
      c_->query("SELECT g.name FROM \"group\" g JOIN group_member m ON m.group_id = g.id WHERE m.user_id = ?", {id},
                [&](const Row& r) { groups.push_back(r.str(0)); });
    }
    if (has_user_ids_) {
      // The LIKE narrows the scan portably (the column is TEXT in SQLite, JSON in PostgreSQL); parsing the
      // array then confirms the id is an element and not a substring of another.
      std::string pattern = "%\"";
      for (char c : id) {
        if (c == '%' || c == '_' || c == '\\') pattern += '\\';
        pattern += c;
      }
      pattern += "\"%";
      std::string want(id);
      c_->query("SELECT name, CAST(user_ids AS TEXT) FROM \"group\" WHERE CAST(user_ids AS TEXT) LIKE ? ESCAPE '\\'",
                {pattern}, [&](const Row& r) {
                  boost::system::error_code ec;
                  auto v = boost::json::parse(r.text(1), ec);
                  if (ec || !v.is_array()) return;
                  for (auto& e : v.as_array())
                    if (e.is_string() && e.as_string() == want) {
                      groups.push_back(r.str(0));
                      break;
                    }
                });
    }
    std::sort(groups.begin(), groups.end());
    groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
    return out;
  }

 private:
  std::mutex mu_;
  std::unique_ptr<sql::Connection> c_;
  bool has_member_table_ = false;
  bool has_user_ids_ = false;
};

}  // namespace

std::unique_ptr<OpenWebUiDirectory> OpenWebUiDirectory::open(const std::string& url) {
  std::string_view u(url);
  if (u.starts_with("postgresql://") || u.starts_with("postgres://"))
    return std::make_unique<Directory>(sql::open_postgres(url, "", true));
  auto path = sqlite_path_of(url);
  if (path.empty()) throw StoreError("Open WebUI database URL names no file: " + sql::redact_url(url));
  return std::make_unique<Directory>(sql::open_sqlite(path, true));
}

}  // namespace gh::store
