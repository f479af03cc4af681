#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# Creates two roles and two databases:
#   gatehouse  owns database "gatehouse" (Gatehouse's store, schema mcp_proxy)
#   openwebui  owns database "openwebui" (Open WebUI's own DATABASE_URL)
# and lets gatehouse READ Open WebUI's tables (users, groups, memberships) — nothing more — through default
# privileges on what the openwebui role creates: that is what OPENWEBUI_DATABASE_URL uses.
set -euo pipefail
: "${GATEHOUSE_DB_PASSWORD:?GATEHOUSE_DB_PASSWORD is not set}"
: "${OPENWEBUI_DB_PASSWORD:?OPENWEBUI_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v gh_pw="$GATEHOUSE_DB_PASSWORD" -v ow_pw="$OPENWEBUI_DB_PASSWORD" <<'SQL'
CREATE ROLE gatehouse LOGIN PASSWORD :'gh_pw';
CREATE ROLE openwebui LOGIN PASSWORD :'ow_pw';
CREATE DATABASE gatehouse OWNER gatehouse;
CREATE DATABASE openwebui OWNER openwebui;
REVOKE ALL ON DATABASE gatehouse FROM PUBLIC;
REVOKE ALL ON DATABASE openwebui FROM PUBLIC;
GRANT CONNECT ON DATABASE openwebui TO gatehouse;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname openwebui <<'SQL'
ALTER SCHEMA public OWNER TO openwebui;
GRANT USAGE ON SCHEMA public TO gatehouse;
ALTER DEFAULT PRIVILEGES FOR ROLE openwebui IN SCHEMA public GRANT SELECT ON TABLES TO gatehouse;
SQL
