package disk

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"vmdeb/internal/bytesize"

	"vmdeb/internal/arch"
)

func archOf(t *testing.T, name string) arch.Arch {
	t.Helper()
	a, err := arch.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestPlanGPTHybrid(t *testing.T) {
	o := Options{Size: 4 << 30, Arch: archOf(t, "amd64")}
	l, err := Plan(o, 600*mib)
	if err != nil {
		t.Fatal(err)
	}
	if l.Table != "gpt" || l.TotalSectors != 4<<30/512 || !uuidRE.MatchString(l.DiskID) {
		t.Fatalf("table %s, %d sectors, disk id %s", l.Table, l.TotalSectors, l.DiskID)
	}
	want := []struct {
		name, typ   string
		start, secs int64
		fs, mount   string
	}{
		{"bios", gptBIOSBoot, 2048, 2048, "", ""},
		{"esp", gptESP, 4096, 256 * 2048, "vfat", "/boot/efi"},
		{"root", gptRoot["amd64"], 4096 + 256*2048, 0, "ext4", "/"},
	}
	if len(l.Parts) != len(want) {
		t.Fatalf("got %d partitions: %+v", len(l.Parts), l.Parts)
	}
	for i, w := range want {
		p := l.Parts[i]
		if p.Name != w.name || p.Type != w.typ || p.Start != w.start || (w.secs != 0 && p.Sectors != w.secs) || p.FS != w.fs || p.Mount != w.mount {
			t.Errorf("partition %d = %+v, want %+v", i+1, p, w)
		}
		if !uuidRE.MatchString(p.PartUUID) {
			t.Errorf("partition %s: PARTUUID %q", p.Name, p.PartUUID)
		}
	}
	root := l.Parts[2]
	// The root takes the rest, whole MiB, before the backup GPT.
	end := root.Start + root.Sectors
	if root.Sectors%2048 != 0 || end > l.TotalSectors-33 || l.TotalSectors-33-end >= 2048 {
		t.Errorf("root ends at %d of %d sectors", end, l.TotalSectors)
	}
	if !uuidRE.MatchString(root.UUID) || !regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}$`).MatchString(l.Parts[1].UUID) {
		t.Errorf("file system ids: root %q, esp %q", root.UUID, l.Parts[1].UUID)
	}
	if l.BootPart().Name != "root" {
		t.Errorf("boot files on %s, want root", l.BootPart().Name)
	}
}

func TestPlanMBRBootSwap(t *testing.T) {
	o := Options{Size: 2 << 30, Arch: archOf(t, "amd64"), Table: "mbr", Bootloader: "grub-bios", BootSize: 200 * mib, SwapSize: 300*mib + 1}
	l, err := Plan(o, 300*mib)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Parts) != 3 {
		t.Fatalf("partitions %+v", l.Parts)
	}
	boot, swap, root := l.Parts[0], l.Parts[1], l.Parts[2]
	if boot.Name != "boot" || boot.Start != 2048 || boot.Sectors != 200*2048 || boot.Type != "83" || boot.FS != "ext4" || !boot.Bootable {
		t.Errorf("boot %+v", boot)
	}
	// Sizes round up to whole MiB.
	if swap.Name != "swap" || swap.Start != 2048+200*2048 || swap.Sectors != 301*2048 || swap.Type != "82" || swap.FS != "swap" || swap.Bootable {
		t.Errorf("swap %+v", swap)
	}
	if root.Name != "root" || root.Type != "83" || root.Start != swap.Start+swap.Sectors || root.Start+root.Sectors > l.TotalSectors || root.Bootable {
		t.Errorf("root %+v", root)
	}
	if !regexp.MustCompile(`^0x[0-9a-f]{8}$`).MatchString(l.DiskID) || root.PartUUID != l.DiskID[2:]+"-03" {
		t.Errorf("disk id %s, root PARTUUID %s", l.DiskID, root.PartUUID)
	}
	if l.BootPart().Name != "boot" {
		t.Errorf("boot files on %s, want boot", l.BootPart().Name)
	}
	if _, _, ok := l.Part("bios"); ok {
		t.Error("an MBR disk got a BIOS boot partition")
	}
}

// A board image as vmdebootstrap made one with --bootsize --boottype vfat
// --bootoffset: MBR, the FAT /boot first from the offset (active), the
// root after it, no boot loader.
func TestPlanBoard(t *testing.T) {
	for _, c := range []struct {
		boot     int64
		wantType string
	}{{48 * mib, "0e"}, {128 * mib, "0c"}} {
		o := Options{Size: 1 << 30, Arch: archOf(t, "armhf"), Table: "mbr", BootSize: c.boot, BootFS: "vfat", PartitionOffset: 4 * mib}
		l, err := Plan(o, 300*mib)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Parts) != 2 {
			t.Fatalf("partitions %+v", l.Parts)
		}
		boot, root := l.Parts[0], l.Parts[1]
		if boot.Name != "boot" || boot.Start != 4*2048 || boot.Sectors != c.boot/sector || boot.Type != c.wantType || boot.FS != "vfat" || !boot.Bootable ||
			!regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}$`).MatchString(boot.UUID) {
			t.Errorf("boot %+v", boot)
		}
		if root.Name != "root" || root.Start != boot.Start+boot.Sectors || root.FS != "ext4" || root.Bootable {
			t.Errorf("root %+v", root)
		}
	}
	// GPT: FAT as parted types it.
	o := Options{Size: 1 << 30, Arch: archOf(t, "armhf"), BootSize: 64 * mib, BootFS: "vfat"}
	l, err := Plan(o, 300*mib)
	if err != nil {
		t.Fatal(err)
	}
	if l.Parts[0].Type != gptBasicData || l.Parts[0].Start != 2048 {
		t.Errorf("GPT boot %+v", l.Parts[0])
	}
	if DefaultBootloader(archOf(t, "armel")) != NoBootloader {
		t.Error("armel disks default to a boot loader")
	}
}

