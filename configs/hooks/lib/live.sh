# Functions shared by the hooks of Debian's live image types. A hook
# sources this file and calls what it needs; vmdeb runs the hook as
# `HOOK ROOTFS` on the build host, with /proc, /sys and /dev mounted in
# ROOTFS and apt pointed at the build mirror (see README, "Hooks").
#
#	. "$(dirname "$0")/lib/live.sh"

# in_chroot ROOTFS CMD...: run a command inside the image, as apt and
# debconf expect it there (no questions, C locale).
in_chroot() {
	_root="$1"; shift
	LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
		chroot "$_root" "$@"
}

# install_packages ROOTFS PKG...: install with apt, Recommends included,
# as Debian's live images and its installer's tasks do.
install_packages() {
	_root="$1"; shift
	[ $# -gt 0 ] || return 0
	echo "hook: installing $*"
	in_chroot "$_root" apt-get -y -q -o APT::Install-Recommends=true \
		-o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold install "$@"
}

# available ROOTFS PKG: true when the build's archive offers PKG for the
# image's architecture (tasks differ between suites and architectures).
available() {
	in_chroot "$1" apt-cache show --no-all-versions "$2" >/dev/null 2>&1
}

# install_available ROOTFS PKG...: install those of PKG... that the
# archive has; name the others, so a missing one is seen, not hidden.
install_available() {
	_root="$1"; shift
	_have=""
	for _p in "$@"; do
		if available "$_root" "$_p"; then
			_have="$_have $_p"
		else
			echo "hook: $_p is not in $VMDEB_SUITE for $VMDEB_ARCH; skipped"
		fi
	done
	# shellcheck disable=SC2086 # a list of package names
	install_packages "$_root" $_have
}

# has_component ROOTFS COMPONENT: true when the build uses the archive
# component (from the config's components, as the build's sources list
# them while the hook runs).
has_component() {
	if [ -n "${VMDEB_COMPONENTS:-}" ]; then
		case " $VMDEB_COMPONENTS " in *" $2 "*) return 0 ;; esac
		return 1
	fi
	grep -hqs "^deb .* $2\( \|\$\)" "$1/etc/apt/sources.list" "$1"/etc/apt/sources.list.d/*.list
}

# enable_service ROOTFS UNIT...: enable systemd units offline.
enable_service() {
	_root="$1"; shift
	in_chroot "$_root" systemctl enable "$@"
}

# disable_service ROOTFS UNIT...: disable systemd units offline.
disable_service() {
	_root="$1"; shift
	in_chroot "$_root" systemctl disable "$@"
}

# set_default_locale ROOTFS LOCALE: generate LOCALE and make it the
# system's default; the boot menu's locales= still overrides it.
set_default_locale() {
	_root="$1"; _loc="$2"
	# Without the locales package there is nothing to generate, and a
	# LANG naming a missing locale would only make programs complain.
	[ -f "$_root/etc/locale.gen" ] || return 0
	sed -i "s/^# *\($_loc .*\)/\1/" "$_root/etc/locale.gen"
	in_chroot "$_root" locale-gen
	printf 'LANG=%s\n' "$_loc" > "$_root/etc/default/locale"
}

# mark_image ROOTFS FLAVOUR: record which hook made the image, for tests
# and for people asking what a medium is.
mark_image() {
	printf 'hook=%s\narch=%s\nsuite=%s\n' "$2" "$VMDEB_ARCH" "$VMDEB_SUITE" > "$1/etc/vmdeb-hook"
}

# set_motd ROOTFS FLAVOUR: the greeting on the console.
set_motd() {
	cat > "$1/etc/motd" <<MOTD

This is Debian $VMDEB_SUITE live ($2, $VMDEB_ARCH), built by vmdeb.
Log in as "user" with the password "live"; sudo works.

MOTD
}

# live_common ROOTFS FLAVOUR: what every image type does. The wireless
# tools, the firmware and Calamares are in the configs' packages
# (base/live.yaml, base/firmware.yaml), where the stage cache keeps them.
live_common() {
	mark_image "$1" "$2"
	set_motd "$1" "$2"
	set_default_locale "$1" en_US.UTF-8
}
