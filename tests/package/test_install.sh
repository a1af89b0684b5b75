#!/usr/bin/env bash
# test_install.sh VERSION - `meson install --destdir` of the build puts
# every file where the others expect it, and never overwrites the
# configuration:
#   - hived in SBINDIR, hive-worker in LIBEXECDIR/hive and nowhere on PATH,
#     hivectl (when the tree has ctl/) in BINDIR with its bash completion;
#     hived's built-in default worker is that path, its default
#     configuration /etc/hive/hive.conf (whatever the prefix);
#   - the unit's ExecStart and ExecReload name that hived and that file;
#     tmpfiles.d makes /etc/hive and the folders the unit uses
#     (/var/lib/hive, /var/log/hive, /run/hive); sysusers.d the user the
#     unit runs as;
#   - the default configuration is installed, valid, starts no agent, and a
#     second install keeps an edited one; the example is in the doc dir;
#   - the man pages, README, NEWS and every docs/*.md are installed.
# Paths are the build's own (meson introspect), whatever its prefix.
set -euo pipefail

want=${1:?usage: test_install.sh VERSION}
src=${HIVE_SOURCE_DIR:?}
build=${HIVE_BUILD_DIR:?}
dest=$(mktemp -d "${HIVE_TEST_TMP:-/tmp}/install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# The build's directories, absolute.
eval "$(meson introspect --buildoptions "$build" | python3 -c '
import json, os, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
p = o["prefix"]
for k in ("sbindir", "bindir", "libexecdir", "mandir", "datadir"):
    print("%s=%s" % (k, os.path.join(p, o[k])))
print("prefix=%s" % p)
')"

meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >"$dest.log" 2>&1 || {
  cat "$dest.log"; rm -f "$dest.log"; bad "meson install failed"; exit 1; }
rm -f "$dest.log"
D=$dest

hived=$sbindir/hived
worker=$libexecdir/hive/hive-worker
confdir=/etc/hive
conf=$confdir/hive.conf
[ -x "$D$hived" ] && ok "$hived" || bad "no executable $hived"
[ -x "$D$worker" ] && ok "$worker" || bad "no executable $worker"
for d in "$bindir" "$sbindir"; do
  [ ! -e "$D$d/hive-worker" ] || bad "hive-worker is on PATH: $d/hive-worker"
done
out=$("$D$hived" --version) && [ "$out" = "hived $want" ] ||
  bad "installed hived --version: '$out'"
# hivectl, when the tree has it: on PATH, with its bash completion.
if [ -f "$src/ctl/meson.build" ]; then
  [ -x "$D$bindir/hivectl" ] && ok "$bindir/hivectl" || bad "no executable $bindir/hivectl"
  [ -s "$D$datadir/bash-completion/completions/hivectl" ] ||
    bad "no $datadir/bash-completion/completions/hivectl"
fi

# hived's defaults, as compiled in.
"$D$hived" --help | grep -qF "(default $conf)" &&
  ok "hived's default configuration is $conf" ||
  bad "hived --help does not name $conf as the default"
grep -qaF "$worker" "$D$hived" &&
  ok "hived's default worker is $worker" ||
  bad "hived does not hold the path $worker"

# The unit.
unit=$D$prefix/lib/systemd/system/hived.service
if [ -f "$unit" ]; then
  grep -qxF "ExecStart=$hived --config $conf" "$unit" &&
    ok "unit: ExecStart=$hived --config $conf" ||
    bad "unit: ExecStart is not '$hived --config $conf': $(grep ^ExecStart= "$unit")"
  grep -qxF "ExecReload=$hived --check-config $conf" "$unit" ||
    bad "unit: no 'ExecReload=$hived --check-config $conf'"
  for k in User=hive Group=hive StateDirectory=hive RuntimeDirectory=hive \
      LogsDirectory=hive WorkingDirectory=/var/lib/hive; do
    grep -qxF "$k" "$unit" || bad "unit: no $k"
  done
else
  bad "no unit at $prefix/lib/systemd/system/hived.service"
fi

# sysusers.d and tmpfiles.d.
su=$D$prefix/lib/sysusers.d/hive.conf
grep -qE '^u hive ' "$su" 2>/dev/null && ok "sysusers.d: user hive" ||
  bad "no 'u hive' line in $prefix/lib/sysusers.d/hive.conf"
tf=$D$prefix/lib/tmpfiles.d/hive.conf
for d in "$confdir:root" /var/lib/hive:hive /var/log/hive:hive /run/hive:hive; do
  path=${d%:*} owner=${d##*:}
  grep -qE "^d $path +0750 $owner hive " "$tf" 2>/dev/null ||
    bad "tmpfiles.d: no 'd $path 0750 $owner hive'"
done
grep -q '@' "$tf" && bad "tmpfiles.d: an unfilled @variable@"
[ "$fail" = 0 ] && ok "tmpfiles.d: $confdir, /var/lib/hive, /var/log/hive, /run/hive"

# The configuration: the default (once), the example.
if cmp -s "$D$conf" "$src/etc/hive.conf.default"; then
  ok "$conf is etc/hive.conf.default"
else
  bad "$conf is missing or not etc/hive.conf.default"
fi
grep -qE '^\[agent' "$D$conf" && bad "the default configuration has an agent"
out=$("$D$hived" --check-config "$D$conf" 2>&1) &&
  [ "$out" = "$D$conf: ok, 0 agents" ] && ok "default: $out" ||
  bad "hived --check-config of the default: $out"
cmp -s "$D$datadir/doc/hive/examples/hive.conf" "$src/etc/hive.conf" &&
  ok "example: $datadir/doc/hive/examples/hive.conf" ||
  bad "no $datadir/doc/hive/examples/hive.conf equal to etc/hive.conf"
for f in hive.rules.yml hive.rules.test.yml; do
  cmp -s "$D$datadir/doc/hive/examples/prometheus/$f" "$src/etc/prometheus/$f" ||
    bad "no $datadir/doc/hive/examples/prometheus/$f equal to etc/prometheus/$f"
done
echo "# edited" >>"$D$conf"
meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >/dev/null 2>&1 ||
  bad "a second meson install failed"
[ "$(tail -n 1 "$D$conf")" = "# edited" ] &&
  ok "a second install keeps the edited $conf" ||
  bad "a second install overwrote $conf"

# Man pages and docs.
for m in man8/hived.8 man8/hive-worker.8 man5/hive.conf.5; do
  [ -s "$D$mandir/$m" ] || bad "no $mandir/$m"
done
if [ -f "$src/man/hivectl.1.scd" ]; then
  [ -s "$D$mandir/man1/hivectl.1" ] || bad "no $mandir/man1/hivectl.1"
fi
for f in README.md NEWS "$src"/docs/*.md; do
  [ -s "$D$datadir/doc/hive/$(basename "$f")" ] ||
    bad "no $datadir/doc/hive/$(basename "$f")"
done
[ "$fail" = 0 ] && ok "man pages and docs installed"
exit $fail
