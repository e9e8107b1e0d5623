package build

import (
	"context"
	"strings"
	"testing"

	"vmdeb/internal/bootstrap"
	"vmdeb/internal/config"
)

func TestRootlessPlan(t *testing.T) {
	s := spec(t, "bootstrap: debootstrap\n")
	s.Outputs = append(s.Outputs, config.Output{Type: "tarball", Path: "t.tar.gz"})
	p, err := NewPlan(context.Background(), s, Options{Offline: true, Rootless: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Bootstrap.(*bootstrap.Native); !ok {
		t.Errorf("a rootless build bootstraps with %s, want the native bootstrapper", p.Bootstrap.Name())
	}
	if len(p.Notes) == 0 || !strings.Contains(p.Notes[0], "native") {
		t.Errorf("the switch to the native bootstrapper is not said: %v", p.Notes)
	}
	if n := p.Bootstrap.(*bootstrap.Native); !strings.HasSuffix(n.CachePath(), "vmdeb/debs") || strings.HasPrefix(n.CachePath(), "/var/cache") {
		t.Errorf("a rootless build's package cache is %s, want the user's cache", n.CachePath())
	}
	// As root, the config's backend stands.
	p, err = NewPlan(context.Background(), s, Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Bootstrap.Name() != "debootstrap" || len(p.Notes) != 0 {
		t.Errorf("a root build changed the backend: %s %v", p.Bootstrap.Name(), p.Notes)
	}
}

func TestRootlessRefusesExtlinux(t *testing.T) {
	s := spec(t, "")
	s.Outputs[0] = config.Output{Type: "disk", Path: "vm.img", Bootloader: "extlinux"}
	_, err := NewPlan(context.Background(), s, Options{Offline: true, Rootless: true})
	if err == nil || !strings.Contains(err.Error(), "outputs[0].bootloader") || !strings.Contains(err.Error(), "grub-bios") {
		t.Fatalf("want a refusal naming outputs[0].bootloader and what is valid, got %v", err)
	}
}
