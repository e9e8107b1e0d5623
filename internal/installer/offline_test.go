package installer

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"vmdeb/internal/archive"
)

// pkgStanza is a Packages stanza for a file of the fake archive's pool.
func pkgStanza(name, prio, extra, ext string, data []byte) (stanza, file string) {
	file = fmt.Sprintf("pool/main/%c/%s/%s_1.0_amd64.%s", name[0], name, name, ext)
	return fmt.Sprintf("Package: %s\nVersion: 1.0\nArchitecture: amd64\n%sPriority: %s\nFilename: %s\nSize: %d\nSHA256: %s\n",
		name, extra, prio, file, len(data), sha256Hex(data)), file
}

// offlineArchive is a signed fake archive with CD-ROM images whose
// initrds are real (tiny) newc archives, a debian-installer index and a
// main index, and their pool.
func offlineArchive(t *testing.T) (*mirror, string) {
	t.Helper()
	status := "Package: anna\nStatus: install ok installed\n\nPackage: rootskel\nProvides: mounted-partitions\n"
	textInitrd := gzipBytes(newc([][2]string{{"usr/lib/modules/6.12.9-amd64/", ""}, {"var/lib/dpkg/status", status}}))
	gtkInitrd := gzipBytes(newc([][2]string{{"usr/lib/modules/6.12.9-amd64/", ""}, {"var/lib/dpkg/status", status + "\nPackage: cdebconf-gtk-udeb\n"}}))
	images := map[string][]byte{"cdrom/vmlinuz": kernel, "cdrom/initrd.gz": textInitrd, "cdrom/gtk/vmlinuz": kernel, "cdrom/gtk/initrd.gz": gtkInitrd}
	m, _ := fakeArchive(t, map[string]map[string][]byte{"current": images}, nil)
	release := map[string][]byte{SumsPath("amd64", "current"): m.files["dists/trixie/"+SumsPath("amd64", "current")]}

	index := func(dir, ext string, pkgs [][3]string) {
		var st []string
		for _, p := range pkgs {
			data := []byte(ext + " " + p[0])
			s, file := pkgStanza(p[0], p[1], p[2], ext, data)
			st = append(st, s)
			m.files[file] = data
		}
		text := []byte(strings.Join(st, "\n"))
		name, data := "Packages.gz", gzipBytes(text)
		if ext == "udeb" {
			// As Debian's archive has it: the udebs' index in xz only.
			var b bytes.Buffer
			xw, err := xz.NewWriter(&b)
			if err != nil {
				t.Fatal(err)
			}
			xw.Write(text)
			if err := xw.Close(); err != nil {
				t.Fatal(err)
			}
			name, data = "Packages.xz", b.Bytes()
		}
		m.files["dists/trixie/"+dir+"/"+name] = data
		release[dir+"/"+name] = data
	}
	index("main/debian-installer/binary-amd64", "udeb", [][3]string{
		{"live-installer", "optional", "Depends: base-installer, created-fstab, mounted-partitions\n"},
		{"base-installer", "standard", ""},
		{"partman-target", "optional", "Provides: created-fstab\n"},
		{"anna", "standard", ""},
		{"cdebconf-gtk-udeb", "standard", ""},
		{"bootstrap-base", "standard", ""},
		{"isofs-modules-6.12.9-amd64-di", "optional", "Kernel-Version: 6.12.9-amd64\n"},
		{"isofs-modules-6.12.8-amd64-di", "optional", "Kernel-Version: 6.12.8-amd64\n"},
		{"never-needed", "optional", ""},
	})
	index("main/binary-amd64", "deb", [][3]string{
		{"grub-pc", "optional", "Depends: grub-pc-bin, grub-common\n"},
		{"grub-pc-bin", "optional", ""},
		{"grub-common", "optional", ""},
		{"grub-efi-amd64", "optional", "Depends: grub-common\n"},
		{"grub-efi-amd64-signed", "optional", ""},
		{"shim-signed", "optional", ""},
		{"cryptsetup", "optional", ""},
		{"emacs", "optional", ""},
	})
	key, _ := keys(t)
	m.files["dists/trixie/InRelease"] = clearSign(t, key, releaseText("stable", "trixie", "", release))
	_, kr := keyringOf(t, key)
	return m, kr
}

