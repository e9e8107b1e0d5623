package tempname

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPrefix(t *testing.T) {
	if got := Prefix("/srv/out/live.iso"); got != ".live.iso.vmdeb-tmp" {
		t.Errorf("Prefix = %q", got)
	}
}

func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{
		".a[1].iso.vmdeb-tmp", ".a[1].iso.vmdeb-tmp123", // a killed build's
		"a[1].iso", ".a1.iso.vmdeb-tmp", ".b.iso.vmdeb-tmp1", ".a[1].iso.vmdeb-lock", // not temporary, or another file's
	} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := Leftovers(filepath.Join(dir, "a[1].iso"))
	want := []string{filepath.Join(dir, ".a[1].iso.vmdeb-tmp"), filepath.Join(dir, ".a[1].iso.vmdeb-tmp123")}
	if !slices.Equal(got, want) {
		t.Errorf("Leftovers = %q, want %q", got, want)
	}
}