func TestHookArgs(t *testing.T) {
	args := hookArgs(&Hook{Script: "/h"}, "/t/root", "/t/disk.raw")
	i := slices.Index(args, "vmdeb-image-hook")
	if i < 0 || !slices.Equal(args[:3], []string{"--mount", "--propagation", "private"}) {
		t.Fatalf("args %q", args)
	}
	if got, want := args[i+1:], []string{"/t/root", "/t/disk.raw", "/h"}; !slices.Equal(got, want) {
		t.Errorf("args %q, want %q", got, want)
	}
}

func TestPlanTooSmall(t *testing.T) {
	o := Options{Size: 256 * mib, Arch: archOf(t, "amd64")}
	_, err := Plan(o, 500*mib)
	var ts *TooSmallError
	if !errors.As(err, &ts) {
		t.Fatalf("err = %v, want a TooSmallError", err)
	}
	if ts.Given != 256*mib || ts.Need <= 500*mib || ts.Need%mib != 0 {
		t.Errorf("%+v", ts)
	}
	msg := err.Error()
	for _, s := range []string{"does not fit", bytesize.Format(ts.Need), "256 MiB", "500 MiB"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	// The size it names is enough, and a MiB less is not.
	o.Size = ts.Need
	if _, err := Plan(o, 500*mib); err != nil {
		t.Errorf("with the size the error asked for: %v", err)
	}
	o.Size = ts.Need - mib
	if _, err := Plan(o, 500*mib); !errors.As(err, &ts) {
		t.Errorf("a MiB less: err = %v", err)
	}
	// No room at all for the root after the fixed partitions.
	o.Size = 200 * mib
	if _, err := Plan(o, 1); !errors.As(err, &ts) {
		t.Errorf("no room for the root: err = %v", err)
	}
}

func TestPlanInvalid(t *testing.T) {
	amd64, arm64, armhf := archOf(t, "amd64"), archOf(t, "arm64"), archOf(t, "armhf")
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"grub-bios on arm64", Options{Arch: arm64, Bootloader: "grub-bios"}, "needs a PC BIOS"},
		{"hybrid on arm64", Options{Arch: arm64, Bootloader: "grub-hybrid"}, "needs a PC BIOS"},
		{"ESP without UEFI", Options{Arch: amd64, Bootloader: "grub-bios", ESPSize: 100 * mib}, "only makes sense with a UEFI"},
		{"ESP without a boot loader", Options{Arch: amd64, Bootloader: "none", ESPSize: 100 * mib}, "only makes sense with a UEFI"},
		{"tiny ESP", Options{Arch: amd64, ESPSize: 8 * mib}, "at least 32 MiB"},
		{"tiny /boot", Options{Arch: amd64, BootSize: mib}, "at least 16 MiB"},
		{"extlinux on arm64", Options{Arch: arm64, Bootloader: "extlinux"}, "needs a PC BIOS"},
		{"extlinux with an ESP", Options{Arch: amd64, Bootloader: "extlinux", ESPSize: 64 * mib}, "only makes sense with a UEFI"},
		{"extlinux on xfs", Options{Arch: amd64, Bootloader: "extlinux", RootFS: "xfs"}, "extlinux cannot boot from xfs"},
		{"unknown boot loader", Options{Arch: amd64, Bootloader: "lilo"}, "valid: grub-bios, grub-uefi, grub-hybrid"},
		{"unknown format", Options{Arch: amd64, Format: "vmdk"}, `format "vmdk" is not valid (valid: raw, qcow2)`},
		{"unknown table", Options{Arch: amd64, Table: "apm"}, "partition table"},
		{"unknown file system", Options{Arch: amd64, RootFS: "zfs"}, "valid: ext4, ext3, ext2, btrfs, xfs"},
		{"unknown network", Options{Arch: amd64, Network: "nm"}, "valid: networkd, ifupdown, none"},
		{"no architecture", Options{}, "no architecture"},
		{"architecture without disks", Options{Arch: archOf(t, "ppc64el"), Bootloader: "none"}, "has no disk image output"},
		{"GRUB on a board", Options{Arch: armhf, Bootloader: "grub-uefi"}, "board images"},
		{"boot file system without /boot", Options{Arch: amd64, BootFS: "vfat", Bootloader: "none"}, "needs a separate /boot"},
		{"vfat /boot with GRUB", Options{Arch: amd64, BootFS: "vfat", BootSize: 64 * mib}, "bootloader: none"},
		{"xfs /boot", Options{Arch: amd64, BootFS: "xfs", BootSize: 64 * mib}, "valid: ext4, ext3, ext2, vfat"},
		{"offset under 1 MiB", Options{Arch: amd64, PartitionOffset: 8192}, "at least 1 MiB"},
		{"offset not whole MiB", Options{Arch: amd64, PartitionOffset: 3*mib + 512}, "whole number of MiB"},
		{"relative hook", Options{Arch: amd64, Hook: &Hook{Script: "hook.sh"}}, "not an absolute path"},
		{"odd size", Options{Arch: amd64, Size: 1<<30 + 1}, "multiple of 512"},
		{"MBR beyond 2 TiB", Options{Arch: amd64, Table: "mbr", Size: 3 << 40}, "use gpt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.o.Size == 0 {
				c.o.Size = 4 << 30
			}
			_, err := Plan(c.o, 100*mib)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}

