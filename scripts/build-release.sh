#!/usr/bin/env bash
# The release build (`make release`; `make bench` measures it): Release (-O3) with profile-guided optimisation.
# 1. build-release with GATEHOUSE_PGO=generate: an instrumented gatehouse;
# 2. bench/pgo-train.sh runs it through the gateway's request paths and stops it, which writes the counts;
# 3. the same directory with GATEHOUSE_PGO=use: every target compiled with the counts.
# Twice a full compile plus ~20 s of training (about 8 minutes on 2 cores). Needs the bench's tools
# (scripts/install-deps.sh build bench; npm ci in bench/). RELEASE_DIR (default build-release) and
# RELEASE_CMAKE_FLAGS (default -DGATEHOUSE_BENCH=ON -DGATEHOUSE_TESTS=OFF) to change the directory and add settings.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=${RELEASE_DIR:-build-release}
flags=(-G Ninja -DCMAKE_BUILD_TYPE=Release ${RELEASE_CMAKE_FLAGS:--DGATEHOUSE_BENCH=ON -DGATEHOUSE_TESTS=OFF})
profile="$(pwd)/$dir/pgo-profile"
[[ -d bench/node_modules/@modelcontextprotocol/server-everything ]] ||
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)
rm -rf "$profile"
cmake -S . -B "$dir" "${flags[@]}" -DGATEHOUSE_PGO=generate -DGATEHOUSE_PGO_DIR="$profile"
cmake --build "$dir" --target gatehouse
bench/pgo-train.sh "$dir/gatehouse"
cmake -S . -B "$dir" "${flags[@]}" -DGATEHOUSE_PGO=use -DGATEHOUSE_PGO_DIR="$profile"
cmake --build "$dir"
echo "release build: $dir/gatehouse (profile-guided: $(find "$profile" -name '*.gcda' | wc -l) objects' counts)"
