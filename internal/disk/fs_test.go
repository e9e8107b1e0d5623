package disk

import (
	"strings"
	"testing"
)

func TestMkfsArgs(t *testing.T) {
	p := Part{Name: "root", FS: "btrfs", UUID: "0b4c1d6e-8e3a-4c1b-9d6e-1f2a3b4c5d6e"}
	got := strings.Join(btrfsArgs(p, "/w/root", "fs-root"), " ")
	if got != "mkfs.btrfs --quiet --force --nodiscard --uuid "+p.UUID+" --rootdir /w/root fs-root" {
		t.Errorf("mkfs.btrfs: %s", got)
	}
	got = strings.Join(xfsArgs(p, "/w/root", "fs-root"), " ")
	if got != "mkfs.xfs -q -f -K -m uuid="+p.UUID+" -p /w/root fs-root" {
		t.Errorf("mkfs.xfs: %s", got)
	}
}

func TestRenderFstabBtrfs(t *testing.T) {
	o := Options{Size: 4 << 30, Arch: archOf(t, "amd64"), Table: "mbr", RootFS: "btrfs", Bootloader: "extlinux", BootSize: 256 * mib}
	l, err := Plan(o, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	root, _, _ := l.Part("root")
	boot, _, _ := l.Part("boot")
	got := RenderFstab(l)
	// No errors=remount-ro (ext only), no fsck at boot for btrfs.
	for _, want := range []string{"UUID=" + root.UUID + "\t/\tbtrfs\tdefaults\t0\t0\n", "UUID=" + boot.UUID + "\t/boot\text4\tdefaults\t0\t2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("fstab lacks %q:\n%s", want, got)
		}
	}
}

func TestCheckFS(t *testing.T) {
	for _, fs := range []Filesystem{Ext4, Ext3, Ext2, Btrfs} {
		if err := CheckFS(fs); err != nil {
			t.Errorf("%s: %v", fs, err)
		}
	}
	// xfs depends on the host's xfsprogs; when it cannot, the reason names
	// what is needed and the alternatives.
	if err := CheckFS("xfs"); err != nil {
		for _, want := range []string{"xfsprogs 6.17 or later", "use ext4 or btrfs"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("xfs: %v: want it to say %q", err, want)
			}
		}
	}
}
