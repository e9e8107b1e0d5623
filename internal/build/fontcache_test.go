package build

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestFontDirs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/share/fonts/truetype/dejavu", "usr/local/share/fonts", "opt/fonts", "etc/fonts/conf.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := `<fontconfig>
	<dir>/usr/share/fonts</dir>
	<dir prefix="xdg">fonts</dir>
	<dir>~/.fonts</dir>
	<dir> /opt/fonts/ </dir>
	<dir>/missing/fonts</dir>
</fontconfig>`
	if err := os.WriteFile(filepath.Join(root, "etc/fonts/fonts.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link out of the image is not a font directory of the image.
	if err := os.Symlink("/usr/share/fonts", filepath.Join(root, "usr/share/X11-fonts-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/fonts/conf.d/50-x.conf"), []byte(`<fontconfig><dir>/usr/share/X11-fonts-link</dir></fontconfig>`), 0o644); err != nil {
		t.Fatal(err)
	}
	got := fontDirs(root)
	want := []string{"opt/fonts", "usr/local/share/fonts", "usr/share/fonts"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fontDirs = %q, want %q", got, want)
	}
}

func TestTruncateDirTimes(t *testing.T) {
	root := t.TempDir()
	fonts := filepath.Join(root, "usr/share/fonts")
	sub := filepath.Join(fonts, "truetype/dejavu")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(sub, "DejaVuSans.ttf")
	if err := os.WriteFile(file, []byte("font"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(root, "etc")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	frac := time.Date(2026, 11, 26, 5, 20, 20, 123456789, time.UTC)
	whole := time.Date(2026, 11, 26, 5, 20, 21, 0, time.UTC)
	atime := time.Date(2026, 1, 1, 0, 0, 0, 987654321, time.UTC)
	for _, p := range []string{fonts, filepath.Join(fonts, "truetype"), file, other} {
		if err := os.Chtimes(p, atime, frac); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(sub, atime, whole); err != nil {
		t.Fatal(err)
	}
	n, err := truncateDirTimes(root, []string{"usr/share/fonts", "usr/local/share/fonts"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("changed %d directories, want 2 (fonts, truetype)", n)
	}
	mtime := func(p string) time.Time {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime().UTC()
	}
	for _, p := range []string{fonts, filepath.Join(fonts, "truetype")} {
		if got, want := mtime(p), frac.Truncate(time.Second); !got.Equal(want) {
			t.Errorf("%s: mtime %s, want %s", p, got, want)
		}
	}
	if got := mtime(sub); !got.Equal(whole) {
		t.Errorf("%s: mtime %s, want it unchanged (%s)", sub, got, whole)
	}
	// Files and directories outside the font roots keep their times.
	for _, p := range []string{file, other} {
		if got := mtime(p); !got.Equal(frac) {
			t.Errorf("%s: mtime %s, want it unchanged (%s)", p, got, frac)
		}
	}
}

// fontconfig follows links to directories, so their targets inside the
// image get whole-second mtimes too; links out of the image, to files and
// in loops are left alone.
func TestTruncateDirTimesFollowsLinks(t *testing.T) {
	root := t.TempDir()
	host := t.TempDir() // stands for the host's own file system
	for _, d := range []string{"usr/share/fonts/cmap", "usr/share/poppler/cMap/Adobe-GB1", "usr/share/javascript/mathjax/otf", "usr/share/fonts/opentype"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"usr/share/fonts/cmap/adobe-gb1":     "../../poppler/cMap/Adobe-GB1",      // relative, as poppler-data has it
		"usr/share/fonts/opentype/mathjax":   "/usr/share/javascript/mathjax/otf", // absolute: the image's, not the host's
		"usr/share/fonts/opentype/outside":   "../../../../../../../../" + host,
		"usr/share/fonts/opentype/loop":      "loop",
		"usr/share/fonts/opentype/chain":     "mathjax",
		"usr/share/fonts/opentype/file-link": "../../poppler/cMap/Adobe-GB1/none",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	frac := time.Date(2026, 11, 26, 5, 20, 20, 123456789, time.UTC)
	dirs := []string{"usr/share/fonts", "usr/share/fonts/cmap", "usr/share/fonts/opentype", "usr/share/poppler/cMap/Adobe-GB1", "usr/share/javascript/mathjax/otf", "usr/share/poppler/cMap"}
	for _, d := range dirs {
		if err := os.Chtimes(filepath.Join(root, d), frac, frac); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(host, frac, frac); err != nil {
		t.Fatal(err)
	}
	n, err := truncateDirTimes(root, []string{"usr/share/fonts"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Errorf("changed %d directories, want 5", n)
	}
	mtime := func(p string) time.Time {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime().UTC()
	}
	for _, d := range dirs[:5] {
		if got := mtime(filepath.Join(root, d)); got.Nanosecond() != 0 {
			t.Errorf("%s: mtime %s, want whole seconds", d, got)
		}
	}
	// The link's parent is not a font directory: fontconfig does not read it.
	if got := mtime(filepath.Join(root, "usr/share/poppler/cMap")); !got.Equal(frac) {
		t.Errorf("usr/share/poppler/cMap changed to %s", got)
	}
	if got := mtime(host); !got.Equal(frac) {
		t.Errorf("a directory outside the image changed to %s", got)
	}
}
