// Read-only access to Open WebUI's own database, to resolve the `id` claim of its session JWTs.
// Tables (Open WebUI's real layout): "user"(id, email, name, role, …), "group"(id, name, …, user_ids JSON in
// older versions), "group_member"(group_id, user_id) in current versions. Either membership form is used,
// whichever exists (both are read if both exist). Calls block: run them on the blocking pool.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gh::store {

struct OpenWebUiUser {
  std::string id, email, name;
  std::string role;  // "admin" | "user" | "pending"
  std::vector<std::string> groups;  // group names, sorted
};

class OpenWebUiDirectory {
 public:
  virtual ~OpenWebUiDirectory() = default;
  // Open WebUI's DATABASE_URL forms: "sqlite:///abs/webui.db", "sqlite:///./rel.db", a bare file path,
  // "postgresql://…" / "postgres://…" (its tables in the default schema). Opens read-only where possible.
  // Throws StoreError.
  static std::unique_ptr<OpenWebUiDirectory> open(const std::string& url);
  // nullopt when there is no such user. Throws StoreError on database failure.
  virtual std::optional<OpenWebUiUser> find(std::string_view id) = 0;
};

}  // namespace gh::store
