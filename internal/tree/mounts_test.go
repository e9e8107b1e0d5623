package tree

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMountsUnder: the mounts below a directory, deepest first, with a
// space in a name decoded, and none of a neighbour whose name shares the
// prefix; Unmount and RemoveAll leave nothing mounted.
func TestMountsUnder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	top := t.TempDir()
	dir, next := filepath.Join(top, "d"), filepath.Join(top, "d2")
	outer, inner := filepath.Join(dir, "a b"), filepath.Join(dir, "a b", "c")
	os.MkdirAll(outer, 0o755)
	os.MkdirAll(next, 0o755)
	for _, m := range []string{outer, next} {
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, ""); err != nil {
			t.Skipf("cannot mount here: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(m, unix.MNT_DETACH) })
	}
	os.MkdirAll(inner, 0o755)
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	got, err := MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != inner || got[1] != outer {
		t.Errorf("MountsUnder(%s) = %q", dir, got)
	}
	if err := RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if m, _ := MountsUnder(dir); len(m) != 0 {
		t.Errorf("still mounted after RemoveAll: %q", m)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", dir, err)
	}
	if m, _ := MountsUnder(next); len(m) != 1 {
		t.Errorf("the neighbour's mount: %q", m)
	}
}
