#!/bin/bash
# Times `vmdeb build examples/live-minimal.yaml` stage by stage next to the
# same image made by a plain shell pipeline (debootstrap, apt in a chroot,
# mksquashfs, xorriso), alternating, in one run. Needs root.
# Usage: [BACKEND=native] bench/live-minimal.sh [ROUNDS]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
make -s vmdeb
work=$(mktemp -d /var/tmp/vmdeb-bench-XXXXXX)
trap 'for m in $(findmnt -rn -o TARGET | grep "^$work" | sort -r); do umount -l "$m"; done; rm -rf "$work"' EXIT

mirror=$(./vmdeb check --offline examples/live-minimal.yaml | sed -n 's/.*mirror \([^,]*\),.*/\1/p')
# vmdeb with the backend the plain pipeline uses (BACKEND=native for vmdeb's own).
cp -a examples "$work/examples"
sed '/^bootstrap:/d; s/^variant: \(.*\)$/variant: \1\nbootstrap: '"${BACKEND:-debootstrap}"'/' examples/live-minimal.yaml >"$work/examples/live-minimal.yaml"
pkgs="linux-image-amd64 live-boot live-config systemd-sysv sudo task-english"

plain() {
	local r=$work/plain/rootfs t0 t1 t2 t3 t4
	rm -rf "$work/plain"; mkdir -p "$r" "$work/plain/iso/live" "$work/plain/iso/isolinux"
	t0=$(date +%s.%N)
	debootstrap --variant=minbase trixie "$r" "$mirror" >/dev/null
	t1=$(date +%s.%N)
	mount -t proc proc "$r/proc"; mount -t sysfs sysfs "$r/sys"; mount --bind /dev "$r/dev"
	printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"; chmod +x "$r/usr/sbin/policy-rc.d"
	chroot "$r" apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get install -y -q $pkgs >/dev/null
	chroot "$r" useradd -m -G sudo -s /bin/bash user
	echo user:live | chroot "$r" chpasswd
	chroot "$r" passwd -l root >/dev/null
	chroot "$r" apt-get clean
	rm "$r/usr/sbin/policy-rc.d"
	umount "$r/dev" "$r/sys" "$r/proc"
	t2=$(date +%s.%N)
	mksquashfs "$r" "$work/plain/iso/live/filesystem.squashfs" -comp zstd -noappend -no-progress >/dev/null
	t3=$(date +%s.%N)
	cp "$r"/boot/vmlinuz-* "$work/plain/iso/live/vmlinuz"; cp "$r"/boot/initrd.img-* "$work/plain/iso/live/initrd.img"
	cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$work/plain/iso/isolinux/"
	printf 'default live\nlabel live\n kernel /live/vmlinuz\n append initrd=/live/initrd.img boot=live components\n' > "$work/plain/iso/isolinux/isolinux.cfg"
	xorriso -as mkisofs -o "$work/plain.iso" -V PLAIN -J -r -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
		-b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table "$work/plain/iso" 2>/dev/null
	t4=$(date +%s.%N)
	printf 'plain  bootstrap %.1f  packages+system %.1f  squashfs %.1f  iso %.1f  total %.1f\n' \
		"$(awk "BEGIN{print $t1-$t0}")" "$(awk "BEGIN{print $t2-$t1}")" "$(awk "BEGIN{print $t3-$t2}")" "$(awk "BEGIN{print $t4-$t3}")" "$(awk "BEGIN{print $t4-$t0}")"
}

vmdeb_run() {
	local t0 t1 log=$work/vmdeb.log
	t0=$(date +%s.%N)
	./vmdeb build --no-cache --outdir "$work/out" --workdir "$work" --log "$log" "$work/examples/live-minimal.yaml" >/dev/null
	t1=$(date +%s.%N)
	printf 'vmdeb '
	sed -n 's/^time \(\S*\) *\([0-9.]*\)s$/\1 \2 /p' "$log" | tr -d '\n'
	printf ' total %.1f\n' "$(awk "BEGIN{print $t1-$t0}")"
}

for i in $(seq "$rounds"); do
	plain
	vmdeb_run
done
