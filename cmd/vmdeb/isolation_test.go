package main

import (
	"os"
	"strings"
	"testing"

	"vmdeb/internal/config"
)

func TestIsolationFor(t *testing.T) {
	s := &config.Spec{File: "c.yaml"}
	root := os.Geteuid() == 0
	def, err := isolationFor(s, "")
	if err != nil {
		t.Fatal(err)
	}
	if root && def != "host" || !root && def != "userns" {
		t.Errorf("default isolation for euid %d: %s", os.Geteuid(), def)
	}
	s.Isolation = "vm"
	if got, _ := isolationFor(s, ""); got != "vm" {
		t.Errorf("config's isolation: got %s", got)
	}
	if got, _ := isolationFor(s, "userns"); got != "userns" {
		t.Errorf("the flag overrides the config: got %s", got)
	}
	if _, err := isolationFor(s, "host"); !root && (err == nil || !strings.Contains(err.Error(), "--isolation userns")) {
		t.Errorf("host isolation as an ordinary user: %v", err)
	}
	if err := checkIsolationFlag("chroot"); err == nil || !strings.Contains(err.Error(), "host, userns, vm") {
		t.Errorf("bad --isolation: %v", err)
	}
}
