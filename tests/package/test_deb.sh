#!/usr/bin/env bash
# test_deb.sh VERSION - the committed tree builds a .deb, as a packager
# would build it: `dpkg-buildpackage -us -uc -b` in a clean copy (git
# archive HEAD of $HIVE_SOURCE_DIR; the source folder without build
# folders when it is not a git checkout), in a temporary folder.  Then:
#   - dpkg -c lists hived in /usr/sbin, hive-worker in /usr/libexec/hive,
#     the unit, the sysusers.d and tmpfiles.d files, the man pages, the
#     docs, the example and the default configuration, the Prometheus
#     rules (hivectl, its page
#     and its bash completion too when the tree has ctl/);
#   - /etc/hive/hive.conf is a conffile, and is etc/hive.conf.default,
#     which the packaged hived takes (0 agents); the packaged programs
#     print VERSION;
#   - Depends comes from dpkg-shlibdeps (libhiredis, libpq, ...);
#   - postinst creates the user (systemd-sysusers) before its folders
#     (systemd-tmpfiles), and enables nothing unless it was enabled before;
#     the two, run on the unpacked package (--root), make the user hive
#     and /etc/hive, /var/lib/hive, /var/log/hive, /run/hive as the unit
#     wants them;
#   - lintian reports no error.
# Skips (77) only when dpkg-buildpackage, debhelper or lintian is missing
# (scripts/setup installs them).  On 2 idle cores it takes about 25 s.
set -euo pipefail

want=${1:?usage: test_deb.sh VERSION}
src=${HIVE_SOURCE_DIR:?}
for t in dpkg-buildpackage dh lintian fakeroot; do
  command -v "$t" >/dev/null || {
    echo "skip: $t is not installed (scripts/setup installs dpkg-dev, debhelper, fakeroot, lintian)"
    exit 77; }
done

