package run

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// miniRoot is a root file system holding the host's /bin/sh, as
// usr/bin/vmdeb-test-sh with a bin -> usr/bin link, and the libraries it
// needs (per ldd).
func miniRoot(t *testing.T) string {
	t.Helper()
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip(err)
	}
	out, err := exec.Command("ldd", sh).Output()
	if err != nil {
		t.Skipf("ldd: %v", err)
	}
	root := t.TempDir()
	files := []string{sh}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	cp := func(src, dst string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files[1:] {
		cp(f, filepath.Join(root, f))
		if r, err := filepath.EvalSymlinks(f); err == nil && r != f {
			cp(r, filepath.Join(root, r))
		}
	}
	// Under a name the host lacks: nothing of the host's is looked at.
	cp(sh, filepath.Join(root, "usr/bin/vmdeb-test-sh"))
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	os.WriteFile(filepath.Join(root, "marker"), []byte("inside\n"), 0o644)
	return root
}

// TestRoot: a command run with Root is looked up and runs inside it, in
// its /, with its argv[0] as given.
func TestRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	root := miniRoot(t)
	var lines []string
	c := Cmd{Name: "vmdeb-test-sh", Args: []string{"-c", `echo "$0 $PWD"; read m </marker; echo "$m"; test -e ` + root + ` || echo "no host"`},
		Env: []string{"PATH=/nonexistent:/bin"}, Root: root, Line: func(l string) { lines = append(lines, l) }}
	if _, err := Run(context.Background(), c); err != nil {
		t.Fatalf("%v: %q", err, lines)
	}
	if strings.Join(lines, "|") != "vmdeb-test-sh /|inside|no host" {
		t.Errorf("got %q", lines)
	}
	c = Cmd{Name: "ls", Env: []string{"PATH=/bin"}, Root: root}
	if _, err := Run(context.Background(), c); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("a program the root lacks: %v", err)
	}
}
