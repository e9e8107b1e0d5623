package tree

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"vmdeb/internal/imgroot"
)

func TestCopyKeepsMetadata(t *testing.T) {
	top := t.TempDir()
	src, dst := filepath.Join(top, "src"), filepath.Join(top, "dst")
	os.MkdirAll(filepath.Join(src, "info"), 0o700)
	os.WriteFile(filepath.Join(src, "info/a.list"), []byte("/.\n/usr\n"), 0o640)
	os.Symlink("info/a.list", filepath.Join(src, "link"))
	old := time.Unix(1600000000, 0)
	os.Chtimes(filepath.Join(src, "info/a.list"), old, old)
	img, err := imgroot.Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := Copy(img, "src", "dst"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "info/a.list"))
	if err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(old) {
		t.Errorf("%v %v", fi, err)
	}
	if di, _ := os.Stat(filepath.Join(dst, "info")); di == nil || di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode: %v", di)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "link")); l != "info/a.list" {
		t.Errorf("symlink %q", l)
	}
}
