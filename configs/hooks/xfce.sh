#!/bin/sh
# Customisation hook of Debian's "xfce" live image (configs/xfce*.yaml).
# vmdeb runs it as `xfce.sh ROOTFS` after the config's packages are in;
# the shared steps live in lib/live.sh.
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/live.sh"

live_common "$rootfs" xfce
