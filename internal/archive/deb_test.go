package archive

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
