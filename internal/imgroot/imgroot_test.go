package imgroot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// setup makes an image root and, beside it, a "host" directory holding a
// victim file; the image holds links that lead to the host in every way a
// package could plant them.
func setup(t *testing.T) (*Root, string, string) {
	t.Helper()
	top := t.TempDir()
	img, host := filepath.Join(top, "img"), filepath.Join(top, "host")
	for _, d := range []string{"img/etc", "img/var/lib", "img/usr/share", "host/dir"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(host, "victim"), "host file\n")
	write(t, filepath.Join(host, "dir", "victim"), "host file in a dir\n")
	old := time.Unix(1_000_000_000, 123)
	for _, p := range []string{host, filepath.Join(host, "victim"), filepath.Join(host, "dir"), filepath.Join(host, "dir", "victim")} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"etc/abs":         filepath.Join(host, "victim"), // absolute
		"etc/rel":         "../../host/victim",           // relative, out through ..
		"etc/deep":        "../../../../../../../../" + host[1:] + "/victim",
		"var/lib/dir":     filepath.Join(host, "dir"), // a directory swapped for a link
		"var/lib/reldir":  "../../../host/dir",
		"usr/share/fonts": host,
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(img, name)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, img, host
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot records every file under dir with its content, mode and times.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		data := []byte{}
		if fi.Mode().IsRegular() {
			data, _ = os.ReadFile(p)
		}
		st := fi.Sys().(*syscall.Stat_t)
		m[p] = string(data) + "|" + fi.Mode().String() + "|" + fi.ModTime().String() + "|" + fmt.Sprint(st.Uid, st.Gid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEscapesContained(t *testing.T) {
	r, img, host := setup(t)
	before := snapshot(t, host)
	names := []string{"etc/abs", "etc/rel", "etc/deep", "var/lib/dir/victim", "var/lib/reldir/victim", "usr/share/fonts/victim", "/etc/../../host/victim"}
	for _, n := range names {
		// Reads see the image's own (missing) file, never the host's.
		if data, err := r.ReadFile(n); err == nil {
			t.Errorf("ReadFile(%s) read %q through a link out of the image", n, data)
		}
		r.Chmod(n, 0o600)
		r.Lchown(n, 1234, 1234)
		r.Lutimes(n, time.Now(), time.Now())
		r.Remove(n)
	}
	r.RemoveAll("var/lib/dir")
	r.RemoveAll("usr/share/fonts/victim")
	r.Rename("var/lib/reldir/victim", "etc/moved")
	r.MkdirAll("var/lib/dir/sub", 0o755)
	r.Symlink("x", "var/lib/reldir/planted")
	r.Walk("", func(rel string, e Entry) error { return e.Lutimes(time.Now(), time.Now()) })
	r.Walk("usr/share/fonts", func(rel string, e Entry) error { return e.Lutimes(time.Now(), time.Now()) })
	for _, n := range names {
		if f, err := r.Create(n, 0o644); err == nil {
			f.WriteString("created\n")
			f.Close()
		}
	}
	if after := snapshot(t, host); !equal(before, after) {
		t.Errorf("host files changed:\nbefore %v\nafter  %v", before, after)
	}
	// Writes replace the link itself: the file is in the image.
	for _, n := range []string{"etc/abs", "etc/rel", "etc/deep"} {
		if err := r.WriteFile(n, []byte("image\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(img, n))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after WriteFile: %v, %v; want a regular file", n, fi, err)
		}
	}
	// Through a directory link, the write lands where the image's root
	// makes the link lead: inside the image, or nowhere.
	r.WriteFile("var/lib/dir/victim", []byte("image\n"), 0o644)
	r.WriteFile("usr/share/fonts/new", []byte("image\n"), 0o644)
	if after := snapshot(t, host); !equal(before, after) {
		t.Errorf("host files changed by writes:\nbefore %v\nafter  %v", before, after)
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// An absolute link inside the image leads to the image's own file, as in
// the booted system.
func TestAbsoluteLinkInsideImage(t *testing.T) {
	r, img, _ := setup(t)
	os.MkdirAll(filepath.Join(img, "usr/lib"), 0o755)
	write(t, filepath.Join(img, "usr/lib/os-release"), "ID=debian\n")
	os.Symlink("/usr/lib/os-release", filepath.Join(img, "etc/os-release"))
	os.Symlink("usr/lib", filepath.Join(img, "lib"))
	for _, n := range []string{"etc/os-release", "/lib/os-release", "lib/../etc/os-release"} {
		data, err := r.ReadFile(n)
		if err != nil || string(data) != "ID=debian\n" {
			t.Errorf("ReadFile(%s) = %q, %v", n, data, err)
		}
	}
	if err := r.MkdirAll("lib/modules/6.1", 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(img, "usr/lib/modules/6.1")); err != nil || !fi.IsDir() {
		t.Errorf("MkdirAll through /lib -> usr/lib: %v", err)
	}
	// The host's /etc/shadow is not the image's.
	os.Symlink("/etc/shadow", filepath.Join(img, "etc/group"))
	if _, err := r.ReadFile("etc/group"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(etc/group -> /etc/shadow) = %v, want not exist", err)
	}
}

func TestWriteFileModeAndReplace(t *testing.T) {
	r, img, _ := setup(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := r.WriteFile("etc/hosts", []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFile("etc/machine-id", nil, 0o444); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string]fs.FileMode{"etc/hosts": 0o644, "etc/machine-id": 0o444} {
		fi, err := os.Stat(filepath.Join(img, n))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want %v", n, fi.Mode(), err, want)
		}
	}
	// A read-only file is replaced too, and no temporary file stays.
	if err := r.WriteFile("etc/machine-id", []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(img, "etc"))
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".vmdeb-new" {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestWalkDoesNotEnterLinks(t *testing.T) {
	r, img, _ := setup(t)
	os.MkdirAll(filepath.Join(img, "usr/share/x/y"), 0o755)
	write(t, filepath.Join(img, "usr/share/x/y/f"), "f")
	var seen []string
	err := r.Walk("usr", func(rel string, e Entry) error {
		seen = append(seen, rel)
		if rel == "usr/share/fonts" && e.Info().Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%s: not reported as a link", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"usr", "usr/share", "usr/share/fonts", "usr/share/x", "usr/share/x/y", "usr/share/x/y/f"}
	if !bytes.Equal([]byte(join(seen)), []byte(join(want))) {
		t.Errorf("walk saw %v, want %v", seen, want)
	}
	// Walking a link's name starts nowhere else: the link itself only.
	seen = nil
	r.Walk("var/lib/dir", func(rel string, e Entry) error { seen = append(seen, rel); return nil })
	if join(seen) != "var/lib/dir\n" {
		t.Errorf("walk of a link saw %v", seen)
	}
}

func join(l []string) string {
	s := ""
	for _, x := range l {
		s += x + "\n"
	}
	return s
}

func TestRemoveAllAndGlob(t *testing.T) {
	r, img, _ := setup(t)
	os.MkdirAll(filepath.Join(img, "var/lib/apt/lists/partial"), 0o755)
	write(t, filepath.Join(img, "var/lib/apt/lists/a_b"), "x")
	write(t, filepath.Join(img, "var/lib/apt/lists/lock"), "x")
	m, err := r.Glob("var/lib/apt/lists/*_*")
	if err != nil || join(m) != "var/lib/apt/lists/a_b\n" {
		t.Errorf("Glob = %v, %v", m, err)
	}
	if err := r.RemoveAll("var/lib/apt"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(img, "var/lib/apt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("var/lib/apt still there: %v", err)
	}
	if m, err := r.Glob("nothing/*"); err != nil || m != nil {
		t.Errorf("Glob of a missing dir = %v, %v", m, err)
	}
}

func TestCreateReplacesLink(t *testing.T) {
	r, img, _ := setup(t)
	f, err := r.Create("etc/abs", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new\n")
	f.Close()
	fi, err := os.Lstat(filepath.Join(img, "etc/abs"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("etc/abs after Create: %v, %v; want a regular file, mode 0600", fi, err)
	}
	if data, _ := r.ReadFile("etc/abs"); string(data) != "new\n" {
		t.Errorf("etc/abs: %q", data)
	}
}

// LinkFrom puts a host file into the image as a hard link, replacing a
// link planted at the name instead of writing through it, and refuses a
// name whose directory leads out of the image.
func TestLinkFrom(t *testing.T) {
	r, img, host := setup(t)
	src := filepath.Join(t.TempDir(), "pkg.deb")
	if err := os.WriteFile(src, []byte("deb\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, host)
	for _, n := range []string{"etc/abs", "etc/rel", "etc/new"} {
		if err := r.LinkFrom(src, n); err != nil {
			t.Fatalf("LinkFrom(%s): %v", n, err)
		}
		fi, err := os.Lstat(filepath.Join(img, n))
		if err != nil || !fi.Mode().IsRegular() || fi.Sys().(*syscall.Stat_t).Nlink < 2 {
			t.Errorf("%s after LinkFrom: %v, %v; want a hard link to the host file", n, fi, err)
		}
	}
	for _, n := range []string{"var/lib/dir/victim", "/etc/../../host/victim"} {
		r.LinkFrom(src, n)
	}
	if after := snapshot(t, host); !equal(before, after) {
		t.Errorf("host files changed:\nbefore %v\nafter  %v", before, after)
	}
	if data, _ := os.ReadFile(src); string(data) != "deb\n" {
		t.Errorf("the linked file was changed: %q", data)
	}
}
