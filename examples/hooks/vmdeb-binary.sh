#!/bin/sh
# Customisation hook of vmdeb-container.yaml: puts the vmdeb binary into
# the image as /usr/local/bin/vmdeb. vmdeb runs it as `vmdeb-binary.sh
# ROOTFS`; the binary is the one `make vmdeb` leaves at the top of the
# source tree, beside examples/ (static, so it runs in any image). It is
# run once in the image, so that a binary that cannot run there fails the
# build rather than the container.
set -eu
rootfs="$1"
bin="$VMDEB_CONFIG_DIR/../vmdeb"
if [ ! -x "$bin" ]; then
	echo "vmdeb-binary.sh: $bin is not there: run make vmdeb in the source tree first" >&2
	exit 1
fi
install -D -m 0755 "$bin" "$rootfs/usr/local/bin/vmdeb"
chroot "$rootfs" /usr/local/bin/vmdeb --version
