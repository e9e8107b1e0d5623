package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostAuth(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/apt/auth.conf.d"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/apt/auth.conf"), []byte("machine a.example login a password pa\n"), 0o600)
	os.WriteFile(filepath.Join(root, "etc/apt/auth.conf.d/b.conf"), []byte("machine b.example login b password pb\n"), 0o600)
	set, err := hostAuth(root)
	if err != nil || len(set) != 2 || set[0].Login != "a" || set[1].Login != "b" {
		t.Fatalf("hostAuth = %+v, %v", set, err)
	}
	os.WriteFile(filepath.Join(root, "etc/apt/auth.conf.d/c.conf"), []byte("machine c.example pasword pc\n"), 0o600)
	if _, err := hostAuth(root); err == nil || !strings.Contains(err.Error(), "c.conf:1") {
		t.Errorf("a bad host file: %v", err)
	}
	if set, err := hostAuth(t.TempDir()); err != nil || len(set) != 0 {
		t.Errorf("no files: %+v %v", set, err)
	}
}
