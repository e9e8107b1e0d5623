package imgroot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mounted(t *testing.T, p string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// A package's script moves the directory vmdeb mounted on aside and puts a
// link to a host directory in its place, where the host has a mount of its
// own. Unmounting by path would unmount the host's; the held mount
// unmounts the image's and leaves the host's alone.
func TestUnmountFollowsTheMountNotThePath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	tmp := t.TempDir()
	rootfs, victim := filepath.Join(tmp, "rootfs"), filepath.Join(tmp, "victim")
	for _, d := range []string{rootfs + "/var/cache/apt", victim + "/apt"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", victim+"/apt", "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(victim+"/apt", unix.MNT_DETACH) })

	r, err := Open(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := r.MountOn("/var/cache/apt", func(at string) error { return unix.Mount("tmpfs", at, "tmpfs", 0, "size=1m") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(rootfs+"/var/cache.moved/apt", unix.MNT_DETACH) })
	if !mounted(t, rootfs+"/var/cache/apt") {
		t.Fatal("the image's mount is not there")
	}
	// The script's work: the parent moved aside (a mount point itself
	// cannot be renamed), an absolute link to the host in its place.
	if err := os.Rename(rootfs+"/var/cache", rootfs+"/var/cache.moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, rootfs+"/var/cache"); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if !mounted(t, victim+"/apt") {
		t.Error("the host's mount was unmounted")
	}
	if mounted(t, rootfs+"/var/cache.moved/apt") {
		t.Error("the image's mount is still there")
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("a second Unmount: %v", err)
	}
}

// A remount through At changes the mount vmdeb made.
func TestMountAtRemount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	rootfs := t.TempDir()
	os.Mkdir(rootfs+"/sys", 0o755)
	r, err := Open(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := r.MountOn("sys", func(at string) error { return unix.Mount("tmpfs", at, "tmpfs", 0, "size=1m") })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	if err := unix.Mount("", m.At(), "", unix.MS_REMOUNT|unix.MS_RDONLY, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootfs+"/sys/x", nil, 0o644); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("write after the read-only remount: %v", err)
	}
}
