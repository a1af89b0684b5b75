#!/usr/bin/env bash
# bench/restart.sh - hived's restart latency, RSS and idle CPU against a
# private Redis, beside a bare fork+exec+wait measured in the same run
# (see bench/restart.c).
#
#   bench/restart.sh [-k KILLS] [-n INSTANCES] [-m MEMORY_BYTES]
#   HIVE_BENCH_BUILD=DIR   build directory (default build-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/services.sh

bdir=${HIVE_BENCH_BUILD:-build-bench}
if [ ! -f "$bdir/build.ninja" ]; then
  meson setup "$bdir" -Dtests=disabled >"$bdir.setup.log" 2>&1 || { cat "$bdir.setup.log" >&2; exit 1; }
fi
ninja -C "$bdir" bench/bench_restart bench/restart_handler supervisor/hived \
  worker/hive-worker >/dev/null

tmp=$(mktemp -d /tmp/hive-bench.XXXXXX)
trap 'services_stop; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
services_start_redis "$tmp"

HIVED=$PWD/$bdir/supervisor/hived HIVE_WORKER=$PWD/$bdir/worker/hive-worker \
  RESTART_HANDLER=$PWD/$bdir/bench/restart_handler \
  "$bdir/bench/bench_restart" "$@"
