package arch

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The probe programs are well-formed ELF32 executables of their machine,
// loadable at their entry point.
func TestExitProgram(t *testing.T) {
	for name, want := range map[string]elf.Machine{"i386": elf.EM_386, "armhf": elf.EM_ARM, "armel": elf.EM_ARM} {
		a, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(exitProgram(a)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.Class != elf.ELFCLASS32 || f.Machine != want || f.Type != elf.ET_EXEC || len(f.Progs) != 1 {
			t.Errorf("%s: class %v machine %v type %v, %d segments", name, f.Class, f.Machine, f.Type, len(f.Progs))
		}
		p := f.Progs[0]
		if p.Type != elf.PT_LOAD || f.Entry < p.Vaddr || f.Entry >= p.Vaddr+p.Filesz || p.Flags&elf.PF_X == 0 {
			t.Errorf("%s: entry %#x outside its executable segment %+v", name, f.Entry, p.ProgHeader)
		}
	}
	if a, _ := Lookup("arm64"); exitProgram(a) != nil {
		t.Error("arm64 has no probe program")
	}
}

// On this host the probe must agree with what the kernel says about a
// 32-bit x86 program written to disk and run the ordinary way.
func TestRunsI386(t *testing.T) {
	if HostName() != "amd64" {
		t.Skip("needs an amd64 host")
	}
	a, _ := Lookup("i386")
	p := t.TempDir() + "/exit"
	if err := os.WriteFile(p, exitProgram(a), 0o755); err != nil {
		t.Fatal(err)
	}
	direct := runFile(p)
	got := run(a)
	if (direct == nil) != (got == nil) {
		t.Fatalf("probe says %v; running %s says %v", got, p, direct)
	}
	if got != nil && !strings.Contains(got.Error(), "does not execute i386 programs") {
		t.Errorf("probe error %v", got)
	}
	if err := Runs(Arch{Name: HostName()}); err != nil {
		t.Errorf("the host's own architecture: %v", err)
	}
}

func runFile(p string) error { return exec.Command(p).Run() }
