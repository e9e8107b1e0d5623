package integration

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vmarch "vmdeb/internal/arch"
)

// TestForeignArm64 builds the arm64 example on this (amd64) host through
// qemu-user and boots it as a user would, without --arch: vmdeb boot must
// read the architecture from the ISO's EFI loader and pick
// qemu-system-aarch64 with UEFI.
// A proof, not a CI test (make proof-foreign): the build through
// qemu-user takes over 20 minutes here; CI keeps a foreign build in
// TestBoardImage (armhf) and TestI386.
func TestForeignArm64(t *testing.T) {
	proof(t, "proof-foreign")
	foreign(t, "arm64", elf.EM_AARCH64, "arm64 (qemu-system-aarch64) with UEFI")
}

// TestI386 bootstraps a small i386 system with a hook: on an amd64 host
// whose kernel runs 32-bit programs it runs them natively, on one that
// does not (ia32_emulation=0) through the qemu-i386 handler make deps
// registers. The image's programs are i386 ones, the hook saw
// VMDEB_ARCH=i386 and no emulator is left in it. The whole i386 live ISO
// and its boot with qemu-system-i386 are TestI386Live (make proof-foreign):
// through qemu-user that build takes most of an hour on a 2-core host.
func TestI386(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	cfg := writeConfig(t, dir, i386Config, map[string]string{"hooks/arch.sh": archHook})
	r := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg)
	if r.code != 0 {
		t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
	}
	assertClean(t, work)
	if a, err := vmarch.Lookup("i386"); err == nil && vmarch.Runs(a) != nil {
		t.Logf("this kernel does not run i386 programs (%v): the build ran them through qemu-i386", vmarch.Runs(a))
	}
	tarball := filepath.Join(out, "small-i386.tar.gz")
	bash, err := exec.Command("tar", "-xOzf", tarball, "./usr/bin/bash").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	f, err := elf.NewFile(bytes.NewReader(bash))
	if err != nil {
		t.Fatalf("usr/bin/bash: %v", err)
	}
	if f.Machine != elf.EM_386 {
		t.Errorf("/usr/bin/bash is %v, want %v", f.Machine, elf.EM_386)
	}
	if hook, _ := exec.Command("tar", "-xOzf", tarball, "./etc/vmdeb-hook").Output(); !strings.Contains(string(hook), "arch=i386\n") {
		t.Errorf("the hook did not see VMDEB_ARCH=i386: %q", hook)
	}
	list, err := exec.Command("tar", "-tzf", tarball).Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	for _, l := range strings.Split(string(list), "\n") {
		if strings.Contains(l, "qemu-") && (strings.Contains(l, "-static") || strings.Contains(l, "binfmt")) {
			t.Errorf("an emulator was left in the image: %s", l)
		}
	}
}

const i386Config = `name: small-i386
suite: bookworm
architecture: i386
variant: minbase
kernel: none
customise: hooks/arch.sh
outputs:
  - {type: tarball, path: small-i386.tar.gz}
`

const archHook = `#!/bin/sh
set -e
echo "arch=$VMDEB_ARCH" > "$1/etc/vmdeb-hook"
`

// TestI386Live builds the i386 example and boots it with BIOS. The ISO's
// 32-bit EFI loader tells it from an amd64 one; --arch i386, which agrees,
// is kept so the test also covers a given --arch. A proof, not a CI test:
// make proof-foreign.
func TestI386Live(t *testing.T) {
	proof(t, "proof-foreign")
	foreign(t, "i386", elf.EM_386, "i386 (qemu-system-i386) with BIOS", "--arch", "i386")
}

