#!/bin/sh
# PID 1 of vmdeb's builder VM: mounts what every job needs, then runs the
# job's own script from the directory the host shares (tag vmdeb-job), so
# the image stays the same while the job script changes.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
off() {
	sync
	echo o >/proc/sysrq-trigger
	sleep 600
}
# The initramfs moved /proc, /sys and /dev here already (usually).
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
# Writes go to qemu's throwaway overlay, never to the cached image.
mount -o remount,rw /
modprobe -a 9p 9pnet_virtio 2>/dev/null
mkdir -p /vmdeb/job
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=none vmdeb-job /vmdeb/job; then
	echo "vmdeb-builder: cannot mount the job directory (9p)"
	off
fi
exec /bin/sh /vmdeb/job/job.sh
