package build

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vmdeb/internal/arch"
	"vmdeb/internal/bootstrap"
	"vmdeb/internal/config"
)

func spec(t *testing.T, extra string) *config.Spec {
	t.Helper()
	dir := t.TempDir()
	y := "name: t\nsuite: trixie\narchitecture: amd64\nmirror: http://m.example/debian\noutputs:\n  - {type: live-iso, path: t.iso}\n" + extra
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte(y), 0o644)
	s, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPackageList(t *testing.T) {
	s := spec(t, "packages: [task-english, sudo]\nusers: [{name: u, sudo: true}]\n")
	got := packageList(s)
	want := []string{"linux-image-amd64", "live-boot", "live-config", "systemd-sysv", "sudo", "task-english"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
	s = spec(t, "")
	s.Kernel, s.Outputs[0].Type = "none", "tarball"
	if l := packageList(s); len(l) != 0 {
		t.Errorf("a kernel-less tarball installs %v", l)
	}
}

func TestPackageListBtrfs(t *testing.T) {
	s := spec(t, "")
	s.Outputs[0] = config.Output{Type: "disk", Path: "vm.img", Filesystem: "btrfs"}
	if got := packageList(s); !slices.Contains(got, "btrfs-progs") {
		t.Errorf("a btrfs root without btrfs-progs: %v", got)
	}
}

func TestPackageListDisk(t *testing.T) {
	s := spec(t, "")
	s.Outputs[0] = config.Output{Type: "disk", Path: "vm.img", GrowRoot: true}
	got := packageList(s)
	for _, want := range []string{"linux-image-amd64", "systemd-resolved", "cloud-guest-utils", "e2fsprogs"} {
		if !slices.Contains(got, want) {
			t.Errorf("%v lacks %s", got, want)
		}
	}
	if slices.Contains(got, "live-boot") {
		t.Errorf("a disk image gets the live stack: %v", got)
	}
}

func TestSecurityFor(t *testing.T) {
	if got := securityFor("http://a.example/debian", "http://h.example/debian-security"); got != "http://h.example/debian-security" {
		t.Error(got)
	}
	if got := securityFor("http://a.example/debian", ""); got != "http://a.example/debian-security" {
		t.Error(got)
	}
	if got := securityFor("http://a.example/mirror", ""); got != "" {
		t.Error(got)
	}
}

func fakeBinfmt(t *testing.T, handler string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "status"), []byte("enabled\n"), 0o644)
	if handler != "" {
		os.WriteFile(filepath.Join(dir, "qemu-aarch64"), []byte(handler), 0o644)
	}
	return dir
}

func TestEmulation(t *testing.T) {
	ctx := context.Background()
	arm := func(extra string) *config.Spec {
		s := spec(t, extra)
		s.Architecture = "arm64"
		return s
	}
	// Flag F: nothing to copy.
	p, err := NewPlan(ctx, arm(""), Options{Offline: true, BinfmtDir: fakeBinfmt(t, "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")})
	if err != nil || p.Interpreter != "" {
		t.Fatalf("F handler: %+v %v", p, err)
	}
	if _, hostHas := os.Stat("/usr/lib/grub/arm64-efi"); hostHas != nil && !p.TargetGrub {
		t.Error("arm64 GRUB should come from the target")
	}
	// No F: the registered interpreter is copied in.
	p, err = NewPlan(ctx, arm(""), Options{Offline: true, BinfmtDir: fakeBinfmt(t, "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OC\n")})
	if err != nil || p.Interpreter != "/usr/bin/qemu-aarch64-static" || p.InterpreterAt != "/usr/bin/qemu-aarch64-static" {
		t.Fatalf("non-F handler: %+v %v", p, err)
	}
	// No handler: refused before anything starts, naming the packages.
	_, err = NewPlan(ctx, arm(""), Options{Offline: true, BinfmtDir: fakeBinfmt(t, "")})
	if err == nil || !strings.Contains(err.Error(), "qemu-user-static") || !strings.Contains(err.Error(), ":") {
		t.Fatalf("missing handler: %v", err)
	}
	// Native amd64: nothing.
	p, err = NewPlan(ctx, spec(t, ""), Options{Offline: true, BinfmtDir: fakeBinfmt(t, "")})
	if err != nil || p.Interpreter != "" {
		t.Fatalf("native: %+v %v", p, err)
	}
}

