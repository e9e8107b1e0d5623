#!/bin/sh
# Customisation hook of Debian's "lxde" live image (configs/lxde*.yaml).
# vmdeb runs it as `lxde.sh ROOTFS` after the config's packages are in;
# the shared steps live in lib/live.sh.
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/live.sh"

live_common "$rootfs" lxde
