# Helpers shared by bench/run.sh, bench/instructions.sh and bench/micro.sh (sourced, not run).

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
