#!/usr/bin/env bash
# test_systemd.sh UNIT - the generated hived.service passes
# `systemd-analyze verify` without a word, and
# `systemd-analyze security --offline=true` rates it at most 2.0.
#
# verify insists that ExecStart's program exists.  The generated unit names
# the installed hived (@bindir@/hived), which a build tree has not
# installed, so the test checks a copy in a temporary folder whose
# ExecStart names the built hived ($HIVE_BUILD_DIR/supervisor/hived) or, if
# that is not built (yet), an executable stand-in script.  Nothing else in
# the copy changes.  Exits 77 (skip) only if systemd-analyze is missing.
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
sed -E "s|^ExecStart=/[^ ]*/hived |ExecStart=$hived |" "$unit" >"$tmp/hived.service"
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
