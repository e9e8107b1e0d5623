package buildlog

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNeeds(t *testing.T) {
	var n Needs
	n.Bin("sh", "dash")
	n.Bin("vmdeb-no-such-tool", "nothing")
	n.File("/", "base-files")
	n.File("/vmdeb/no/such/file", "nothing")
	if len(n.Missing) != 2 || n.Missing[0].What != "vmdeb-no-such-tool" || n.Missing[1].What != "/vmdeb/no/such/file" {
		t.Fatalf("got %v", n.Missing)
	}
	if s := n.Missing[0].String(); s != "vmdeb-no-such-tool (package nothing)" {
		t.Errorf("String() = %q", s)
	}
}

func TestMissingError(t *testing.T) {
	if err := MissingError(nil); err != nil {
		t.Errorf("nothing missing: got %v", err)
	}
	err := MissingError([]Missing{{"xorriso", "xorriso"}, {"mmd", "mtools"}, {"mcopy", "mtools"}})
	want := "missing on this host:\n  xorriso (package xorriso)\n  mmd (package mtools)\n  mcopy (package mtools)\n" +
		"install with: apt-get install mtools xorriso"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// A program only in an sbin directory is found even when the caller's
// PATH lacks it, as the build's commands find it.
func TestLookPathSbin(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	p, err := LookPath("vmdeb-test-tool")
	if err == nil {
		t.Fatalf("found %s on an empty PATH", p)
	}
	dir := t.TempDir()
	tool := filepath.Join(dir, "vmdeb-test-tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if p, err := LookPath("vmdeb-test-tool"); err != nil || p != tool {
		t.Errorf("LookPath = %q, %v; want %s", p, err, tool)
	}
	if err := os.Chmod(tool, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := LookPath("vmdeb-test-tool"); err == nil {
		t.Errorf("found %s, which is not executable", p)
	}
	// sbin programs: blkid lives in /usr/sbin (or /sbin) on Debian.
	if _, err := os.Stat("/usr/sbin/blkid"); err == nil {
		if _, err := LookPath("blkid"); err != nil {
			t.Errorf("blkid in /usr/sbin not found with PATH=%s: %v", dir, err)
		}
	}
}
