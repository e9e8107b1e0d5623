package installer

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/archive"
)

func stanza(name, prio, extra string) string {
	sum := sha256Hex([]byte(name))
	return fmt.Sprintf("Package: %s\nVersion: 1.0\nArchitecture: amd64\n%sPriority: %s\nSection: debian-installer\nFilename: pool/main/%c/%s/%s_1.0_amd64.udeb\nSize: 100\nSHA256: %s\n",
		name, extra, prio, name[0], name, name, sum)
}

func udebIndex(t *testing.T) []Stanza {
	t.Helper()
	data := strings.Join([]string{
		stanza("live-installer", "optional", "Provides: installed-base, kernel-installer\nDepends: base-installer, created-fstab, libc6-udeb (>= 2.36)\n"),
		stanza("base-installer", "standard", "Depends: libfoo-udeb\n"),
		stanza("libfoo-udeb", "optional", ""),
		stanza("partman-target", "optional", "Provides: created-fstab\n"),
		stanza("bootstrap-base", "standard", "Provides: installed-base\n"),
		stanza("ext4-modules-6.1.0-9-amd64-di", "optional", "Kernel-Version: 6.1.0-9-amd64\n"),
		stanza("ext4-modules-6.1.0-8-amd64-di", "optional", "Kernel-Version: 6.1.0-8-amd64\n"),
		stanza("anna", "standard", ""),
		stanza("gtk-extra-udeb", "optional", ""),
		stanza("needs-ghost", "standard", "Depends: ghost | phantom, provided-by-initrd\n"),
	}, "\n")
	st, err := ParseIndex([]byte(data), "main")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func names(st []Stanza) []string {
	var l []string
	for _, s := range st {
		l = append(l, s.Name)
	}
	return l
}

func TestParseIndexKeepsText(t *testing.T) {
	st := udebIndex(t)
	if len(st) != 10 {
		t.Fatalf("%d stanzas, want 10", len(st))
	}
	for _, s := range st {
		if !strings.HasPrefix(s.Text, "Package: "+s.Name+"\n") || !strings.HasSuffix(s.Text, "SHA256: "+s.SHA256+"\n") {
			t.Errorf("%s: text %q", s.Name, s.Text)
		}
		if strings.HasPrefix(s.Name, "ext4-modules-") && !strings.Contains(s.Name, s.Kernel) {
			t.Errorf("%s: Kernel-Version %q", s.Name, s.Kernel)
		}
	}
}

func TestSelectUdebs(t *testing.T) {
	have := InitrdInfo{Kernel: "6.1.0-9-amd64", Udebs: map[string]bool{"anna": true, "libc6-udeb": true}, Provided: map[string]bool{"provided-by-initrd": true}}
	sel, unresolved, err := SelectUdebs(udebIndex(t), have)
	if err != nil {
		t.Fatal(err)
	}
	got := names(sel)
	want := []string{"base-installer", "ext4-modules-6.1.0-9-amd64-di", "libfoo-udeb", "live-installer", "needs-ghost", "partman-target"}
	if !slices.Equal(got, want) {
		t.Errorf("selected %v\nwant %v", got, want)
	}
	// anna is in the initrd; bootstrap-base is replaced by live-installer;
	// the other kernel's modules would never load.
	if len(unresolved) != 1 || !strings.Contains(unresolved[0], "ghost | phantom") {
		t.Errorf("unresolved %v, want the ghost | phantom dependency alone", unresolved)
	}
}

func TestSelectDebs(t *testing.T) {
	deb := func(name, deps string) string {
		return strings.ReplaceAll(stanza(name, "optional", deps), ".udeb", ".deb")
	}
	data := strings.Join([]string{
		deb("grub-pc", "Depends: grub-common (= 1.0), grub-pc-bin, debconf | debconf-2.0\n"),
		deb("grub-pc-bin", "Depends: grub-common\n"),
		deb("grub-common", ""),
		deb("shim-signed", "Depends: shim-helpers-amd64-signed\n"),
		deb("shim-helpers-amd64-signed", ""),
		deb("debconf", ""),
		deb("unrelated", ""),
	}, "\n")
	idx, err := ParseIndex([]byte(data), "main")
	if err != nil {
		t.Fatal(err)
	}
	installed := map[string]bool{"grub-common": true, "debconf": true, "shim-signed": true}
	sel, unresolved, err := SelectDebs(idx, []string{"grub-pc", "shim-signed", "not-in-archive"}, installed)
	if err != nil || len(unresolved) != 0 {
		t.Fatalf("%v %v", err, unresolved)
	}
	// shim-signed is in the live system and still goes into the pool: d-i
	// installs boot loaders from the medium only.
	want := []string{"grub-pc", "grub-pc-bin", "shim-helpers-amd64-signed", "shim-signed"}
	if got := names(sel); !slices.Equal(got, want) {
		t.Errorf("selected %v, want %v", got, want)
	}
}

func TestIndices(t *testing.T) {
	st := udebIndex(t)
	date := time.Date(2025, 11, 15, 10, 0, 0, 0, time.UTC)
	o := IndexOptions{Origin: "Debian", Label: "Debian", Suite: "stable", Codename: "trixie", Version: "13.2", Arch: "amd64", Date: date}
	files := Indices(o, st[:2], st[2:])
	rel, err := archive.ParseRelease(files["dists/trixie/Release"], "Release")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Codename != "trixie" || rel.Suite != "stable" || rel.Version != "13.2" || !rel.Date.Equal(date) || !rel.HasArch("amd64") || !rel.HasComponent("main") {
		t.Errorf("Release fields: %+v", rel)
	}
	release := string(files["dists/trixie/Release"])
	for _, p := range []string{"main/binary-amd64/Packages", "main/binary-amd64/Packages.gz",
		"main/debian-installer/binary-amd64/Packages", "main/debian-installer/binary-amd64/Packages.gz"} {
		data, ok := files["dists/trixie/"+p]
		if !ok {
			t.Fatalf("no %s", p)
		}
		fi, ok := rel.Files[p]
		if !ok || fi.SHA256 != sha256Hex(data) || fi.Size != int64(len(data)) {
			t.Errorf("Release's SHA256 of %s: %+v; the file's: %s %d", p, fi, sha256Hex(data), len(data))
		}
		m := md5.Sum(data)
		if !strings.Contains(release, fmt.Sprintf(" %s %8d %s\n", hex.EncodeToString(m[:]), len(data), p)) {
			t.Errorf("Release lacks the MD5Sum of %s:\n%s", p, release)
		}
	}
	// Packages carries the archive's stanzas verbatim, sorted by name; the
	// .gz holds the same bytes.
	udebs := files["dists/trixie/main/debian-installer/binary-amd64/Packages"]
	if !bytes.HasPrefix(udebs, []byte(stanzaText(st, "anna"))) || !bytes.Contains(udebs, []byte("\n"+stanzaText(st, "needs-ghost"))) {
		t.Errorf("udeb Packages:\n%s", udebs)
	}
	zr, err := gzip.NewReader(bytes.NewReader(files["dists/trixie/main/debian-installer/binary-amd64/Packages.gz"]))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, udebs) {
		t.Error("Packages.gz differs from Packages")
	}
	back, err := ParseIndex(udebs, "main")
	if err != nil || len(back) != 8 {
		t.Errorf("the medium's udeb index reads back as %d packages: %v", len(back), err)
	}
	// The same input gives the same bytes.
	again := Indices(o, st[:2], st[2:])
	for p, d := range files {
		if !bytes.Equal(again[p], d) {
			t.Errorf("%s differs between two runs", p)
		}
	}
}

