#!/usr/bin/env bash
# Runs the C++ micro benchmarks (build-release/micro_bench; target of `make bench`). See bench/README.md.
#
# The identity and analytics benchmarks always measure the store on SQLite; they add PostgreSQL rows when
# GATEHOUSE_BENCH_PG_URL is set. When it is not set and PostgreSQL's server binaries are installed
# (/usr/lib/postgresql/<v>/bin), this script starts a throwaway cluster (temp dir, a free port of 127.0.0.1,
# trust auth) for the run and stops and deletes it on exit. BENCH_PG=0 skips PostgreSQL altogether.
#
#   MICRO_BENCH   the binary                        (default build-release/micro_bench)
#   extra arguments go to micro_bench               (default --benchmark_min_time=0.2)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/bench/lib.sh"  # free_port
MICRO_BENCH=${MICRO_BENCH:-$ROOT/build-release/micro_bench}
ARGS=("$@")
((${#ARGS[@]})) || ARGS=(--benchmark_min_time=0.2)

log() { printf '[micro %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

PGDIR="" PGBIN=""
as_pg() { # command string, run as the postgres user when we are root (initdb refuses root)
  if ((EUID == 0)); then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
cleanup() {
  local rc=$?
  set +e
  if [[ -n $PGDIR && -d $PGDIR ]]; then
    [[ -f $PGDIR/data/postmaster.pid ]] && as_pg "'$PGBIN/pg_ctl' -D '$PGDIR/data' -m immediate -w -t 20 stop" >/dev/null 2>&1
    rm -rf "$PGDIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${GATEHOUSE_BENCH_PG_URL:-} && ${BENCH_PG:-1} != 0 ]]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -n $PGBIN && -x $PGBIN/initdb ]] && { ((EUID != 0)) || id postgres >/dev/null 2>&1; }; then
    PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench-pg.XXXXXX")
    ((EUID == 0)) && chown postgres "$PGDIR"
    port=$(free_port)
    if as_pg "'$PGBIN/initdb' -D '$PGDIR/data' -A trust -U postgres >'$PGDIR/initdb.log' 2>&1 &&
        '$PGBIN/pg_ctl' -D '$PGDIR/data' -o '-k $PGDIR -p $port -c listen_addresses=127.0.0.1' -l '$PGDIR/log' -w -t 30 start >/dev/null"; then
      export GATEHOUSE_BENCH_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
      log "throwaway PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
    else
      log "could not start a throwaway PostgreSQL (see below); PostgreSQL rows skipped"
      tail -n 20 "$PGDIR/initdb.log" "$PGDIR/log" >&2 2>/dev/null || true
    fi
  else
    log "PostgreSQL server not installed (apt-get install postgresql): PostgreSQL rows skipped"
  fi
fi

"$MICRO_BENCH" "${ARGS[@]}"
