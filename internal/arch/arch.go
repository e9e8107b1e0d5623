// Package arch is the one table of what vmdeb knows per Debian architecture:
// the emulators, the default kernel, the boot firmware and loaders. Adding an
// architecture is adding one row.
package arch

import (
	"fmt"
	"sort"
	"strings"
)

// Firmware is a way a machine starts a boot loader.
type Firmware string

const (
	BIOS Firmware = "bios" // PC BIOS (SeaBIOS in qemu): ISOLINUX, GRUB for PC
	UEFI Firmware = "uefi" // UEFI: GRUB EFI
)

// OutputType is a kind of output a build writes (a config's
// outputs[].type). OutputTypes lists them all; each architecture's row
// says which it can make.
type OutputType string

const (
	LiveISO   OutputType = "live-iso"  // a hybrid live ISO (CD, USB)
	Disk      OutputType = "disk"      // a bootable disk image
	Tarball   OutputType = "tarball"   // the root file system, compressed by extension
	Directory OutputType = "directory" // the root file system as a directory
	Squashfs  OutputType = "squashfs"  // filesystem.squashfs, vmlinuz and initrd.img
	Ext4      OutputType = "ext4"      // the root file system as a bare ext4 image
	OCI       OutputType = "oci"       // a container image (OCI image layout in a tar)
)

// OutputTypes are the output types vmdeb knows, in the order the
// documentation and messages give them.
var OutputTypes = []OutputType{LiveISO, Disk, Tarball, Directory, Squashfs, Ext4, OCI}

// Arch is one row of the table.
type Arch struct {
	Name        string // Debian architecture name
	ELFMachine  string // what `file`/debug/elf call the binaries' machine, e.g. "EM_AARCH64"
	QemuUser    string // qemu-user emulator binary name (binfmt handler name without "qemu-")
	QemuSystem  string // qemu-system binary
	QemuMachine string // -M value ("" for the binary's default)
	QemuCPU     string // -cpu value under TCG ("" for the default)
	Console     string // serial console device for the kernel command line
	Kernel      string // default kernel package
	Firmware    []Firmware
	// GrubEFITarget is grub-mkstandalone's -O for the EFI loader and
	// GrubEFIPackage the Debian package holding its modules.
	GrubEFITarget  string
	GrubEFIPackage string
	// EFIBootName is the removable-media loader file name under EFI/boot/.
	EFIBootName string
	// UEFICode and UEFIVars are candidate firmware images for qemu, first
	// existing one wins; UEFIPackage provides them.
	UEFICode    []string
	UEFIVars    []string
	UEFIPackage string
	// DeviceTrees: the architecture's boards describe their hardware with
	// a device tree that the boot loader hands the kernel, and Debian's
	// kernel packages ship them (under /usr/lib/linux-image-VERSION/).
	// vmdeb carries them onto the boot media it makes, and a config's
	// device-tree names the one to load. qemu's virt machine supplies its
	// own, so the boot tests load none.
	DeviceTrees bool
	// Outputs lists the output types this architecture supports.
	Outputs []OutputType
	// BoardDisks: vmdeb's disk images for the architecture are board
	// images, with no boot loader of vmdeb's (the board's u-boot is
	// written by the image hook, as vmdebootstrap left it to --customize).
	BoardDisks bool
	// SecureBoot, where Debian signs the boot chain for the
	// architecture, says where the signed loaders are.
	SecureBoot *SecureBoot
}

// SecureBoot is Debian's signed UEFI boot chain for one architecture:
// shim (signed by Microsoft's UEFI CA, Debian's key built in), then GRUB
// (signed by Debian), then the kernel (signed by Debian).
type SecureBoot struct {
	// Packages hold the signed loaders, in the target suite's archive.
	Packages []string
	// Shim and Grub are the loaders' paths in those packages. Grub is the
	// monolithic image made for removable media (gcd*): it finds its
	// medium by /.disk/info and reads $prefix/TARGET/grub.cfg there.
	Shim, Grub string
	// DiskGrub is the signed GRUB for an installed system's disk: it
	// reads grub.cfg beside itself (on the ESP) to find /boot/grub.
	DiskGrub string
	// GrubName is the name shim loads beside itself (grubx64.efi).
	GrubName string
	// UEFICode and UEFIVars are firmware images that enforce Secure Boot
	// with Microsoft's keys enrolled (the first pair that exists).
	UEFICode, UEFIVars []string
}