func stanzaText(st []Stanza, name string) string {
	for _, s := range st {
		if s.Name == name {
			return s.Text
		}
	}
	return "?"
}

func TestDiskFiles(t *testing.T) {
	d := DiskFiles()
	want := map[string]string{".disk/base_components": "main\n", ".disk/base_installable": "", ".disk/cd_type": "live\n", ".disk/udeb_include": "live-installer\n"}
	if len(d) != len(want) {
		t.Errorf("%v", d)
	}
	for k, v := range want {
		if got, ok := d[k]; !ok || got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// newc writes a newc cpio archive of the files (directories end in "/").
func newc(files [][2]string) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry := func(name, data string, mode int) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", 1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		pad()
		b.WriteString(data)
		pad()
	}
	for _, f := range files {
		mode := 0o100644
		if strings.HasSuffix(f[0], "/") {
			mode = 0o40755
		}
		entry(strings.TrimSuffix(f[0], "/"), f[1], mode)
	}
	entry("TRAILER!!!", "", 0)
	return b.Bytes()
}

func TestReadInitrd(t *testing.T) {
	status := "Package: anna\nStatus: install ok installed\nVersion: 1\n\nPackage: rootskel\nProvides: mounted-partitions, foo (= 2)\nStatus: install ok installed\n"
	archive := newc([][2]string{{"bin/", ""}, {"lib/modules/6.1.0-9-amd64/", ""}, {"lib/modules/6.1.0-9-amd64/kernel/isofs.ko", "elf"}, {"var/lib/dpkg/status", status}})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(archive)
	zw.Close()
	p := filepath.Join(t.TempDir(), "initrd.gz")
	if err := os.WriteFile(p, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := ReadInitrd(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kernel != "6.1.0-9-amd64" || !info.Udebs["anna"] || !info.Udebs["rootskel"] || len(info.Udebs) != 2 ||
		!info.Provided["mounted-partitions"] || !info.Provided["foo"] {
		t.Errorf("%+v", info)
	}
	// An initrd without the status file cannot tell what it holds.
	os.WriteFile(p, gzipBytes(newc([][2]string{{"lib/modules/6.1.0-9-amd64/", ""}})), 0o644)
	if _, err := ReadInitrd(p); err == nil || !strings.Contains(err.Error(), "status") {
		t.Errorf("no status file: %v", err)
	}
}

func TestTargetPackages(t *testing.T) {
	amd := TargetPackages("amd64")
	for _, p := range []string{"grub-pc", "grub-efi-amd64", "grub-efi-amd64-signed", "shim-signed", "cryptsetup", "lvm2"} {
		if !slices.Contains(amd, p) {
			t.Errorf("amd64's pool lacks %s: %v", p, amd)
		}
	}
	if arm := TargetPackages("arm64"); slices.Contains(arm, "grub-pc") || !slices.Contains(arm, "grub-efi-arm64-signed") {
		t.Errorf("arm64: %v", arm)
	}
}
