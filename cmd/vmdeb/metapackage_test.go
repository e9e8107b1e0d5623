package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runMetapackage(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := metapackageCmd()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestMetapackageFromFlags(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := t.TempDir()
	out, err := runMetapackage(t, "--name", "debian-live-standard", "--version", "1.0",
		"--maintainer", "Live Team <live@example.org>",
		"--depends", "live-task-standard,sudo (>= 1.9)", "--recommends", "wpasupplicant", "-o", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	deb := filepath.Join(dir, "debian-live-standard_1.0_all.deb")
	if !strings.Contains(out, deb) {
		t.Errorf("output does not name the .deb: %s", out)
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	info, err := exec.Command("dpkg-deb", "--field", deb, "Depends", "Recommends", "Maintainer").CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, info)
	}
	want := "Depends: live-task-standard, sudo (>= 1.9)\nRecommends: wpasupplicant\nMaintainer: Live Team <live@example.org>\n"
	if string(info) != want {
		t.Errorf("fields:\n%s\nwant:\n%s", info, want)
	}
}

func TestMetapackageFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "image.yaml")
	os.WriteFile(cfg, []byte(`name: debian-live-test
suite: trixie
architecture: amd64
packages: [task-xfce-desktop, live-task-xfce, firefox-esr=128.0esr-1, linux-image-amd64/trixie-backports]
outputs:
  - {type: live-iso, path: out.iso}
`), 0o644)
	t.Setenv("DEBEMAIL", "live@example.org")
	t.Setenv("DEBFULLNAME", "Live Team")
	out, err := runMetapackage(t, "--from-config", cfg, "-o", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	deb := filepath.Join(dir, "debian-live-test_1.0_all.deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	info, _ := exec.Command("dpkg-deb", "--field", deb, "Depends").CombinedOutput()
	if want := "task-xfce-desktop, live-task-xfce, firefox-esr (= 128.0esr-1), linux-image-amd64\n"; string(info) != want {
		t.Errorf("Depends from the config: %q, want %q", info, want)
	}
}

func TestMetapackageBadInput(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DEBEMAIL", "")
	t.Setenv("EMAIL", "")
	for name, args := range map[string][]string{
		"no name":       {"-o", dir},
		"no maintainer": {"--name", "foo", "-o", dir},
		"bad version":   {"--name", "foo", "--version", "x", "--maintainer", "A <a@example.org>", "-o", dir},
		"bad depends":   {"--name", "foo", "--depends", "Not A Package", "--maintainer", "A <a@example.org>", "-o", dir},
	} {
		_, err := runMetapackage(t, append(args, "")[:len(args)]...)
		if !isUsage(err) {
			t.Errorf("%s: %v, want a usage error (exit 2)", name, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("bad input left files: %v", ents)
	}
}
