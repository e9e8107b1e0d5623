# Shared functions for customisation hooks; source it from a hook with
#   . "$(dirname "$0")/lib/common.sh"

# mark_image ROOTFS FLAVOUR: record which hook made the image.
mark_image() {
	printf 'hook=%s\narch=%s\nsuite=%s\n' "$2" "$VMDEB_ARCH" "$VMDEB_SUITE" > "$1/etc/vmdeb-hook"
}

# in_chroot ROOTFS CMD...: run a command inside the image.
in_chroot() {
	root="$1"; shift
	chroot "$root" "$@"
}
