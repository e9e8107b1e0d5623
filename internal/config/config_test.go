package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/disk"
)

const good = `name: test-image
suite: trixie
architecture: amd64
packages: [task-english, wpasupplicant]
users:
  - name: user
    password: live
    sudo: true
customise: hook.sh
outputs:
  - type: live-iso
    path: out/test.iso
`

// write puts a config and an executable hook in a temp dir.
func write(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hook.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "image.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGoodAndDefaults(t *testing.T) {
	p := write(t, good)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Variant != "minbase" || s.Hostname != "debian" || s.Live.Compression != "xz" || s.Bootstrap != "debootstrap" {
		t.Errorf("defaults not set: %+v", s)
	}
	if len(s.Components) != 1 || s.Components[0] != "main" {
		t.Errorf("components default = %v", s.Components)
	}
	if !s.LockRoot() {
		t.Error("root should be locked by default")
	}
	if s.Live.VolumeID != "TEST_IMAGE" {
		t.Errorf("volume id = %q", s.Live.VolumeID)
	}
	if s.Live.Title != "Debian GNU/Linux trixie (amd64)" {
		t.Errorf("title = %q", s.Live.Title)
	}
	if want := filepath.Join(filepath.Dir(p), "out/test.iso"); s.Path(s.Outputs[0].Path) != want {
		t.Errorf("output path %q, want %q", s.Path(s.Outputs[0].Path), want)
	}
	if s.KernelPackage() != "linux-image-amd64" {
		t.Errorf("kernel = %q", s.KernelPackage())
	}
	if s.Users[0].Shell != "/bin/bash" {
		t.Errorf("shell = %q", s.Users[0].Shell)
	}
}

