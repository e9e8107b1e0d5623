#!/bin/sh
# Customisation hook of Debian's "gnome" live image (configs/gnome*.yaml).
# vmdeb runs it as `gnome.sh ROOTFS` after the config's packages are in;
# the shared steps live in lib/live.sh.
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/live.sh"

live_common "$rootfs" gnome
# GNOME's first-login wizard: a live session has nobody to answer it.
rm -f "$rootfs/etc/xdg/autostart/gnome-initial-setup-first-login.desktop"
