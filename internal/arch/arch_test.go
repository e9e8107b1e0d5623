package arch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	for _, n := range Names() {
		a, err := Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != n || a.QemuUser == "" || a.QemuSystem == "" || a.Kernel == "" || a.Console == "" {
			t.Errorf("%s: incomplete row %+v", n, a)
		}
		if !a.Supports("tarball") || !a.Supports("directory") {
			t.Errorf("%s: every architecture makes tarballs and directories", n)
		}
		if a.Supports("live-iso") && len(a.Firmware) == 0 {
			t.Errorf("%s: a live ISO needs a firmware to boot it", n)
		}
		if a.HasFirmware(UEFI) && (a.GrubEFITarget == "" || a.EFIBootName == "" || a.UEFIPackage == "") {
			t.Errorf("%s: UEFI without its GRUB target or firmware package", n)
		}
	}
	if a, _ := Lookup("amd64"); !a.HasFirmware(BIOS) || !a.HasFirmware(UEFI) || a.Kernel != "linux-image-amd64" {
		t.Errorf("amd64: %+v", a)
	}
	if a, _ := Lookup("arm64"); a.HasFirmware(BIOS) || !a.HasFirmware(UEFI) || a.QemuMachine != "virt" {
		t.Errorf("arm64 boots UEFI only on virt: %+v", a)
	}
	if a, _ := Lookup("i386"); a.Kernel != "linux-image-686-pae" || a.GrubEFITarget != "i386-efi" {
		t.Errorf("i386: %+v", a)
	}
	if a, _ := Lookup("armhf"); a.Kernel != "linux-image-armmp-lpae" || a.Supports("live-iso") {
		t.Errorf("armhf: %+v", a)
	}
	// Device trees: the ARM and RISC-V boards have them; PCs, POWER and
	// s390x describe their hardware through firmware (ACPI, Open Firmware).
	for name, want := range map[string]bool{"amd64": false, "i386": false, "arm64": true, "armhf": true, "armel": true, "riscv64": true, "ppc64el": false, "s390x": false} {
		if a, _ := Lookup(name); a.DeviceTrees != want {
			t.Errorf("%s: DeviceTrees = %v, want %v", name, a.DeviceTrees, want)
		}
	}
	if _, err := Lookup("mips"); err == nil || !strings.Contains(err.Error(), "arm64") {
		t.Errorf("unknown arch error should list the valid ones: %v", err)
	}
}

func TestNative(t *testing.T) {
	if HostName() != "amd64" {
		t.Skip("host-specific")
	}
	for name, want := range map[string]bool{"amd64": true, "i386": true, "arm64": false, "armhf": false, "s390x": false} {
		a, _ := Lookup(name)
		if a.Native() != want {
			t.Errorf("%s native = %v", name, !want)
		}
	}
}

func fakeBinfmt(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for n, c := range files {
		os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
	}
	return dir
}

func TestReadHandler(t *testing.T) {
	arm64, _ := Lookup("arm64")
	dir := fakeBinfmt(t, map[string]string{
		"status":       "enabled\n",
		"qemu-aarch64": "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c46\n",
		"qemu-arm":     "disabled\ninterpreter /usr/bin/qemu-arm-static\nflags: OC\n",
		"qemu-riscv64": "enabled\ninterpreter /usr/bin/qemu-riscv64-static\nflags: OC\n",
	})
	h, err := ReadHandler(dir, arm64)
	if err != nil || !h.Fixed() || h.Interpreter != "/usr/libexec/qemu-binfmt/aarch64-binfmt-P" {
		t.Fatalf("%+v %v", h, err)
	}
	rv, _ := Lookup("riscv64")
	h, err = ReadHandler(dir, rv)
	if err != nil || h.Fixed() || h.Interpreter != "/usr/bin/qemu-riscv64-static" {
		t.Fatalf("%+v %v", h, err)
	}
	armhf, _ := Lookup("armhf")
	if _, err := ReadHandler(dir, armhf); err == nil || !strings.Contains(err.Error(), "disabled") || !strings.Contains(err.Error(), "update-binfmts --enable qemu-arm") {
		t.Errorf("disabled handler: %v", err)
	}
	s390, _ := Lookup("s390x")
	if _, err := ReadHandler(dir, s390); err == nil || !strings.Contains(err.Error(), "qemu-user-static") || !strings.Contains(err.Error(), "binfmt-support") {
		t.Errorf("missing handler: %v", err)
	}
	if _, err := ReadHandler(t.TempDir(), arm64); err == nil || !strings.Contains(err.Error(), "not mounted") {
		t.Errorf("unmounted binfmt_misc: %v", err)
	}
}
