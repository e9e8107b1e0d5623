package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vmdeb/internal/arch"
)

func lookup(t *testing.T, name string) arch.Arch {
	t.Helper()
	a, err := arch.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// hasSeq reports whether want appears in args as consecutive elements.
func hasSeq(args []string, want ...string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

func wantSeqs(t *testing.T, args []string, seqs ...[]string) {
	t.Helper()
	for _, s := range seqs {
		if !hasSeq(args, s...) {
			t.Errorf("args lack %q:\n%s", s, strings.Join(args, " "))
		}
	}
}

func wantNone(t *testing.T, args []string, words ...string) {
	t.Helper()
	for _, w := range words {
		for _, a := range args {
			if strings.Contains(a, w) {
				t.Errorf("args contain %q (in %q):\n%s", w, a, strings.Join(args, " "))
			}
		}
	}
}

func TestArgsAmd64BIOSISO(t *testing.T) {
	o := Options{Image: "/out/live,1.iso", Kind: KindISO, Arch: lookup(t, "amd64"), Memory: 2048, CPUs: 2}
	args := Args(o, "tcg", Firmware{})
	wantSeqs(t, args,
		[]string{"-accel", "tcg"},
		[]string{"-m", "2048", "-smp", "2"},
		[]string{"-serial", "stdio"},
		[]string{"-display", "none"},
		[]string{"-monitor", "none"},
		[]string{"-nodefaults"},
		[]string{"-no-reboot"},
		// The comma in the file name is doubled for qemu's option parser.
		[]string{"-drive", "file=/out/live,,1.iso,media=cdrom,readonly=on,format=raw"},
	)
	wantNone(t, args, "pflash", "-cpu", "-machine", "snapshot", "-qmp", "-vga", "scsi")
}

func TestArgsAmd64UEFIQcow2(t *testing.T) {
	o := Options{Image: "/out/disk.qcow2", Kind: KindQcow2, Arch: lookup(t, "amd64"), UEFI: true, Memory: 1024, CPUs: 1}
	fw := Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/tmp/x/OVMF_VARS_4M.fd"}
	args := Args(o, "kvm", fw)
	wantSeqs(t, args,
		[]string{"-accel", "kvm"},
		[]string{"-m", "1024", "-smp", "1"},
		[]string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"},
		[]string{"-drive", "if=pflash,format=raw,unit=1,file=/tmp/x/OVMF_VARS_4M.fd"},
		[]string{"-drive", "file=/out/disk.qcow2,if=virtio,format=qcow2,snapshot=on"},
	)
	// Never -cpu host (or max) on x86 under KVM: it aborts on nested hosts.
	wantNone(t, args, "-cpu", "host", "media=cdrom", "-machine")
}

func TestArgsSecureBootOVMF(t *testing.T) {
	o := Options{Image: "/d.img", Kind: KindRaw, Arch: lookup(t, "i386"), UEFI: true, Memory: 512, CPUs: 1}
	args := Args(o, "tcg", Firmware{Code: "/fw/OVMF32_CODE_4M.secboot.fd", Vars: "/tmp/v.fd"})
	wantSeqs(t, args,
		[]string{"-machine", "q35,smm=on"},
		[]string{"-global", "driver=cfi.pflash01,property=secure,value=on"},
		[]string{"-drive", "file=/d.img,if=virtio,format=raw,snapshot=on"},
	)
}

// Firmware found for Secure Boot gets SMM whatever its file is called
// (Debian's OVMF_CODE_4M.ms.fd is a link to the secboot build).
func TestArgsSecureBootFirmwareByRole(t *testing.T) {
	o := Options{Image: "/live.iso", Kind: KindISO, Arch: lookup(t, "amd64"), UEFI: true, SecureBoot: true, Memory: 2048, CPUs: 2}
	args := Args(o, "tcg", Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", Vars: "/tmp/v.fd", Secure: true})
	wantSeqs(t, args,
		[]string{"-machine", "q35,smm=on"},
		[]string{"-global", "driver=cfi.pflash01,property=secure,value=on"},
		[]string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd"},
	)
}

func TestFindSecureFirmware(t *testing.T) {
	dir := t.TempDir()
	a := fakeFirmwareArch(dir)
	if _, err := findSecureFirmware(a); err == nil || !strings.Contains(err.Error(), "no Secure Boot firmware is known for fake") {
		t.Errorf("an architecture without a signed chain: %v", err)
	}
	a.SecureBoot = &arch.SecureBoot{UEFICode: []string{filepath.Join(dir, "MS_CODE.fd")}, UEFIVars: []string{filepath.Join(dir, "MS_VARS.fd")}}
	touch(t, a.UEFICode[0], a.UEFIVars[0]) // plain firmware never stands in
	if _, err := findSecureFirmware(a); err == nil || !strings.Contains(err.Error(), "MS_CODE.fd") || !strings.Contains(err.Error(), "ovmf-fake") {
		t.Errorf("no Secure Boot firmware: %v", err)
	}
	touch(t, a.SecureBoot.UEFICode[0], a.SecureBoot.UEFIVars[0])
	fw, err := findSecureFirmware(a)
	if err != nil || fw != (Firmware{Code: a.SecureBoot.UEFICode[0], Vars: a.SecureBoot.UEFIVars[0], Secure: true}) {
		t.Errorf("got %+v, %v", fw, err)
	}
}

func TestArgsArm64UEFIISO(t *testing.T) {
	o := Options{Image: "/out/live.iso", Kind: KindISO, Arch: lookup(t, "arm64"), UEFI: true, Memory: 2048, CPUs: 2, Screenshot: "/out/s.png", qmp: "/tmp/q/qmp.sock"}
	fw := Firmware{Code: "/usr/share/AAVMF/AAVMF_CODE.fd", Vars: "/tmp/q/AAVMF_VARS.fd"}
	args := Args(o, "tcg", fw)
	wantSeqs(t, args,
		[]string{"-accel", "tcg"},
		[]string{"-machine", "virt"},
		[]string{"-cpu", "cortex-a57"},
		[]string{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd"},
		[]string{"-drive", "if=pflash,format=raw,unit=1,file=/tmp/q/AAVMF_VARS.fd"},
		[]string{"-drive", "if=none,id=cd0,file=/out/live.iso,media=cdrom,readonly=on,format=raw"},
		[]string{"-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-cd,bus=scsi0.0,drive=cd0"},
		[]string{"-device", "virtio-gpu-pci"},
		[]string{"-qmp", "unix:/tmp/q/qmp.sock,server=on,wait=off"},
	)
	wantNone(t, args, "-vga")

	// Under KVM (on an arm64 host) named CPU models do not work.
	kvm := Args(o, "kvm", fw)
	wantSeqs(t, kvm, []string{"-accel", "kvm"}, []string{"-cpu", "max"}, []string{"-machine", "virt,gic-version=max"})
	wantNone(t, kvm, "cortex-a57")
}

func TestArgsScreenshotX86(t *testing.T) {
	o := Options{Image: "/d.img", Kind: KindRaw, Arch: lookup(t, "amd64"), Memory: 256, CPUs: 1, Screenshot: "/s.png", qmp: "/q.sock"}
	wantSeqs(t, Args(o, "tcg", Firmware{}), []string{"-vga", "std"}, []string{"-qmp", "unix:/q.sock,server=on,wait=off"})
}

func TestDetectImage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	iso := make([]byte, 40000)
	copy(iso[32769:], "CD001")
	// A hybrid ISO also carries an MBR; the volume descriptor decides.
	iso[510], iso[511] = 0x55, 0xaa
	almost := make([]byte, 40000)
	copy(almost[32768:], "CD001") // one byte off
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"live.img", iso, KindISO},
		{"disk.qcow2", append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 100)...), KindQcow2},
		{"disk.iso", almost, KindRaw}, // the name does not matter
		{"tiny", []byte("QF"), KindRaw},
		{"empty", nil, KindRaw},
	} {
		got, err := DetectImage(write(c.name, c.data))
		if err != nil || got != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := DetectImage(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
}

// fakeFirmwareArch is an architecture whose firmware candidates live in dir.
func fakeFirmwareArch(dir string) arch.Arch {
	return arch.Arch{
		Name:        "fake",
		QemuSystem:  "qemu-system-x86_64",
		Firmware:    []arch.Firmware{arch.UEFI},
		UEFICode:    []string{filepath.Join(dir, "A_CODE.fd"), filepath.Join(dir, "B_CODE.fd"), filepath.Join(dir, "C_CODE.fd")},
		UEFIVars:    []string{filepath.Join(dir, "A_VARS.fd"), filepath.Join(dir, "B_VARS.fd")},
		UEFIPackage: "ovmf-fake",
	}
}

func touch(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.WriteFile(p, []byte("fw"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindFirmwarePairs(t *testing.T) {
	dir := t.TempDir()
	a := fakeFirmwareArch(dir)
	// Nothing there: the error names the package to install.
	_, err := findFirmware(a)
	if err == nil || !strings.Contains(err.Error(), "ovmf-fake") {
		t.Fatalf("no firmware: got %v, want an error naming ovmf-fake", err)
	}
	// A_CODE without A_VARS, B_VARS without... : no complete pair yet.
	touch(t, a.UEFICode[0], a.UEFIVars[1])
	if fw, err := findFirmware(a); err == nil {
		t.Fatalf("mismatched halves were paired: %+v", fw)
	}
	// C_CODE has no VARS candidate at all, so it never counts.
	touch(t, a.UEFICode[2])
	if fw, err := findFirmware(a); err == nil {
		t.Fatalf("code without vars was used: %+v", fw)
	}
	touch(t, a.UEFICode[1])
	fw, err := findFirmware(a)
	if err != nil || fw != (Firmware{Code: a.UEFICode[1], Vars: a.UEFIVars[1]}) {
		t.Fatalf("got %+v, %v; want the B pair", fw, err)
	}
	// The first complete pair wins.
	touch(t, a.UEFIVars[0])
	if fw, _ := findFirmware(a); fw.Code != a.UEFICode[0] || fw.Vars != a.UEFIVars[0] {
		t.Fatalf("got %+v, want the A pair", fw)
	}
}

func TestTools(t *testing.T) {
	defer func(f func(string) (string, error)) { lookPath = f }(lookPath)
	lookPath = func(string) (string, error) { return "", errors.New("not found") }
	dir := t.TempDir()
	got := Tools(fakeFirmwareArch(dir), true)
	want := []Missing{
		{What: "qemu-system-x86_64", Package: "qemu-system-x86"},
		{What: "UEFI firmware " + filepath.Join(dir, "A_CODE.fd"), Package: "ovmf-fake"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Tools: got %+v, want %+v", got, want)
	}
	// Without UEFI the firmware is not needed.
	if got := Tools(fakeFirmwareArch(dir), false); len(got) != 1 {
		t.Errorf("Tools without UEFI: got %+v", got)
	}
	for bin, pkg := range map[string]string{
		"qemu-system-i386": "qemu-system-x86", "qemu-system-aarch64": "qemu-system-arm",
		"qemu-system-arm": "qemu-system-arm", "qemu-system-ppc64": "qemu-system-ppc",
		"qemu-system-riscv64": "qemu-system-misc", "qemu-system-s390x": "qemu-system-s390x",
	} {
		if got := systemPackage(bin); got != pkg {
			t.Errorf("systemPackage(%s) = %s, want %s", bin, got, pkg)
		}
	}
	lookPath = func(string) (string, error) { return "/usr/bin/x", nil }
	a := fakeFirmwareArch(dir)
	touch(t, a.UEFICode[0], a.UEFIVars[0])
	if got := Tools(a, true); len(got) != 0 {
		t.Errorf("everything present: got %+v", got)
	}
}

func TestArgsNoNetworkAndDisk(t *testing.T) {
	o := Options{Image: "/out/live.iso", Kind: KindISO, Arch: lookup(t, "amd64"), Memory: 2048, CPUs: 2}
	wantSeqs(t, Args(o, "tcg", Firmware{}), []string{"-netdev", "user,id=net0"})
	o.NoNetwork, o.Disk = true, "/tmp/blank,1.img"
	args := Args(o, "tcg", Firmware{})
	wantNone(t, args, "-netdev", "virtio-net", "-nic")
	wantSeqs(t, args, []string{"-drive", "file=/tmp/blank,,1.img,if=virtio,format=raw"})
}
