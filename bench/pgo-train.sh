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
. "$BENCH_DIR/lib.sh"  # free_port, wait_http, start_njs_upstream, write_servers_json, sentences

everything_js="$BENCH_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
[[ -f $everything_js ]] || { echo "$everything_js missing: npm ci in bench/" >&2; exit 1; }
start_njs_upstream "$TMP/up"
write_servers_json "$TMP/servers.json" "http://127.0.0.1:$UP_PORT/mcp" "$everything_js" "$TMP"

gh_port=$(free_port)
(cd "$TMP" && exec env GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="$gh_port" MCP_SERVERS_FILE="$TMP/servers.json" \
  DATABASE_URL="sqlite://$TMP/gatehouse.db" RATE_LIMIT_PER_MINUTE=1000000000 RATE_LIMIT_BURST=1000000000 \
  setsid "$BIN" serve) >"$TMP/stdout.log" 2>"$TMP/stderr.log" </dev/null &
gh_pid=$!
PIDS+=("$gh_pid")
wait_http "http://127.0.0.1:$gh_port/gateway/health" 60 "$gh_pid" ||
  { echo "gatehouse did not start: $(tail -5 "$TMP/stderr.log")" >&2; exit 1; }
auth="Bearer $(grep -o 'gh_[A-Za-z0-9_-]*' "$TMP/stdout.log" | head -n1)"

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
