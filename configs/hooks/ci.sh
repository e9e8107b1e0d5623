#!/bin/sh
# Customisation hook of the reduced CI image (configs/ci/live-installer.yaml):
# the steps every image type shares, minus what needs task packages.
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/live.sh"

mark_image "$rootfs" ci
set_motd "$rootfs" ci
