package integration

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLiveInstaller builds the reduced CI config with the installer's
// menu entries, checks the offline installer's medium (pool, indices,
// .disk files, md5sum.txt), boots its "Install" entry (two below the
// default, chosen on the serial console) with no network device and
// preseeded on the command line to partitioning, then to
// debian-installer's first screen without preseeding, and its default
// live entry to a login prompt.
func TestLiveInstaller(t *testing.T) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
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

	// The offline installer: d-i's CD-ROM images, the udebs and .debs in
	// /pool with indices that match them, the .disk files d-i reads and
	// md5sum.txt. A mirror without verifiable CD-ROM images (a partial
	// mirror or cache) gives netboot's installer instead, and says so.
	offline := !strings.Contains(r.stdout+r.stderr, "no verifiable CD-ROM images")
	if offline {
		checkOfflineMedium(t, iso, files)
	}
	t.Run("install-offline", func(t *testing.T) {
		if !offline {
			t.Skip("the mirror has no CD-ROM images that match its signed Release: the ISO carries netboot's installer, which needs a network")
		}
		blank := filepath.Join(t.TempDir(), "blank.img")
		if err := os.WriteFile(blank, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(blank, 8<<30); err != nil {
			t.Fatal(err)
		}
		// Everything d-i asks before partitioning, answered on the
		// command line; no network device at all, so every component
		// comes from the medium.
		preseed := strings.Join([]string{"auto=true", "priority=critical",
			"language=en", "country=US", "locale=en_US.UTF-8", "keymap=us",
			"netcfg/enable=false", "hostname=debian", "domain=",
			"passwd/root-login=false", "passwd/user-fullname=User", "passwd/username=user",
			"passwd/user-password=live", "passwd/user-password-again=live",
			"time/zone=UTC", "clock-setup/ntp=false",
			"partman-auto/disk=/dev/vda", "partman-auto/method=regular", "partman-auto/choose_recipe=atomic",
		}, " ")
		b := run(t, ctx, "boot", "--entry", "2", "--no-network", "--disk", blank, "--append", preseed,
			"--expect", "Starting up the partitioner|Partition disks|Partitioning", "--timeout", "15m", "-v", iso)
		if b.code != 0 {
			t.Fatalf("the offline Install entry did not reach partitioning:\n%s\n%s", b.stderr, tail(b.stdout, 60))
		}
		for _, bad := range []string{"Choose a mirror", "Download installer components", "Failed to load installer component"} {
			if strings.Contains(b.stdout, bad) {
				t.Errorf("d-i showed %q with no network:\n%s", bad, tail(b.stdout, 60))
			}
		}
	})
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

// checkOfflineMedium checks what the offline installer needs on the ISO:
// the CD-ROM kernel and initrds, live-installer and the boot loaders in
// the pool, indices whose hashes match the files, the .disk files and a
// md5sum.txt that lists the files with their true sums.
func checkOfflineMedium(t *testing.T, iso, files string) {
	t.Helper()
	for _, f := range []string{"/.disk/base_installable", "/.disk/cd_type", "/.disk/udeb_include", "/.disk/base_components",
		"/md5sum.txt", "/dists/trixie/Release", "/dists/trixie/main/binary-amd64/Packages.gz",
		"/dists/trixie/main/debian-installer/binary-amd64/Packages.gz", "/dists/trixie/main/debian-installer/binary-amd64/Packages"} {
		if !strings.Contains(files, "'"+f+"'") {
			t.Errorf("the offline medium lacks %s", f)
		}
	}
	for _, re := range []string{`'/pool/main/l/live-installer/live-installer_[^']*\.udeb'`, `'/pool/main/g/grub2/grub-pc_[^']*\.deb'`,
		`'/pool/main/s/shim-signed/shim-signed_[^']*\.deb'`, `'/pool/main/p/partman-base/partman-base_[^']*\.udeb'`} {
		if !regexp.MustCompile(re).MatchString(files) {
			t.Errorf("the pool lacks %s", re)
		}
	}
	if got := isoExtract(t, iso, "/.disk/cd_type"); got != "live\n" {
		t.Errorf(".disk/cd_type = %q", got)
	}
	if got := isoExtract(t, iso, "/.disk/udeb_include"); !strings.Contains(got, "live-installer\n") {
		t.Errorf(".disk/udeb_include = %q", got)
	}
	release := isoExtract(t, iso, "/dists/trixie/Release")
	for _, p := range []string{"main/debian-installer/binary-amd64/Packages", "main/binary-amd64/Packages.gz"} {
		data := isoExtract(t, iso, "/dists/trixie/"+p)
		sum := sha256.Sum256([]byte(data))
		if want := fmt.Sprintf(" %x %8d %s\n", sum, len(data), p); !strings.Contains(release, want) {
			t.Errorf("Release does not list %s as on the medium (%q):\n%s", p, want, release)
		}
	}
	udebs := isoExtract(t, iso, "/dists/trixie/main/debian-installer/binary-amd64/Packages")
	if !strings.Contains(udebs, "\nPackage: live-installer\n") && !strings.HasPrefix(udebs, "Package: live-installer\n") {
		t.Error("the udeb index lacks live-installer")
	}
	sums := isoExtract(t, iso, "/md5sum.txt")
	for _, f := range []string{"./install.amd/initrd.gz", "./dists/trixie/Release", "./.disk/info", "./live/filesystem.squashfs"} {
		if !strings.Contains(sums, "  "+f+"\n") {
			t.Errorf("md5sum.txt does not list %s", f)
		}
	}
	rel := md5.Sum([]byte(release))
	if !strings.Contains(sums, fmt.Sprintf("%x  ./dists/trixie/Release\n", rel)) {
		t.Error("md5sum.txt's sum of dists/trixie/Release is not the file's")
	}
}
