#!/usr/bin/env bash
# Installs the sample MCP servers that config/servers.json points at (once), and their data folders.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d samples/node_modules/@modelcontextprotocol/server-everything ]; then
  (cd samples && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p data/files
