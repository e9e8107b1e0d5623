package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"vmdeb/internal/archive"
	"vmdeb/internal/chroot"
)

// scaffold makes what dpkg needs before its first run, as debootstrap's
// first stage does: an empty database that already lists dpkg itself,
// an fstab and the basic device nodes.
func scaffold(target string, dpkg *archive.Package) error {
	if dpkg == nil {
		return errors.New("dpkg is not in the package set")
	}
	lib := filepath.Join(target, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		if err := os.MkdirAll(filepath.Join(lib, d), 0o755); err != nil {
			return err
		}
	}
	status := fmt.Sprintf("Package: dpkg\nVersion: %s\nMaintainer: unknown\nStatus: install ok installed\n\n", dpkg.Version)
	files := []struct {
		path string
		data string
	}{
		{"var/lib/dpkg/status", status},
		{"var/lib/dpkg/available", ""},
		{"var/lib/dpkg/info/dpkg.list", ""},
		{"var/lib/dpkg/cmethopt", "apt apt\n"},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(target, f.path), []byte(f.data), 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(filepath.Join(target, "etc/fstab")); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(filepath.Join(target, "etc/fstab"), []byte("# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"), 0o644); err != nil {
			return err
		}
	}
	for _, f := range []string{"resolv.conf", "hostname"} {
		if err := copyIfMissing("/etc/"+f, filepath.Join(target, "etc", f)); err != nil {
			return err
		}
	}
	return makeDevices(filepath.Join(target, "dev"))
}

// copyIfMissing is debootstrap's conditional_cp: the host's file, followed
// if a symlink, unless the target has one.
func copyIfMissing(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil // the host has none: nothing to copy
	}
	return os.WriteFile(dst, data, 0o644)
}

// makeDevices creates the nodes debootstrap's setup_devices_simple makes,
// so the finished tree has them even though builds mount their own /dev.
func makeDevices(dev string) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	// The chroot's nodes, and the two that the chroot's devpts and the
	// booted system's console provide.
	nodes := append(chroot.DevNodes(), chroot.DevNode{Name: "console", Major: 5, Minor: 1, Mode: 0o600},
		chroot.DevNode{Name: "ptmx", Major: 5, Minor: 2, Mode: 0o666})
	for _, n := range nodes {
		p := filepath.Join(dev, n.Name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := unix.Mknod(p, unix.S_IFCHR|uint32(n.Mode), int(unix.Mkdev(n.Major, n.Minor))); err != nil {
			if errors.Is(err, unix.EPERM) {
				// A user namespace makes no device nodes; the booted
				// system's devtmpfs has them all.
				continue
			}
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := os.Chmod(p, n.Mode); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.MkdirAll(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	for name, to := range chroot.DevLinks() {
		if _, err := os.Lstat(filepath.Join(dev, name)); err == nil {
			continue
		}
		if err := os.Symlink(to, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}