var table = map[string]Arch{
	"amd64": {
		Name: "amd64", ELFMachine: "EM_X86_64", QemuUser: "x86_64",
		QemuSystem: "qemu-system-x86_64", Console: "ttyS0",
		Kernel:        "linux-image-amd64",
		Firmware:      []Firmware{BIOS, UEFI},
		GrubEFITarget: "x86_64-efi", GrubEFIPackage: "grub-efi-amd64-bin", EFIBootName: "bootx64.efi",
		UEFICode:    []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd"},
		UEFIVars:    []string{"/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
		UEFIPackage: "ovmf",
		Outputs:     []OutputType{LiveISO, Disk, Tarball, Directory, Squashfs, Ext4, OCI},
		SecureBoot: &SecureBoot{
			Packages: []string{"shim-signed", "grub-efi-amd64-signed"},
			Shim:     "usr/lib/shim/shimx64.efi.signed",
			Grub:     "usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed",
			DiskGrub: "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
			GrubName: "grubx64.efi",
			UEFICode: []string{"/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_CODE.ms.fd"},
			UEFIVars: []string{"/usr/share/OVMF/OVMF_VARS_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS.ms.fd"},
		},
	},
	"i386": {
		Name: "i386", ELFMachine: "EM_386", QemuUser: "i386",
		QemuSystem: "qemu-system-i386", Console: "ttyS0",
		Kernel:        "linux-image-686-pae",
		Firmware:      []Firmware{BIOS, UEFI},
		GrubEFITarget: "i386-efi", GrubEFIPackage: "grub-efi-ia32-bin", EFIBootName: "bootia32.efi",
		UEFICode:    []string{"/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd"},
		UEFIVars:    []string{"/usr/share/OVMF/OVMF32_VARS_4M.fd"},
		UEFIPackage: "ovmf-ia32",
		Outputs:     []OutputType{LiveISO, Disk, Tarball, Directory, Squashfs, Ext4, OCI},
	},
	"arm64": {
		Name: "arm64", ELFMachine: "EM_AARCH64", QemuUser: "aarch64",
		QemuSystem: "qemu-system-aarch64", QemuMachine: "virt", QemuCPU: "cortex-a57", Console: "ttyAMA0",
		Kernel:        "linux-image-arm64",
		Firmware:      []Firmware{UEFI},
		GrubEFITarget: "arm64-efi", GrubEFIPackage: "grub-efi-arm64-bin", EFIBootName: "bootaa64.efi",
		UEFICode:    []string{"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"},
		UEFIVars:    []string{"/usr/share/AAVMF/AAVMF_VARS.fd"},
		UEFIPackage: "qemu-efi-aarch64",
		DeviceTrees: true,
		Outputs:     []OutputType{LiveISO, Disk, Tarball, Directory, Squashfs, Ext4, OCI},
		SecureBoot: &SecureBoot{
			Packages: []string{"shim-signed", "grub-efi-arm64-signed"},
			Shim:     "usr/lib/shim/shimaa64.efi.signed",
			Grub:     "usr/lib/grub/arm64-efi-signed/gcdaa64.efi.signed",
			DiskGrub: "usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed",
			GrubName: "grubaa64.efi",
			UEFICode: []string{"/usr/share/AAVMF/AAVMF_CODE.ms.fd"},
			UEFIVars: []string{"/usr/share/AAVMF/AAVMF_VARS.ms.fd"},
		},
	},
	"armhf": {
		Name: "armhf", ELFMachine: "EM_ARM", QemuUser: "arm",
		QemuSystem: "qemu-system-arm", QemuMachine: "virt", QemuCPU: "cortex-a15", Console: "ttyAMA0",
		Kernel:        "linux-image-armmp-lpae",
		Firmware:      []Firmware{UEFI},
		GrubEFITarget: "arm-efi", GrubEFIPackage: "grub-efi-arm-bin", EFIBootName: "bootarm.efi",
		UEFICode:    []string{"/usr/share/AAVMF/AAVMF32_CODE.fd"},
		UEFIVars:    []string{"/usr/share/AAVMF/AAVMF32_VARS.fd"},
		UEFIPackage: "qemu-efi-arm",
		DeviceTrees: true,
		Outputs:     []OutputType{Disk, Tarball, Directory, Squashfs, Ext4, OCI},
		BoardDisks:  true,
	},
	"armel": {
		Name: "armel", ELFMachine: "EM_ARM", QemuUser: "arm",
		QemuSystem: "qemu-system-arm", QemuMachine: "versatilepb", Console: "ttyAMA0",
		Kernel:      "linux-image-marvell",
		DeviceTrees: true,
		Outputs:     []OutputType{Disk, Tarball, Directory, Squashfs, Ext4, OCI},
		BoardDisks:  true,
	},
	"ppc64el": {
		Name: "ppc64el", ELFMachine: "EM_PPC64", QemuUser: "ppc64le",
		QemuSystem: "qemu-system-ppc64", QemuMachine: "pseries", Console: "hvc0",
		Kernel:  "linux-image-powerpc64le",
		Outputs: []OutputType{Tarball, Directory, Squashfs, Ext4, OCI},
	},
	"riscv64": {
		Name: "riscv64", ELFMachine: "EM_RISCV", QemuUser: "riscv64",
		QemuSystem: "qemu-system-riscv64", QemuMachine: "virt", Console: "ttyS0",
		Kernel:      "linux-image-riscv64",
		DeviceTrees: true,
		Outputs:     []OutputType{Tarball, Directory, Squashfs, Ext4, OCI},
	},
	"s390x": {
		Name: "s390x", ELFMachine: "EM_S390", QemuUser: "s390x",
		QemuSystem: "qemu-system-s390x", QemuMachine: "s390-ccw-virtio", Console: "ttysclp0",
		Kernel:  "linux-image-s390x",
		Outputs: []OutputType{Tarball, Directory, Squashfs, Ext4, OCI},
	},
}

// Lookup returns the row for a Debian architecture name.
func Lookup(name string) (Arch, error) {
	a, ok := table[name]
	if !ok {
		return Arch{}, fmt.Errorf("unknown architecture %q (valid: %s)", name, strings.Join(Names(), ", "))
	}
	return a, nil
}

// Names lists the known architectures, sorted.
func Names() []string {
	var n []string
	for k := range table {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Supports reports whether the architecture can produce an output type.
func (a Arch) Supports(output OutputType) bool {
	for _, o := range a.Outputs {
		if o == output {
			return true
		}
	}
	return false
}

// HasFirmware reports whether the architecture boots with f.
func (a Arch) HasFirmware(f Firmware) bool {
	for _, x := range a.Firmware {
		if x == f {
			return true
		}
	}
	return false
}

// SecureBootNames lists the architectures with a signed boot chain.
func SecureBootNames() []string {
	var n []string
	for _, a := range table {
		if a.SecureBoot != nil {
			n = append(n, a.Name)
		}
	}
	sort.Strings(n)
	return n
}
