package disk

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/qemu"
)

// e2eChecks run as root in the booted image; each line of output is
// asserted below.
const e2eChecks = `for i in $(seq 60); do [ -n "$(hostname -I)" ] && break; sleep 1; done
echo "cmdline: $(cat /proc/cmdline)"
echo "root: $(findmnt -n -o SOURCE,FSTYPE /)"
echo "boot: $(findmnt -n -o FSTYPE /boot)"
echo "efi: $(findmnt -n -o FSTYPE /boot/efi)"
echo "swap: $(swapon --show=TYPE --noheadings)"
echo "host: $(hostname)"
echo "net: $(hostname -I) $(networkctl --no-legend --no-pager list 2>/dev/null | awk '$3 == "ether" {print $2, $4}')"
echo "getty: $(systemctl is-active serial-getty@ttyS0.service)"
echo "growroot: $(systemctl is-active vmdeb-growroot.service) $(test -e /var/lib/vmdeb/growroot.done && echo done)"
echo "rootsize: $(df -B1M --output=size / | tail -1 | tr -d ' ')"
echo "failed: $(systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')"`

// TestBootE2E builds qcow2 images with GRUB for BIOS and UEFI from a real
// Debian root file system and boots each both ways in qemu, up to a root
// login and checks inside: VMDEB_DISK_E2E=/path/to/rootfs (debootstrap
// with a kernel and systemd-sysv), VMDEB_DISK_E2E_PASSWORD=root's
// password, VMDEB_DISK_E2E_ACCEL=tcg where KVM is broken. With growpart or
// sfdisk in the image the first layout also grows its root on a larger
// disk; with ifupdown the second uses it instead of networkd.
func TestBootE2E(t *testing.T) {
	rootfs := os.Getenv("VMDEB_DISK_E2E")
	if rootfs == "" {
		t.Skip("set VMDEB_DISK_E2E=/path/to/a/debian/rootfs to build and boot a real disk image")
	}
	a := archOf(t, "amd64")
	r := root(rootfs)
	grow := r.exists("usr/sbin/sfdisk") || r.exists("usr/bin/growpart")
	network := Networkd
	if r.exists("usr/sbin/ifup") {
		network = Ifupdown
	}
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"gpt", Options{Size: 2 << 30, SwapSize: 64 * mib, GrowRoot: grow}},
		{"mbr-boot", Options{Size: 2 << 30, Table: "mbr", BootSize: 256 * mib, ESPSize: 64 * mib, Network: network}},
		{"btrfs-extlinux-mbr", Options{Size: 2 << 30, Table: "mbr", RootFS: "btrfs", Bootloader: "extlinux", GrowRoot: grow}},
		{"btrfs-grub", Options{Size: 2 << 30, RootFS: "btrfs"}},
		{"ext4-extlinux-gpt-boot", Options{Size: 2 << 30, BootSize: 256 * mib, Bootloader: "extlinux", SwapSize: 64 * mib}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.Format, o.Arch, o.Hostname = "qcow2", a, "vmdeb-e2e"
			bootE2E(t, rootfs, o)
		})
	}
}

func bootE2E(t *testing.T, rootfs string, o Options) {
	needBuild(t, o)
	dir := os.Getenv("VMDEB_DISK_E2E_OUT")
	if dir == "" {
		dir = t.TempDir()
	}
	out := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "-")+".qcow2")
	start := time.Now()
	if err := Build(context.Background(), testLog(t), rootfs, out, o); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %s", out, time.Since(start).Round(100*time.Millisecond))

	img := out
	if o.GrowRoot {
		// A larger disk over the image: the first boot grows the root into it.
		img = filepath.Join(t.TempDir(), "grown.qcow2")
		run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", out, "-F", "qcow2", img, "3G")
	}
	firmwares := []bool{false, true}
	if n, _ := o.normalize(); !n.uefi() {
		firmwares = []bool{false}
	}
	for _, uefi := range firmwares {
		name := map[bool]string{false: "BIOS", true: "UEFI"}[uefi]
		t.Run(name, func(t *testing.T) {
			var console strings.Builder
			res, err := qemu.Boot(context.Background(), qemu.Options{
				Image: img, Arch: o.Arch, UEFI: uefi, Accel: os.Getenv("VMDEB_DISK_E2E_ACCEL"), Memory: 1024, Timeout: 6 * time.Minute,
				Login: "root", Password: os.Getenv("VMDEB_DISK_E2E_PASSWORD"), Run: e2eChecks, Console: &console,
			})
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s", err, console.String())
			}
			t.Logf("%s: login prompt after %s (%s)\n%s", name, res.Elapsed.Round(100*time.Millisecond), res.Accel, res.RunOutput)
			got := map[string]string{}
			for _, l := range strings.Split(res.RunOutput, "\n") {
				if k, v, ok := strings.Cut(l, ": "); ok {
					got[k] = strings.TrimSpace(v)
				}
			}
			n, _ := o.normalize()
			want := map[string]string{"root": string(n.RootFS), "host": "vmdeb-e2e", "getty": "active", "failed": ""}
			if n.uefi() {
				want["efi"] = "vfat"
			}
			if o.SwapSize > 0 {
				want["swap"] = "partition"
			}
			if o.BootSize > 0 {
				want["boot"] = "ext4"
			}
			for k, w := range want {
				if !strings.Contains(got[k], w) || (w == "" && got[k] != "") {
					t.Errorf("%s: %q, want %q", k, got[k], w)
				}
			}
			// The serial console is the last one (extlinux appends initrd=).
			var consoles []string
			for _, f := range strings.Fields(got["cmdline"]) {
				if strings.HasPrefix(f, "console=") {
					consoles = append(consoles, f)
				}
			}
			if !strings.Contains(got["cmdline"], "root=UUID=") || len(consoles) == 0 || consoles[len(consoles)-1] != "console=ttyS0,115200n8" {
				t.Errorf("kernel command line %q", got["cmdline"])
			}
			if !strings.Contains(got["net"], "10.0.2.") {
				t.Errorf("no DHCP address (%s): %q", o.Network, got["net"])
			}
			if o.GrowRoot && (!strings.Contains(got["growroot"], "done") || len(got["rootsize"]) < 4) {
				// MiB: on the 3 GiB disk the root grows past 2.5 GiB.
				t.Errorf("grow-root: %q, root of %s MiB", got["growroot"], got["rootsize"])
			}
		})
	}
}
