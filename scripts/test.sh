#!/usr/bin/env bash
# `make test`: unit tests, integration tests against real MCP servers (twice: SQLite store, then PostgreSQL
# store), browser tests of the admin portal (screenshots in build/screenshots/), and the MCP conformance suite.
# Installs what the tests need (Debian packages, Node packages), starts one throwaway PostgreSQL cluster for the
# whole run on a free port, and stops everything it started.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
failed=()

scripts/install-deps.sh build test || { echo "make test: FAILED: install-deps"; exit 1; }

# ---- one throwaway PostgreSQL cluster (tests create their own databases in it) ------------------------
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
pg_dir=
as_pg() {  # runs a shell command as the cluster owner (postgres when we are root)
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
stop_pg() {
  [ -n "$pg_dir" ] || return 0
  if [ -f "$pg_dir/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl -D $pg_dir/data -m immediate -t 20 stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$pg_dir"
  pg_dir=
}
trap stop_pg EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {  # a port the OS hands out for 127.0.0.1 (bind port 0, read it, close)
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close();});"
}

start_pg() {
  [ -x "$PG_BIN/initdb" ] || { echo "test.sh: no PostgreSQL server binaries (looked in ${PG_BIN:-/usr/lib/postgresql/*/bin})" >&2; return 1; }
  pg_dir=$(mktemp -d /tmp/gatehouse-pg.XXXXXX)
  chmod 755 "$pg_dir"
  [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
  as_pg "$PG_BIN/initdb -D $pg_dir/data -A trust -U postgres >$pg_dir/initdb.log 2>&1" \
    || { cat "$pg_dir/initdb.log" >&2; return 1; }
  local attempt port
  # The port is free when asked for but could be taken before the server binds it: retry a few times.
  for attempt in 1 2 3; do
    port=$(free_port) || return 1
    if as_pg "$PG_BIN/pg_ctl -D $pg_dir/data -o '-k $pg_dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off' -l $pg_dir/log -w -t 30 start" >/dev/null; then
      export GATEHOUSE_TEST_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
      echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $pg_dir)"
      return 0
    fi
    tail -n 5 "$pg_dir/log" >&2
  done
  return 1
}

if ! start_pg; then
  echo "test.sh: could not start PostgreSQL: the postgres passes will fail" >&2
  failed+=(postgresql-setup)
fi

echo "== unit tests (ctest)"
(cd "$BUILD_DIR" && ctest --output-on-failure --timeout 120) || failed+=(unit)

echo "== integration tests: npm ci"
if (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error); then
  for backend in sqlite postgres; do
    echo "== integration tests (node --test), store backend: $backend"
    (cd tests/integration && GATEHOUSE_TEST_BACKEND=$backend npm test) || failed+=("integration[$backend]")
  done
else
  failed+=(integration-npm-ci)
fi

echo "== browser tests (admin portal: playwright-core + Debian chromium, SQLite store)"
# npm ci in web/ installs the portal's browser libraries (chart.js) that Gatehouse serves; the suite's pretest
# also installs tests/integration's packages when missing (its harness is reused).
if (cd web && npm ci --no-audit --no-fund --loglevel=error) && (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error); then
  (cd tests/browser && GATEHOUSE_TEST_BACKEND=sqlite npm test) || failed+=(browser)
else
  failed+=(browser-npm-ci)
fi

echo "== MCP conformance (through Gatehouse)"
(cd tests/conformance && npm ci --no-audit --no-fund --loglevel=error && ./run.sh) || failed+=(conformance)

stop_pg

if [ ${#failed[@]} -gt 0 ]; then
  echo "make test: FAILED: ${failed[*]}"
  exit 1
fi
echo "make test: all suites passed"
