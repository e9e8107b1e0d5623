package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeDeb(t *testing.T, p testPkg) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), p.name+".deb")
	if err := os.WriteFile(path, buildDeb(t, p), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var richFiles = []testFile{
	{name: "./", typ: tar.TypeDir},
	{name: "./usr/", typ: tar.TypeDir},
	{name: "./usr/bin/", typ: tar.TypeDir},
	{name: "./usr/bin/su", body: "setuid", mode: 0o4755},
	{name: "./usr/bin/perl", body: "perl"},
	{name: "./usr/bin/perl5.40", typ: tar.TypeLink, link: "./usr/bin/perl"},
	{name: "./usr/bin/sh", typ: tar.TypeSymlink, link: "dash"},
	{name: "./tmp/", typ: tar.TypeDir, mode: 0o1777},
	{name: "./usr/share/doc/x/copyright", body: "free"}, // parents not in the archive
}

func checkRich(t *testing.T, root string) {
	t.Helper()
	for name, want := range map[string]os.FileMode{"usr/bin/su": 0o755 | os.ModeSetuid, "tmp": 0o777 | os.ModeSticky | os.ModeDir} {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: %v %v, want %v", name, fi.Mode(), err, want)
		}
	}
	a, _ := os.Stat(filepath.Join(root, "usr/bin/perl"))
	b, _ := os.Stat(filepath.Join(root, "usr/bin/perl5.40"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("hard link not kept")
	}
	if l, _ := os.Readlink(filepath.Join(root, "usr/bin/sh")); l != "dash" {
		t.Errorf("symlink: %q", l)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "usr/share/doc/x/copyright")); string(data) != "free" {
		t.Errorf("copyright: %q", data)
	}
}

func TestExtractEveryCompression(t *testing.T) {
	for _, comp := range []string{"xz", "zst", "gz", "none"} {
		t.Run(comp, func(t *testing.T) {
			deb := writeDeb(t, testPkg{name: "rich", version: "1", arch: "amd64", files: richFiles, comp: comp})
			dir := t.TempDir()
			root, _ := os.OpenRoot(dir)
			defer root.Close()
			if err := Extract(deb, root); err != nil {
				t.Fatal(err)
			}
			checkRich(t, dir)
		})
	}
}

func TestUnpackPlainCopy(t *testing.T) {
	deb := writeDeb(t, testPkg{name: "rich", version: "1", arch: "amd64", files: richFiles})
	dir1, dir2 := t.TempDir(), t.TempDir()
	plainPath := filepath.Join(t.TempDir(), "plain.deb")
	plain, _ := os.Create(plainPath)
	r1, _ := os.OpenRoot(dir1)
	if err := Unpack(deb, r1, plain); err != nil {
		t.Fatal(err)
	}
	plain.Close()
	checkRich(t, dir1)
	// The copy is a valid package whose data is stored, not compressed.
	f, _ := os.Open(plainPath)
	ms, err := readAr(f, plainPath)
	f.Close()
	if err != nil || len(ms) != 3 || ms[0].name != "debian-binary" || ms[1].name != "control.tar.gz" || ms[2].name != "data.tar" {
		t.Fatalf("members %+v %v", ms, err)
	}
	if ctl, err := ControlFile(plainPath, "control"); err != nil || !strings.Contains(string(ctl), "Package: rich") {
		t.Fatalf("control: %q %v", ctl, err)
	}
	r2, _ := os.OpenRoot(dir2)
	if err := Extract(plainPath, r2); err != nil {
		t.Fatal(err)
	}
	checkRich(t, dir2)
}

func TestExtractKeepsExistingFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "usr/bin/perl"), []byte("first"), 0o644)
	os.Symlink("usr/bin", filepath.Join(dir, "bin")) // merged /usr
	deb := writeDeb(t, testPkg{name: "p", version: "1", arch: "amd64", files: []testFile{
		{name: "./bin/", typ: tar.TypeDir}, {name: "./bin/true", body: "true"}, {name: "./usr/bin/perl", body: "second"}}})
	root, _ := os.OpenRoot(dir)
	defer root.Close()
	if err := Extract(deb, root); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "usr/bin/perl")); string(data) != "first" {
		t.Errorf("an existing file was replaced: %q", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/bin/true")); err != nil {
		t.Errorf("a file under the /bin symlink did not land in /usr/bin: %v", err)
	}
}

func TestExtractCannotEscapeRoot(t *testing.T) {
	outside := t.TempDir()
	for _, files := range [][]testFile{
		{{name: "./evil", typ: tar.TypeSymlink, link: outside}, {name: "./evil/pwned", body: "x"}},
		{{name: "./evil", typ: tar.TypeSymlink, link: "../../../../../../../../" + outside}, {name: "./evil/pwned", body: "x"}},
		{{name: "../pwned", body: "x"}},
	} {
		deb := writeDeb(t, testPkg{name: "evil", version: "1", arch: "amd64", files: files})
		dir := t.TempDir()
		root, _ := os.OpenRoot(dir)
		if err := Extract(deb, root); err == nil {
			t.Errorf("%v: extracted without error", files)
		}
		root.Close()
		if ents, _ := os.ReadDir(outside); len(ents) > 0 {
			t.Fatalf("wrote outside the root: %v", ents)
		}
	}
}

