#!/bin/sh
# install-default-conf.sh SRC DIR - meson's install script for the default
# configuration: SRC becomes DIR/hive.conf (under $DESTDIR) only when no
# hive.conf is there.  An administrator's file is never overwritten, by a
# second `meson install` or any later one.
set -eu
src=$1
dir=${DESTDIR:-}$2
dst=$dir/hive.conf

if [ -e "$dst" ] || [ -L "$dst" ]; then
	echo "Keeping $dst (it exists; the default is $src)"
	exit 0
fi
[ -n "${MESON_INSTALL_DRY_RUN:-}" ] && { echo "Would install $src to $dst"; exit 0; }
echo "Installing $src to $dst"
mkdir -p "$dir"
install -m 0644 "$src" "$dst"
