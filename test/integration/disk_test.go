package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// btrfsOutput is a second output of the VM example, made from the same
// root file system in the same build: a raw MBR image with a btrfs root
// and extlinux.
const btrfsOutput = `  - type: disk
    path: ../out/debian-vm-btrfs.img
    size: 2G
    partition-table: mbr
    filesystem: btrfs
    bootloader: extlinux
    network: networkd
`

// TestDiskImage builds the VM example (qcow2, GRUB for BIOS and UEFI) and
// a btrfs + extlinux raw image beside it, boots the first both ways and
// the second with BIOS, logs in and asks systemd whether the system is up.
func TestDiskImage(t *testing.T) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	copyExamples(t, dir)
	cfg := filepath.Join(dir, "vm-disk.yaml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(btrfsOutput); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg)
	if r.code != 0 {
		t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
	}
	assertClean(t, work)
	// extlinux's install mounts through a loop device that autoclears as
	// the mount goes: it may take the kernel a moment. Only the build's
	// own count: other builds on the machine may use loop devices.
	for i := 0; ; i++ {
		var left []string
		all, _ := exec.Command("losetup", "-a").Output()
		for _, l := range strings.Split(string(all), "\n") {
			if strings.Contains(l, out) || strings.Contains(l, work) {
				left = append(left, l)
			}
		}
		if len(left) == 0 {
			break
		}
		if i == 50 {
			t.Errorf("loop devices of the build left:\n%s", strings.Join(left, "\n"))
			break
		}
		time.Sleep(100 * time.Millisecond)
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

	// The btrfs image: extlinux boots it (BIOS), the root is btrfs. A
	// kernel message (a module loaded late under TCG) can land on the
	// login prompt's line, so any line with the prompt counts.
	img = filepath.Join(out, "debian-vm-btrfs.img")
	b := run(t, ctx, "boot", "--timeout", "10m", "--expect", "login:", "--login", "user", "--password", "live",
		"--run", "echo state-$(systemctl is-system-running --wait); systemctl --failed --no-legend; echo root-$(findmnt -n -o FSTYPE /)", img)
	// The typed command is echoed: only its output has "state-running".
	if b.code != 0 || !strings.Contains(b.stdout, "state-running") || !strings.Contains(b.stdout, "root-btrfs") {
		t.Errorf("btrfs + extlinux image: not a healthy system on btrfs (status %d):\n%s\n%s", b.code, b.stdout, b.stderr)
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
