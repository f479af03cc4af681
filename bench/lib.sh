# Helpers shared by bench/run.sh, bench/instructions.sh, bench/pgo-train.sh and bench/micro.sh (sourced, not run).

free_port() { # a TCP port of 127.0.0.1 free right now
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_http() { # url seconds [pid]: until the URL answers 2xx (1 after the seconds; 2 as soon as pid is gone)
  local url=$1 secs=$2 pid=${3:-} i
  for ((i = 0; i < secs * 10; i++)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    curl -sf -o /dev/null --max-time 2 "$url" && return 0
    sleep 0.1
  done
  return 1
}

start_njs_upstream() { # dir: the benchmark's njs MCP upstream (nginx + njs) in dir; sets UP_PORT, adds its pid to PIDS
  local dir=$1
  UP_PORT=$(free_port)
  mkdir -p "$dir"/{conf,logs,tmp}
  sed -e "s#@PREFIX@#$dir#g" -e "s#@PORT@#$UP_PORT#g" -e "s#@JS_DIR@#$BENCH_DIR/upstream-njs#g" \
    "$BENCH_DIR/upstream-njs/nginx.conf.in" >"$dir/conf/nginx.conf"
  setsid nginx -p "$dir" -c "$dir/conf/nginx.conf" -g 'daemon off;' </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$UP_PORT/health" 60 || { echo "njs upstream did not start" >&2; return 1; }
}

start_lone_gatehouse() { # dir servers_json binary [wrapper command…]: a Gatehouse of its own in dir (SQLite store there,
  # limits out of the way: the hot path's instructions and the training runs count every request), optionally
  # under a wrapper (valgrind); sets GH_PORT, GH_PID (added to PIDS) and GH_AUTH (the bootstrap admin key's
  # Authorization value). GLIBC_TUNABLES set: a build with glibc's malloc (-DGATEHOUSE_MALLOC=system) would
  # otherwise re-execute itself to set it, which valgrind refuses (the default build, on tcmalloc, ignores it).
  local dir=$1 servers=$2 bin=$3
  shift 3
  GH_PORT=$(free_port)
  (cd "$dir" && exec env GLIBC_TUNABLES=glibc.malloc.tcache_count=128 GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="$GH_PORT" \
    MCP_SERVERS_FILE="$servers" DATABASE_URL="sqlite://$dir/gatehouse.db" \
    RATE_LIMIT_PER_MINUTE=1000000000 RATE_LIMIT_BURST=1000000000 setsid "$@" "$bin" serve) \
    >"$dir/stdout.log" 2>"$dir/stderr.log" </dev/null &
  GH_PID=$!
  PIDS+=("$GH_PID")
  wait_http "http://127.0.0.1:$GH_PORT/gateway/health" 60 "$GH_PID" ||
    { echo "gatehouse did not start: $(tail -5 "$dir/stderr.log")" >&2; return 1; }
  GH_AUTH="Bearer $(grep -o 'gh_[A-Za-z0-9_-]*' "$dir/stdout.log" | head -n1)"
}

sentences() { # n: a plain-text message of n characters (S4's 10 KB one)
  awk -v n="$1" 'BEGIN { s = ""; while (length(s) < n) s = s "The quick brown fox jumps over the lazy dog. "; print substr(s, 1, n) }'
}

write_servers_json() { # file upstream_url everything_js cwd: "fast" (Streamable HTTP) and "everything" (stdio)
  node -e '
const [file, up, node, js, cwd] = process.argv.slice(1);
const cfg = { mcpServers: {
  fast: { type: "streamable-http", url: up },
  everything: { command: node, args: [js, "stdio"], cwd },
} };
require("fs").writeFileSync(file, JSON.stringify(cfg, null, 2) + "\n");
' "$1" "$2" "$(command -v node)" "$3" "$4"
}