func TestFetchOffline(t *testing.T) {
	m, kr := offlineArchive(t)
	srv := httptest.NewServer(m)
	defer srv.Close()
	dir := t.TempDir()
	o, err := fetcher().FetchOffline(context.Background(), OfflineOptions{
		Mirror: srv.URL + "/debian/", Suite: "trixie", Arch: "amd64", Keyring: kr, Dir: dir,
		Installed: map[string]bool{"grub-common": true, "cryptsetup": true}, Debs: TargetPackages("amd64"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.Kernel != "6.12.9-amd64" || o.Files.Netboot || !o.Files.Graphical || o.Medium != filepath.Join(dir, "medium") {
		t.Errorf("%+v", o)
	}
	// cdebconf-gtk-udeb is in the graphical initrd only: the text one
	// loads it from the medium.
	wantU := []string{"base-installer", "cdebconf-gtk-udeb", "isofs-modules-6.12.9-amd64-di", "live-installer", "partman-target"}
	if !slices.Equal(o.Udebs, wantU) {
		t.Errorf("udebs %v, want %v", o.Udebs, wantU)
	}
	wantD := []string{"cryptsetup", "grub-efi-amd64", "grub-efi-amd64-signed", "grub-pc", "grub-pc-bin", "shim-signed"}
	if !slices.Equal(o.Debs, wantD) {
		t.Errorf("debs %v, want %v", o.Debs, wantD)
	}
	if len(o.Unresolved) != 0 {
		t.Errorf("unresolved %v", o.Unresolved)
	}
	for _, n := range wantU {
		p := filepath.Join(o.Medium, "pool/main", n[:1], n, n+"_1.0_amd64.udeb")
		if b, err := os.ReadFile(p); err != nil || string(b) != "udeb "+n {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(o.Medium, "pool/main/e/emacs")); err == nil {
		t.Error("a package nothing asked for is in the pool")
	}
	rel, err := os.ReadFile(filepath.Join(o.Medium, "dists/trixie/Release"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.ParseRelease(rel, "Release")
	if err != nil {
		t.Fatal(err)
	}
	for p, fi := range r.Files {
		data, err := os.ReadFile(filepath.Join(o.Medium, "dists/trixie", p))
		if err != nil || sha256Hex(data) != fi.SHA256 || int64(len(data)) != fi.Size {
			t.Errorf("%s does not match the medium's Release: %v", p, err)
		}
	}
	if r.Version != "13.1" || r.Suite != "stable" || len(r.Files) != 4 {
		t.Errorf("Release: %+v", r)
	}
	if l, err := os.Readlink(filepath.Join(o.Medium, "dists/stable")); err != nil || l != "trixie" {
		t.Errorf("dists/stable -> %q, %v", l, err)
	}
	if b, _ := os.ReadFile(filepath.Join(o.Medium, ".disk/udeb_include")); string(b) != "live-installer\n" {
		t.Errorf(".disk/udeb_include = %q", b)
	}
	if _, err := os.Stat(filepath.Join(o.Files.Dir, "gtk/initrd.gz")); err != nil {
		t.Error(err)
	}
}

// A pool file that does not match its (signed) index entry is refused.
func TestFetchOfflineTamperedPool(t *testing.T) {
	m, kr := offlineArchive(t)
	m.files["pool/main/l/live-installer/live-installer_1.0_amd64.udeb"] = []byte("udeb live-installeR")
	srv := httptest.NewServer(m)
	defer srv.Close()
	_, err := fetcher().FetchOffline(context.Background(), OfflineOptions{
		Mirror: srv.URL + "/debian", Suite: "trixie", Arch: "amd64", Keyring: kr, Dir: t.TempDir(), Debs: TargetPackages("amd64"),
	})
	if err == nil || !strings.Contains(err.Error(), "does not match Packages") {
		t.Fatalf("a tampered udeb was accepted: %v", err)
	}
}

// Without CD-ROM images the installer is netboot's and the medium empty.
func TestFetchOfflineWithoutImages(t *testing.T) {
	m, kr := offlineArchive(t)
	delete(m.files, "dists/trixie/main/installer-amd64/current/images/cdrom/initrd.gz")
	srv := httptest.NewServer(m)
	defer srv.Close()
	_, err := fetcher().FetchOffline(context.Background(), OfflineOptions{
		Mirror: srv.URL + "/debian", Suite: "trixie", Arch: "amd64", Keyring: kr, Dir: t.TempDir(),
	})
	// The fake archive has no netboot package either.
	if err == nil || !strings.Contains(err.Error(), "netboot package") {
		t.Fatalf("%v", err)
	}
}
