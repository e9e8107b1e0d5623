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

// TestLiveInstaller builds the reduced CI config with the installer's
// menu entries, boots its "Install" entry (two below the default, chosen
// on the serial console) to debian-installer's first screen, and its
// default live entry to a login prompt.
func TestLiveInstaller(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	if o, err := exec.Command("cp", "-a", filepath.Join(repo(t), "configs")+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, o)
	}
	cfg := filepath.Join(dir, "ci", "live-installer.yaml")
	r := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg)
	if r.code != 0 {
		t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
	}
	assertClean(t, work)
	iso := filepath.Join(out, "debian-live-ci-installer-amd64.iso")

	files := isoList(t, iso)
	for _, f := range []string{"/install.amd/vmlinuz", "/install.amd/initrd.gz", "/install.amd/gtk/vmlinuz", "/install.amd/gtk/initrd.gz", "/isolinux/splash.png", "/boot/grub/splash.png"} {
		if !strings.Contains(files, "'"+f+"'") {
			t.Errorf("the ISO lacks %s", f)
		}
	}
	isolinux := isoExtract(t, iso, "/isolinux/isolinux.cfg")
	grub := isoExtract(t, iso, "/boot/grub/grub.cfg")
	for _, want := range []string{"menu label Install\n", "menu label Graphical install\n", "menu label Install with speech synthesis\n", "menu label Localisation support\n", "locales=de_DE.UTF-8 keyboard-layouts=de", "menu background splash.png"} {
		if !strings.Contains(isolinux, want) {
			t.Errorf("isolinux.cfg lacks %q:\n%s", want, isolinux)
		}
	}
	for _, want := range []string{"menuentry 'Install' {", "submenu 'Localisation support' {", "background_image /boot/grub/splash.png"} {
		if !strings.Contains(grub, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, grub)
		}
	}

	t.Run("install-entry", func(t *testing.T) {
		b := run(t, ctx, "boot", "--entry", "2", "--expect", "Choose language|Select a language", "--timeout", "10m", iso)
		if b.code != 0 {
			t.Fatalf("the Install entry did not reach debian-installer's first screen:\n%s", b.stderr)
		}
	})
	t.Run("live-entry", func(t *testing.T) {
		b := run(t, ctx, "boot", "--timeout", "8m", iso)
		if b.code != 0 {
			t.Fatalf("the live entry did not reach a login prompt:\n%s", b.stderr)
		}
	})
	// This ISO's EFI loader is vmdeb's own, unsigned GRUB image: firmware
	// that enforces Secure Boot must refuse it, or TestLiveMinimal's
	// Secure Boot boot would prove nothing.
	t.Run("secure-boot-refuses-unsigned", func(t *testing.T) {
		b := run(t, ctx, "boot", "--secure-boot", "--expect", "Access Denied|login:", "--timeout", "6m", iso)
		if b.code != 0 {
			t.Fatalf("the firmware said nothing of the unsigned loader:\n%s", b.stderr)
		}
		if strings.Contains(b.stdout, "login:") || !strings.Contains(b.stdout, "Access Denied") {
			t.Fatalf("firmware enforcing Secure Boot started the unsigned loader:\n%s", b.stdout)
		}
	})
}

// isoList is xorriso's listing of every path in an ISO, one quoted path
// per line.
func isoList(t *testing.T, iso string) string {
	t.Helper()
	o, err := exec.Command("xorriso", "-indev", iso, "-find", "/", "-exec", "lsdl", "--").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -find: %v\n%s", err, o)
	}
	return string(o)
}

// isoExtract reads one file of an ISO.
func isoExtract(t *testing.T, iso, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if o, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", path, dst).CombinedOutput(); err != nil {
		t.Fatalf("xorriso -extract %s: %v\n%s", path, err, o)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
