#!/usr/bin/env bash
# Installs the sample MCP servers that config/servers.json points at (once), their data folders, and the
# admin portal's npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d samples/node_modules/@modelcontextprotocol/server-everything ]; then
  (cd samples && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p data/files
# The admin portal's browser libraries (chart.js) come from npm and are served by Gatehouse from web/.
if [ -f web/package.json ] && [ ! -d web/node_modules/chart.js ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
