#!/bin/sh
# The job of vmdeb's builder VM, run as PID 1 by the image's init (which
# mounted /proc, /sys, /dev and this job directory at /vmdeb/job). The
# job directory says what to mount (mounts: "TAG ro|rw PATH" per line),
# which vmdeb to run (exe, in the share tagged vmdeb-bin), its arguments
# (args, one per line) and environment (env); this script mounts them,
# brings up user-mode networking and the scratch disk, runs the build as
# root, writes its exit status to status and powers the VM off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root LANG=C.UTF-8
J=/vmdeb/job
opts=trans=virtio,version=9p2000.L,msize=1048576

say() { echo "vmdeb-builder: $*"; }
off() {
	sync
	echo o >/proc/sysrq-trigger
	sleep 600
}
fail() {
	say "$*"
	[ -d $J ] && echo "$*" >$J/error
	off
}

mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
modprobe -a virtio_net virtio_blk ext4 loop 2>/dev/null
mkdir -p /vmdeb/bin
mount -t 9p -o $opts,ro vmdeb-bin /vmdeb/bin || fail "cannot mount vmdeb's directory (9p)"

# qemu's user-mode network has fixed addresses. The interface is the
# first that is not lo (udev in the initramfs may have renamed eth0).
ip link set lo up
nic=
for n in /sys/class/net/*; do
	[ "${n##*/}" = lo ] || { nic=${n##*/}; break; }
done
[ -n "$nic" ] || fail "no network interface"
ip link set "$nic" up && ip addr add 10.0.2.15/24 dev "$nic" && ip route add default via 10.0.2.2 ||
	fail "cannot configure the network interface $nic"
echo "nameserver 10.0.2.3" >/etc/resolv.conf
cat /etc/hostname >/proc/sys/kernel/hostname 2>/dev/null
# The host's apt sources: the build finds the same mirror as on the host.
if [ -d $J/apt ]; then
	rm -rf /etc/apt/sources.list /etc/apt/sources.list.d
	cp -a $J/apt/. /etc/apt/
fi

# The scratch disk (the virtio disk with serial vmdeb-scratch) holds the
# work directory and /tmp.
dev=
for d in /sys/block/vd*; do
	[ "$(cat $d/serial 2>/dev/null)" = vmdeb-scratch ] && dev=/dev/${d##*/}
done
[ -n "$dev" ] || fail "no scratch disk"
mkfs.ext4 -q -F -m 0 -E nodiscard,lazy_itable_init=1 -L scratch "$dev" || fail "mkfs.ext4 $dev failed"
mkdir -p /scratch
mount -o noatime "$dev" /scratch || fail "cannot mount the scratch disk"
mkdir -p /scratch/tmp /scratch/work
chmod 1777 /scratch/tmp
mount --bind /scratch/tmp /tmp
mount --bind /scratch/tmp /var/tmp

# The shares, parents before children, each at its path on the host. A
# read-only share gets a throwaway writable layer on the scratch disk, so
# the build may write there as a root build on the host may (vmdeb checks
# that the config's output directories could be written) while the
# host's files stay as they are.
modprobe overlay 2>/dev/null
while read -r tag mode path; do
	[ -n "$tag" ] || continue
	mkdir -p "$path" 2>/dev/null
	if [ "$mode" = rw ]; then
		mount -t 9p -o "$opts,cache=none" "$tag" "$path" || fail "cannot mount $path (9p share $tag)"
		continue
	fi
	lower=/vmdeb/ro/$tag upper=/scratch/overlay/$tag
	mkdir -p "$lower" "$upper/data" "$upper/work"
	mount -t 9p -o "$opts,ro,cache=none" "$tag" "$lower" || fail "cannot mount $path (9p share $tag)"
	mount -t overlay -o "lowerdir=$lower,upperdir=$upper/data,workdir=$upper/work" overlay "$path" 2>/dev/null ||
		mount --bind "$lower" "$path" || fail "cannot mount $path (9p share $tag)"
done <$J/mounts

if [ -e /proc/sys/fs/binfmt_misc ] && [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null
fi

# The scratch disk's peak use, for the host to tell a full disk.
(
	peak=0
	while :; do
		used=$(df -P -k /scratch | awk 'NR==2 {print $3}')
		[ "${used:-0}" -gt "$peak" ] && peak=$used && echo "$peak" >$J/scratch-peak-kib
		sleep 0.5
	done
) &
watcher=$!

if [ -f $J/env ]; then
	while IFS= read -r kv; do
		[ -n "$kv" ] && export "$kv"
	done <$J/env
fi
set --
while IFS= read -r a; do
	set -- "$@" "$a"
done <$J/args
exe=/vmdeb/bin/$(cat $J/exe)
# A vmdeb linked against a newer C library than the builder's cannot run.
"$exe" --version >/dev/null 2>&1 ||
	fail "this vmdeb binary does not run in the $(. /etc/os-release; echo "$VERSION_CODENAME") builder ($("$exe" --version 2>&1 | head -n 1)); build vmdeb with CGO_ENABLED=0 (a static binary) or choose a newer builder.suite"
say "ready ($(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB, scratch $(df -P -h /scratch | awk 'NR==2 {print $2}'))"
cd /
if [ -f $J/tty ]; then
	"$exe" "$@" </dev/null
	st=$?
else
	# The host's output is no terminal: neither is the build's (no
	# progress bars), as in a build on the host.
	mkfifo /run/console
	cat /run/console &
	"$exe" "$@" </dev/null >/run/console 2>&1
	st=$?
	wait $!
fi
kill $watcher 2>/dev/null
used=$(df -P -k /scratch | awk 'NR==2 {print $3}')
[ "${used:-0}" -gt "$(cat $J/scratch-peak-kib 2>/dev/null || echo 0)" ] && echo "$used" >$J/scratch-peak-kib
sync
echo "$st" >$J/status.tmp && mv $J/status.tmp $J/status
say "exit $st"
off
