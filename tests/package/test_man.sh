#!/usr/bin/env bash
# test_man.sh HIVED HIVE_WORKER - the man pages are true to the programs
# and well formed:
#   - every option the program's usage names (--help) is in its page
#     (hived.8, hive-worker.8; hivectl.1 when it is built), and every
#     option a page describes is one the program has;
#   - each built page renders with man(1) without a warning, and has no
#     @variable@ left unfilled.
# The keys of hive.conf.5 are held to config.c by test_man_keys.c.
set -euo pipefail

hived=${1:?usage: test_man.sh HIVED HIVE_WORKER}
worker=${2:?usage: test_man.sh HIVED HIVE_WORKER}
src=${HIVE_SOURCE_DIR:?}
build=${HIVE_BUILD_DIR:?}
fail=0

# The long options in a text: --word, from usage lines or *--word* in scdoc.
opts() { grep -oE -- '--[a-z][a-z-]+' | sort -u; }

check_opts() {  # check_opts PAGE USAGE-TEXT
  local page=$1 usage=$2 o
  local in_usage in_page
  in_usage=$(printf '%s\n' "$usage" | opts)
  # The options a page describes: its OPTIONS section's entries.
  in_page=$(sed -n '/^# OPTIONS/,/^# /p' "$src/man/$page.scd" | grep -E '^\*' | opts)
  for o in $in_usage; do
    grep -qF -- "*$o*" "$src/man/$page.scd" || {
      echo "FAIL: $page does not describe $o"; fail=1; }
  done
  for o in $in_page; do
    printf '%s\n' "$in_usage" | grep -qxF -- "$o" || {
      echo "FAIL: $page describes $o, which the program's usage does not name"; fail=1; }
  done
  echo "$page: $(printf '%s\n' "$in_usage" | wc -l) options checked"
}

check_opts hived.8 "$("$hived" --help)"
# hive-worker's usage goes to stderr, with exit 2.
check_opts hive-worker.8 "$("$worker" --help 2>&1 || true)"
if [ -f "$src/man/hivectl.1.scd" ] && [ -x "$build/ctl/hivectl" ]; then
  check_opts hivectl.1 "$("$build/ctl/hivectl" --help 2>&1 || true)"
fi

command -v man >/dev/null || { echo "skip: man(1) is not installed (package man-db)"; exit 77; }
pages=("$build"/man/*.[158])
[ ${#pages[@]} -ge 3 ] || { echo "FAIL: fewer than 3 pages built in $build/man"; exit 1; }
for p in "${pages[@]}"; do
  if grep -nE '@[a-z_]+@' "$p"; then
    echo "FAIL: $p has an unfilled @variable@"; fail=1
  fi
  err=$(MANWIDTH=80 man --warnings -l "$p" 2>&1 >/dev/null) || {
    echo "FAIL: man -l $p failed: $err"; fail=1; continue; }
  if [ -n "$err" ]; then
    echo "FAIL: man --warnings -l $p:"; echo "$err"; fail=1
  else
    echo "ok: $(basename "$p") renders without a warning"
  fi
done
exit $fail
