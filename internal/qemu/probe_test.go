package qemu

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"vmdeb/internal/arch"
)

// The other tests exercise what happens when KVM is tried: they start
// from a host whose probe passed.
func init() { probeKVM = func(context.Context, arch.Arch) error { return nil } }

func TestProbeSector(t *testing.T) {
	b := probeSector()
	if len(b) != 512 || b[510] != 0x55 || b[511] != 0xAA {
		t.Fatal("not a boot sector")
	}
	// The text starts where the code's mov si points (0x7c15).
	if string(b[0x15:0x15+len(probeText)]) != probeText {
		t.Errorf("text not at 0x15: %q", b[0x15:0x30])
	}
}

// TestKVMProbe runs the probe for real: it must answer within its bound
// either way, and never leave qemu behind.
func TestKVMProbe(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("no qemu-system-x86_64")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	a, _ := arch.Lookup("amd64")
	start := time.Now()
	err := kvmFast(context.Background(), a)
	t.Logf("KVM probe: %v in %s", err, time.Since(start))
	if time.Since(start) > probeWait+3*time.Second {
		t.Errorf("the probe took %s", time.Since(start))
	}
}
