#!/usr/bin/env bash
# test_systemd.sh UNIT - the generated hived.service passes
# `systemd-analyze verify` without a word, and
# `systemd-analyze security --offline=true` rates it at most 2.0; and its
# ExecReload commands, run as the unit states them, fail on a bad
# configuration without signalling hived, and signal it on a good one.
#
# verify insists that ExecStart's program exists.  The generated unit names
# the installed hived (@bindir@/hived), which a build tree has not
# installed, so the test checks a copy in a temporary folder whose
# ExecStart and ExecReload name the built hived
# ($HIVE_BUILD_DIR/supervisor/hived) or, if that is not built (yet), an
# executable stand-in script.  Nothing else in the copy changes.  Exits 77
# (skip) if systemd-analyze is missing, or after verify and security if
# hived is not built (ExecReload needs the real one).
set -euo pipefail

unit=${1:?usage: test_systemd.sh path/to/hived.service}
max=2.0

command -v systemd-analyze >/dev/null || {
  echo "skip: systemd-analyze is not installed (package systemd)"; exit 77; }

tmp=$(mktemp -d "${HIVE_TEST_TMP:-/tmp}/systemd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

hived=${HIVE_BUILD_DIR:-}/supervisor/hived
if [ ! -x "$hived" ]; then
  hived=$tmp/hived
  printf '#!/bin/sh\nexit 0\n' >"$hived"
  chmod 755 "$hived"
fi

grep -q '^ExecStart=/[^ ]*/hived ' "$unit" || {
  echo "FAIL: no 'ExecStart=/.../hived ...' line in $unit"; exit 1; }
grep -q '@[a-z]*@' "$unit" && {
  echo "FAIL: unsubstituted @variables@ in $unit"; exit 1; }
sed -E -e "s|^ExecStart=/[^ ]*/hived |ExecStart=$hived |" \
  -e "s|^ExecReload=/[^ ]*/hived |ExecReload=$hived |" \
  "$unit" >"$tmp/hived.service"
echo "checking $unit with ExecStart=$hived"

# verify: any output at all is a finding.
out=$(systemd-analyze verify "$tmp/hived.service" 2>&1) || {
  echo "FAIL: systemd-analyze verify:"; echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "FAIL: systemd-analyze verify is not clean:"; echo "$out"; exit 1
fi
echo "verify: clean"

out=$(systemd-analyze security --offline=true --no-pager "$tmp/hived.service" 2>&1) || true
level=$(printf '%s\n' "$out" | sed -nE 's/.*Overall exposure level for [^:]*: ([0-9]+\.[0-9]+).*/\1/p')
if [ -z "$level" ]; then
  echo "FAIL: no exposure level in the output of systemd-analyze security:"
  echo "$out"; exit 1
fi
printf '%s\n' "$out" | grep -E '^✗' || true
echo "security: exposure level $level (at most $max)"
awk -v l="$level" -v m="$max" 'BEGIN { exit !(l <= m) }' || {
  echo "FAIL: exposure level $level is above $max"; exit 1; }

# ExecReload: each command in turn, as systemd runs them (no shell; words
# split on blanks, $MAINPID its pid), stopping at the first that fails.
# The configuration is the one ExecStart names, here a file in $tmp; the
# main process is a stand-in that SIGHUP ends.
[ -x "${HIVE_BUILD_DIR:-}/supervisor/hived" ] || {
  echo "skip: ExecReload needs the built hived (HIVE_BUILD_DIR)"; exit 77; }
conf=$(sed -nE 's|^ExecStart=[^ ]* .*--config ([^ ]+).*|\1|p' "$unit")
[ -n "$conf" ] || { echo "FAIL: no --config FILE in ExecStart of $unit"; exit 1; }
mapfile -t reload < <(sed -nE 's/^ExecReload=//p' "$tmp/hived.service")
case "${reload[0]:-}" in
  "$hived --check-config $conf") ;;
  *) echo "FAIL: the first ExecReload is not '$hived --check-config $conf':" \
       "'${reload[0]:-}'"; exit 1 ;;
esac

run_reload() {   # run_reload CONFIG MAINPID: the status of the first failure
  local line argv
  for line in "${reload[@]}"; do
    line=${line//"$conf"/$1}
    line=${line//\$MAINPID/$2}
    read -ra argv <<<"$line"
    "${argv[@]}" || return
  done
}

mkdir "$tmp/etc"
sleep 300 & main=$!
trap 'kill "$main" 2>/dev/null || true; rm -rf "$tmp"' EXIT
printf '[hive]\nredis = localhost\n' >"$tmp/etc/hive.conf"
if out=$(run_reload "$tmp/etc/hive.conf" "$main" 2>&1); then
  kill "$main" 2>/dev/null || true
  echo "FAIL: ExecReload succeeded on a bad configuration:"; echo "$out"; exit 1
fi
kill -0 "$main" 2>/dev/null || {
  echo "FAIL: ExecReload signalled hived on a bad configuration"; exit 1; }
printf '%s\n' "$out" | grep -q 'redis: expected' || {
  echo "FAIL: ExecReload did not say what is wrong:"; echo "$out"; exit 1; }
echo "ExecReload, bad configuration: fails, nothing signalled"

printf '[hive]\nredis = 127.0.0.1:6379\n' >"$tmp/etc/hive.conf"
out=$(run_reload "$tmp/etc/hive.conf" "$main" 2>&1) || {
  kill "$main" 2>/dev/null || true
  echo "FAIL: ExecReload failed on a good configuration:"; echo "$out"; exit 1; }
st=0; wait "$main" 2>/dev/null || st=$?
[ "$st" -eq $((128 + 1)) ] || {
  echo "FAIL: the main process ended with $st, not by SIGHUP (129)"; exit 1; }
echo "ExecReload, good configuration: checked, then SIGHUP"
