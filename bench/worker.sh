#!/usr/bin/env bash
# bench/worker.sh - hive-worker's throughput (1 and 2 agents) and its RSS
# under hived (8 and 500 agents) against a private Redis, with the
# ceilings measured in the same run (see bench_worker.c).
#
#   bench/worker.sh [-n TASKS] [-e EXEC_TASKS] [-c CONCURRENCY] [-a AGENTS,...] [-s]
#   HIVE_BENCH_BUILD=DIR   build directory (default build-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/services.sh

bdir=${HIVE_BENCH_BUILD:-build-bench}
if [ ! -f "$bdir/build.ninja" ]; then
  meson setup "$bdir" -Dtests=disabled >"$bdir.setup.log" 2>&1 || { cat "$bdir.setup.log" >&2; exit 1; }
fi
ninja -C "$bdir" bench/bench_worker worker/hive-worker examples/hive-echo \
  supervisor/hived >/dev/null

tmp=$(mktemp -d /tmp/hive-bench.XXXXXX)
trap 'services_stop; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
services_start_redis "$tmp"

HIVE_WORKER=$PWD/$bdir/worker/hive-worker HIVE_ECHO=$PWD/$bdir/examples/hive-echo \
  HIVED=$PWD/$bdir/supervisor/hived "$bdir/bench/bench_worker" "$@"
