#!/usr/bin/env bash
# Instructions per proxied tools/call on Gatehouse's io thread, counted by callgrind: unlike req/s and
# latency on a shared machine, this repeats to a fraction of a percent, so it tells whether a change to the
# hot path made it cheaper. The S1 setup of run.sh at small scale: the njs upstream, one Gatehouse under
# valgrind (limits and analytics on, its own SQLite store), 4 sessions, wrk 4 connections for 3 s of warm-up
# then 8 s counted. User-space instructions only (not the kernel's send/receive).
# Usage: bench/instructions.sh [gatehouse binary | nginx]   (default build-release/gatehouse; needs valgrind,
# wrk, nginx with njs — scripts/install-deps.sh bench — and bench/'s npm packages). `nginx` counts S1's nginx
# proxy_pass instead (its one process: master_process off), the reference the gateway is measured against.
# INSTR_MESSAGE: the echoed message (default "hello from wrk"; S4's 10 KB one to count large messages).
# KEEP_CALLGRIND=FILE keeps the io thread's profile there, for callgrind_annotate.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TARGET=${1:-$BENCH_DIR/../build-release/gatehouse}
[[ $TARGET == nginx ]] || BIN=$(realpath "$TARGET")
MESSAGE=${INSTR_MESSAGE:-hello from wrk}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-instr.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
[[ -n ${KEEP_CALLGRIND:-} ]] && trap 'cp "$TMP"/cg.out.1-01 "$KEEP_CALLGRIND" 2>/dev/null; cleanup' EXIT
. "$BENCH_DIR/lib.sh"  # free_port, wait_http, start_njs_upstream, start_lone_gatehouse

start_njs_upstream "$TMP/up"
up_port=$UP_PORT
printf '{"mcpServers":{"fast":{"type":"streamable-http","url":"http://127.0.0.1:%s/mcp"}}}\n' "$up_port" >"$TMP/servers.json"

if [[ $TARGET == nginx ]]; then
  px_port=$(free_port)
  mkdir -p "$TMP/px"/{conf,logs,tmp}
  sed -e "s#@PREFIX@#$TMP/px#g" -e "s#@PORT@#$px_port#g" -e "s#@UPSTREAM_PORT@#$up_port#g" \
    -e 's#^worker_processes 1;#worker_processes 1;\nmaster_process off;#' \
    "$BENCH_DIR/nginx-proxy/nginx.conf.in" >"$TMP/px/conf/nginx.conf"
  (exec setsid valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$TMP/cg.out" \
    nginx -p "$TMP/px" -c "$TMP/px/conf/nginx.conf" -g 'daemon off;') >"$TMP/stdout.log" 2>"$TMP/stderr.log" </dev/null &
  gh_pid=$!
  PIDS+=("$gh_pid")
  wait_http "http://127.0.0.1:$px_port/health" 60 || { echo "nginx did not start: $(tail -5 "$TMP/stderr.log")" >&2; exit 1; }
  url="http://127.0.0.1:$px_port/mcp"
  auth=""
else
  start_lone_gatehouse "$TMP" "$TMP/servers.json" "$BIN" \
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$TMP/cg.out"
  gh_pid=$GH_PID gh_port=$GH_PORT auth=$GH_AUTH
  url="http://127.0.0.1:$gh_port/mcp/fast"
fi
out=$(MCP_AUTHORIZATION="$auth" node "$BENCH_DIR/sessions.js" --url "$url" --count 4 --ids)
sessions=$(node -e 'console.log(JSON.parse(process.argv[1]).ids.join(","))' "$out")
load() { # seconds -> requests answered correctly
  MCP_SESSIONS="$sessions" MCP_AUTHORIZATION="$auth" MCP_TOOL=echo MCP_MESSAGE="$MESSAGE" \
    MCP_EXPECT="Echo: $MESSAGE" wrk -t1 -c4 -d"$1s" -s "$BENCH_DIR/wrk/mcp.lua" "$url" |
    awk '/^MCPBENCH / { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["requests"] - v["non200"] - v["rpcerr"] - v["badtext"] }'
}
load 3 >/dev/null
callgrind_control -z "$gh_pid" >/dev/null 2>&1
n=$(load 8)
callgrind_control -d "$gh_pid" >/dev/null 2>&1
sleep 1
io=$(ls "$TMP"/cg.out.1-01 2>/dev/null || true)   # dump 1, thread 1 = the io thread
[[ -n $io && $n -gt 0 ]] || { echo "no callgrind dump or no requests ($n)" >&2; exit 1; }
total=$(callgrind_annotate "$io" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$((total / n)) instructions per request on the io thread ($n requests, ${BIN:-nginx proxy_pass})"
