#!/bin/sh
# Customisation hook of Debian's "mate" live image (configs/mate*.yaml).
# vmdeb runs it as `mate.sh ROOTFS` after the config's packages are in;
# the shared steps live in lib/live.sh.
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/live.sh"

live_common "$rootfs" mate