// Each bad config must fail with the file, the line and the key named, and
// a hint of what is valid.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown key", strings.Replace(good, "suite: trixie", "suite: trixie\nsuits: x", 1),
			[]string{":3: suits: unknown key", "valid keys here:", "suite"}},
		{"unknown nested key", strings.Replace(good, "sudo: true", "sudo: true\n    sudoo: true", 1),
			[]string{":9: users[0].sudoo: unknown key", "password-hash"}},
		{"wrong type", strings.Replace(good, "sudo: true", "sudo: [1]", 1),
			[]string{":8:", "true or false"}},
		{"list expected", strings.Replace(good, "packages: [task-english, wpasupplicant]", "packages: task-english", 1),
			[]string{":4:", "expected a list"}},
		{"missing name", strings.Replace(good, "name: test-image\n", "", 1),
			[]string{"name: missing"}},
		{"unknown arch", strings.Replace(good, "architecture: amd64", "architecture: amd65", 1),
			[]string{":3: architecture:", "amd65", "arm64"}},
		{"unknown suite", strings.Replace(good, "suite: trixie", "suite: trixy", 1),
			[]string{":2: suite: unknown suite \"trixy\"", "bookworm"}},
		{"bad package", strings.Replace(good, "wpasupplicant", "Bad_Pkg", 1),
			[]string{":4: packages[1]:", "Bad_Pkg"}},
		{"bad common package", strings.Replace(good, "users:", "common-packages: [live-task-base, Firmware]\nusers:", 1),
			[]string{":5: common-packages[1]:", "Firmware", "not a Debian package name"}},
		{"debconf too short", strings.Replace(good, "users:", "debconf: [\"firmware-ipw2x00 firmware-ipw2x00/license/accepted\"]\nusers:", 1),
			[]string{":5: debconf[0]:", "OWNER QUESTION TYPE VALUE"}},
		{"debconf unknown type", strings.Replace(good, "users:", "debconf:\n  - man-db man-db/auto-update bool false\nusers:", 1),
			[]string{":6: debconf[0]:", `type "bool"`, "boolean"}},
		{"debconf boolean value", strings.Replace(good, "users:", "debconf:\n  - man-db man-db/auto-update boolean no\nusers:", 1),
			[]string{":6: debconf[0]:", "true or false"}},
		{"debconf question", strings.Replace(good, "users:", "debconf:\n  - man-db auto-update boolean false\nusers:", 1),
			[]string{":6: debconf[0]:", "has no /"}},
		{"missing hook", strings.Replace(good, "hook.sh", "nohook.sh", 1),
			[]string{":9: customise:", "nohook.sh", "no such file"}},
		{"root user", strings.Replace(good, "name: user", "name: root", 1),
			[]string{":6: users[0].name:", "root:"}},
		{"bad output type", strings.Replace(good, "type: live-iso", "type: iso", 1),
			[]string{":11: outputs[0].type: unknown output type \"iso\"", "live-iso"}},
		{"bad compression", good + "live:\n  compression: bzip9\n",
			[]string{":14: live.compression:", "zstd"}},
		{"volume id too long", good + "live:\n  volume-id: " + strings.Repeat("A", 33) + "\n",
			[]string{"live.volume-id:", "32"}},
		{"secure boot on i386", strings.Replace(good, "architecture: amd64", "architecture: i386", 1) + "secure-boot: true\n",
			[]string{":13: secure-boot: true: Debian signs no boot loaders for i386 (it does for amd64, arm64)", "auto"}},
		{"secure boot on stretch", strings.Replace(good, "suite: trixie", "suite: stretch", 1) + "secure-boot: true\n",
			[]string{":13: secure-boot: true: stretch has no signed boot loaders (Debian signs them from buster on)"}},
		{"secure boot yes", good + "secure-boot: yes\n",
			[]string{":13: secure-boot:", `"yes" is not valid (valid: auto, true, false)`}},
		{"no outputs", strings.Split(good, "outputs:")[0],
			[]string{"outputs: missing"}},
		{"lock and password", good + "root:\n  lock: true\n  password: x\n",
			[]string{":13: root:", "contradict"}},
		{"bad duration", good + "hook-timeout: soon\n",
			[]string{":13: \"soon\" is not a duration"}},
		{"not yaml", "name: [\n", []string{"image.yaml:", "not valid YAML"}},
		{"not a mapping", "- a\n- b\n", []string{"top level must be a mapping"}},
		{"twice", good + "name: again\n", []string{":13: name: given twice"}},
		{"mirror not url", good + "mirror: debian\n", []string{":13: mirror:", "not a mirror URL"}},
		{"empty", "", []string{"empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.yaml)
			_, err := Load(p)
			if err == nil {
				t.Fatalf("no error for\n%s", c.yaml)
			}
			msg := err.Error()
			if !strings.Contains(msg, p) {
				t.Errorf("error does not name the file %s: %s", p, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestHookNotExecutable(t *testing.T) {
	p := write(t, good)
	os.Chmod(filepath.Join(filepath.Dir(p), "hook.sh"), 0o644)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "not an executable file") {
		t.Fatalf("want a not-executable error, got %v", err)
	}
}

func TestOutputDirNotWritable(t *testing.T) {
	p := write(t, strings.Replace(good, "path: out/test.iso", "path: hook.sh/out/test.iso", 1))
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "outputs[0].path") || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("want an output path error, got %v", err)
	}
}

func TestMultipleErrorsReported(t *testing.T) {
	p := write(t, strings.Replace(strings.Replace(good, "amd64", "amd65", 1), "trixie", "trixy", 1))
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "architecture") || !strings.Contains(err.Error(), "suite") {
		t.Fatalf("want both errors, got %v", err)
	}
}

func TestArchOutputRefused(t *testing.T) {
	p := write(t, strings.Replace(good, "architecture: amd64", "architecture: s390x", 1))
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "cannot produce live-iso") {
		t.Fatalf("want refusal, got %v", err)
	}
}

