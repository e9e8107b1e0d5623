#!/bin/bash
# Times `vmdeb build examples/vm-disk.yaml` (a 3 GiB qcow2, GRUB for BIOS
# and UEFI on a hybrid GPT) next to the same image made the way a user
# would by hand: mmdebstrap with the same package set, then sfdisk, loop
# devices, mkfs.ext4 and mkfs.vfat, a copy of the tree, grub-install (BIOS),
# grub-mkimage and mtools (UEFI), fstab and grub.cfg, qemu-img convert. Alternating, in one
# run, after one untimed warm-up of each (the mirror's and the page
# cache's first-touch costs). Needs root.
# Usage: bench/disk.sh [ROUNDS]   (results: docs/benchmarks.md, "Disk image")
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
make -s vmdeb
for t in mmdebstrap grub-install mmd; do
	command -v $t >/dev/null || { echo "bench/disk.sh: needs mmdebstrap, grub2-common (grub-install) and mtools: apt-get install mmdebstrap grub2-common mtools" >&2; exit 2; }
done
work=$(mktemp -d /var/tmp/vmdeb-bench-disk-XXXXXX)
loops=()
cleanup() {
	for m in $(findmnt -rn -o TARGET | grep "^$work" | sort -r); do umount -l "$m"; done
	[ ${#loops[@]} -eq 0 ] || losetup -d "${loops[@]}" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

cfg=examples/vm-disk.yaml
mirror=$(./vmdeb check --offline "$cfg" | sed -n 's/.*mirror \([^,]*\),.*/\1/p')
# The packages vmdeb installs for this config: the kernel, sudo for the
# user, systemd-resolved for networkd's DNS, growpart and resize2fs for
# grow-root, and the config's own.
pkgs=linux-image-amd64,sudo,systemd-resolved,cloud-guest-utils,e2fsprogs,systemd-sysv,udev,iproute2

now() { date +%s.%N; }
dt() { awk "BEGIN{printf \"%.1f\", $2-$1}"; }

manual() {
	local d=$work/manual r=$work/manual/rootfs m=$work/manual/mnt t0 t1 t2 t3 uuid espuuid k disk esp root
	rm -rf "$d"; mkdir -p "$d" "$m"
	t0=$(now)
	mmdebstrap --quiet --variant=minbase --include="$pkgs" \
		--customize-hook='chroot "$1" useradd -m -G sudo -s /bin/bash user' \
		--customize-hook='echo user:live | chroot "$1" chpasswd' \
		--customize-hook='echo debian-vm > "$1/etc/hostname"' \
		--customize-hook='chroot "$1" systemctl enable systemd-networkd serial-getty@ttyS0 >/dev/null 2>&1' \
		--customize-hook='printf "[Match]\nName=en*\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/dhcp.network"' \
		trixie "$r" "$mirror"
	t1=$(now)
	truncate -s 3G "$d/disk.raw"
	printf 'label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\nstart=4096, size=524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=528384, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\n' |
		sfdisk --quiet "$d/disk.raw"
	# This kernel makes no partition devices for loop devices (losetup -P),
	# so each partition gets its own loop device at its offset, and it has
	# no vfat driver, so the ESP is written with mtools.
	disk=$(losetup --find --show "$d/disk.raw"); loops+=("$disk")
	esp=$(losetup --find --show --offset $((4096 * 512)) --sizelimit $((524288 * 512)) "$d/disk.raw"); loops+=("$esp")
	root=$(losetup --find --show --offset $((528384 * 512)) "$d/disk.raw"); loops+=("$root")
	mkfs.vfat -F 32 -n EFI "$esp" >/dev/null
	mkfs.ext4 -q "$root"
	mount "$root" "$m"
	cp -a "$r/." "$m/"
	mkdir -p "$m/boot/efi"
	uuid=$(blkid -s UUID -o value "$root"); espuuid=$(blkid -s UUID -o value "$esp")
	printf 'UUID=%s / ext4 errors=remount-ro 0 1\nUUID=%s /boot/efi vfat umask=0077 0 1\n' "$uuid" "$espuuid" > "$m/etc/fstab"
	grub-install --target=i386-pc --boot-directory="$m/boot" "$disk" 2>/dev/null
	cp -r /usr/lib/grub/x86_64-efi "$m/boot/grub/"
	printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$uuid" > "$d/early.cfg"
	grub-mkimage -O x86_64-efi -p /boot/grub -c "$d/early.cfg" -o "$d/bootx64.efi" part_gpt ext2 search_fs_uuid
	mmd -i "$esp" ::/EFI ::/EFI/BOOT
	mcopy -i "$esp" "$d/bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
	k=$(basename "$(ls "$m"/boot/vmlinuz-* | tail -1)"); k=${k#vmlinuz-}
	printf 'serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\nset timeout=3\nsearch --no-floppy --fs-uuid --set=root %s\nmenuentry Debian {\n linux /boot/vmlinuz-%s root=UUID=%s ro console=tty0 console=ttyS0,115200n8\n initrd /boot/initrd.img-%s\n}\n' \
		"$uuid" "$k" "$uuid" "$k" > "$m/boot/grub/grub.cfg"
	umount "$m"
	losetup -d "${loops[@]}"; loops=()
	t2=$(now)
	qemu-img convert -f raw -O qcow2 "$d/disk.raw" "$d/disk.qcow2"
	t3=$(now)
	echo "manual rootfs $(dt "$t0" "$t1") image $(dt "$t1" "$t2") qcow2 $(dt "$t2" "$t3") total $(dt "$t0" "$t3") load $(cut -d' ' -f1 /proc/loadavg)"
}

vmdeb_run() {
	local t0 t1 log=$work/vmdeb.log
	rm -rf "$work/out"
	t0=$(now)
	./vmdeb build --no-cache --outdir "$work/out" --workdir "$work" --log "$log" "$cfg" >/dev/null
	t1=$(now)
	printf 'vmdeb  '
	sed -n 's/^<== \(\S*\) (\([0-9.]*\)s)$/\1 \2 /p' "$log" | tr -d '\n'
	echo " total $(dt "$t0" "$t1") load $(cut -d' ' -f1 /proc/loadavg)"
}

echo "warm-up (not timed)" >&2
manual >/dev/null
vmdeb_run >/dev/null
for i in $(seq "$rounds"); do
	echo "round $i"
	manual
	vmdeb_run
done
