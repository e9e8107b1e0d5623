#!/bin/sh
# Customisation hook of Debian's "standard" live image (configs/standard*.yaml).
# vmdeb runs it as `standard.sh ROOTFS` after the config's packages are in;
# the shared steps live in lib/live.sh.
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/live.sh"

live_common "$rootfs" standard

