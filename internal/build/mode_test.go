package build

import (
	"os"
	"path/filepath"
	"testing"

	"vmdeb/internal/config"
)

// Outputs that hold the image's files readably (password hashes in
// /etc/shadow) are 0600; a live ISO 0644; the config's mode: wins; the
// umask only takes bits away.
func TestSetOutputMode(t *testing.T) {
	dir := t.TempDir()
	s := &config.Spec{Dir: dir, Outputs: []config.Output{
		{Type: "tarball", Path: "a.tar.gz"},
		{Type: "disk", Path: "a.qcow2"},
		{Type: "live-iso", Path: "a.iso"},
		{Type: "tarball", Path: "pub.tar", Mode: "0644"},
		{Type: "squashfs", Path: "sq"},
	}}
	want := map[string]os.FileMode{"a.tar.gz": 0o600, "a.qcow2": 0o600, "a.iso": 0o644, "pub.tar": 0o644, "sq/filesystem.squashfs": 0o600}
	for _, o := range s.Outputs {
		tmp := filepath.Join(dir, ".tmp-"+o.Path)
		file := tmp
		if o.Type == "squashfs" {
			os.Mkdir(tmp, 0o755)
			file = filepath.Join(tmp, "filesystem.squashfs")
		}
		os.WriteFile(file, nil, 0o666)
		os.Chmod(file, 0o666)
		if err := setOutputMode(s, tmp, filepath.Join(dir, o.Path)); err != nil {
			t.Fatal(err)
		}
	}
	mask := umask()
	for name, m := range want {
		p := filepath.Join(dir, ".tmp-"+name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != m&^mask {
			t.Errorf("%s: mode %o, want %o (umask %o)", name, fi.Mode().Perm(), m&^mask, mask)
		}
	}
	if mask != 0o022 && mask != 0o002 && mask != 0o077 && mask != 0 {
		t.Logf("umask %o", mask)
	}
}