func TestDiskOutput(t *testing.T) {
	p := write(t, strings.Replace(good, "  - type: live-iso\n    path: out/test.iso\n",
		"  - {type: disk, path: out/vm.qcow2, size: 4G, esp-size: 300MiB, bootloader: grub-hybrid, grow-root: true}\n", 1))
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Outputs[0]
	if d.Size.Bytes != 4<<30 || d.ESPSize.Bytes != 300<<20 || d.DiskFormat() != "qcow2" || !d.GrowRoot {
		t.Errorf("%+v", d)
	}
	for yaml, want := range map[string]string{
		"{type: disk, path: a.img}":                                                  "outputs[0].size: missing",
		"{type: disk, path: a.img, size: 4X}":                                        `"4X" is not a size`,
		"{type: disk, path: a.img, size: 1M}":                                        "too small",
		"{type: disk, path: a.img, size: 4G, bootloader: lilo}":                      `outputs[0].bootloader: "lilo" is not valid`,
		"{type: tarball, path: a.tar, size: 4G}":                                     "apply to disk outputs only",
		"{type: disk, path: a.img, size: 4G, filesystem: zfs}":                       `outputs[0].filesystem: "zfs" is not valid (valid: ext4, ext3, ext2, btrfs, xfs)`,
		"{type: disk, path: a.img, size: 4G, bootloader: extlinux, esp-size: 64M}":   "outputs[0].esp-size: extlinux boots BIOS PCs only",
		"{type: disk, path: a.img, size: 4G, bootloader: extlinux, filesystem: xfs}": "outputs[0].bootloader: extlinux cannot boot from an xfs root",
	} {
		p := write(t, strings.Replace(good, "  - type: live-iso\n    path: out/test.iso\n", "  - "+yaml+"\n", 1))
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", yaml, err, want)
		}
	}
}

func TestDiskBtrfsExtlinux(t *testing.T) {
	p := write(t, strings.Replace(good, "  - type: live-iso\n    path: out/test.iso\n",
		"  - {type: disk, path: out/vm.img, size: 3G, partition-table: mbr, filesystem: btrfs, bootloader: extlinux}\n", 1))
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Outputs[0]; d.Filesystem != "btrfs" || d.Bootloader != "extlinux" || d.DiskFormat() != "raw" {
		t.Errorf("%+v", d)
	}
}

