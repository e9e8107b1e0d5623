#!/bin/bash
# Builds Debian's "standard" live image twice in one run, one after the
# other: with `vmdeb build --no-cache configs/standard.yaml`, and with
# live-build (lb config + lb build) from the same suite, mirror, archive
# areas and package set. Records wall time, peak memory (/usr/bin/time -v)
# and the ISO's size of each. Needs root; installs live-build and time when
# missing.
# Usage: bench/livebuild.sh [ORDER]   ORDER: vmdeb-first (default) or lb-first
# (results: docs/benchmarks.md, "Live image set: the standard image against live-build")
set -euo pipefail
cd "$(dirname "$0")/.."
order=${1:-vmdeb-first}
make -s vmdeb
need=()
command -v lb >/dev/null || need+=(live-build)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
work=$(mktemp -d /var/tmp/vmdeb-bench-lb-XXXXXX)
trap 'for m in $(findmnt -rn -o TARGET | grep "^$work" | sort -r); do umount -l "$m"; done; rm -rf "$work"' EXIT

cfg=configs/standard.yaml
# The host's mirror, as vmdeb resolves it for this config (never a fixed host).
mirror=$(./vmdeb check --offline "$cfg" | sed -n 's/.*mirror \([^,]*\),.*/\1/p')
suite=$(sed -n 's/^suite: *//p' "$cfg")
areas=$(sed -n 's/^components: *\[\(.*\)\]/\1/p' "$cfg" | tr -d ' ' | tr ',' ' ')
# The config's packages, then what its hook (hooks/standard.sh through
# lib/live.sh's live_common) adds: wireless tools and, with
# non-free-firmware, Debian's live firmware set. vmdeb adds the kernel and
# the live stack itself; lb does the same from its own defaults.
pkgs=$(awk '/^packages:/{p=1;next} p&&/^  - /{print $2;next} p&&!/^  /{p=0}' "$cfg")
pkgs="$pkgs wpasupplicant iw wireless-regdb live-task-non-free-firmware-pc"

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "suite $suite, areas: $areas, packages: $(echo $pkgs)"

# measure NAME CMD...: runs CMD under /usr/bin/time -v, prints wall time,
# CPU time (user + system, of every process waited for: less at the mercy
# of the machine's load than wall time), peak resident memory (the largest
# single process: time -v reports the biggest child, not the sum) and the
# load average before and after. live-build runs mksquashfs under
# `nice -n 17` on top of this script's niceness: on a busy machine its
# squashfs gets less of the CPU than vmdeb's.
measure() {
	local name=$1; shift
	local l0 t0 t1
	l0=$(cut -d' ' -f1 /proc/loadavg)
	t0=$(date +%s.%N)
	/usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>&1 || {
		echo "$name FAILED; last lines:" >&2
		tail -30 "$work/$name.out" >&2
		return 1
	}
	t1=$(date +%s.%N)
	printf '%s: wall %.1f s, CPU %.1f s, peak RSS %s KiB, load %s -> %s\n' "$name" "$(awk "BEGIN{print $t1-$t0}")" \
		"$(awk -F': ' '/User time|System time/{s+=$2} END{print s}' "$work/$name.time")" \
		"$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/$name.time")" \
		"$l0" "$(cut -d' ' -f1 /proc/loadavg)"
}

run_vmdeb() {
	measure vmdeb ./vmdeb build --no-cache --outdir "$work/vmdeb-out" --workdir "$work" --log "$work/vmdeb.log" "$cfg" || return 1
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/  vmdeb \1 \2 s/p' "$work/vmdeb.log"
	local iso
	iso=$(ls "$work"/vmdeb-out/*.iso)
	echo "  vmdeb ISO: $(stat -c %s "$iso") bytes, $(wc -l <"${iso%.iso}.packages") packages"
}

run_lb() {
	local d=$work/lb
	mkdir -p "$d"
	(
		cd "$d"
		# The same suite and mirror for bootstrap, chroot and the image;
		# security and -updates off, as vmdeb builds from the suite alone
		# (lb's default security mirror is a fixed host, which this network
		# may not reach). BIOS and UEFI boot loaders, an xz squashfs, and
		# the live system's boot parameters as vmdeb's menu has them.
		# No debian-installer: see docs/benchmarks.md for the difference.
		lb config --distribution "$suite" --archive-areas "$areas" \
			--mirror-bootstrap "$mirror" --mirror-chroot "$mirror" --mirror-binary "$mirror" \
			--security false --updates false \
			--apt-recommends true --firmware-chroot false --firmware-binary false \
			--debian-installer none --bootloaders "syslinux,grub-efi" \
			--chroot-squashfs-compression-type xz \
			--bootappend-live "boot=live components quiet splash" \
			--iso-volume "d-live $suite st amd64" >/dev/null
		printf '%s\n' $pkgs >config/package-lists/standard.list.chroot
		# firmware-ipw2x00 needs its licence accepted, as vmdeb's hook does.
		echo "firmware-ipw2x00 firmware-ipw2x00/license/accepted boolean true" >config/preseed/firmware.cfg.chroot
	)
	measure lb sh -c "cd '$d' && lb build" || return 1
	# lb's own log dates each of its steps: the phases' boundaries.
	sed -n 's/^\[\([0-9-]* [0-9:]*\)\] lb \(bootstrap\|chroot\|binary\|binary_rootfs\|binary_manifest\|source\) *$/  lb \2 starts \1/p' "$work/lb.out"
	local iso
	iso=$(ls "$d"/*.iso)
	echo "  lb ISO: $(stat -c %s "$iso") bytes, $(grep -c . "$d"/chroot.packages.live 2>/dev/null || echo '?') packages"
}

if [ "$order" = lb-first ]; then
	run_lb || true
	run_vmdeb || true
else
	run_vmdeb || true
	run_lb || true
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
