package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --report with several configs names a directory: made absolute and
// not created yet; a file there, or two configs that would write the
// same NAME.json, are refused before anything is built.
func TestSetReports(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	got, err := setReports("reports", []string{"configs/standard.yaml", "configs/xfce.yaml"})
	if err != nil || got != filepath.Join(dir, "reports") {
		t.Fatalf("setReports: %q, %v", got, err)
	}
	if _, err := os.Stat(got); err == nil {
		t.Error("the report directory was created before the build")
	}
	var ue *usageError
	_, err = setReports("r", []string{"a/standard.yaml", "b/standard.yaml"})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "standard.json") {
		t.Errorf("two configs named standard: %v", err)
	}
	os.WriteFile("file", nil, 0o644)
	_, err = setReports("file", []string{"a.yaml", "b.yaml"})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "names a directory") {
		t.Errorf("a file as --report: %v", err)
	}
	if got, err := setReports("", []string{"a.yaml", "b.yaml"}); got != "" || err != nil {
		t.Errorf("no --report: %q, %v", got, err)
	}
}

// A set overlaps unless --sequential, or unless one of its images builds
// in a builder VM (its build process is on the other side of the VM).
func TestOverlaps(t *testing.T) {
	dir := t.TempDir()
	base := "suite: trixie\narchitecture: amd64\nkernel: none\noutputs:\n  - {type: tarball, path: out.tar.gz}\n"
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	os.WriteFile(a, []byte("name: a\n"+base), 0o644)
	os.WriteFile(b, []byte("name: b\nisolation: vm\n"+base), 0o644)
	if !overlaps([]string{a, a}, buildFlags{}) {
		t.Error("a set of host builds does not overlap")
	}
	if overlaps([]string{a, a}, buildFlags{sequential: true}) {
		t.Error("--sequential overlaps")
	}
	if overlaps([]string{a, b}, buildFlags{}) {
		t.Error("a set with a builder-VM image overlaps")
	}
	if overlaps([]string{a, a}, buildFlags{isolation: "vm"}) {
		t.Error("--isolation vm overlaps")
	}
}
