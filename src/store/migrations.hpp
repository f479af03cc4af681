// Versioned schema migrations (internal to src/store). Each version is DDL per dialect; `@` is the schema
// prefix (mcp_proxy. on PostgreSQL). Applied in order, each recorded in schema_migrations.
#pragma once
#include <string_view>
#include <vector>

namespace gh::store {

struct Migration {
  int version;
  std::string_view sqlite;
  std::string_view postgresql;
};

const std::vector<Migration>& migrations();

}  // namespace gh::store
