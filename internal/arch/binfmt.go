package arch

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// BinfmtDir is where the kernel lists its binfmt_misc handlers.
const BinfmtDir = "/proc/sys/fs/binfmt_misc"

// Handler is a registered binfmt_misc handler.
type Handler struct {
	Name        string // e.g. qemu-aarch64
	Enabled     bool
	Interpreter string // path the kernel runs
	Flags       string // e.g. "PF"
}

// Fixed reports whether the kernel opened the interpreter at registration
// (flag F): then it works in any chroot without a copy inside.
func (h Handler) Fixed() bool { return strings.Contains(h.Flags, "F") }

// HostName is the Debian architecture of the running vmdeb.
func HostName() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return runtime.GOARCH
}

// Native reports whether the host runs a's binaries without an emulator.
func (a Arch) Native() bool {
	h := HostName()
	return a.Name == h || (h == "amd64" && a.Name == "i386") || (h == "arm64" && a.Name == "armhf")
}

// ReadHandler reads the qemu-user handler for a from dir (BinfmtDir
// normally).
func ReadHandler(dir string, a Arch) (Handler, error) {
	name := "qemu-" + a.QemuUser
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(filepath.Join(dir, "status")); serr != nil {
				return Handler{}, fmt.Errorf("binfmt_misc is not mounted at %s: mount it (mount -t binfmt_misc binfmt_misc %s) and register the qemu-user handlers (apt-get install qemu-user-static binfmt-support; update-binfmts --enable)", dir, dir)
			}
			return Handler{}, fmt.Errorf("no binfmt handler %s for %s binaries: apt-get install qemu-user-static binfmt-support (or qemu-user-binfmt), then update-binfmts --enable %s", name, a.Name, name)
		}
		return Handler{}, err
	}
	defer f.Close()
	h := Handler{Name: name}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "enabled":
			h.Enabled = true
		case strings.HasPrefix(line, "interpreter "):
			h.Interpreter = strings.TrimPrefix(line, "interpreter ")
		case strings.HasPrefix(line, "flags:"):
			h.Flags = strings.TrimSpace(strings.TrimPrefix(line, "flags:"))
		}
	}
	if !h.Enabled {
		return h, fmt.Errorf("the binfmt handler %s is disabled: update-binfmts --enable %s", name, name)
	}
	return h, sc.Err()
}
