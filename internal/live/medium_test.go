package live

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
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
