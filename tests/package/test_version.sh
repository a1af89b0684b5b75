#!/usr/bin/env bash
# test_version.sh VERSION PROGRAM... - every program's --version prints
# "NAME VERSION", VERSION being meson's project version (meson.build passes
# it), and debian/changelog's first entry is that version.  hivectl is
# checked too when the build has it ($HIVE_BUILD_DIR/ctl/hivectl).
set -euo pipefail

want=${1:?usage: test_version.sh VERSION PROGRAM...}
shift
progs=("$@")
[ -x "${HIVE_BUILD_DIR:-}/ctl/hivectl" ] && progs+=("$HIVE_BUILD_DIR/ctl/hivectl")
[ ${#progs[@]} -ge 2 ] || { echo "FAIL: no programs given"; exit 1; }

fail=0
for p in "${progs[@]}"; do
  name=$(basename "$p")
  out=$("$p" --version) || { echo "FAIL: $name --version exited $?"; fail=1; continue; }
  if [ "$out" = "$name $want" ]; then
    echo "ok: $name --version: $out"
  else
    echo "FAIL: $name --version printed '$out', not '$name $want'"; fail=1
  fi
done

cl=${HIVE_SOURCE_DIR:?}/debian/changelog
got=$(sed -nE '1s/^hive \(([^)]*)\).*/\1/p' "$cl")
if [ "$got" = "$want" ]; then
  echo "ok: debian/changelog: $got"
else
  echo "FAIL: debian/changelog's first entry is '$got', not '$want'"; fail=1
fi
exit $fail