func TestNotADeb(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.deb")
	os.WriteFile(p, []byte("<html>404</html>"), 0o644)
	root, _ := os.OpenRoot(t.TempDir())
	if err := Extract(p, root); err == nil || !strings.Contains(err.Error(), "not a Debian package") {
		t.Errorf("got %v", err)
	}
}

// ExtractDir unpacks into a directory it makes, from every compression,
// with Extract's modes and links, and sets owners only as root.
func TestExtractDir(t *testing.T) {
	for _, comp := range []string{"xz", "zst", "gz", "none"} {
		t.Run(comp, func(t *testing.T) {
			deb := writeDeb(t, testPkg{name: "rich", version: "1", arch: "amd64", files: richFiles, comp: comp})
			dir := filepath.Join(t.TempDir(), "shim", "signed") // not there yet
			if err := ExtractDir(deb, dir); err != nil {
				t.Fatal(err)
			}
			checkRich(t, dir)
			fi, err := os.Stat(filepath.Join(dir, "usr/bin/perl"))
			if err != nil {
				t.Fatal(err)
			}
			if want := time.Unix(1700000000, 0); !fi.ModTime().Equal(want) {
				t.Errorf("mtime %v, want the package's %v", fi.ModTime(), want)
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
				t.Errorf("owner %d:%d, want the package's root:root", st.Uid, st.Gid)
			}
		})
	}
}

func TestExtractDirCannotEscape(t *testing.T) {
	outside := t.TempDir()
	for _, files := range [][]testFile{
		{{name: "./evil", typ: tar.TypeSymlink, link: outside}, {name: "./evil/pwned", body: "x"}},
		{{name: "./evil", typ: tar.TypeSymlink, link: "../../../../../../../../" + outside}, {name: "./evil/pwned", body: "x"}},
		{{name: "../pwned", body: "x"}},
		{{name: "./hard", typ: tar.TypeLink, link: "../../../../../../../.." + outside + "/target"}},
	} {
		os.WriteFile(filepath.Join(outside, "target"), []byte("mine"), 0o644)
		deb := writeDeb(t, testPkg{name: "evil", version: "1", arch: "amd64", files: files})
		if err := ExtractDir(deb, t.TempDir()); err == nil {
			t.Errorf("%v: extracted without error", files)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 1 {
			t.Fatalf("wrote outside the directory: %v", ents)
		}
	}
}

// WalkData hands over each entry of the data archive with its content,
// whatever the compression, and stops at fn's error.
func TestWalkData(t *testing.T) {
	for _, comp := range []string{"xz", "zst", "gz", "none"} {
		deb := writeDeb(t, testPkg{name: "rich", version: "1", arch: "amd64", files: richFiles, comp: comp})
		var names []string
		var su string
		err := WalkData(deb, func(h *tar.Header, r io.Reader) error {
			names = append(names, h.Name)
			if h.Name == "./usr/bin/su" {
				b, err := io.ReadAll(r)
				su = string(b)
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", comp, err)
		}
		if len(names) != len(richFiles) || names[0] != "./" || su != "setuid" {
			t.Errorf("%s: entries %v, su %q", comp, names, su)
		}
		stop := errors.New("enough")
		n := 0
		if err := WalkData(deb, func(*tar.Header, io.Reader) error { n++; return stop }); err != stop || n != 1 {
			t.Errorf("%s: fn's error: %v after %d entries", comp, err, n)
		}
	}
	p := filepath.Join(t.TempDir(), "x.deb")
	os.WriteFile(p, []byte("<html>404</html>"), 0o644)
	if err := WalkData(p, func(*tar.Header, io.Reader) error { return nil }); err == nil {
		t.Error("not a package: no error")
	}
}

// ExtractDir gives the tree `dpkg-deb -x` gives: the same entries, types,
// modes, link targets, contents and modification times.
func TestExtractDirMatchesDpkgDeb(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	deb := writeDeb(t, testPkg{name: "rich", version: "1", arch: "amd64", files: richFiles, comp: "xz"})
	ours, theirs := t.TempDir(), t.TempDir()
	if err := ExtractDir(deb, ours); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-deb", "-x", deb, theirs).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	describe := func(dir string) map[string]string {
		m := map[string]string{}
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || p == dir {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			d := fi.Mode().String()
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				d += " -> " + l
			case fi.Mode().IsRegular():
				b, _ := os.ReadFile(p)
				d += fmt.Sprintf(" %q %d", b, fi.ModTime().Unix())
			}
			m[rel] = d
			return nil
		})
		return m
	}
	got, want := describe(ours), describe(theirs)
	if !maps.Equal(got, want) {
		t.Errorf("ExtractDir:\n%v\ndpkg-deb -x:\n%v", got, want)
	}
}
