#!/bin/sh
# Customisation hook: vmdeb runs it as `minimal.sh ROOTFS` on the build
# host, with /proc, /sys and /dev mounted in ROOTFS. VMDEB_* variables
# describe the build (see README).
set -eu
rootfs="$1"
. "$(dirname "$0")/lib/common.sh"

# One marker so tests (and people) can see the hook ran, and for which
# architecture.
mark_image "$rootfs" "minimal"

# Show the live user a short greeting at login.
cat > "$rootfs/etc/motd" <<EOF

This is $VMDEB_NAME, a Debian $VMDEB_SUITE live system for $VMDEB_ARCH.
Log in as "user" (password "live"); sudo works.

EOF
