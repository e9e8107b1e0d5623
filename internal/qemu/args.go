package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"vmdeb/internal/arch"
	"vmdeb/internal/buildlog"
)

// Image kinds as DetectImage reports them.
const (
	KindISO   = "iso"
	KindQcow2 = "qcow2"
	KindRaw   = "raw"
)

// Firmware is the UEFI firmware of one boot: Code is used read-only, Vars is
// the writable variable store (Boot passes a private copy).
type Firmware struct {
	Code, Vars string
	Secure     bool // enforces Secure Boot (a PC's needs SMM)
}

// DetectImage tells an ISO 9660 image (CD001 in the first volume descriptor)
// from a qcow2 image (its magic) from anything else, which is taken as a raw
// disk.
func DetectImage(path string) (kind string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if bytes.Equal(magic, []byte("QFI\xfb")) {
		return KindQcow2, nil
	}
	id := make([]byte, 5)
	if _, err := f.ReadAt(id, 32769); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if string(id) == "CD001" {
		return KindISO, nil
	}
	return KindRaw, nil
}

// Missing is an external tool a boot needs and the Debian package that
// provides it.
type Missing = buildlog.Missing

// lookPath finds a program on the PATH vmdeb's commands run with; tests
// replace it.
var lookPath = buildlog.LookPath

// Tools lists what Boot would need for a but cannot find.
func Tools(a arch.Arch, uefi bool) []Missing {
	var m []Missing
	if a.QemuSystem != "" {
		if _, err := lookPath(a.QemuSystem); err != nil {
			m = append(m, Missing{What: a.QemuSystem, Package: systemPackage(a.QemuSystem)})
		}
	}
	if uefi && len(a.UEFICode) > 0 {
		if _, err := findFirmware(a); err != nil {
			m = append(m, Missing{What: "UEFI firmware " + a.UEFICode[0], Package: a.UEFIPackage})
		}
	}
	return m
}

// System is the path of a's qemu-system program, or the error that says
// which package to install.
func System(a arch.Arch) (string, error) {
	bin, err := lookPath(a.QemuSystem)
	if err != nil {
		return "", buildlog.MissingError([]Missing{{What: a.QemuSystem, Package: systemPackage(a.QemuSystem)}})
	}
	return bin, nil
}

// systemPackage names the Debian package holding a qemu-system binary.
func systemPackage(bin string) string {
	switch strings.TrimPrefix(bin, "qemu-system-") {
	case "x86_64", "i386":
		return "qemu-system-x86"
	case "aarch64", "arm":
		return "qemu-system-arm"
	case "ppc64", "ppc":
		return "qemu-system-ppc"
	case "s390x":
		return "qemu-system-s390x"
	default:
		return "qemu-system-misc"
	}
}

// findFirmware returns the first UEFI code/vars pair that exists: a code
// image only works with the variable store built with it, so CODE[i] pairs
// with VARS[i].
func findFirmware(a arch.Arch) (Firmware, error) {
	if fw, ok := firstPair(a.UEFICode, a.UEFIVars); ok {
		return fw, nil
	}
	if len(a.UEFICode) == 0 {
		return Firmware{}, fmt.Errorf("no UEFI firmware is known for %s", a.Name)
	}
	return Firmware{}, fmt.Errorf("UEFI firmware for %s not found (looked for %s with %s): install %s",
		a.Name, strings.Join(a.UEFICode, ", "), strings.Join(a.UEFIVars, ", "), a.UEFIPackage)
}

// findSecureFirmware returns the firmware that enforces Secure Boot with
// Microsoft's keys enrolled.
func findSecureFirmware(a arch.Arch) (Firmware, error) {
	sb := a.SecureBoot
	if sb == nil {
		return Firmware{}, fmt.Errorf("no Secure Boot firmware is known for %s (Debian signs its boot chain for %s)", a.Name, strings.Join(arch.SecureBootNames(), ", "))
	}
	if fw, ok := firstPair(sb.UEFICode, sb.UEFIVars); ok {
		fw.Secure = true
		return fw, nil
	}
	return Firmware{}, fmt.Errorf("Secure Boot firmware for %s not found (looked for %s with %s): install %s",
		a.Name, strings.Join(sb.UEFICode, ", "), strings.Join(sb.UEFIVars, ", "), a.UEFIPackage)
}

