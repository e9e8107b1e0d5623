package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/apt"
	"vmdeb/internal/qemu"
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
	// BIOS as before; then UEFI with Secure Boot enforced, twice. The
	// first boot keeps what the guest writes: it lists the ESP, runs the
	// image's own grub-install and update-grub, lists it again. The second
	// boot proves the firmware still starts what they wrote, and that it
	// went through update-grub's menu (its "quiet", which vmdeb's menu
	// does not have). qemu is killed, not shut down: the guest syncs.
	const health = "systemctl is-system-running --wait; systemctl --failed --no-legend; " +
		"if [ -d /sys/firmware/efi ]; then echo sb-$(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | tr -d ' '); fi"
	const espList = "(cd /boot/efi && find . -type f | sort)"
	boots := []struct {
		args []string
		run  string
	}{
		{nil, health},
		{[]string{"--secure-boot", "--writable"}, health + "; echo live | sudo -S sh -c '" +
			espList + " | sed s/^/before:/ && debconf-show grub-efi-amd64 | grep -q \"force_efi_extra_removable: true\" && echo removable-$((40+2)) && grub-install --uefi-secure-boot --force-extra-removable --no-nvram && update-grub && echo grub-$((40+2)) && " +
			espList + " | sed s/^/after:/ && sync'"},
		{[]string{"--secure-boot"}, health + "; grep -q 'BEGIN /etc/grub.d/10_linux' /boot/grub/grub.cfg && grep -qw quiet /proc/cmdline && echo menu-$((6*7)); cat /proc/cmdline"},
	}
	for i, bt := range boots {
		start := time.Now()
		b := run(t, ctx, append(append([]string{"boot", "--timeout", "10m", "--login", "user", "--password", "live",
			"--run", bt.run}, bt.args...), img)...)
		t.Logf("boot %v: %s", bt.args, time.Since(start).Round(time.Second))
		if !strings.Contains(b.stdout, "running") && !strings.Contains(b.stdout, "degraded") {
			t.Errorf("boot %v: systemd did not answer:\n%s\n%s", bt.args, b.stdout, b.stderr)
		}
		if b.code != 0 || strings.Contains(b.stdout, "degraded") {
			t.Errorf("boot %v: the system is not healthy (status %d):\n%s", bt.args, b.code, b.stdout)
		}
		// The variable is 4 bytes of attributes, then 1 for on.
		if bt.args != nil && !strings.Contains(b.stdout, "sb-60001") {
			t.Errorf("boot %v: the system does not see Secure Boot on:\n%s", bt.args, b.stdout)
		}
		switch i {
		case 1:
			if !strings.Contains(b.stdout, "removable-42") {
				t.Errorf("debconf's grub2/force_efi_extra_removable is not true in the image: upgrades of grub-efi-amd64 would leave the removable path's loaders behind")
			}
			if !strings.Contains(b.stdout, "grub-42") {
				t.Fatalf("grub-install and update-grub in the booted image failed:\n%s", b.stdout)
			}
			// The ESP as the build laid it out is what the image's own
			// grub-install lays out (FAT: names compare without case).
			before, after := prefixed(b.stdout, "before:"), prefixed(b.stdout, "after:")
			if len(before) == 0 || !slices.Equal(before, after) {
				t.Errorf("the ESP as built:\n%s\nafter the image's grub-install:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
			}
		case 2:
			if !strings.Contains(b.stdout, "menu-42") {
				t.Errorf("the second Secure Boot boot did not go through update-grub's menu:\n%s", b.stdout)
			}
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

// TestVmdebootstrapCommandLine runs a vmdebootstrap command line of the
// kind people kept for UEFI VMs: no init package named (vmdebootstrap's
// debootstrap brought one), the image's apt pointed at another mirror, a
// qcow2. The image must boot with UEFI to a login prompt, and vmdeb boot
// must see from the image alone that it has no BIOS boot code.
func TestVmdebootstrapCommandLine(t *testing.T) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := t.TempDir()
	copyExamples(t, dir)
	host, err := apt.DetectHostMirrors("/")
	if err != nil || host.Mirror == "" {
		t.Fatalf("the host's Debian mirror: %q %v", host.Mirror, err)
	}
	const aptMirror = "http://mirror.invalid/debian"
	img := filepath.Join(dir, "t.img")
	// Most settings from a vmdebootstrap config file, cliapp's own keys
	// among them, the rest on the command line, as scripts did.
	conf := filepath.Join(dir, "vm.conf")
	ini := "[config]\nimage = " + img + "\nsize = 3G\ndistribution = trixie\nmirror = " + host.Mirror +
		"\nconfigure-apt = yes\napt-mirror = " + aptMirror + "\nuser = user/live\nsudo = True\n" +
		"lock-root-password = yes\nenable-dhcp = on\nserial-console = yes\n" +
		"log = " + filepath.Join(dir, "vmdebootstrap.log") + "\nlog-level = debug\nlog-max = 10M\nlog-keep = 2\n" +
		"dump-memory-profile = none\nverbose = True\n"
	if err := os.WriteFile(conf, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	// The script adds a module to initramfs-tools' list; vmdebootstrap
	// ran update-initramfs after it, so the initrd has the module. It
	// checks $2 (the partitioned image) and a variable its caller exported.
	custom := filepath.Join(dir, "custom.sh")
	if err := os.WriteFile(custom, []byte("#!/bin/sh\nset -e\n"+
		"test -n \"$HOOK_CALLER\" && sfdisk --dump \"$2\" >/dev/null\n"+
		"echo dummy >>\"$1/etc/initramfs-tools/modules\"\n"+
		"exec "+filepath.Join(dir, "hooks/minimal.sh")+" \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, vmdeb, "vmdebootstrap", "--config", conf, "--grub", "--use-uefi", "--esp-size=200M",
		"--customize="+custom, "--convert-qcow2")
	cmd.Env = append(os.Environ(), "HOOK_CALLER=test")
	r := runCmd(t, cmd, "vmdeb vmdebootstrap --config vm.conf")
	if r.code != 0 {
		t.Fatalf("vmdebootstrap build failed (%d):\n%s", r.code, r.stderr)
	}
	if o, _ := exec.Command("losetup", "-a").Output(); strings.Contains(string(o), dir) {
		t.Errorf("a loop device of the build is left: %s", o)
	}
	kind, err := qemu.DetectImage(img)
	if err != nil || kind != qemu.KindQcow2 {
		t.Fatalf("--convert-qcow2 made a %q image (%v)", kind, err)
	}
	id, err := qemu.Identify(img, kind)
	if c, cerr := qemu.Choose(id, err, "", nil); cerr != nil || c.Arch.Name != "amd64" || !c.UEFI {
		t.Errorf("without --arch and --uefi, vmdeb boot would choose %s UEFI=%v (%v): %s", c.Arch.Name, c.UEFI, cerr, c.Why)
	}
	b := run(t, ctx, "boot", "--uefi", "--timeout", "10m", "--login", "user", "--password", "live",
		"--run", "echo live | sudo -S true && echo SUDO-$((40+2)); cat /etc/vmdeb-hook; test -x /sbin/init && echo INIT-$((1+1)); grep -rh "+aptMirror+" /etc/apt/; "+
			"lsinitramfs /boot/initrd.img-$(uname -r) | grep -q '/dummy\\.ko' && echo MODULE-IN-INITRD", img)
	if b.code != 0 || !strings.Contains(b.stdout, "SUDO-42") || !strings.Contains(b.stdout, "hook=minimal") || !strings.Contains(b.stdout, "INIT-2") {
		t.Errorf("the image does not boot with the user with sudo, the hook's work and an init:\n%s\n%s", b.stdout, b.stderr)
	}
	if !strings.Contains(b.stdout, "MODULE-IN-INITRD") {
		t.Errorf("the module the --customize script listed in /etc/initramfs-tools/modules is not in the initrd:\n%s", b.stdout)
	}
	if !strings.Contains(b.stdout, "URIs: "+aptMirror) {
		t.Errorf("the image's apt sources do not name --apt-mirror %s:\n%s", aptMirror, b.stdout)
	}
	if first, _, _ := strings.Cut(b.stdout, "\n"); !strings.Contains(first, "amd64 (qemu-system-x86_64) with UEFI") {
		t.Errorf("the boot's first line: %q", first)
	}
}

// noInit is a bootable image on minbase, which has no init, without one in
// its packages: the build must stop once the packages are in, naming the
// package to add, and write nothing.
const noInit = `name: noinit
suite: trixie
architecture: amd64
bootstrap: native
variant: minbase
outputs:
  - {type: disk, path: noinit.img, size: 2G, network: none}
`

func TestNoInitRefused(t *testing.T) {
	needRoot(t)
	t.Parallel() // the kernel's install dominates: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, work := t.TempDir(), t.TempDir()
	cfg := writeConfig(t, dir, noInit, nil)
	chk := run(t, ctx, "check", cfg)
	if chk.code != 0 || !strings.Contains(chk.stdout, "add systemd-sysv to packages") {
		t.Errorf("check does not warn of the missing init:\n%s%s", chk.stdout, chk.stderr)
	}
	r := run(t, ctx, "build", "--workdir", work, cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "stage init failed") || !strings.Contains(r.stderr, "no /sbin/init") ||
		!strings.Contains(r.stderr, "systemd-sysv") {
		t.Errorf("want the build to fail in stage init naming systemd-sysv, got %d:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "noinit.img")); err == nil {
		t.Error("an output exists after a failed build")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*vmdeb-tmp*")); len(left) > 0 {
		t.Errorf("temporary outputs left: %v", left)
	}
	assertClean(t, work)
}

// prefixed returns the file names (./…) that follow prefix in the lines
// of out, lower-cased and sorted: the typed command's echo, even wrapped,
// has none.
func prefixed(out, prefix string) []string {
	var l []string
	for _, line := range strings.Split(out, "\n") {
		// sudo's password prompt ends with no newline: the first line can
		// follow it.
		if _, v, ok := strings.Cut(line, prefix); ok && strings.HasPrefix(v, "./") {
			l = append(l, strings.ToLower(strings.TrimSpace(v)))
		}
	}
	slices.Sort(l)
	return l
}
