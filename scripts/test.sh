#!/usr/bin/env bash
# `make test`: unit tests, integration tests against real MCP servers, and the MCP conformance suite.
# Installs what the tests need (Node packages) and stops everything it started.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
failed=()

echo "== unit tests (ctest)"
(cd "$BUILD_DIR" && ctest --output-on-failure --timeout 120) || failed+=(unit)

echo "== integration tests (node --test)"
(cd tests/integration && npm ci --no-audit --no-fund --loglevel=error && npm test) || failed+=(integration)

echo "== MCP conformance (through Gatehouse)"
(cd tests/conformance && npm ci --no-audit --no-fund --loglevel=error && ./run.sh) || failed+=(conformance)

if [ ${#failed[@]} -gt 0 ]; then
  echo "make test: FAILED: ${failed[*]}"
  exit 1
fi
echo "make test: all suites passed"
