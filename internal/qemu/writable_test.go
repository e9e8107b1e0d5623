package qemu

import "testing"

// Writable drops the overlay: the guest's writes reach the image.
func TestArgsWritable(t *testing.T) {
	o := Options{Image: "/out/disk.qcow2", Kind: KindQcow2, Arch: lookup(t, "amd64"), Memory: 512, CPUs: 1, Writable: true}
	args := Args(o, "tcg", Firmware{})
	wantSeqs(t, args, []string{"-drive", "file=/out/disk.qcow2,if=virtio,format=qcow2"})
	wantNone(t, args, "file=/out/disk.qcow2,if=virtio,format=qcow2,snapshot=on")
}
