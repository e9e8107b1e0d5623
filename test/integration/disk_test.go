package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDiskImage builds the VM example (qcow2, GRUB for BIOS and UEFI),
// boots it both ways, logs in and asks systemd whether the system is up.
func TestDiskImage(t *testing.T) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	copyExamples(t, dir)
	before, _ := exec.Command("losetup", "-a").Output()
	r := run(t, ctx, "build", "--outdir", out, "--workdir", work, filepath.Join(dir, "vm-disk.yaml"))
	if r.code != 0 {
		t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
	}
	assertClean(t, work)
	if after, _ := exec.Command("losetup", "-a").Output(); string(after) != string(before) {
		t.Errorf("loop devices changed:\n%s", after)
	}
	img := filepath.Join(out, "debian-vm-amd64.qcow2")
	if o, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, o)
	}
	for _, fw := range [][]string{nil, {"--uefi"}} {
		args := append([]string{"boot", "--timeout", "10m", "--login", "user", "--password", "live",
			"--run", "systemctl is-system-running --wait; systemctl --failed --no-legend"}, fw...)
		b := run(t, ctx, append(args, img)...)
		if !strings.Contains(b.stdout, "running") && !strings.Contains(b.stdout, "degraded") {
			t.Errorf("boot %v: systemd did not answer:\n%s\n%s", fw, b.stdout, b.stderr)
		}
		if b.code != 0 || strings.Contains(b.stdout, "degraded") {
			t.Errorf("boot %v: the system is not healthy (status %d):\n%s", fw, b.code, b.stdout)
		}
	}
}

// TestVmdebootstrapCommandLine builds a disk image from a vmdebootstrap
// command line, as existing scripts call it, and boots it.
func TestVmdebootstrapCommandLine(t *testing.T) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := t.TempDir()
	copyExamples(t, dir)
	img := filepath.Join(dir, "vm.img")
	r := run(t, ctx, "vmdebootstrap", "--image", img, "--size", "2G", "--distribution", "trixie",
		"--package", "systemd-sysv", "--package", "udev", "--user", "user/live", "--sudo", "--lock-root-password",
		"--enable-dhcp", "--serial-console", "--grub", "--customize", filepath.Join(dir, "hooks/minimal.sh"))
	if r.code != 0 {
		t.Fatalf("vmdebootstrap build failed (%d):\n%s", r.code, r.stderr)
	}
	if o, _ := exec.Command("losetup", "-a").Output(); strings.Contains(string(o), dir) {
		t.Errorf("a loop device of the build is left: %s", o)
	}
	b := run(t, ctx, "boot", "--timeout", "10m", "--login", "user", "--password", "live",
		"--run", "echo live | sudo -S true && echo SUDO-$((40+2)); cat /etc/vmdeb-hook; ls /etc/network/interfaces.d", img)
	if b.code != 0 || !strings.Contains(b.stdout, "SUDO-42") || !strings.Contains(b.stdout, "hook=minimal") {
		t.Errorf("the image does not have the user with sudo and the hook's work:\n%s\n%s", b.stdout, b.stderr)
	}
}