// foreign builds the live example for arch and boots it with bootArgs;
// the boot's first line must contain choice (the machine it picked).
func foreign(t *testing.T, arch string, machine elf.Machine, choice string, bootArgs ...string) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	copyExamples(t, dir)
	r := run(t, ctx, "build", "--outdir", out, "--workdir", work, filepath.Join(dir, "live-"+arch+".yaml"))
	if r.code != 0 {
		t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
	}
	assertClean(t, work)
	iso := filepath.Join(out, "debian-live-minimal-"+arch+".iso")

	tmp := t.TempDir()
	sq := filepath.Join(tmp, "fs.squashfs")
	if o, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/live/filesystem.squashfs", sq).CombinedOutput(); err != nil {
		t.Fatalf("extract: %v %s", err, o)
	}
	root := filepath.Join(tmp, "root")
	if o, err := exec.Command("unsquashfs", "-no-progress", "-d", root, sq, "usr/bin/bash", "etc/vmdeb-hook").CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v %s", err, o)
	}
	f, err := elf.Open(filepath.Join(root, "usr/bin/bash"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != machine {
		t.Errorf("/usr/bin/bash is %v, want %v", f.Machine, machine)
	}
	f.Close()
	hook, _ := os.ReadFile(filepath.Join(root, "etc/vmdeb-hook"))
	if !strings.Contains(string(hook), "arch="+arch+"\n") {
		t.Errorf("the hook did not see VMDEB_ARCH=%s: %q", arch, hook)
	}
	list, _ := exec.Command("unsquashfs", "-l", sq).Output()
	for _, l := range strings.Split(string(list), "\n") {
		if strings.Contains(l, "qemu-") && (strings.Contains(l, "-static") || strings.Contains(l, "binfmt")) {
			t.Errorf("an emulator was left in the image: %s", l)
		}
	}

	checkDeviceTrees(t, arch, iso, string(list))

	b := run(t, ctx, append(append([]string{"boot", "--timeout", "20m"}, bootArgs...), iso)...)
	if b.code != 0 {
		t.Fatalf("%s boot did not reach a login prompt:\n%s", arch, b.stderr)
	}
	if first, _, _ := strings.Cut(b.stdout, "\n"); !strings.Contains(first, choice) {
		t.Errorf("the boot's first line %q does not say %q", first, choice)
	}
}

// checkDeviceTrees: on an architecture with device trees, every dtb the
// image's kernel installed (as the squashfs listing shows them) is on the
// ISO under /live/dtbs, in the same vendor directories; elsewhere there are
// none. The example names no board (qemu's virt machine supplies its own
// device tree), so its menu loads none.
func checkDeviceTrees(t *testing.T, arch, iso, squashfsList string) {
	t.Helper()
	a, err := vmarch.Lookup(arch)
	if err != nil {
		t.Fatal(err)
	}
	var inImage []string
	for _, l := range strings.Split(squashfsList, "\n") {
		_, rest, ok := strings.Cut(l, "/usr/lib/linux-image-")
		if !ok || !(strings.HasSuffix(l, ".dtb") || strings.HasSuffix(l, ".dtbo")) {
			continue
		}
		if _, rel, ok := strings.Cut(rest, "/"); ok {
			inImage = append(inImage, rel)
		}
	}
	out, err := exec.Command("xorriso", "-indev", iso, "-find", "/live", "-type", "f", "-name", "*.dtb*").Output()
	if err != nil {
		t.Fatalf("listing the ISO: %v", err)
	}
	var onISO []string
	for _, l := range strings.Split(string(out), "\n") {
		if rel, ok := strings.CutPrefix(strings.Trim(l, "'"), "/live/dtbs/"); ok {
			onISO = append(onISO, rel)
		}
	}
	slices.Sort(inImage)
	slices.Sort(onISO)
	if !a.DeviceTrees {
		if len(onISO) > 0 {
			t.Errorf("%s uses no device trees, yet the ISO has %d", arch, len(onISO))
		}
		return
	}
	// Debian's arm64 kernel ships hundreds of boards' device trees.
	if len(inImage) < 100 || !slices.Equal(inImage, onISO) {
		t.Errorf("the kernel installed %d device trees, the ISO's /live/dtbs has %d; missing: %q", len(inImage), len(onISO), dtbsMissing(inImage, onISO))
	}
	dst := filepath.Join(t.TempDir(), "grub.cfg")
	if o, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/boot/grub/grub.cfg", dst).CombinedOutput(); err != nil {
		t.Fatalf("extract grub.cfg: %v %s", err, o)
	}
	if cfg, _ := os.ReadFile(dst); strings.Contains(string(cfg), "devicetree") {
		t.Errorf("no device-tree in the config, yet grub.cfg loads one:\n%s", cfg)
	}
}

// dtbsMissing lists the first few of want that got lacks.
func dtbsMissing(want, got []string) []string {
	var m []string
	for _, w := range want {
		if !slices.Contains(got, w) && len(m) < 5 {
			m = append(m, w)
		}
	}
	return m
}