// TestDiskXFS: an xfs root is accepted only where the host's mkfs.xfs can
// make it from a directory; elsewhere the error names the file, the key
// and what is needed.
func TestDiskXFS(t *testing.T) {
	p := write(t, strings.Replace(good, "  - type: live-iso\n    path: out/test.iso\n",
		"  - {type: disk, path: out/vm.img, size: 3G, filesystem: xfs, bootloader: grub-bios}\n", 1))
	_, err := Load(p)
	if herr := disk.CheckFS("xfs"); herr == nil {
		if err != nil {
			t.Errorf("this host's mkfs.xfs makes xfs from a directory, yet: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "outputs[0].filesystem: xfs needs mkfs.xfs from xfsprogs 6.17 or later") {
		t.Errorf("err = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4G": 4 << 30, "512M": 512 << 20, "300MiB": 300 << 20, "1.5G": 3 << 29, "1048576": 1 << 20, "2k": 2048} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "4X", "four"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDeviceTree(t *testing.T) {
	arm := strings.Replace(good, "architecture: amd64", "architecture: arm64", 1)
	s, err := Load(write(t, arm+"device-tree: rockchip/rk3399-rockpro64.dtb\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.DeviceTree != "rockchip/rk3399-rockpro64.dtb" {
		t.Errorf("device-tree = %q", s.DeviceTree)
	}
	tarball := strings.Replace(arm, "type: live-iso\n    path: out/test.iso", "type: tarball\n    path: out/test.tar.gz", 1)
	for yaml, want := range map[string]string{
		arm + "device-tree: /usr/lib/linux-image-6.12-arm64/rockchip/rk3399-rockpro64.dtb\n": ":13: device-tree:", // and relative
		arm + "device-tree: rockchip/rk3399-rockpro64\n":                                     "ends in .dtb",
		arm + "device-tree: ../rk3399-rockpro64.dtb\n":                                       "no . or ..",
		good + "device-tree: rockchip/rk3399-rockpro64.dtb\n":                                "architecture amd64 does not use device trees (those that do: arm64, armel, armhf, riscv64)",
		arm + "kernel: none\ndevice-tree: rockchip/rk3399-rockpro64.dtb\n":                   "kernel: none installs none",
		tarball + "device-tree: rockchip/rk3399-rockpro64.dtb\n":                             "only the boot loader of a live-iso or disk output loads it",
	} {
		p := write(t, yaml)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "device-tree") {
			t.Errorf("%s\ngot %v, want an error naming %s, device-tree and %q", yaml, err, p, want)
		}
	}
	if _, err := Load(write(t, arm+"device-tree: /x/board.dtb\n")); err == nil || !strings.Contains(err.Error(), "relative") {
		t.Errorf("an absolute path: %v", err)
	}
}

// secure-boot auto is on where Debian signs the boot chain: amd64 and
// arm64 from buster on; false is off everywhere, true on.
func TestUsesSecureBoot(t *testing.T) {
	for _, c := range []struct {
		suite, arch string
		mode        SecureBootMode
		want        bool
	}{
		{"trixie", "amd64", SecureBootAuto, true},
		{"bookworm", "arm64", SecureBootAuto, true},
		{"sid", "amd64", SecureBootAuto, true},
		{"buster", "amd64", SecureBootAuto, true},
		{"stretch", "amd64", SecureBootAuto, false},
		{"bookworm", "i386", SecureBootAuto, false},
		{"trixie", "ppc64el", SecureBootAuto, false},
		{"trixie", "amd64", SecureBootOff, false},
		{"trixie", "amd64", SecureBootOn, true},
	} {
		s := &Spec{Suite: c.suite, Architecture: c.arch, SecureBoot: c.mode}
		if got := s.UsesSecureBoot(); got != c.want {
			t.Errorf("%s %s secure-boot %s: %v, want %v (%s)", c.suite, c.arch, c.mode, got, c.want, SecureBootMissing(s))
		}
	}
}

// TestExt4Output: an ext4 output takes an optional size and no disk keys;
// it holds /etc/shadow, so only its owner may read it by default.
func TestExt4Output(t *testing.T) {
	for yaml, want := range map[string]int64{
		"{type: ext4, path: out/root.ext4}":            0,
		"{type: ext4, path: out/root.img, size: 2G}":   2 << 30,
		"{type: ext4, path: out/root.ext4, size: 16M}": 16 << 20,
	} {
		p := write(t, strings.Replace(good, "  - type: live-iso\n    path: out/test.iso\n", "  - "+yaml+"\n", 1))
		s, err := Load(p)
		if err != nil {
			t.Errorf("%s: %v", yaml, err)
			continue
		}
		if o := s.Outputs[0]; o.Type != Ext4 || o.Size.Bytes != want || o.OutputMode() != 0o600 {
			t.Errorf("%s: %+v (mode %v)", yaml, o, o.OutputMode())
		}
	}
	for yaml, want := range map[string]string{
		"{type: ext4, path: a.ext4, size: 1M}":                "outputs[0].size: 1048576 bytes is too small",
		"{type: ext4, path: a.ext4, bootloader: grub-bios}":   "apply to disk outputs only",
		"{type: ext4, path: a.ext4, filesystem: ext3}":        "apply to disk outputs only",
		"{type: ext5, path: a.ext4}":                          `unknown output type "ext5" (valid: live-iso, disk, tarball, directory, squashfs, ext4, oci)`,
		"{type: ext4, path: a.ext4, size: 2G, format: qcow2}": "apply to disk outputs only",
	} {
		p := write(t, strings.Replace(good, "  - type: live-iso\n    path: out/test.iso\n", "  - "+yaml+"\n", 1))
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", yaml, err, want)
		}
	}
}

// Board images: armhf/armel disks with no boot loader of vmdeb's, a FAT
// /boot after a gap, an image hook, no kernel.
func TestBoardDisk(t *testing.T) {
	board := func(arch, extra string) string {
		return strings.Replace(strings.Replace(good, "architecture: amd64", "architecture: "+arch, 1),
			"type: live-iso\n    path: out/test.iso", "type: disk\n    path: out/board.img\n    size: 2G\n    partition-table: mbr"+extra, 1)
	}
	s, err := Load(write(t, board("armhf", "\n    boot-size: 64M\n    boot-filesystem: vfat\n    partition-offset: 4M\n    image-hook: hook.sh")+"kernel: none\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o := s.Outputs[0]; o.BootFilesystem != "vfat" || o.PartitionOffset.Bytes != 4<<20 || o.ImageHook != "hook.sh" || s.KernelPackage() != "" {
		t.Errorf("%+v kernel %q", o, s.KernelPackage())
	}
	for yaml, want := range map[string]string{
		board("armel", "\n    bootloader: grub-uefi"):                                                 "outputs[0].bootloader: armel disks are board images",
		board("armhf", "\n    boot-filesystem: vfat"):                                                 "outputs[0].boot-filesystem: applies to a separate /boot",
		board("amd64", "\n    boot-size: 64M\n    boot-filesystem: vfat"):                             "a vfat /boot is for a board",
		board("armhf", "\n    boot-size: 64M\n    boot-filesystem: xfs"):                              `outputs[0].boot-filesystem: "xfs" is not valid (valid: ext4, ext3, ext2, vfat)`,
		board("armhf", "\n    partition-offset: 8K"):                                                  "outputs[0].partition-offset: 8192 bytes: a whole number of MiB",
		board("armhf", "\n    image-hook: missing.sh"):                                                "outputs[0].image-hook: hook",
		board("amd64", "") + "kernel: none\n":                                                         "outputs[0].bootloader: a disk with a boot loader needs a kernel",
		strings.Replace(good, "path: out/test.iso", "path: out/test.iso\n    image-hook: hook.sh", 1): "apply to disk outputs only",
	} {
		p := write(t, yaml)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s\ngot %v, want an error naming %s and %q", yaml, err, p, want)
		}
	}
	if _, err := Load(write(t, board("amd64", "\n    bootloader: none")+"kernel: none\n")); err != nil {
		t.Errorf("amd64 disk without boot loader or kernel: %v", err)
	}
}

// TestDebconfLines: what debconf-set-selections takes is accepted, the
// value being the rest of the line (and possibly empty).
func TestDebconfLines(t *testing.T) {
	for _, line := range []string{
		"firmware-ipw2x00 firmware-ipw2x00/license/accepted boolean true",
		"keyboard-configuration keyboard-configuration/layoutcode string de",
		"tzdata tzdata/Areas select Europe",
		"locales locales/locales_to_be_generated multiselect en_US.UTF-8 UTF-8, de_DE.UTF-8 UTF-8",
		"d-i passwd/root-password password",
	} {
		if msg := debconfLineError(line); msg != "" {
			t.Errorf("%q refused: %s", line, msg)
		}
	}
	p := write(t, strings.Replace(good, "users:", "debconf:\n  - tzdata tzdata/Areas select Europe\nusers:", 1))
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Debconf) != 1 || s.Debconf[0] != "tzdata tzdata/Areas select Europe" {
		t.Errorf("debconf = %q", s.Debconf)
	}
}

// The package cache serves the packages stage of either backend: cache:
// is taken with debootstrap; insecure, the native bootstrapper's alone,
// is refused with it.
func TestCacheWithEitherBackend(t *testing.T) {
	s, err := Load(write(t, good+"cache: debs\n"))
	if err != nil {
		t.Fatalf("cache: with the debootstrap backend: %v", err)
	}
	if s.Bootstrap != "debootstrap" || s.Path(s.Cache) != filepath.Join(s.Dir, "debs") {
		t.Errorf("bootstrap %q, cache %q", s.Bootstrap, s.Path(s.Cache))
	}
	_, err = Load(write(t, good+"insecure: true\n"))
	if err == nil || !strings.Contains(err.Error(), "insecure: only applies to bootstrap: native") {
		t.Errorf("insecure: with debootstrap: %v", err)
	}
}