func TestPlanDefaults(t *testing.T) {
	for _, c := range []struct {
		arch string
		want Bootloader
	}{{"amd64", "grub-hybrid"}, {"i386", "grub-hybrid"}, {"arm64", "grub-uefi"}} {
		if got := DefaultBootloader(archOf(t, c.arch)); got != c.want {
			t.Errorf("%s: %s, want %s", c.arch, got, c.want)
		}
	}
	l, err := Plan(Options{Size: 1 << 30, Arch: archOf(t, "arm64")}, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Parts) != 2 || l.Parts[0].Name != "esp" || l.Parts[1].Type != gptRoot["arm64"] {
		t.Errorf("arm64 layout %+v", l.Parts)
	}
}

func TestPlanDeterministic(t *testing.T) {
	o := Options{Size: 1 << 30, Arch: archOf(t, "amd64"), SwapSize: 64 * mib, SourceDateEpoch: 1700000000, Seed: "minimal"}
	ids := func(o Options) []string {
		l, err := Plan(o, 100*mib)
		if err != nil {
			t.Fatal(err)
		}
		s := []string{l.DiskID}
		for _, p := range l.Parts {
			s = append(s, p.UUID, p.PartUUID)
		}
		return s
	}
	a, b := ids(o), ids(o)
	if strings.Join(a, " ") != strings.Join(b, " ") {
		t.Errorf("same seed and epoch, different ids:\n%v\n%v", a, b)
	}
	seen := map[string]bool{}
	for _, id := range a {
		if id != "" && seen[id] {
			t.Errorf("id %s used twice in %v", id, a)
		}
		seen[id] = true
	}
	o2 := o
	o2.Seed = "other"
	for i, id := range ids(o2) {
		if id != "" && id == a[i] {
			t.Errorf("another seed gives the same id %s", id)
		}
	}
	o.SourceDateEpoch = 0
	if c, d := ids(o), ids(o); c[0] == d[0] {
		t.Errorf("without an epoch the ids repeat: %s", c[0])
	}
}

