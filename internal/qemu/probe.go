package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vmdeb/internal/arch"
	"vmdeb/internal/run"
)

// probeWait is how long a tiny real-mode program may take under KVM. A
// working KVM runs it in well under a second; nested KVM that emulates
// real mode instruction by instruction takes many seconds, and would make
// a whole boot slower than TCG.
const probeWait = time.Second

// probeSector prints probeText on COM1 in real mode and halts.
var probeText = "VMDEB-KVM-OK\n"

func probeSector() []byte {
	code := []byte{
		0x31, 0xC0, // xor ax, ax
		0x8E, 0xD8, // mov ds, ax
		0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xBE, 0x15, 0x7C, // mov si, 0x7c15 (the text)
		0xAC,       // lodsb
		0x84, 0xC0, // test al, al
		0x74, 0x03, // jz halt
		0xEE,       // out dx, al
		0xEB, 0xF8, // jmp lodsb
		0xF4,       // halt: hlt
		0xEB, 0xFD, // jmp halt
	}
	b := make([]byte, 512)
	copy(b, code)
	copy(b[len(code):], probeText+"\x00")
	b[510], b[511] = 0x55, 0xAA
	return b
}

// probeKVM is kvmFast; tests of the fallback logic replace it.
var probeKVM = kvmFast

// kvmFast runs the probe sector under KVM and reports why KVM should not
// be used, or nil. Only x86 guests are probed (the sector is x86 code).
func kvmFast(ctx context.Context, a arch.Arch) error {
	if a.Name != "amd64" && a.Name != "i386" {
		return nil
	}
	dir, err := os.MkdirTemp("", "vmdeb-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "probe.img")
	if err := os.WriteFile(img, probeSector(), 0o644); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	cmd := exec.CommandContext(pctx, a.QemuSystem, "-nodefaults", "-no-user-config", "-display", "none",
		"-monitor", "none", "-serial", "stdio", "-accel", "kvm", "-m", "16",
		"-drive", "file="+img+",format=raw,if=ide")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return run.KillGroup(cmd.Process.Pid) }
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("KVM probe: %w", err)
	}
	deadline := time.Now().Add(probeWait)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), strings.TrimSpace(probeText)) {
			cancel()
			cmd.Wait()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	cmd.Wait()
	if m := kvmError.FindString(errb.String()); m != "" {
		return fmt.Errorf("KVM probe: %s", m)
	}
	return fmt.Errorf("KVM runs real-mode code too slowly here (a one-sector probe did not finish in %s)", probeWait)
}