// firstPair is the first code[i], vars[i] that both exist.
func firstPair(code, vars []string) (Firmware, bool) {
	for i := range min(len(code), len(vars)) {
		if isFile(code[i]) && isFile(vars[i]) {
			return Firmware{Code: code[i], Vars: vars[i]}, true
		}
	}
	return Firmware{}, false
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// Args is the qemu command line (without the binary, a.QemuSystem) for one
// boot of o.Image with accelerator accel ("kvm" or "tcg"). o.Kind must be
// set ("" is taken as raw); fw is used only when o.UEFI is set.
func Args(o Options, accel string, fw Firmware) []string {
	a := o.Arch
	args := []string{
		// Nothing but what is listed here: no default VGA, NIC or drives,
		// and no user config that could change the machine.
		"-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-monitor", "none",
		// A guest that reboots has failed the test: exit instead.
		"-no-reboot",
		"-accel", accel,
	}
	x86 := a.QemuMachine == ""
	secboot := o.UEFI && (fw.Secure || strings.Contains(fw.Code, "secboot"))
	switch {
	case x86 && secboot:
		// A Secure Boot OVMF build only runs with SMM on q35 and a
		// pflash that only SMM code may write.
		args = append(args, "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on")
	case a.QemuMachine == "virt" && accel == "kvm":
		args = append(args, "-machine", "virt,gic-version=max")
	case a.QemuMachine != "":
		args = append(args, "-machine", a.QemuMachine)
	}
	switch {
	case accel == "kvm" && !x86:
		// Named CPU models do not run under KVM on Arm; max is the host's.
		args = append(args, "-cpu", "max")
	case accel == "tcg" && a.QemuCPU != "":
		args = append(args, "-cpu", a.QemuCPU)
	}
	// Under KVM on x86 the default CPU model is kept: -cpu host/max abort
	// on some nested hosts.
	args = append(args, "-m", strconv.Itoa(o.Memory), "-smp", strconv.Itoa(o.CPUs))
	if o.UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(fw.Code),
			"-drive", "if=pflash,format=raw,unit=1,file="+optEscape(fw.Vars))
	}
	img := optEscape(o.Image)
	switch {
	case o.Kind == KindISO && x86:
		args = append(args, "-drive", "file="+img+",media=cdrom,readonly=on,format=raw")
	case o.Kind == KindISO:
		// Machines like virt have no IDE: the CD hangs off virtio-scsi.
		args = append(args,
			"-drive", "if=none,id=cd0,file="+img+",media=cdrom,readonly=on,format=raw",
			"-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-cd,bus=scsi0.0,drive=cd0")
	default:
		format := KindRaw
		if o.Kind == KindQcow2 {
			format = KindQcow2
		}
		// snapshot=on: the guest's writes go to a temporary overlay, so a
		// test boot never changes the image it tests.
		snap := ",snapshot=on"
		if o.Writable {
			snap = ""
		}
		args = append(args, "-drive", "file="+img+",if=virtio,format="+format+snap)
	}
	// romfile= drops the NIC's PXE ROM: an unbootable disk then fails at
	// once instead of netbooting.
	if o.Disk != "" {
		args = append(args, "-drive", "file="+optEscape(o.Disk)+",if=virtio,format=raw")
	}
	if !o.NoNetwork {
		args = append(args, "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=")
	}
	if o.Screenshot != "" {
		// screendump needs a graphics console, which -nodefaults removed.
		if x86 {
			args = append(args, "-vga", "std")
		} else {
			args = append(args, "-device", "virtio-gpu-pci")
		}
	}
	if o.qmp != "" {
		args = append(args, "-qmp", "unix:"+optEscape(o.qmp)+",server=on,wait=off")
	}
	return args
}

// optEscape doubles commas, which qemu's option syntax uses as separators.
func optEscape(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}