func TestSfdiskScript(t *testing.T) {
	o := Options{Size: 1 << 30, Arch: archOf(t, "amd64"), SourceDateEpoch: 1, Seed: "x"}
	l, err := Plan(o, 10*mib)
	if err != nil {
		t.Fatal(err)
	}
	s := sfdiskScript(l)
	for _, want := range []string{"label: gpt\n", "label-id: " + l.DiskID + "\n", "unit: sectors\n",
		"start=2048, size=2048, type=" + gptBIOSBoot + ", uuid=" + l.Parts[0].PartUUID + ", name=bios\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	o.Table, o.Bootloader = "mbr", "grub-bios"
	l, err = Plan(o, 10*mib)
	if err != nil {
		t.Fatal(err)
	}
	s = sfdiskScript(l)
	if !strings.Contains(s, "label: dos\n") || !strings.Contains(s, ", type=83, bootable\n") || strings.Contains(s, "uuid=") {
		t.Errorf("MBR script:\n%s", s)
	}
}

func TestExtMinSize(t *testing.T) {
	for _, used := range []int64{0, 10 * mib, 500 * mib, 3 << 30} {
		u := Usage{Bytes: used, Inodes: used / 20000}
		m := extMinSize(u, "ext4")
		if !extFits(u, m, "ext4") || extFits(u, m-mib, "ext4") && m > 5*mib {
			t.Errorf("%d bytes: minimum %d is not the smallest fit", used, m)
		}
		if m < used {
			t.Errorf("%d bytes fit in %d?", used, m)
		}
	}
	// Many small files need more inodes than the default ratio gives.
	few, many := Usage{Bytes: 100 * mib, Inodes: 100}, Usage{Bytes: 100 * mib, Inodes: 200000}
	if extMinSize(many, "ext4") <= extMinSize(few, "ext4") {
		t.Error("inodes are not counted")
	}
}

func TestPlanExtlinux(t *testing.T) {
	amd64 := archOf(t, "amd64")
	// MBR: the root is the active partition; no BIOS boot partition, no ESP.
	l, err := Plan(Options{Size: 1 << 30, Arch: amd64, Table: "mbr", RootFS: "btrfs", Bootloader: "extlinux"}, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Parts) != 1 || l.Parts[0].Name != "root" || !l.Parts[0].Bootable || l.Parts[0].FS != "btrfs" || l.Parts[0].Start != 2048 {
		t.Errorf("MBR extlinux layout %+v", l.Parts)
	}
	// GPT with /boot: /boot carries LegacyBIOSBootable for gptmbr.bin, the
	// root does not; an extlinux /boot beside a btrfs root is ext4.
	l, err = Plan(Options{Size: 1 << 30, Arch: amd64, RootFS: "btrfs", BootSize: 128 * mib, Bootloader: "extlinux"}, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Parts) != 2 || l.Parts[0].Name != "boot" || !l.Parts[0].Bootable || l.Parts[0].FS != "ext4" || l.Parts[1].Bootable {
		t.Fatalf("GPT extlinux layout %+v", l.Parts)
	}
	s := sfdiskScript(l)
	if !strings.Contains(s, `name=boot, attrs="LegacyBIOSBootable"`+"\n") || strings.Count(s, "LegacyBIOSBootable") != 1 || strings.Contains(s, "bootable\n") {
		t.Errorf("GPT script:\n%s", s)
	}
	// GRUB on a GPT marks nothing.
	l, err = Plan(Options{Size: 1 << 30, Arch: amd64}, 100*mib)
	if err != nil {
		t.Fatal(err)
	}
	if s := sfdiskScript(l); strings.Contains(s, "attrs=") || strings.Contains(s, "bootable") {
		t.Errorf("GRUB GPT script:\n%s", s)
	}
}

func TestPlanBtrfsXFSSize(t *testing.T) {
	amd64 := archOf(t, "amd64")
	// A Debian root of 350 MiB in 12700 inodes: btrfs-progs 6.2 reserves
	// 893 MiB for it before copying (measured), more than ext4 needs.
	u := Usage{Bytes: 350 * mib, Inodes: 12700}
	if n := btrfsNeed(u); n < 893*mib || n > 1200*mib {
		t.Errorf("btrfs estimate %s for %+v", bytesize.Format(n), u)
	}
	if fsMinSize(u, "btrfs") <= fsMinSize(u, "ext4") {
		t.Error("btrfs needs less than ext4?")
	}
	if m := fsMinSize(Usage{Bytes: mib, Inodes: 10}, "xfs"); m < xfsMinPart {
		t.Errorf("xfs minimum %s, below mkfs.xfs's 300 MiB", bytesize.Format(m))
	}
	var ts *TooSmallError
	if _, err := plan(Options{Size: 900 * mib, Arch: amd64, RootFS: "btrfs"}, u); !errors.As(err, &ts) {
		t.Errorf("btrfs in 900 MiB: err = %v, want too small", err)
	} else if ts.Need < btrfsNeed(u) {
		t.Errorf("needs %s, below the estimate %s", bytesize.Format(ts.Need), bytesize.Format(btrfsNeed(u)))
	}
	if _, err := plan(Options{Size: 2 << 30, Arch: amd64, RootFS: "btrfs"}, u); err != nil {
		t.Errorf("btrfs in 2 GiB: %v", err)
	}
}
