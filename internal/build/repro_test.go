package build

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

func TestClampTimes(t *testing.T) {
	root := t.TempDir()
	old := time.Unix(1000, 0)
	epoch := int64(2000)
	os.WriteFile(filepath.Join(root, "old"), nil, 0o644)
	os.Chtimes(filepath.Join(root, "old"), old, old)
	os.WriteFile(filepath.Join(root, "new"), nil, 0o644)
	os.MkdirAll(filepath.Join(root, "dir/sub"), 0o755)
	os.Symlink("/nonexistent", filepath.Join(root, "dir/dangling"))
	n, err := chroot.ClampTimes(root, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 { // root, new, dir, dir/sub, dir/dangling
		t.Errorf("clamped %d files, want 5", n)
	}
	for _, p := range []string{".", "new", "dir", "dir/sub", "dir/dangling"} {
		fi, _ := os.Lstat(filepath.Join(root, p))
		if fi.ModTime().Unix() != epoch || fi.ModTime().Nanosecond() != 0 {
			t.Errorf("%s: %v", p, fi.ModTime())
		}
	}
	if fi, _ := os.Stat(filepath.Join(root, "old")); !fi.ModTime().Equal(old) {
		t.Errorf("an older file's date changed: %v", fi.ModTime())
	}
	if n, _ := chroot.ClampTimes(root, epoch); n != 0 {
		t.Errorf("second pass changed %d files", n)
	}
}

func TestReproducibleHash(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	s := spec(t, "")
	st := &State{Plan: &Plan{Spec: s, SourceDateEpoch: 1700000000}, Log: buildlog.New(io.Discard, "", io.Discard)}
	h1, err := reproducibleHash(context.Background(), st, "user", "live")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := reproducibleHash(context.Background(), st, "user", "live")
	if h1 != h2 || !strings.HasPrefix(h1, "$6$") {
		t.Errorf("not reproducible: %q %q", h1, h2)
	}
	// The hash checks against the password (openssl with the same salt).
	salt := strings.Split(h1, "$")[2]
	out, _ := exec.Command("sh", "-c", "echo live | openssl passwd -6 -salt "+salt+" -stdin").Output()
	if strings.TrimSpace(string(out)) != h1 {
		t.Errorf("hash %q does not verify", h1)
	}
	other, _ := reproducibleHash(context.Background(), st, "other", "live")
	st.Plan.SourceDateEpoch++
	later, _ := reproducibleHash(context.Background(), st, "user", "live")
	if other == h1 || later == h1 {
		t.Error("the salt does not depend on the user and the epoch")
	}
}

func TestTarArgsReproducible(t *testing.T) {
	a := TarArgs("/r", "/o/x.tar.zst", 1700000000)
	for _, want := range []string{"--mtime=@1700000000", "--clamp-mtime", "--sort=name", "--numeric-owner"} {
		if !slices.Contains(a, want) {
			t.Errorf("%v lacks %s", a, want)
		}
	}
	if !slices.ContainsFunc(a, func(s string) bool { return strings.Contains(s, "delete=atime") }) {
		t.Errorf("pax headers keep atime: %v", a)
	}
	if slices.Contains(TarArgs("/r", "/o/x.tar", 0), "--clamp-mtime") {
		t.Error("dates clamped without SOURCE_DATE_EPOCH")
	}
}
