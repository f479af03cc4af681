#!/usr/bin/env bash
# Installs the Debian packages Gatehouse needs to build, test and benchmark (only those missing).
# Usage: scripts/install-deps.sh [build|test|bench]...   (default: build)
set -euo pipefail
want=(cmake ninja-build g++ ccache pkg-config libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
      libssl-dev libsqlite3-dev libpq-dev libhiredis-dev libtcmalloc-minimal4 libgtest-dev libgmock-dev)
for extra in "$@"; do
  case "$extra" in
    build) ;;
    test) want+=(postgresql redis-server chromium sqlite3) ;;
    bench) want+=(wrk nginx-light libnginx-mod-http-js libbenchmark-dev) ;;
    *) echo "install-deps: unknown set '$extra'" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from another packaging (it brings npm along): judge it by its commands.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