tmp=$(mktemp -d "${HIVE_TEST_TMP:-/tmp}/deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/hive-$want"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$src" archive --format=tar HEAD | tar -xf - -C "$tmp/hive-$want"
  echo "building from git archive HEAD ($(git -C "$src" rev-parse --short HEAD))"
else
  tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . |
    tar -xf - -C "$tmp/hive-$want"
  echo "building from a copy of $src"
fi

start=$(date +%s)
(cd "$tmp/hive-$want" && dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1 || {
  tail -n 60 "$tmp/build.log"; echo "FAIL: dpkg-buildpackage -us -uc -b"; exit 1; }
echo "dpkg-buildpackage: $(( $(date +%s) - start )) s"

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$tmp/hive_${want}_$arch.deb
[ -f "$deb" ] || { ls "$tmp"; echo "FAIL: no $deb"; exit 1; }
fail=0
bad() { echo "FAIL: $*"; fail=1; }

list=$(dpkg -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
expect=(
  /usr/sbin/hived
  /usr/libexec/hive/hive-worker
  /lib/systemd/system/hived.service
  /usr/lib/sysusers.d/hive.conf
  /usr/lib/tmpfiles.d/hive.conf
  /usr/share/man/man8/hived.8.gz
  /usr/share/man/man8/hive-worker.8.gz
  /usr/share/man/man5/hive.conf.5.gz
  /usr/share/doc/hive/examples/hive.conf
  /usr/share/doc/hive/examples/prometheus/hive.rules.yml
  /usr/share/doc/hive/copyright
  /etc/hive/hive.conf
)
if [ -f "$tmp/hive-$want/ctl/meson.build" ]; then
  expect+=(/usr/bin/hivectl /usr/share/bash-completion/completions/hivectl)
fi
if [ -f "$tmp/hive-$want/man/hivectl.1.scd" ]; then
  expect+=(/usr/share/man/man1/hivectl.1.gz)
fi
for f in "${expect[@]}"; do
  printf '%s\n' "$list" | grep -qxF "$f" || bad "the .deb has no $f"
done
# dh_compress gzips the larger ones.
for f in README.md NEWS "$tmp/hive-$want"/docs/*.md; do
  printf '%s\n' "$list" | grep -qE "^/usr/share/doc/hive/$(basename "$f")(\.gz)?\$" ||
    bad "the .deb has no /usr/share/doc/hive/$(basename "$f")"
done
printf '%s\n' "$list" | grep -qE '^/usr/s?bin/hive-worker$' && bad "hive-worker is on PATH"
[ "$fail" = 0 ] && echo "ok: dpkg -c lists the ${#expect[@]} expected files and the docs"

mkdir "$tmp/ctrl" "$tmp/root"
dpkg-deb -e "$deb" "$tmp/ctrl"
dpkg-deb -x "$deb" "$tmp/root"
grep -qxF /etc/hive/hive.conf "$tmp/ctrl/conffiles" && echo "ok: conffile /etc/hive/hive.conf" ||
  bad "/etc/hive/hive.conf is not a conffile"
cmp -s "$tmp/root/etc/hive/hive.conf" "$src/etc/hive.conf.default" ||
  bad "the packaged /etc/hive/hive.conf is not etc/hive.conf.default"
# The packaged programs run, say the version, and take the packaged
# configuration (no agent).
progs=(usr/sbin/hived usr/libexec/hive/hive-worker)
[ -f "$tmp/hive-$want/ctl/meson.build" ] && progs+=(usr/bin/hivectl)
for p in "${progs[@]}"; do
  out=$("$tmp/root/$p" --version 2>&1) && [ "$out" = "$(basename "$p") $want" ] ||
    bad "/$p --version: $out"
done
out=$("$tmp/root/usr/sbin/hived" --check-config "$tmp/root/etc/hive/hive.conf" 2>&1) &&
  [ "$out" = "$tmp/root/etc/hive/hive.conf: ok, 0 agents" ] ||
  bad "the packaged hived --check-config of the packaged hive.conf: $out"
[ "$fail" = 0 ] && echo "ok: the packaged ${progs[*]##*/} are $want; hive.conf: no agent"
dep=$(dpkg-deb -f "$deb" Depends)
libs=(libhiredis libpq5 libev4 libjansson4 libmicrohttpd libsystemd0 libc6)
[ -f "$tmp/hive-$want/ctl/meson.build" ] && libs+=(libcurl)
for l in "${libs[@]}"; do
  [[ $dep == *"$l"* ]] || bad "Depends has no $l: $dep"
done
echo "Depends: $dep"
pi=$tmp/ctrl/postinst
su=$(grep -n 'systemd-sysusers' "$pi" | head -n 1 | cut -d: -f1)
tf=$(grep -n 'systemd-tmpfiles' "$pi" | head -n 1 | cut -d: -f1)
if [ -n "$su" ] && [ -n "$tf" ] && [ "$su" -lt "$tf" ]; then
  echo "ok: postinst runs systemd-sysusers, then systemd-tmpfiles"
else
  bad "postinst does not run systemd-sysusers before systemd-tmpfiles"
fi
# Enabled only again where it was before (was-enabled), started only
# through deb-systemd-invoke, which never starts a disabled unit.
en=$(grep -c 'deb-systemd-helper enable' "$pi" || true)
was=$(grep -c 'deb-systemd-helper --quiet was-enabled' "$pi" || true)
[ "$en" -le "$was" ] || bad "postinst enables hived unconditionally"
grep -nE 'systemctl[^|;]* (enable|start|restart)' "$pi" && bad "postinst calls systemctl to enable or start"
[ "$fail" = 0 ] && echo "ok: postinst enables and starts nothing on a first install"

# What postinst runs, run on the unpacked package as its root: the user
# comes, then the folders with their owners and modes.
if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
  mkdir -p "$tmp/root/etc"
  cp /etc/passwd /etc/group "$tmp/root/etc/"
  grep -q '^hive:' "$tmp/root/etc/passwd" && sed -i '/^hive:/d' "$tmp/root/etc/passwd" "$tmp/root/etc/group"
  systemd-sysusers --root="$tmp/root" hive.conf >/dev/null 2>&1 || bad "systemd-sysusers --root failed"
  uid=$(awk -F: '$1 == "hive" { print $3 }' "$tmp/root/etc/passwd")
  [ -n "$uid" ] || bad "systemd-sysusers made no user hive"
  systemd-tmpfiles --root="$tmp/root" --create hive.conf >/dev/null 2>&1 || bad "systemd-tmpfiles --root failed"
  for d in etc/hive:0:750 etc/hive/agents.d:0:750 var/lib/hive:$uid:750 var/log/hive:$uid:750 run/hive:$uid:750; do
    IFS=: read -r path owner mode <<<"$d"
    got=$(stat -c '%u:%a' "$tmp/root/$path" 2>/dev/null || echo missing)
    [ "$got" = "$owner:$mode" ] || bad "/$path is $got, not $owner:$mode"
  done
  [ "$fail" = 0 ] && echo "ok: sysusers.d makes hive ($uid), tmpfiles.d its folders"
fi

lint=0
out=$(lintian --fail-on error "$tmp"/hive_"${want}"_"$arch".changes 2>&1) || lint=$?
printf '%s\n' "$out" | grep -E '^[EW]: ' || true
if [ "$lint" = 0 ]; then
  echo "ok: lintian: no error"
else
  bad "lintian exited $lint (errors above)"
fi
echo "test_deb: $(( $(date +%s) - start )) s in all"
exit $fail
