#!/bin/sh
# Customisation hook of Debian's "cinnamon" live image (configs/cinnamon*.yaml).
# vmdeb runs it as `cinnamon.sh ROOTFS` after the config's packages are in;
# the shared steps live in lib/live.sh.
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/live.sh"

live_common "$rootfs" cinnamon