func TestCommandLines(t *testing.T) {
	got := bootstrap.Debootstrap{}.Args(bootstrap.Request{Suite: "trixie", Arch: "arm64", Mirror: "http://m.example/debian",
		Components: []string{"main", "contrib"}, Variant: "minbase", Target: "/w/rootfs"})
	want := []string{"--arch=arm64", "--components=main,contrib", "--variant=minbase", "trixie", "/w/rootfs", "http://m.example/debian"}
	if !slices.Equal(got, want) {
		t.Errorf("debootstrap %v", got)
	}
	got = bootstrap.Debootstrap{}.Args(bootstrap.Request{Suite: "sid", Arch: "amd64", Mirror: "m", Components: []string{"main"}, Variant: "important", Target: "t"})
	if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "--variant") }) {
		t.Errorf("important is debootstrap's default: %v", got)
	}
	a := AptInstallArgs([]string{"task-english"})
	if !slices.Contains(a, "APT::Install-Recommends=true") || !slices.Contains(a, "Dpkg::Use-Pty=0") || a[len(a)-2] != "install" || a[len(a)-1] != "task-english" {
		t.Errorf("apt %v", a)
	}
	tar := TarArgs("/r", "/o/x.tar.gz", 0)
	if !slices.Contains(tar, "--numeric-owner") || !slices.Contains(tar, "--auto-compress") || tar[len(tar)-1] != "." {
		t.Errorf("tar %v", tar)
	}
}

func TestManifestPath(t *testing.T) {
	for in, want := range map[string]string{"/o/a.iso": "/o/a.packages", "/o/b.tar.gz": "/o/b.packages", "/o/c": "/o/c.packages"} {
		if got := manifestPath(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}

func TestManifest(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(`Package: zsh
Status: install ok installed
Architecture: amd64
Version: 5.9-8

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.41

Package: gone
Status: deinstall ok config-files
Version: 1

Package: base-files
Status: install ok installed
Architecture: all
Version: 13.8
`), 0o644)
	m, err := Manifest(root, "amd64")
	if err != nil || m != "base-files\t13.8\nlibc6:i386\t2.41\nzsh\t5.9-8\n" {
		t.Errorf("%q %v", m, err)
	}
}

// Only outputs that boot through GRUB for UEFI need its modules (fetched
// from the target's archive when the host has none).
func TestNeedsGrubEFI(t *testing.T) {
	for _, c := range []struct {
		arch string
		outs []config.Output
		want bool
	}{
		{"arm64", []config.Output{{Type: config.LiveISO}}, true},
		{"arm64", []config.Output{{Type: config.Disk}}, true},
		{"arm64", []config.Output{{Type: config.Disk, Bootloader: "none"}}, false},
		{"amd64", []config.Output{{Type: config.Disk, Bootloader: "grub-bios"}}, false},
		{"amd64", []config.Output{{Type: config.Tarball}, {Type: config.Disk, Bootloader: "grub-hybrid"}}, true},
		{"armhf", []config.Output{{Type: config.Disk}}, false}, // a board image
		{"armhf", []config.Output{{Type: config.Tarball}}, false},
		{"ppc64el", []config.Output{{Type: config.LiveISO}}, false},
	} {
		a, err := arch.Lookup(c.arch)
		if err != nil {
			t.Fatal(err)
		}
		if got := needsGrubEFI(&config.Spec{Outputs: c.outs}, a); got != c.want {
			t.Errorf("%s %+v: %v, want %v", c.arch, c.outs, got, c.want)
		}
	}
}
