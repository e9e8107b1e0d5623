package arch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"golang.org/x/sys/unix"
)

// A 64-bit kernel runs its 32-bit sibling's programs (i386 on amd64, armhf
// on arm64) only through its compat layer, which a kernel may be built
// without or boot with switched off (ia32_emulation=0). Then a chroot of
// that architecture fails at its first program ("chroot ... /bin/true"
// in debootstrap's words) unless a qemu-user binfmt handler stands in.

// exitProgram is a static ELF32 executable of a that exits with status 0
// (no libc, no loader: one PT_LOAD segment and three instructions), or
// nil for an architecture without one.
func exitProgram(a Arch) []byte {
	var machine uint16
	var flags uint32
	var code []byte
	switch a.Name {
	case "i386":
		machine = 3 // EM_386
		// mov eax, 1 (exit); xor ebx, ebx; int 0x80
		code = []byte{0xb8, 1, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80}
	case "armhf", "armel":
		machine = 40       // EM_ARM
		flags = 0x05000000 // EABI version 5
		if a.Name == "armhf" {
			flags |= 0x400 // hard float
		}
		// mov r0, #0; mov r7, #1 (exit); svc 0
		code = binary.LittleEndian.AppendUint32(nil, 0xe3a00000)
		code = binary.LittleEndian.AppendUint32(code, 0xe3a07001)
		code = binary.LittleEndian.AppendUint32(code, 0xef000000)
	default:
		return nil
	}
	const base, ehsize, phsize = 0x10000, 52, 32
	size := uint32(ehsize + phsize + len(code))
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 1 /* 32-bit */, 1 /* little endian */, 1 /* version */}
	b = append(b, make([]byte, 9)...)
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)                  // version
	b = le.AppendUint32(b, base+ehsize+phsize) // entry
	b = le.AppendUint32(b, ehsize)             // program headers
	b = le.AppendUint32(b, 0)                  // no section headers
	b = le.AppendUint32(b, flags)              // flags
	b = le.AppendUint16(b, ehsize)             // header size
	b = le.AppendUint16(b, phsize)             // program header size
	b = le.AppendUint16(b, 1)                  // one program header
	b = append(b, 0, 0, 0, 0, 0, 0)            // no sections
	b = le.AppendUint32(b, 1)                  // PT_LOAD
	b = le.AppendUint32(b, 0)                  // from the file's start
	b = le.AppendUint32(b, base)               // virtual address
	b = le.AppendUint32(b, base)               // physical address
	b = le.AppendUint32(b, size)               // file size
	b = le.AppendUint32(b, size)               // memory size
	b = le.AppendUint32(b, 5)                  // read + execute
	b = le.AppendUint32(b, 0x1000)             // alignment
	return append(b, code...)
}

var probes sync.Map // Arch.Name → error

// Runs reports whether this host executes a's programs, natively or
// through a registered binfmt_misc handler, by running a program of a that
// only exits (from a sealed memory file: nothing is written to disk). The
// answer is kept for the process's life.
func Runs(a Arch) error {
	if a.Name == HostName() {
		return nil
	}
	if v, ok := probes.Load(a.Name); ok {
		err, _ := v.(error)
		return err
	}
	err := run(a)
	probes.Store(a.Name, err)
	return err
}

func run(a Arch) error {
	prog := exitProgram(a)
	if prog == nil {
		return fmt.Errorf("no probe program for %s", a.Name)
	}
	fd, err := unix.MemfdCreate("vmdeb-probe-"+a.Name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("probing %s programs: %w", a.Name, err)
	}
	f := os.NewFile(uintptr(fd), "vmdeb-probe-"+a.Name)
	defer f.Close()
	if _, err := f.Write(prog); err != nil {
		return fmt.Errorf("probing %s programs: %w", a.Name, err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("probing %s programs: %w", a.Name, err)
	}
	// The child gets the memory file as its descriptor 3 and executes it
	// through its own /proc/self/fd.
	cmd := exec.Command("/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = []string{}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOEXEC):
		return fmt.Errorf("the kernel does not execute %s programs", a.Name)
	case errors.As(err, &ee):
		return fmt.Errorf("a %s program that only exits failed: %v", a.Name, ee)
	}
	return fmt.Errorf("probing %s programs: %w", a.Name, err)
}
