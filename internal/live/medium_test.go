package live

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func md5Hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestStageInstallerMedium(t *testing.T) {
	inst, medium, stage := t.TempDir(), t.TempDir(), t.TempDir()
	for name, text := range map[string]string{
		filepath.Join(inst, "vmlinuz"):   "kernel",
		filepath.Join(inst, "initrd.gz"): "initrd",
		filepath.Join(medium, "pool/main/l/live-installer/live-installer_58_amd64.udeb"): "udeb",
		filepath.Join(medium, "dists/trixie/Release"):                                    "Codename: trixie\n",
		filepath.Join(medium, ".disk/cd_type"):                                           "live\n",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("trixie", filepath.Join(medium, "dists/stable")); err != nil {
		t.Fatal(err)
	}
	if err := stageInstaller(stage, "amd64", &InstallerFiles{Dir: inst, Medium: medium}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"install.amd/vmlinuz": "kernel",
		"pool/main/l/live-installer/live-installer_58_amd64.udeb": "udeb",
		".disk/cd_type":         "live\n",
		"dists/stable/Release":  "Codename: trixie\n", // through the link
		"install.amd/initrd.gz": "initrd",
		"dists/trixie/Release":  "Codename: trixie\n",
	} {
		got, err := os.ReadFile(filepath.Join(stage, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(stage, "dists/stable")); err != nil || l != "trixie" {
		t.Errorf("dists/stable -> %q, %v; want a link to trixie", l, err)
	}

	// md5sum.txt: every regular file once, links not followed, ISOLINUX's
	// loader (patched by xorriso) left out, sorted by path.
	os.MkdirAll(filepath.Join(stage, "isolinux"), 0o755)
	os.WriteFile(filepath.Join(stage, "isolinux/isolinux.bin"), []byte("patched"), 0o644)
	os.WriteFile(filepath.Join(stage, "md5sum.txt"), []byte("old"), 0o644)
	sums, err := MD5Sums(stage)
	if err != nil {
		t.Fatal(err)
	}
	want := md5Hex("live\n") + "  ./.disk/cd_type\n" +
		md5Hex("Codename: trixie\n") + "  ./dists/trixie/Release\n" +
		md5Hex("initrd") + "  ./install.amd/initrd.gz\n" +
		md5Hex("kernel") + "  ./install.amd/vmlinuz\n" +
		md5Hex("udeb") + "  ./pool/main/l/live-installer/live-installer_58_amd64.udeb\n"
	if sums != want {
		t.Errorf("md5sum.txt:\n%s\nwant:\n%s", sums, want)
	}
}

func TestStageInstallerRefusesAbsoluteLink(t *testing.T) {
	inst, medium, stage := t.TempDir(), t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(inst, "vmlinuz"), nil, 0o644)
	os.WriteFile(filepath.Join(inst, "initrd.gz"), nil, 0o644)
	os.Symlink("/etc/passwd", filepath.Join(medium, "x"))
	err := stageInstaller(stage, "amd64", &InstallerFiles{Dir: inst, Medium: medium})
	if err == nil || !strings.Contains(err.Error(), "absolute link") {
		t.Fatalf("an absolute link went onto the medium: %v", err)
	}
}

// TestBuildISOInstallerMedium: the medium's tree is on the ISO, and
// md5sum.txt lists every file with the sum of its bytes on the ISO (the
// patched ISOLINUX loader aside); an ISO without the medium has none.
func TestBuildISOInstallerMedium(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	inst, medium := filepath.Join(dir, "install"), filepath.Join(dir, "medium")
	writeFile(t, filepath.Join(inst, "vmlinuz"), []byte("d-i kernel\n"))
	writeFile(t, filepath.Join(inst, "initrd.gz"), []byte("d-i initrd\n"))
	writeFile(t, filepath.Join(medium, "pool/main/l/live-installer/live-installer_58_amd64.udeb"), []byte("udeb\n"))
	writeFile(t, filepath.Join(medium, "dists/trixie/Release"), []byte("Codename: trixie\n"))
	writeFile(t, filepath.Join(medium, ".disk/cd_type"), []byte("live\n"))
	out := filepath.Join(dir, "live.iso")
	o := ISOOptions{Arch: a, Title: "t", VolumeID: "DEBIAN_LIVE", Info: "info", Installer: &InstallerFiles{Dir: inst, Medium: medium}}
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, o); err != nil {
		t.Fatal(err)
	}
	files := isoFiles(t, out)
	sums := string(extract(t, out, "/md5sum.txt"))
	listed := 0
	for _, l := range strings.Split(strings.TrimSuffix(sums, "\n"), "\n") {
		sum, name, ok := strings.Cut(l, "  ./")
		if !ok {
			t.Fatalf("md5sum.txt line %q", l)
		}
		if got := md5Hex(string(extract(t, out, "/"+name))); got != sum {
			t.Errorf("md5sum.txt: %s %s; on the ISO: %s", sum, name, got)
		}
		listed++
	}
	for _, want := range []string{"/pool/main/l/live-installer/live-installer_58_amd64.udeb", "/dists/trixie/Release", "/.disk/cd_type", "/install.amd/initrd.gz", "/live/filesystem.squashfs", "/.disk/info"} {
		if !strings.Contains(sums, "  ."+want+"\n") {
			t.Errorf("md5sum.txt lacks %s:\n%s", want, sums)
		}
	}
	// Every file but md5sum.txt itself, the patched loader and the boot
	// catalogue xorriso writes.
	for _, f := range files {
		if f != "/md5sum.txt" && f != "/isolinux/isolinux.bin" && f != "/isolinux/boot.cat" && !strings.Contains(sums, "  ."+f+"\n") {
			t.Errorf("md5sum.txt lacks %s", f)
		}
	}
	if listed < 15 {
		t.Errorf("md5sum.txt lists only %d files:\n%s", listed, sums)
	}

	plain := filepath.Join(dir, "plain.iso")
	o.Installer.Medium = ""
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, plain, o); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(isoFiles(t, plain), "/md5sum.txt") {
		t.Error("an ISO without the installer's medium got md5sum.txt")
	}
}
