#!/usr/bin/env bash
# Gatehouse benchmark harness (target of `make bench`). See bench/README.md.
#
# Measures MCP tools/call over keep-alive HTTP with wrk (1 thread) at each
# connection count in BENCH_CONNS:
#   S1  a fast HTTP MCP upstream (nginx + njs): direct, through nginx
#       proxy_pass, through Gatehouse (/mcp/fast)
#   S2  @modelcontextprotocol/server-everything over stdio behind Gatehouse
#       (/mcp/everything, tool echo)
#   S4  S1's rows with a message of BENCH_S4_BYTES characters each way (tool results are rarely 20 bytes)
#   S3  the S1 Gatehouse row on fresh instances: rate limiting + analytics off, then both on
#       (limit never reached, analytics into SQLite), then on with analytics into a throwaway
#       PostgreSQL (when installed); analytics rows written per second from /metrics
# plus Gatehouse's idle RSS and the RSS added by BENCH_SESSIONS idle sessions.
# Each Gatehouse instance gets a fresh store in its temp dir; the bootstrap admin API key it prints on
# stdout is sent as "Authorization: Bearer gh_…" with every Gatehouse request (wrk, sessions.js, probes).
# Writes build/bench/results.md (and prints it). Everything listens on
# 127.0.0.1 only; every process started here is stopped on exit.
#
# Settings (environment):
#   BENCH_SECONDS   measured seconds per row            (default 10; quick: 3)
#   BENCH_WARMUP    warm-up seconds per row             (default 2)
#   BENCH_CONNS     connection counts                   (default "1 32")
#   BENCH_ROUNDS    runs of every row, interleaved      (default 5; summaries use the median run)
#   BENCH_TIMEOUT   wrk per-request timeout             (default 10s)
#   BENCH_SESSIONS  idle sessions for the memory test   (default 10000; 0 = skip)
#   BENCH_SESSIONS_PATH  endpoint for those sessions    (default /mcp/fast)
#   BENCH_SCENARIOS which scenarios, in order           (default "S1 S2 S4 S3")
#   BENCH_S4_BYTES  S4's message length in characters   (default 10000)
#   BENCH_RATE_LIMIT  RATE_LIMIT_PER_MINUTE and _BURST of every instance (default 1000000000: never refuses)
#   BENCH_PG        0 = no PostgreSQL row in S3         (default 1: when /usr/lib/postgresql/*/bin exists)
#   BENCH_S3_CONFIGS  S3 configurations, in run order (reversed in even rounds) (default "off on pg"; also "limits", "analytics")
#   BENCH_S3_ROUNDS, BENCH_S3_SECONDS, BENCH_S3_WARMUP  S3's own: more, shorter rounds (default 16, 3, 1): its
#                   target is a 5% difference, which 5 rounds of the same load measure ±10% on this machine
#   BENCH_S1_ANALYTICS_OFF  1 = S1 also runs Gatehouse with analytics off (default 1)
#   GATEHOUSE_BIN   the binary                          (default build/gatehouse)
#   BENCH_OUT_DIR   results and logs                    (default build/bench)
#   BENCH_SKIP_INSTALL=1  do not apt-get / npm ci
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/lib.sh"
ROOT=$(cd "$BENCH_DIR/.." && pwd)

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_CONNS=${BENCH_CONNS:-"1 32"}
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
BENCH_THREADS=1
BENCH_TIMEOUT=${BENCH_TIMEOUT:-10s}
BENCH_SESSIONS=${BENCH_SESSIONS:-10000}
BENCH_SESSIONS_PATH=${BENCH_SESSIONS_PATH:-/mcp/fast}
BENCH_SCENARIOS=${BENCH_SCENARIOS:-"S1 S2 S4 S3"}
BENCH_S4_BYTES=${BENCH_S4_BYTES:-10000}
# Every instance has rate limiting and analytics on (the defaults), with a per-user limit the bench never
# reaches: the default (100/min, burst 100) would refuse the bench's admin key after its first 100 requests.
BENCH_RATE_LIMIT=${BENCH_RATE_LIMIT:-1000000000}
BENCH_PG=${BENCH_PG:-1}
BENCH_S3_CONFIGS=${BENCH_S3_CONFIGS:-"off on pg"}
BENCH_S3_ROUNDS=${BENCH_S3_ROUNDS:-16}
BENCH_S3_SECONDS=${BENCH_S3_SECONDS:-3}
BENCH_S3_WARMUP=${BENCH_S3_WARMUP:-1}
BENCH_S1_ANALYTICS_OFF=${BENCH_S1_ANALYTICS_OFF:-1}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-$ROOT/build/gatehouse}
OUT_DIR=${BENCH_OUT_DIR:-$ROOT/build/bench}
MCP_PROTOCOL_VERSION=2025-11-25
MESSAGE="hello from wrk"
EXPECT="Echo: $MESSAGE"
# S4's message: plain sentences (the wrk script sends it without escaping), BENCH_S4_BYTES characters
S4_MESSAGE=$(sentences "$BENCH_S4_BYTES")

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes
TMP=""
PIDS=()        # process-group leaders we started (setsid), stopped on exit

stop_group() { # pid [grace seconds]: TERM the group, wait, then KILL
  local pid=$1 grace=${2:-5} i
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still running after ${grace}s: KILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  # anything left in the group (children that outlived their parent)
  kill -KILL -- "-$pid" 2>/dev/null || true
}

