package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/config"
)

func TestExt4Args(t *testing.T) {
	a := Ext4Args("/r", "/o/x.ext4", 64<<20, 5000, "")
	want := []string{"-F", "-q", "-t", "ext4", "-b", "4096", "-I", "256", "-N", "5000",
		"-E", "nodiscard,assume_storage_prezeroed=1,root_owner=0:0", "-d", "/r", "/o/x.ext4", "16384"}
	if !slices.Equal(a, want) {
		t.Errorf("without an epoch:\n got %q\nwant %q", a, want)
	}
	u := ext4UUID("tiny", 1700000000)
	a = Ext4Args("/r", "/o/x.ext4", 64<<20, 5000, u)
	if i := slices.Index(a, "-U"); i < 0 || a[i+1] != u {
		t.Errorf("reproducible: no -U %s in %q", u, a)
	}
	if i := slices.Index(a, "-E"); i < 0 || !strings.Contains(a[i+1], "hash_seed="+u) {
		t.Errorf("reproducible: no hash_seed=%s in %q", u, a)
	}
	if u != ext4UUID("tiny", 1700000000) || u == ext4UUID("tiny", 1700000001) || u == ext4UUID("other", 1700000000) {
		t.Error("the UUID is not a function of the name and the epoch")
	}
	if len(u) != 36 || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) {
		t.Errorf("%s is not a version 4 UUID", u)
	}
	if ext4UUID("tiny", 0) != "" {
		t.Error("without SOURCE_DATE_EPOCH mke2fs should pick a random UUID")
	}
}

func TestExt4Size(t *testing.T) {
	u := ext4Usage{Bytes: 200 << 20, Inodes: 8000}
	size, need := ext4Size(u, 0)
	if size < need || size%(1<<20) != 0 || size < u.Bytes*5/4 {
		t.Errorf("default size %d for %+v (need %d): want whole MiB, at least the need and a quarter over the content", size, u, need)
	}
	if size, _ := ext4Size(u, 1<<30+100); size != 1<<30 {
		t.Errorf("a given size is not kept (rounded down to 4 KiB blocks): %d", size)
	}
	if size, need := ext4Size(u, 100<<20); size >= need {
		t.Errorf("100M is enough for 200M of files? need %d", need)
	}
	if n := ext4Inodes(u, size); n < u.Inodes+u.Inodes/10 {
		t.Errorf("%d inodes for %d files", n, u.Inodes)
	}
}

// TestExt4Stage runs the stage on a small tree (no root needed): the
// image is a clean ext4 file system holding the tree, and, under
// SOURCE_DATE_EPOCH, the same bytes from a copy of the tree written at
// another time.
func TestExt4Stage(t *testing.T) {
	for _, tool := range []string{"mke2fs", "e2fsck", "debugfs"} {
		if _, err := exec.LookPath(buildlog.Tool(tool)); err != nil {
			t.Skipf("no %s (e2fsprogs)", tool)
		}
	}
	build := func(dir string) string {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
		os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("ID=debian\n"), 0o644)
		os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release"))
		os.WriteFile(filepath.Join(root, "etc/a file"), []byte("spaces\n"), 0o600)
		os.Link(filepath.Join(root, "etc/a file"), filepath.Join(root, "etc/hardlink"))
		// As the finalise stage leaves it: no date after the epoch.
		if _, err := chroot.ClampTimes(root, 1700000000); err != nil {
			t.Fatal(err)
		}
		out := config.Output{Type: config.Ext4, Path: "root.ext4"}
		st := &State{Plan: &Plan{Spec: &config.Spec{Name: "tiny", Dir: dir, Outputs: []config.Output{out}}, SourceDateEpoch: 1700000000},
			Log: buildlog.Discard(), Rootfs: root}
		if err := (ext4Stage{out: out}).Run(context.Background(), st); err != nil {
			t.Fatal(err)
		}
		if err := st.publish(); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, "root.ext4")
	}
	a := build(t.TempDir())
	time.Sleep(1100 * time.Millisecond) // the second tree's change times differ
	b := build(t.TempDir())
	if o, err := exec.Command(buildlog.Tool("e2fsck"), "-f", "-n", a).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, o)
	}
	if o, _ := exec.Command(buildlog.Tool("debugfs"), "-R", "cat /usr/lib/os-release", a).Output(); string(o) != "ID=debian\n" {
		t.Errorf("os-release in the image: %q", o)
	}
	if o, _ := exec.Command(buildlog.Tool("debugfs"), "-R", "cat \"/etc/a file\"", a).Output(); string(o) != "spaces\n" {
		t.Errorf("a file with a space in the image: %q", o)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("the image is readable by others (it holds /etc/shadow): %v %v", fi.Mode(), err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !slices.Equal(da, db) {
		t.Error("two images of equal trees under one SOURCE_DATE_EPOCH differ")
	}
}

func TestExt4Pipeline(t *testing.T) {
	s := &config.Spec{Name: "tiny", Dir: "/o", Outputs: []config.Output{{Type: config.Ext4, Path: "tiny.ext4"}}}
	var names []string
	for _, st := range Stages(&Plan{Spec: s}) {
		names = append(names, st.Name())
	}
	if i := slices.Index(names, "ext4"); i < 0 || i != len(names)-2 || names[i-1] != "finalise" {
		t.Errorf("stages %v: want ext4 after finalise, before report", names)
	}
	if m := manifestPath("/o/tiny.ext4"); m != "/o/tiny.packages" {
		t.Errorf("manifest of tiny.ext4: %s", m)
	}
	if spdx, cdx := sbomPaths("/o/tiny.ext4"); spdx != "/o/tiny.spdx.json" || cdx != "/o/tiny.cdx.json" {
		t.Errorf("SBOMs of tiny.ext4: %s %s", spdx, cdx)
	}
	writes, _ := Writes(s, "")
	var kinds []string
	for _, w := range writes {
		kinds = append(kinds, w.Kind)
	}
	for _, k := range []string{"ext4", "manifest", "sbom-spdx", "sbom-cyclonedx", "sha256sums", "log"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("Writes lists no %s for an ext4 output: %v", k, kinds)
		}
	}
}
