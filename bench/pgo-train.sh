#!/usr/bin/env bash
# The training run of a profile-guided build (scripts/build-release.sh): runs a Gatehouse built with
# GATEHOUSE_PGO=generate through the request paths a gateway spends its time on, then stops it with SIGTERM so
# that it writes its counts (into the build's GATEHOUSE_PGO_DIR). Paths: tools/call through /mcp/<server> and
# through the aggregated /mcp (prefixed names), to a Streamable HTTP upstream (the benchmark's njs one) and to
# a stdio one (server-everything), short and 10 KB messages, 1 to 32 connections, sessions opened on the way,
# API-key authentication, rate limiting and analytics on (SQLite). Paths it does not run are compiled as
# without a profile (-fprofile-partial-training), not as if they never ran.
# Usage: bench/pgo-train.sh GATEHOUSE_BINARY   (needs wrk, nginx with njs and bench/'s npm packages:
# scripts/install-deps.sh build bench; npm ci in bench/)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=$(realpath "$1")
SECONDS_EACH=${PGO_TRAIN_SECONDS:-3}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-pgo.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
. "$BENCH_DIR/lib.sh"  # start_njs_upstream, start_lone_gatehouse, write_servers_json, sentences

everything_js="$BENCH_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
[[ -f $everything_js ]] || { echo "$everything_js missing: npm ci in bench/" >&2; exit 1; }
start_njs_upstream "$TMP/up"
write_servers_json "$TMP/servers.json" "http://127.0.0.1:$UP_PORT/mcp" "$everything_js" "$TMP"

start_lone_gatehouse "$TMP" "$TMP/servers.json" "$BIN"
gh_port=$GH_PORT gh_pid=$GH_PID auth=$GH_AUTH

long=$(sentences 10000)
train() { # path tool connections message
  local url="http://127.0.0.1:$gh_port$1" out sessions line
  out=$(MCP_AUTHORIZATION="$auth" node "$BENCH_DIR/sessions.js" --url "$url" --count "$3" --ids)
  sessions=$(node -e 'console.log(JSON.parse(process.argv[1]).ids.join(","))' "$out")
  line=$(MCP_SESSIONS="$sessions" MCP_AUTHORIZATION="$auth" MCP_TOOL="$2" MCP_MESSAGE="$4" MCP_EXPECT="Echo: $4" \
    wrk -t1 -c"$3" -d"${SECONDS_EACH}s" -s "$BENCH_DIR/wrk/mcp.lua" "$url" | grep '^MCPBENCH ' || true)
  echo "pgo-train: $1 $2 ${#4}-byte message, $3 connections: $line"
  [[ $line == *" non200=0 rpcerr=0 badtext=0"* ]] || { echo "pgo-train: failed requests, or no wrk summary (above)" >&2; exit 1; }
}
train /mcp/fast echo 1 "hello from wrk"
train /mcp/fast echo 32 "hello from wrk"
train /mcp/fast echo 4 "$long"
train /mcp fast__echo 4 "hello from wrk"
train /mcp/everything echo 4 "hello from wrk"

kill -TERM "$gh_pid"
for _ in $(seq 1 300); do kill -0 "$gh_pid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$gh_pid" 2>/dev/null || { echo "gatehouse did not stop within 30 s of SIGTERM" >&2; exit 1; }
grep -q '"msg":"stopped"' "$TMP/stderr.log" || { echo "gatehouse did not stop cleanly: $(tail -3 "$TMP/stderr.log")" >&2; exit 1; }
echo "pgo-train: done"