forget_pid() {
  local p out=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || out+=("$p"); done
  PIDS=("${out[@]}")
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local p i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_group "${PIDS[$i]}" 5; done
  stop_pg
  if [[ -n $TMP && -d $TMP ]]; then
    mkdir -p "$OUT_DIR/logs"
    find "$TMP" -name '*.log' -type f -print0 2>/dev/null |
      while IFS= read -r -d '' f; do
        rel=${f#"$TMP"/}; dst="$OUT_DIR/logs/${rel//\//_}"
        if (($(stat -c %s "$f") > 8 * 1024 * 1024)); then # keep both ends of a big log
          { head -c 4M "$f"; printf '\n… [%s bytes cut] …\n' "$(($(stat -c %s "$f") - 8 * 1024 * 1024))"; tail -c 4M "$f"; } >"$dst" 2>/dev/null
        else
          cp "$f" "$dst" 2>/dev/null
        fi
      done
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ------------------------------------------------------------- dependencies
install_deps() {
  local pkgs=()
  command -v wrk >/dev/null || pkgs+=(wrk)
  command -v nginx >/dev/null || pkgs+=(nginx-light)
  [[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ]] || pkgs+=(libnginx-mod-http-js)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  command -v setsid >/dev/null || pkgs+=(util-linux)
  if ((${#pkgs[@]})); then
    log "apt-get install -y ${pkgs[*]}"
    # Never let the package start the system nginx (it would listen on :80).
    local made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    local ok=1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 || {
      DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2
    } || ok=0
    [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
    ((ok)) || die "apt-get install ${pkgs[*]} failed"
  fi
  log "npm ci (bench/)"
  (cd "$BENCH_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in bench/"
}

# ------------------------------------------------------------------ helpers
# (free_port, wait_http, write_servers_json, sentences: bench/lib.sh, sourced at the top)

RSS_KB=0
rss_kb() { # pid [field] -> RSS_KB (VmRSS, or the given /proc/PID/status field, in kB; 0 when gone)
  local k v rest key="${2:-VmRSS}:"
  RSS_KB=0
  { while read -r k v rest; do
      if [[ $k == "$key" ]]; then RSS_KB=$v; break; fi
    done; } 2>/dev/null <"/proc/$1/status" || true
}

TREE=()
tree_pids() { # pid -> TREE (pid and all its descendants)
  local -a queue=("$1") kids
  local p f
  TREE=()
  while ((${#queue[@]})); do
    p=${queue[0]}; queue=("${queue[@]:1}")
    TREE+=("$p")
    for f in /proc/"$p"/task/*/children; do
      [[ -r $f ]] || continue
      kids=()
      read -r -a kids 2>/dev/null <"$f" || true
      if ((${#kids[@]})); then queue+=("${kids[@]}"); fi
    done
  done
  return 0
}

# Peak RSS over a measured window, without sampling: the kernel keeps each process's peak (VmHWM), and
# writing 5 to /proc/PID/clear_refs resets it to the current RSS. Nothing runs during the window — a
# sampler polling /proc every 0.1 s forked `sleep` ten times a second, and those forks were in the measured
# rows' p99 (1 connection through either proxy: 0.65 ms without, 2.4 ms with; the direct row had none).
PEAK_SINCE_START=0
peak_reset() { # pid: reset the peak RSS of the pid and its descendants
  local p
  tree_pids "$1"
  for p in "${TREE[@]}"; do
    { echo 5 >"/proc/$p/clear_refs"; } 2>/dev/null || PEAK_SINCE_START=1
  done
}
PEAK=""
peak_read() { # pid -> PEAK "self_kB tree_kB procs": peaks since peak_reset (the tree's is the sum of its processes' peaks)
  local self tree=0 procs=0 p
  rss_kb "$1" VmHWM; self=$RSS_KB
  tree_pids "$1"
  for p in "${TREE[@]}"; do
    rss_kb "$p" VmHWM
    if ((RSS_KB > 0)); then tree=$((tree + RSS_KB)); procs=$((procs + 1)); fi
  done
  PEAK="$self $tree $procs"
}

CPU_TICKS=0
cpu_ticks() { # pid -> CPU_TICKS: utime+stime of the pid and its descendants
  local p line rest
  local -a f
  CPU_TICKS=0
  tree_pids "$1"
  for p in "${TREE[@]}"; do
    line=""
    { read -r line; } 2>/dev/null <"/proc/$p/stat" || true
    [[ -n $line ]] || continue
    rest=${line##*) }        # fields from 3 on (comm may hold spaces)
    read -r -a f <<<"$rest"
    CPU_TICKS=$((CPU_TICKS + f[11] + f[12]))   # fields 14, 15
  done
  return 0
}
CLK_TCK=$(getconf CLK_TCK)

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ------------------------------------------------------------------- nginx
NGX_PID=""; NGX_PORT=""
start_nginx() { # name template [UPSTREAM_PORT]
  local name=$1 template=$2 upstream=${3:-} prefix="$TMP/$1" try
  mkdir -p "$prefix"/{conf,logs,tmp}
  for try in 1 2 3 4 5; do
    NGX_PORT=$(free_port)
    sed -e "s#@PREFIX@#$prefix#g" -e "s#@PORT@#$NGX_PORT#g" \
      -e "s#@UPSTREAM_PORT@#$upstream#g" -e "s#@JS_DIR@#$BENCH_DIR/upstream-njs#g" \
      "$template" >"$prefix/conf/nginx.conf"
    setsid nginx -p "$prefix" -c "$prefix/conf/nginx.conf" -g 'daemon off;' \
      >"$prefix/logs/stdout.log" 2>"$prefix/logs/stderr.log" </dev/null &
    NGX_PID=$!
    PIDS+=("$NGX_PID")
    # (the proxy forwards /health to the upstream's)
    if wait_http "http://127.0.0.1:$NGX_PORT/health" 10 "$NGX_PID"; then
      log "$name: nginx pid $NGX_PID on 127.0.0.1:$NGX_PORT"
      return 0
    fi
    log "$name: nginx did not start (try $try): $(tail -n 3 "$prefix/logs/stderr.log" "$prefix/logs/error.log" 2>/dev/null | tr '\n' ' ')"
    stop_group "$NGX_PID" 2; forget_pid "$NGX_PID"
  done
  die "$name: nginx would not start"
}

# -------------------------------------------------------------- postgresql
# A throwaway cluster for S3's PostgreSQL row (as bench/micro.sh does): its own dir, a free port of
# 127.0.0.1, trust auth, run as the postgres user when we are root; stopped and deleted on exit.
PGDIR=""; PGBIN=""; PG_URL=""; PG_PROBLEM=""
as_pg() { if ((EUID == 0)); then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
start_pg() { # -> PG_URL (database gatehouse_bench) or PG_PROBLEM and return 1
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -z $PGBIN || ! -x $PGBIN/initdb ]]; then
    PG_PROBLEM="PostgreSQL server not installed (apt-get install postgresql)"; return 1
  fi
  if ((EUID == 0)) && ! id postgres >/dev/null 2>&1; then PG_PROBLEM="no postgres user to run initdb as"; return 1; fi
  PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench-pg.XXXXXX")
  ((EUID == 0)) && chown postgres "$PGDIR"
  local port
  port=$(free_port)
  if ! as_pg "'$PGBIN/initdb' -D '$PGDIR/data' -A trust -U postgres >'$PGDIR/initdb.log' 2>&1 &&
      '$PGBIN/pg_ctl' -D '$PGDIR/data' -o '-k $PGDIR -p $port -c listen_addresses=127.0.0.1' -l '$PGDIR/log' -w -t 30 start >/dev/null &&
      '$PGBIN/createdb' -h 127.0.0.1 -p $port -U postgres gatehouse_bench"; then
    PG_PROBLEM="could not start a throwaway PostgreSQL: $(tail -n 5 "$PGDIR/initdb.log" "$PGDIR/log" 2>/dev/null | tr '\n' ' ' | head -c 400)"
    return 1
  fi
  PG_URL="postgresql://postgres@127.0.0.1:$port/gatehouse_bench"
  log "throwaway PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}
stop_pg() {
  [[ -n $PGDIR && -d $PGDIR ]] || return 0
  if [[ -f $PGDIR/data/postmaster.pid ]]; then
    as_pg "'$PGBIN/pg_ctl' -D '$PGDIR/data' -m fast -w -t 20 stop" >/dev/null 2>&1 ||
      as_pg "'$PGBIN/pg_ctl' -D '$PGDIR/data' -m immediate -w -t 20 stop" >/dev/null 2>&1
  fi
  [[ -n $TMP && -d $TMP && -f $PGDIR/log ]] && cp "$PGDIR/log" "$TMP/postgresql.log" 2>/dev/null
  rm -rf "$PGDIR"; PGDIR=""
}

# --------------------------------------------------------------- gatehouse
GH_PID=""; GH_PORT=""; GH_LOG=""; GH_PROBLEM=""; GH_WRITER=""
start_gatehouse() { # name [VAR=value … overriding the defaults] -> GH_PID GH_PORT GH_LOG GH_KEY, or GH_PROBLEM and return 1
  local name=$1 dir="$TMP/gatehouse-$1" i line
  shift
  mkdir -p "$dir"
  GH_LOG="$dir/gatehouse.log"; GH_PID=""; GH_PORT=""; GH_PROBLEM=""; GH_KEY=""
  if [[ ! -x $GATEHOUSE_BIN ]]; then
    GH_PROBLEM="$GATEHOUSE_BIN missing (run make build)"; return 1
  fi
  # cwd = its own empty dir, so no stray .env is read; its own fresh store there, so the first start
  # creates the admin account and prints its API key on stdout (read below)
  (cd "$dir" && exec env GATEWAY_HOST=127.0.0.1 GATEWAY_PORT=0 \
    MCP_SERVERS_FILE="$TMP/servers.json" SHUTDOWN_GRACE_MS=2000 \
    DATABASE_URL="sqlite://$dir/gatehouse.db" \
    RATE_LIMIT_PER_MINUTE="$BENCH_RATE_LIMIT" RATE_LIMIT_BURST="$BENCH_RATE_LIMIT" "$@" \
    setsid "$GATEHOUSE_BIN" serve) >"$dir/stdout.log" 2>"$GH_LOG" </dev/null &
  GH_PID=$!
  PIDS+=("$GH_PID")
  for ((i = 0; i < 300; i++)); do
    line=$(grep -m1 '"msg":"listening"' "$GH_LOG" 2>/dev/null || true)
    if [[ -n $line ]]; then
      GH_PORT=$(grep -o '"port":[0-9]*' <<<"$line" | head -n1 | cut -d: -f2)
      break
    fi
    kill -0 "$GH_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $GH_PORT ]]; then
    if kill -0 "$GH_PID" 2>/dev/null; then
      GH_PROBLEM="no {\"msg\":\"listening\",\"port\":N} line on stderr within 30 s"
    else
      wait "$GH_PID" 2>/dev/null && i=0 || i=$?
      GH_PROBLEM="exited with status $i before listening"
    fi
    GH_PROBLEM+="; stderr: $(tail -c 600 "$GH_LOG" | tr '\n' ' ')"
    stop_group "$GH_PID" 2; forget_pid "$GH_PID"; GH_PID=""
    return 1
  fi
  if ! wait_http "http://127.0.0.1:$GH_PORT/gateway/health" 15 "$GH_PID"; then
    log "WARNING gatehouse-$name: GET /gateway/health not 2xx within 15 s:" \
      "$(curl -s -i --max-time 2 "http://127.0.0.1:$GH_PORT/gateway/health" | head -c 300 | tr '\r\n' '  ')"
    if ! kill -0 "$GH_PID" 2>/dev/null; then
      GH_PROBLEM="died after listening; stderr: $(tail -c 600 "$GH_LOG" | tr '\n' ' ')"
      forget_pid "$GH_PID"; GH_PID=""
      return 1
    fi
  fi
  # the bootstrap admin key: "Admin API key (shown once): gh_…" on stdout (printed before listening)
  for ((i = 0; i < 100; i++)); do
    GH_KEY=$(sed -n 's/^Admin API key (shown once): \(gh_[A-Za-z0-9_-]*\).*$/\1/p' "$dir/stdout.log" 2>/dev/null | head -n1)
    [[ -n $GH_KEY ]] && break
    kill -0 "$GH_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $GH_KEY ]]; then
    GH_PROBLEM="no 'Admin API key (shown once): gh_…' line on stdout within 10 s (store not fresh?); stdout: $(tail -c 300 "$dir/stdout.log" | tr '\n' ' ')"
    stop_group "$GH_PID" 2; forget_pid "$GH_PID"; GH_PID=""
    return 1
  fi
  # the key must open /servers (proves the credential reaches the gateway's authentication)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $GH_KEY" \
    "http://127.0.0.1:$GH_PORT/servers" || true)
  if [[ $code != 200 ]]; then
    log "WARNING gatehouse-$name: GET /servers with the bootstrap key answered HTTP $code"
  fi
  # where the analytics writer's thread runs (ANALYTICS_WRITER_CGROUP; docs/operations.md): the report's runs
  # are comparable only with the same answer
  local writer
  writer=$(node -e '
for (const line of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
  let e; try { e = JSON.parse(line); } catch { continue; }
  if (!e.msg?.startsWith("analytics writer: ")) continue;
  const { ts, level, msg, ...fields } = e;
  console.log([msg.slice(18), ...Object.values(fields)].join(": "));
  break;
}' "$GH_LOG" 2>/dev/null || true)
  [[ -n $writer ]] && GH_WRITER=$writer
  log "gatehouse-$name: pid $GH_PID on 127.0.0.1:$GH_PORT (admin key ${GH_KEY:0:11}…)${writer:+; analytics writer $writer}"
}

# ----------------------------------------------------------------- sessions
SESSION_IDS=""; SESSION_PROBLEM=""
open_sessions() { # url count [authorization] -> SESSION_IDS (comma-separated) or SESSION_PROBLEM
  local url=$1 n=$2 authz=${3:-} out
  SESSION_IDS=""; SESSION_PROBLEM=""
  # the credential travels in the environment (not on a command line, visible in ps)
  out=$(MCP_AUTHORIZATION="$authz" timeout 60 node "$BENCH_DIR/sessions.js" --url "$url" --count "$n" \
    --concurrency 8 --deadline-s 45 --protocol "$MCP_PROTOCOL_VERSION" --ids 2>&1) || true
  SESSION_IDS=$(node -e 'try{const o=JSON.parse(process.argv[1]);if(o.failed===0)console.log(o.ids.join(","))}catch{}' "$out")
  if [[ -z $SESSION_IDS ]]; then
    SESSION_PROBLEM="session setup failed: $(head -c 500 <<<"$out" | tr '\n' ' ')"
    return 1
  fi
}

# ---------------------------------------------------------------- wrk rows
ROWS="" # filled by add_row; TSV lines
add_row() { # scen system conns rps p50 p99 errors rss cpu note
  ROWS+="$(printf '%s\t' "$@")"$'\n'
}

# A gatehouse counter or gauge from /metrics (unauthenticated), "" when unanswered.
metric() { # base_url name
  local body
  body=$(curl -s --max-time 3 "$1/metrics" 2>/dev/null) || true
  awk -v n="$2" '$1 == n && !done { print $2; done = 1 }' <<<"$body"
}
now_s() { date +%s.%N; }

cpu_us() { # cpu% rps -> CPU microseconds per request
  awk -v c="$1" -v r="$2" 'BEGIN { if (c ~ /^[0-9.]+$/ && r > 0) printf "%.1f", c / 100 * 1e6 / r; else print "—" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a ~ /^[0-9.]+$/) printf "%.2f×", a / b; else print "—" }'; }
# The median of a space-separated list of numbers ("—" entries ignored); "" for none.
median() { tr ' ' '\n' <<<"$1" | { grep -E '^[0-9.]+$' || true; } | sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
median1() { local m; m=$(median "$1"); [[ -n $m ]] && printf '%.1f' "$m" || printf '—'; }  # one decimal
# The median of the per-round ratios a_i / b_i of two space-separated lists (the i-th runs of two rows that
# took turns in round i); "" when there is no pair. Pairing each run with its neighbour in time cancels the
# slow drift of a shared machine, which a ratio of two medians does not.
# With a third argument, also the middle half of the ratios (25th–75th percentile): "0.98× (0.95–1.01)".
paired() {
  awk -v a="$1" -v b="$2" -v spread="${3:-}" 'BEGIN {
    n = split(a, x, " "); m = split(b, y, " "); k = 0
    for (i = 1; i <= n && i <= m; i++) if (x[i] ~ /^[0-9.]+$/ && y[i] ~ /^[0-9.]+$/ && y[i] > 0) r[++k] = x[i] / y[i]
    if (!k) exit
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
    printf "%.2f×", (k % 2) ? r[(k + 1) / 2] : (r[k / 2] + r[k / 2 + 1]) / 2
    if (spread) printf " (%.2f–%.2f)", r[int((k + 3) / 4)], r[k + 1 - int((k + 3) / 4)]
  }'
}
ROUND_TAG=""
declare -A RES_RPS RES_P99 RES_P50 RES_ERR RES_CPU RES_AW RES_AW_NOTE
run_row() { # scen system url conns rss_pid(or "") [authorization header value] [gatehouse base URL: analytics rates]
  local scen=$1 system=$2 url=$3 conns=$4 rss_pid=${5:-} authz=${6:-} mbase=${7:-}
  local secs=${ROW_SECONDS:-$BENCH_SECONDS} warm=${ROW_WARMUP:-$BENCH_WARMUP} message=${ROW_MESSAGE:-$MESSAGE}
  local tag="${scen}_${system// /_}_c${conns}" dir="$TMP/wrk" sessions_n
  tag=${tag//[^A-Za-z0-9_]/_}
  mkdir -p "$dir"
  log "$scen | $system | $conns conns: $url"
  sessions_n=$conns
  if ! open_sessions "$url" "$sessions_n" "$authz"; then
    log "  $SESSION_PROBLEM"
    add_row "$scen" "$system" "$conns" "—" "—" "—" "**not run**" "—" "—" "$SESSION_PROBLEM"
    return 0
  fi
  local -a wrk_args=(-t"$BENCH_THREADS" -c"$conns" --timeout "$BENCH_TIMEOUT"
    -s "$BENCH_DIR/wrk/mcp.lua" "$url")
  local -a wrk_env=(MCP_SESSIONS="$SESSION_IDS" MCP_MESSAGE="$message" MCP_EXPECT="Echo: $message"
    MCP_TOOL=echo MCP_PROTOCOL_VERSION="$MCP_PROTOCOL_VERSION" MCP_AUTHORIZATION="$authz")
  if ((warm > 0)); then
    env "${wrk_env[@]}" timeout $((warm + 30)) wrk -d"${warm}s" "${wrk_args[@]}" \
      >"$dir/$tag.warmup.log" 2>&1 || log "  warm-up wrk exited $?"
  fi
  local cpu0=0
  if [[ -n $rss_pid ]]; then peak_reset "$rss_pid"; cpu_ticks "$rss_pid"; cpu0=$CPU_TICKS; fi
  local aw0="" at0="" aw1="" at1="" ad0="" ad1=""
  if [[ -n $mbase ]]; then
    aw0=$(metric "$mbase" gatehouse_analytics_written_total); ad0=$(metric "$mbase" gatehouse_analytics_dropped_total); at0=$(now_s)
  fi
  local wrk_rc=0
  env "${wrk_env[@]}" timeout $((secs + 30)) wrk -d"${secs}s" "${wrk_args[@]}" \
    >"$dir/$tag.log" 2>&1 || wrk_rc=$?
  if [[ -n $mbase ]]; then
    aw1=$(metric "$mbase" gatehouse_analytics_written_total); ad1=$(metric "$mbase" gatehouse_analytics_dropped_total); at1=$(now_s)
    local aq1 drain="" i
    aq1=$(metric "$mbase" gatehouse_analytics_queue)
    # how long the writer takes to empty what was queued when wrk stopped (5 s at most)
    for ((i = 0; i < 50; i++)); do
      [[ $(metric "$mbase" gatehouse_analytics_queue) == 0 ]] && { drain=$(awk -v t="$(now_s)" -v s="$at1" 'BEGIN { printf "%.1f", t - s }'); break; }
      sleep 0.1
    done
    if [[ -n $aw0 && -n $aw1 ]]; then
      RES_AW["$scen|$system|$conns"]+=$(awk -v a="$aw0" -v b="$aw1" -v s="$at0" -v t="$at1" 'BEGIN { printf "%.0f ", (b - a) / (t - s) }')
      RES_AW_NOTE["$scen|$system|$conns"]+="${ROUND_TAG:+${ROUND_TAG# } }$(awk -v a="$aw0" -v b="$aw1" 'BEGIN { printf "%.0f", b - a }') rows written; queue ${aq1:-?} when wrk stopped, $([[ -n $drain ]] && echo "empty after $drain s" || echo "**not empty after 5 s**"); dropped $(awk -v a="${ad0:-0}" -v b="${ad1:-0}" 'BEGIN { printf "%.0f", b - a }'). "
    fi
  fi
  local cpucell="—"
  if [[ -n $rss_pid ]]; then
    cpu_ticks "$rss_pid"
    cpucell=$(awk -v t=$((CPU_TICKS - cpu0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", 100 * t / hz / s }')
    peak_read "$rss_pid"
  fi

  local line kv k v
  line=$(grep -m1 '^MCPBENCH ' "$dir/$tag.log" || true)
  if [[ -z $line ]]; then
    local why="wrk exited $wrk_rc without a summary: $(tail -c 300 "$dir/$tag.log" | tr '\n' ' ')"
    log "  $why"
    add_row "$scen" "$system" "$conns" "—" "—" "—" "**failed**" "—" "—" "$why"
    return 0
  fi
  local -A R=()
  for kv in ${line#MCPBENCH }; do k=${kv%%=*}; v=${kv#*=}; R[$k]=$v; done
  local sock=$((R[connect] + R[read] + R[write] + R[timeout]))
  local errs=$((R[non200] + R[rpcerr] + R[badtext] + sock))
  local errcell="0" note=""
  if ((errs > 0 || R[requests] == 0)); then
    errcell="**⚠ $errs**"
    ((R[requests] == 0)) && errcell="**⚠ no reply**"
    local parts=()
    ((R[non200])) && parts+=("non-200: ${R[non200]}")
    ((R[rpcerr])) && parts+=("error/isError: ${R[rpcerr]}")
    ((R[badtext])) && parts+=("missing echo text: ${R[badtext]}")
    ((sock)) && parts+=("socket: connect ${R[connect]}, read ${R[read]}, write ${R[write]}, timeout ${R[timeout]}")
    ((R[requests] == 0)) && parts+=("no request completed")
    note=$(IFS=';'; echo "${parts[*]}")
    local bad
    bad=$(grep -m1 '^MCPBENCH_FIRST_BAD ' "$dir/$tag.log" | cut -d' ' -f2- | head -c 300 || true)
    [[ -n $bad ]] && note+="; first bad reply: \`${bad//\`/\'}\`"
  fi
  local rsscell="—"
  if [[ -n $rss_pid ]]; then
    local self tree procs
    read -r self tree procs <<<"$PEAK"
    if ((procs > 1)); then
      rsscell="$(mb "$self") / $(mb "$tree") ($procs procs)"
    else
      rsscell="$(mb "$self")"
    fi
  fi
  local rps_fmt
  rps_fmt=$(awk -v r="${R[rps]}" 'BEGIN { printf "%.0f", r }')
  # one value per round, space-separated; the summaries take the median (median)
  local k="$scen|$system|$conns"
  RES_RPS[$k]+="${R[rps]} "
  RES_P99[$k]+="${R[p99_ms]} "
  RES_P50[$k]+="${R[p50_ms]} "
  RES_CPU[$k]+="$(cpu_us "$cpucell" "${R[rps]}") "
  ((errs > 0 || R[requests] == 0)) && RES_ERR[$k]=1
  add_row "$scen" "$system$ROUND_TAG" "$conns" "$rps_fmt" "$(printf '%.2f' "${R[p50_ms]}")" \
    "$(printf '%.2f' "${R[p99_ms]}")" "$errcell" "$rsscell" "$cpucell" "$note"
  log "  ${rps_fmt} req/s, p50 ${R[p50_ms]} ms, p99 ${R[p99_ms]} ms, errors $errs, RSS $rsscell MB, CPU $cpucell %"
}

skip_row() { # scen system conns reason
  add_row "$1" "$2" "$3" "—" "—" "—" "**not run**" "—" "—" "$4"
}

# ===================================================================== main
[[ $BENCH_SECONDS =~ ^[0-9]+$ && $BENCH_SECONDS -gt 0 ]] || die "BENCH_SECONDS must be a positive integer"
[[ $BENCH_WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be an integer"
[[ $BENCH_S3_SECONDS =~ ^[0-9]+$ && $BENCH_S3_SECONDS -gt 0 ]] || die "BENCH_S3_SECONDS must be a positive integer"
[[ $BENCH_S3_WARMUP =~ ^[0-9]+$ ]] || die "BENCH_S3_WARMUP must be an integer"
[[ $BENCH_S3_ROUNDS =~ ^[0-9]+$ && $BENCH_S3_ROUNDS -gt 0 ]] || die "BENCH_S3_ROUNDS must be a positive integer"
[[ $BENCH_SESSIONS =~ ^[0-9]+$ ]] || die "BENCH_SESSIONS must be an integer"

[[ ${BENCH_SKIP_INSTALL:-} == 1 ]] || install_deps
EVERYTHING_JS="$BENCH_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
[[ -f $EVERYTHING_JS ]] || die "$EVERYTHING_JS missing (npm ci in bench/)"

mkdir -p "$OUT_DIR"
rm -rf "$OUT_DIR/logs"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
log "work dir $TMP; ${BENCH_WARMUP}s warm-up + ${BENCH_SECONDS}s per row; conns: $BENCH_CONNS"

# S1 upstream: nginx + njs
start_nginx upstream-njs "$BENCH_DIR/upstream-njs/nginx.conf.in"
UP_PID=$NGX_PID; UP_PORT=$NGX_PORT
UP_URL="http://127.0.0.1:$UP_PORT/mcp"
# the upstream must answer an echo call before anything is measured
probe=$(curl -s --max-time 5 "$UP_URL" -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"probe"}}}' || true)
[[ $probe == *'Echo: probe'* ]] || die "njs upstream does not answer tools/call: $probe"

# baseline proxy: a separate nginx with proxy_pass
start_nginx nginx-proxy "$BENCH_DIR/nginx-proxy/nginx.conf.in" "$UP_PORT"
PX_PID=$NGX_PID; PX_PORT=$NGX_PORT

write_servers_json "$TMP/servers.json" "$UP_URL" "$EVERYTHING_JS" "$TMP"

GH_VERSION="(not run)"
[[ -x $GATEHOUSE_BIN ]] && GH_VERSION=$(timeout 5 "$GATEHOUSE_BIN" --version 2>&1 | head -n1 || true)

# ---- memory: idle RSS and RSS added by BENCH_SESSIONS idle sessions (own instance)
MEM_IDLE="—"; MEM_AFTER="—"; MEM_ADDED="—"; MEM_NOTE=""
if ((BENCH_SESSIONS > 0)); then
  if start_gatehouse memory; then
    sleep 1 # let start-up allocations settle before the idle reading
    rss_kb "$GH_PID"; idle_kb=$RSS_KB
    MEM_IDLE=$(mb "$idle_kb")
    log "gatehouse idle RSS ${MEM_IDLE} MB; opening $BENCH_SESSIONS sessions on $BENCH_SESSIONS_PATH"
    peak_reset "$GH_PID"
    sess_out=$(MCP_AUTHORIZATION="Bearer $GH_KEY" timeout 300 node "$BENCH_DIR/sessions.js" \
      --url "http://127.0.0.1:$GH_PORT$BENCH_SESSIONS_PATH" \
      --count "$BENCH_SESSIONS" --concurrency 32 --deadline-s 240 --protocol "$MCP_PROTOCOL_VERSION" 2>&1) || true
    peak_read "$GH_PID"; read -r peak_kb _ _ <<<"$PEAK"
    sleep 1
    rss_kb "$GH_PID"; after_kb=$RSS_KB
    ok=$(node -e 'try{console.log(JSON.parse(process.argv[1]).ok)}catch{console.log(0)}' "$sess_out")
    secs=$(node -e 'try{console.log(JSON.parse(process.argv[1]).seconds)}catch{console.log("?")}' "$sess_out")
    MEM_AFTER=$(mb "$after_kb")
    MEM_ADDED=$(mb $((after_kb - idle_kb)))
    if ((ok > 0)); then
      per=$(awk -v a=$((after_kb - idle_kb)) -v n="$ok" 'BEGIN { printf "%.1f", a / n }')
    else
      per="—"
    fi
    MEM_NOTE="$ok of $BENCH_SESSIONS sessions opened in ${secs} s (initialize + notifications/initialized, 32 at a time, keep-alive) on $BENCH_SESSIONS_PATH; peak during creation $(mb "$peak_kb") MB; ≈ $per kB per session"
    if [[ $ok != "$BENCH_SESSIONS" ]]; then
      MEM_NOTE+="; **⚠ failures**: $(node -e 'try{const o=JSON.parse(process.argv[1]);console.log(o.failed+" failed, first: "+o.first_failure)}catch{console.log(process.argv[1].slice(0,300))}' "$sess_out")"
    fi
    log "after sessions: RSS ${MEM_AFTER} MB (+${MEM_ADDED} MB); $MEM_NOTE"
    stop_group "$GH_PID" 5; forget_pid "$GH_PID"
  else
    MEM_NOTE="not run: gatehouse $GH_PROBLEM"
    log "memory test: $MEM_NOTE"
  fi
fi

# ---- load: gatehouse instance used by all gatehouse rows
GH_LOAD_OK=0
if [[ " $BENCH_SCENARIOS " != *" S1 "* && " $BENCH_SCENARIOS " != *" S2 "* && " $BENCH_SCENARIOS " != *" S4 "* ]]; then
  : # S3 alone: its own instances only
elif start_gatehouse load; then
  GH_LOAD_OK=1; GHL_PID=$GH_PID; GHL_PORT=$GH_PORT; GHL_AUTH="Bearer $GH_KEY"
else
  log "gatehouse rows not run: $GH_PROBLEM"
fi
# S1's second Gatehouse row: the same hop with analytics off (nginx's access log is off too), so the report
# tells the gateway's own cost from that of recording every request on the same two cores.
GHN_SYS="gatehouse, analytics off"
GHN_OK=0
if [[ " $BENCH_SCENARIOS " == *" S1 "* && $BENCH_S1_ANALYTICS_OFF == 1 ]]; then
  if start_gatehouse load-analytics-off ENABLE_API_ANALYTICS=false; then
    GHN_OK=1; GHN_PID=$GH_PID; GHN_PORT=$GH_PORT; GHN_AUTH="Bearer $GH_KEY"
  else
    log "S1 $GHN_SYS row not run: $GH_PROBLEM"
  fi
fi

# ---- S3: one fresh instance per configuration, started when S3 begins
S3_STARTED=0
declare -A S3_PID S3_BASE S3_AUTH S3_PROBLEM
declare -A S3_SYS=(
  [off]="gatehouse, limits + analytics off"
  [on]="gatehouse, limits + analytics on (SQLite)"
  [pg]="gatehouse, limits + analytics on (PostgreSQL)"
  [limits]="gatehouse, limits only"
  [analytics]="gatehouse, analytics only (SQLite)"
)
S3_CFGS=()
for cfg in $BENCH_S3_CONFIGS; do
  [[ -n ${S3_SYS[$cfg]:-} ]] || die "BENCH_S3_CONFIGS: unknown configuration $cfg (off on pg limits analytics)"
  [[ $cfg == pg && $BENCH_PG == 0 ]] && continue
  S3_CFGS+=("$cfg")
done
start_s3() {
  local cfg
  S3_STARTED=1
  for cfg in "${S3_CFGS[@]}"; do
    local -a envs=()
    case $cfg in
    off) envs=(RATE_LIMIT_ENABLED=false ENABLE_API_ANALYTICS=false) ;;
    on) envs=(RATE_LIMIT_ENABLED=true ENABLE_API_ANALYTICS=true) ;;
    limits) envs=(RATE_LIMIT_ENABLED=true ENABLE_API_ANALYTICS=false) ;;
    analytics) envs=(RATE_LIMIT_ENABLED=false ENABLE_API_ANALYTICS=true) ;;
    pg)
      if [[ $BENCH_PG == 0 ]]; then S3_PROBLEM[pg]="BENCH_PG=0"; continue; fi
      if [[ -z $PG_URL ]] && ! start_pg; then S3_PROBLEM[pg]=$PG_PROBLEM; log "S3 PostgreSQL row not run: $PG_PROBLEM"; continue; fi
      envs=(RATE_LIMIT_ENABLED=true ENABLE_API_ANALYTICS=true DATABASE_URL="$PG_URL") ;;
    esac
    if start_gatehouse "s3-$cfg" "${envs[@]}"; then
      S3_PID[$cfg]=$GH_PID; S3_BASE[$cfg]="http://127.0.0.1:$GH_PORT"; S3_AUTH[$cfg]="Bearer $GH_KEY"
    else
      S3_PROBLEM[$cfg]="gatehouse: $GH_PROBLEM"; log "S3 $cfg not run: $GH_PROBLEM"
    fi
  done
}
run_s3() { # cfg system conns
  local cfg=$1 system=$2 c=$3 pid=${S3_PID[$1]:-}
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    local mbase=""
    [[ $cfg == limits || $cfg == off ]] || mbase=${S3_BASE[$cfg]}
    run_row S3 "$system" "${S3_BASE[$cfg]}/mcp/fast" "$c" "$pid" "${S3_AUTH[$cfg]}" "$mbase"
  else
    skip_row S3 "$system" "$c" "${S3_PROBLEM[$cfg]:-gatehouse not running (exited during the run)}"
  fi
}

run_proxy_row() { # nginx|gatehouse|analytics-off conns [scenario, default S1]
  local scen=${3:-S1}
  case $1 in
  nginx) run_row "$scen" "nginx proxy_pass" "http://127.0.0.1:$PX_PORT/mcp" "$2" "$PX_PID" ;;
  gatehouse)
    if ((GH_LOAD_OK)) && kill -0 "$GHL_PID" 2>/dev/null; then
      run_row "$scen" "gatehouse" "http://127.0.0.1:$GHL_PORT/mcp/fast" "$2" "$GHL_PID" "$GHL_AUTH"
    else
      skip_row "$scen" gatehouse "$2" "gatehouse: ${GH_PROBLEM:-not running (exited during the run)}"
    fi ;;
  analytics-off)
    ((GHN_OK)) || return 0
    if kill -0 "$GHN_PID" 2>/dev/null; then
      run_row "$scen" "$GHN_SYS" "http://127.0.0.1:$GHN_PORT/mcp/fast" "$2" "$GHN_PID" "$GHN_AUTH"
    else
      skip_row "$scen" "$GHN_SYS" "$2" "gatehouse not running (exited during the run)"
    fi ;;
  esac
}

# The rows a round compares, in the given order in odd rounds and reversed in even ones, so that none always
# runs on the heels of another (a slow spell, or what the previous row left running, hits them alike).
in_turn() { # round item... -> TURN
  local round=$1 i
  shift
  TURN=()
  if ((round % 2)); then TURN=("$@"); else for ((i = $#; i >= 1; i--)); do TURN+=("${!i}"); done; fi
}

for scen in $BENCH_SCENARIOS; do
  rounds=$BENCH_ROUNDS; ROW_SECONDS=""; ROW_WARMUP=""; ROW_MESSAGE=""
  [[ $scen == S3 ]] && { rounds=$BENCH_S3_ROUNDS; ROW_SECONDS=$BENCH_S3_SECONDS; ROW_WARMUP=$BENCH_S3_WARMUP; }
  [[ $scen == S4 ]] && ROW_MESSAGE=$S4_MESSAGE
  for c in $BENCH_CONNS; do
  # Rounds interleave the rows they compare, so a slow spell of the shared machine hits all of them alike.
  for ((round = 1; round <= rounds; round++)); do
    ((rounds > 1)) && ROUND_TAG=" (run $round/$rounds)"
    case $scen in
    S1)
      run_row S1 "direct (njs upstream)" "$UP_URL" "$c" ""
      in_turn "$round" nginx gatehouse analytics-off
      for proxy in "${TURN[@]}"; do run_proxy_row "$proxy" "$c"; done
      ;;
    S4)
      run_row S4 "direct (njs upstream)" "$UP_URL" "$c" ""
      in_turn "$round" nginx gatehouse
      for proxy in "${TURN[@]}"; do run_proxy_row "$proxy" "$c" S4; done
      ;;
    S2)
      if ((GH_LOAD_OK)) && kill -0 "$GHL_PID" 2>/dev/null; then
        run_row S2 "gatehouse (stdio everything)" "http://127.0.0.1:$GHL_PORT/mcp/everything" "$c" "$GHL_PID" "$GHL_AUTH"
      else
        skip_row S2 "gatehouse (stdio everything)" "$c" "gatehouse: ${GH_PROBLEM:-not running (exited during the run)}"
      fi
      ;;
    S3)
      ((S3_STARTED)) || start_s3
      # (the PostgreSQL row leaves its server checkpointing and vacuuming for a while after it)
      in_turn "$round" "${S3_CFGS[@]}"
      for cfg in "${TURN[@]}"; do run_s3 "$cfg" "${S3_SYS[$cfg]}" "$c"; done
      ;;
    *) die "unknown scenario $scen" ;;
    esac
  done
  done
done
ROUND_TAG=""; ROW_SECONDS=""; ROW_WARMUP=""; ROW_MESSAGE=""

if ((GH_LOAD_OK)); then
  if ! kill -0 "$GHL_PID" 2>/dev/null; then
    log "WARNING: gatehouse (load instance) exited during the run; see $OUT_DIR/logs"
  fi
fi

# ------------------------------------------------------------------ report
REPORT="$TMP/results.md"
{
  echo "# Gatehouse benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · $(nproc) cores · $(uname -r) · commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')${GH_WRITER:+ · analytics writer $GH_WRITER}"
  echo
  echo "wrk ${BENCH_THREADS} thread, ${BENCH_WARMUP} s warm-up then ${BENCH_SECONDS} s, keep-alive; POST tools/call \`echo\` with a unique id per request;" \
    "sessions created first (initialize + notifications/initialized), one per connection, used in rotation." \
    "Every reply checked: HTTP 200, no \`\"error\"\`/\`\"isError\":true\`, contains \`$EXPECT\`; errors also count wrk socket errors." \
    "Load generator, upstream and proxy share the same cores: compare within this run." \
    "S3: ${BENCH_S3_WARMUP} s warm-up then ${BENCH_S3_SECONDS} s, $BENCH_S3_ROUNDS rounds."
  echo
  echo "Versions: $(nginx -v 2>&1 | sed 's#nginx version: ##'), njs $(dpkg-query -W -f='${Version}' libnginx-mod-http-js 2>/dev/null || echo '?')," \
    "$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'), node $(node --version)," \
    "server-everything $(node -p 'require(process.argv[1]).version' "$BENCH_DIR/node_modules/@modelcontextprotocol/server-everything/package.json")," \
    "gatehouse: ${GH_VERSION} (\`${GATEHOUSE_BIN#"$ROOT"/}\`)"
  echo
  echo "| scenario | system | conns | req/s | p50 ms | p99 ms | errors | RSS MB peak (proxy / tree) | proxy CPU % |"
  echo "|---|---|---|---|---|---|---|---|---|"
  notes=()
  while IFS=$'\t' read -r s sys c rps p50 p99 err rss cpu note; do
    [[ -n $s ]] || continue
    if [[ -n $note ]]; then
      notes+=("$s $sys, $c conns: $note")
      err+=" [${#notes[@]}]"
    fi
    echo "| $s | $sys | $c | $rps | $p50 | $p99 | $err | $rss | $cpu |"
  done <<<"$ROWS"
  echo
  echo "RSS: Gatehouse rows = the gatehouse process (its peak during the measured run: VmHWM, reset through /proc/PID/clear_refs when the run starts — nothing samples during the run); with child processes (S2: the stdio upstream) also the whole tree and its process count. nginx row = master / master + worker. Proxy CPU: user+system time of that process tree during the measured run, in % of one core (the machine has $(nproc))."
  ((PEAK_SINCE_START)) && echo "RSS caveat: /proc/PID/clear_refs could not be written here, so some peaks are since the process started, not since the run did."
  if ((${#notes[@]})); then
    echo
    for i in "${!notes[@]}"; do echo "[$((i + 1))] ${notes[$i]}"; echo; done
  fi
  for scen in S1 S4; do
    [[ " $BENCH_SCENARIOS " == *" $scen "* ]] || continue
    echo
    if [[ $scen == S1 ]]; then
      echo "## S1: Gatehouse vs nginx proxy_pass"
    else
      echo "## S4: messages of $BENCH_S4_BYTES characters, Gatehouse vs nginx proxy_pass"
      echo
      echo "S1's upstream, nginx and Gatehouse instance; the echo message (and so the answer) is $BENCH_S4_BYTES characters of plain sentences instead of \"$MESSAGE\"."
    fi
    echo
    echo "| conns | Gatehouse | gatehouse req/s | nginx req/s | gatehouse/nginx req/s | paired | gatehouse/direct req/s | gatehouse p99 ms | nginx p99 ms | p99 gatehouse − nginx ms | p99 gatehouse/nginx | paired | CPU µs/req gatehouse / nginx |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for c in $BENCH_CONNS; do
      for gs in gatehouse "$GHN_SYS"; do
        [[ $gs == gatehouse || -n ${RES_RPS["$scen|$gs|$c"]:-} ]] || continue
        label="analytics on (default)"; [[ $gs == gatehouse ]] || label="analytics off"
        g=$(median "${RES_RPS["$scen|$gs|$c"]:-}"); n=$(median "${RES_RPS["$scen|nginx proxy_pass|$c"]:-}"); d=$(median "${RES_RPS["$scen|direct (njs upstream)|$c"]:-}")
        gp=$(median "${RES_P99["$scen|$gs|$c"]:-}"); np=$(median "${RES_P99["$scen|nginx proxy_pass|$c"]:-}")
        flag=""
        if [[ ${RES_ERR["$scen|$gs|$c"]:-0} == 1 || ${RES_ERR["$scen|nginx proxy_pass|$c"]:-0} == 1 ]]; then
          flag=" ⚠ errors"
        fi
        if [[ -n $g && -n $n ]]; then
          echo "| $c$flag | $label | $(printf '%.0f' "$g") | $(printf '%.0f' "$n") | $(ratio "$g" "$n") | $(paired "${RES_RPS["$scen|$gs|$c"]}" "${RES_RPS["$scen|nginx proxy_pass|$c"]}") | $(ratio "$g" "${d:-0}") | $(printf '%.2f' "$gp") | $(printf '%.2f' "$np") | $(awk -v a="$gp" -v b="$np" 'BEGIN { printf "%+.2f", a - b }') | $(ratio "$gp" "$np") | $(paired "${RES_P99["$scen|$gs|$c"]}" "${RES_P99["$scen|nginx proxy_pass|$c"]}" spread) | $(median1 "${RES_CPU["$scen|$gs|$c"]:-}") / $(median1 "${RES_CPU["$scen|nginx proxy_pass|$c"]:-}") |"
        else
          echo "| $c | $label | — | ${n:+$(printf '%.0f' "$n")} | — | — | — | — | ${np:+$(printf '%.2f' "$np")} | — | — | — | — |"
        fi
      done
    done
    echo
    if [[ $scen == S1 ]]; then echo "Each figure is the median of the row's $BENCH_ROUNDS runs (all listed above); **paired** is the median of the $BENCH_ROUNDS per-round ratios (each Gatehouse run against the nginx run of its round; the two take turns going first), the steadier estimate when the machine's speed drifts during the run; for p99 with, in brackets, the middle half of those ratios (25th–75th percentile): where it spans 1.00×, the rounds do not tell the two apart. CPU µs/req: the proxy's CPU time (user + system) per request served — the cost that does not depend on how the 2 shared cores were split between wrk, upstream and proxy."; fi
  done
  echo
  echo "Gatehouse settings: every instance (S1, S2, S3, memory) runs with its own fresh store (SQLite in its temp dir unless said otherwise), rate limiting on with \`RATE_LIMIT_PER_MINUTE=$BENCH_RATE_LIMIT RATE_LIMIT_BURST=$BENCH_RATE_LIMIT\` (in-process limiter; the bench's admin key is never refused — the default 100/min would refuse it after 100 requests) and analytics on (\`ENABLE_API_ANALYTICS\` default), except S1's \"analytics off\" row and the S3 \"off\" rows (nginx's access log is off: it records nothing per request)."
  if [[ " $BENCH_SCENARIOS " == *" S3 "* ]]; then
    echo
    echo "## S3: rate limiting and analytics, on vs off"
    echo
    echo "The S1 Gatehouse row (njs upstream, \`/mcp/fast\` tools/call) on separate fresh instances, taking turns run by run at each connection count:" \
      "**off** = \`RATE_LIMIT_ENABLED=false ENABLE_API_ANALYTICS=false\`; **on (SQLite)** = limiter on (limit $BENCH_RATE_LIMIT/min, never reached) and analytics on into the default SQLite store;" \
      "**on (PostgreSQL)** = the same with \`DATABASE_URL\` on a throwaway local PostgreSQL cluster. Target: on within 5% of off (req/s ratio ≥ 0.95)."
    echo
    echo "| conns | configuration | req/s | req/s vs off | paired | p99 ms | p99 vs off | CPU µs/req | CPU/req vs off | analytics rows written/s |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    s3notes=()
    for c in $BENCH_CONNS; do
      s3_off_listed=0
      o=$(median "${RES_RPS["S3|${S3_SYS[off]}|$c"]:-}"); op=$(median "${RES_P99["S3|${S3_SYS[off]}|$c"]:-}")
      ocpu=$(median "${RES_CPU["S3|${S3_SYS[off]}|$c"]:-}")
      for cfg in off "${S3_CFGS[@]}"; do
        [[ $cfg == off ]] && ((s3_off_listed)) && continue  # off first, once
        [[ $cfg == off ]] && s3_off_listed=1
        sys=${S3_SYS[$cfg]}
        k="S3|$sys|$c"
        r=$(median "${RES_RPS[$k]:-}"); rp=$(median "${RES_P99[$k]:-}")
        if [[ -z $r ]]; then echo "| $c | $sys | not run | | | | | | | |"; continue; fi
        flag=""; [[ ${RES_ERR[$k]:-0} == 1 ]] && flag=" ⚠ errors"
        cu=$(median "${RES_CPU[$k]:-}"); cu=${cu:-—}
        vs="—"; pvs="—"; cvs="—"; pair="—"
        if [[ $cfg != off && -n $o ]]; then
          vs=$(ratio "$r" "$o"); pvs=$(ratio "$rp" "$op"); cvs=$(ratio "$cu" "$ocpu")
          pair=$(paired "${RES_RPS[$k]}" "${RES_RPS["S3|${S3_SYS[off]}|$c"]}" spread)
          # the target is judged on the paired ratio: each run against the "off" run of its own round
          [[ -n $flag ]] || flag=$(awk -v a="${pair%%×*}" 'BEGIN { print (a >= 0.95) ? " ✓" : " ✗ >5% slower" }')
        fi
        aw=$(median "${RES_AW[$k]:-}"); aw=${aw:-—}
        if [[ -n ${RES_AW_NOTE[$k]:-} ]]; then s3notes+=("$sys, $c conns: ${RES_AW_NOTE[$k]}"); aw+=" [a${#s3notes[@]}]"; fi
        echo "| $c | $sys | $(printf '%.0f' "$r") | $vs | $pair$flag | $(printf '%.2f' "$rp") | $pvs | $cu | $cvs | $aw |"
      done
    done
    echo
    echo "Each figure is the median of the configuration's $BENCH_S3_ROUNDS runs of $BENCH_S3_SECONDS s (all listed in the first table; the configurations take turns, run by run, in reverse order every other round); **paired** is the median of the per-round ratios (each run against the \"off\" run of its own round), on which ✓/✗ is judged, and in brackets the middle half of those ratios (25th–75th percentile)."
    echo "req/s and p99 depend on how the 2 shared cores were split between wrk, the upstream and the gateway; CPU µs/req (the gateway's CPU time per request) is the steadier measure of what limits + analytics cost. Analytics rows written/s: \`gatehouse_analytics_written_total\` from \`/metrics\` over the measured run (the writer keeps up when it matches req/s and the queue empties right after)."
    if ((${#s3notes[@]})); then
      echo
      for i in "${!s3notes[@]}"; do echo "[a$((i + 1))] ${s3notes[$i]}"; echo; done
    fi
  fi
  if ((BENCH_SESSIONS > 0)); then
  echo
  echo "## Gatehouse memory"
  echo
  echo "| measure | MB |"
  echo "|---|---|"
  echo "| idle RSS after start (no sessions) | $MEM_IDLE |"
  echo "| RSS with $BENCH_SESSIONS open idle sessions | $MEM_AFTER |"
  echo "| added by $BENCH_SESSIONS idle sessions | $MEM_ADDED |"
  echo
  [[ -n $MEM_NOTE ]] && echo "$MEM_NOTE (a fresh instance, before the load runs)."
  fi
} >"$REPORT"

cp "$REPORT" "$OUT_DIR/results.md"
echo
cat "$REPORT"
log "written $OUT_DIR/results.md (logs in $OUT_DIR/logs)"
