package live

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindKernels(t *testing.T) {
	root := t.TempDir()
	boot := filepath.Join(root, "boot")
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64", "6.12.38+deb13-amd64", "6.12.9+deb13-amd64", "5.10.0-30-amd64"} {
		writeFile(t, filepath.Join(boot, "vmlinuz-"+v), []byte("k"))
		writeFile(t, filepath.Join(boot, "initrd.img-"+v), []byte("i"))
	}
	writeFile(t, filepath.Join(boot, "vmlinuz-7.0.0-amd64"), []byte("no initrd, not bootable live"))
	writeFile(t, filepath.Join(boot, "config-6.1.0-10-amd64"), []byte("c"))
	// Absolute link targets are inside the rootfs, not on the host.
	if err := os.Symlink("/boot/vmlinuz-6.12.38+deb13-amd64", filepath.Join(boot, "vmlinuz-6.12.40+deb13-amd64")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("initrd.img-6.12.38+deb13-amd64", filepath.Join(boot, "initrd.img-6.12.40+deb13-amd64")); err != nil {
		t.Fatal(err)
	}

	ks, err := FindKernels(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range ks {
		got = append(got, k.Version)
	}
	want := "6.12.40+deb13-amd64 6.12.38+deb13-amd64 6.12.9+deb13-amd64 6.1.0-10-amd64 6.1.0-9-amd64 5.10.0-30-amd64"
	if strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if ks[0].Vmlinuz != filepath.Join(boot, "vmlinuz-6.12.38+deb13-amd64") || ks[0].Initrd != filepath.Join(boot, "initrd.img-6.12.38+deb13-amd64") {
		t.Errorf("links not resolved inside the rootfs: %+v", ks[0])
	}
	if ks[3].Vmlinuz != filepath.Join(boot, "vmlinuz-6.1.0-10-amd64") || ks[3].Initrd != filepath.Join(boot, "initrd.img-6.1.0-10-amd64") {
		t.Errorf("paths: %+v", ks[3])
	}
}

func TestFindKernelsNone(t *testing.T) {
	root := t.TempDir()
	if _, err := FindKernels(root); err == nil {
		t.Error("no /boot: no error")
	}
	writeFile(t, filepath.Join(root, "boot", "config-1.0"), []byte("c"))
	if _, err := FindKernels(root); err == nil || !strings.Contains(err.Error(), "no kernel") {
		t.Errorf("empty /boot: %v", err)
	}
	writeFile(t, filepath.Join(root, "boot", "vmlinuz-1.0-amd64"), []byte("k"))
	if _, err := FindKernels(root); err == nil || !strings.Contains(err.Error(), "initramfs") {
		t.Errorf("kernel without initrd: %v", err)
	}
	// A link out of the rootfs is not followed onto the host.
	if err := os.Symlink("../../../../../../../etc/hostname", filepath.Join(root, "boot", "initrd.img-1.0-amd64")); err != nil {
		t.Fatal(err)
	}
	if _, err := FindKernels(root); err == nil {
		t.Error("initrd link leaving the rootfs accepted")
	}
}
