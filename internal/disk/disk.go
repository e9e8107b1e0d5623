// Package disk makes bootable VM disk images (raw or qcow2) from a root
// file system directory, without loop devices and without mounts: each file
// system is made from a directory straight into its partition of a sparse
// image file (mke2fs -d -E offset, mkfs.vfat --offset, mtools), the
// partition table is written by sfdisk on the file, and GRUB's BIOS boot
// sector and core image are placed by vmdeb itself, as grub-bios-setup
// would place them. btrfs and xfs, whose tools write only whole files, are
// made in a file of the partition's size and copied in. The one exception
// is extlinux, whose installer needs the file system mounted: that mount
// lives in a mount namespace of its own (see extlinuxScript).
package disk

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"vmdeb/internal/bytesize"

	"vmdeb/internal/arch"
	"vmdeb/internal/buildlog"
)

// Options describe one disk image.
type Options struct {
	Size     int64          // bytes of the whole image (a multiple of 512)
	Format   Format         // raw (default) | qcow2
	Table    PartitionTable // gpt (default) | mbr
	RootFS   Filesystem     // ext4 (default), ext3, ext2, btrfs, xfs
	BootSize int64          // >0: a separate /boot partition of this size (ext4, or ext2 when RootFS is ext2)
	// BootFS is the separate /boot's file system: "" for the default
	// (ext4, or ext2 beside an ext2 root), or one of BootFilesystems;
	// vfat is for boards whose firmware reads FAT, without vmdeb's GRUB.
	BootFS Filesystem
	// PartitionOffset is where the first partition starts: 1 MiB when 0,
	// else a multiple of 1 MiB, leaving the room before it for a board's
	// boot loader (written by the Hook).
	PartitionOffset int64
	SwapSize        int64      // >0: a swap partition of this size
	ESPSize         int64      // EFI system partition when UEFI boots (default 256 MiB); >0 without UEFI is an error
	Bootloader      Bootloader // grub-bios | grub-uefi | grub-hybrid | extlinux | none; default per architecture
	Arch            arch.Arch
	// KernelParams are appended to the kernel command line, after
	// root=UUID=… ro and the consoles (tty0 and the architecture's serial
	// console), which are always there.
	KernelParams []string
	Hostname     string  // "" keeps the root file system's /etc/hostname
	Network      Network // networkd (default) | ifupdown | none
	GrowRoot     bool    // grow the root partition and file system to the disk's end on first boot
	// SourceDateEpoch > 0 with Seed derives every UUID (disk, partitions,
	// file systems) from them, so the same config gives the same
	// identifiers; it is also passed to the tools as their clock.
	SourceDateEpoch int64
	Seed            string
	// GrubDirs maps a GRUB platform ("i386-pc", "x86_64-efi", "arm64-efi",
	// …) to the directory of its modules; a platform not in the map is
	// taken from the host's /usr/lib/grub/<platform>. A foreign
	// architecture's build points this at the target's own GRUB.
	GrubDirs map[string]string
	// SecureBoot boots UEFI through Debian's signed chain, taken from the
	// image's own packages (ImagePackages): shim and the signed GRUB take
	// the place of vmdeb's own GRUB core on the ESP (see secureBootESP).
	SecureBoot bool
	// DeviceTree names the board's device tree, relative to the kernel's
	// /usr/lib/linux-image-VERSION/ (rockchip/rk3399-rockpro64.dtb): GRUB
	// loads each kernel's copy from the root file system. "" loads none.
	DeviceTree string
	// Hook, when set, runs once the image file is partitioned and before
	// its file systems are made (see Hook).
	Hook *Hook
}

// Hook is a script run on the image as vmdebootstrap ran its --customize
// script: SCRIPT ROOTDIR IMAGE, where ROOTDIR is the image's root tree
// (its /boot and /boot/efi in it) and IMAGE the raw image file, already
// partitioned, into which it may write a board's boot loader before the
// first partition (see builder.runHook). Run in a mount namespace of its
// own, in Dir, with Env, for at most Timeout.
type Hook struct {
	Script  string
	Dir     string
	Env     []string
	Timeout time.Duration
}

// The disk image's choices (a config's disk output keys), each a type
// with its values.
type (
	Format         string // the image file's format
	PartitionTable string
	Filesystem     string // the root file system's type
	Bootloader     string
	Network        string // how the image configures its network
)

const (
	Raw   Format = "raw"
	Qcow2 Format = "qcow2"

	GPT PartitionTable = "gpt"
	MBR PartitionTable = "mbr"

	Ext4  Filesystem = "ext4"
	Ext3  Filesystem = "ext3"
	Ext2  Filesystem = "ext2"
	Btrfs Filesystem = "btrfs"
	XFS   Filesystem = "xfs"
	VFAT  Filesystem = "vfat" // a separate /boot only

	GrubBIOS     Bootloader = "grub-bios"   // GRUB for PC BIOS
	GrubUEFI     Bootloader = "grub-uefi"   // GRUB EFI
	GrubHybrid   Bootloader = "grub-hybrid" // both, on a GPT with a BIOS boot partition
	Extlinux     Bootloader = "extlinux"    // BIOS only
	NoBootloader Bootloader = "none"

	Networkd  Network = "networkd" // systemd-networkd (and resolved), DHCP on the first interface
	Ifupdown  Network = "ifupdown" // /etc/network/interfaces, DHCP on the first interface
	NoNetwork Network = "none"
)

// The valid values of each choice, in the order the documentation and
// messages give them; the first is the default, except for the boot
// loader, whose default depends on the architecture (DefaultBootloader).
var (
	Formats         = []Format{Raw, Qcow2}
	PartitionTables = []PartitionTable{GPT, MBR}
	Filesystems     = []Filesystem{Ext4, Ext3, Ext2, Btrfs, XFS}
	BootFilesystems = []Filesystem{Ext4, Ext3, Ext2, VFAT}
	Bootloaders     = []Bootloader{GrubBIOS, GrubUEFI, GrubHybrid, Extlinux, NoBootloader}
	Networks        = []Network{Networkd, Ifupdown, NoNetwork}
)

// Join lists values for a message: "a, b, c".
func Join[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

const (
	mib            = 1 << 20
	sector         = 512
	defaultESPSize = 256 * mib
	minESPSize     = 32 * mib // below this some firmware refuses FAT ESPs
	minBootSize    = 16 * mib
	biosBootSize   = 1 * mib
	maxMBRSectors  = 1 << 32 // MBR entries hold 32-bit sector numbers
)

// DefaultBootloader is the boot loader of a disk image for architecture a
// when the config names none: GRUB for both firmwares where a has both,
// else for the one it has.
func DefaultBootloader(a arch.Arch) Bootloader {
	if a.BoardDisks {
		return NoBootloader
	}
	bios, uefi := a.HasFirmware(arch.BIOS), a.HasFirmware(arch.UEFI)
	switch {
	case bios && uefi:
		return GrubHybrid
	case uefi:
		return GrubUEFI
	case bios:
		return GrubBIOS
	}
	return NoBootloader
}

// Bootloaders for a lists the boot loaders vmdeb installs on a's disks:
// none only where the board's firmware (u-boot) is the image hook's to
// write.
func BootloadersFor(a arch.Arch) []Bootloader {
	if a.BoardDisks {
		return []Bootloader{NoBootloader}
	}
	return Bootloaders
}

// bios and uefi tell which firmwares GRUB serves; extlinux boots BIOS
// PCs only.
func (o Options) bios() bool     { return o.Bootloader == GrubBIOS || o.Bootloader == GrubHybrid }
func (o Options) uefi() bool     { return o.Bootloader == GrubUEFI || o.Bootloader == GrubHybrid }
func (o Options) grub() bool     { return o.bios() || o.uefi() }
func (o Options) extlinux() bool { return o.Bootloader == Extlinux }

// bootMenu reports whether vmdeb writes a boot menu, which lists the
// image's kernels.
func (o Options) bootMenu() bool { return o.grub() || o.extlinux() }

// normalize fills in the defaults and rejects what cannot be built, with
// the valid choices in the message.
func (o Options) normalize() (Options, error) {
	a := o.Arch
	if a.Name == "" {
		return o, errors.New("disk: no architecture given")
	}
	if !a.Supports(arch.Disk) {
		return o, fmt.Errorf("disk: architecture %s has no disk image output", a.Name)
	}
	if o.Bootloader == "" {
		o.Bootloader = DefaultBootloader(a)
	}
	if err := errors.Join(
		choose(&o.Format, Formats, "format"),
		choose(&o.Table, PartitionTables, "partition table"),
		choose(&o.RootFS, Filesystems, "root file system"),
		choose(&o.Bootloader, Bootloaders, "boot loader"),
		choose(&o.Network, Networks, "network"),
	); err != nil {
		return o, err
	}
	if !slices.Contains(BootloadersFor(a), o.Bootloader) {
		return o, fmt.Errorf("disk: boot loader %s: vmdeb writes %s disks as board images, with no boot loader of its own (bootloader: none; the image hook writes the board's u-boot)", o.Bootloader, a.Name)
	}
	if o.BootFS != "" {
		if o.BootSize == 0 {
			return o, fmt.Errorf("disk: a boot file system type (%s) needs a separate /boot (boot-size)", o.BootFS)
		}
		if !slices.Contains(BootFilesystems, o.BootFS) {
			return o, fmt.Errorf("disk: /boot file system %q is not valid (valid: %s)", o.BootFS, Join(BootFilesystems))
		}
		if o.BootFS == VFAT && o.Bootloader != NoBootloader {
			return o, fmt.Errorf("disk: a vfat /boot is for boards whose firmware reads it, with bootloader: none, not %s (GRUB and extlinux read vmdeb's ext /boot)", o.Bootloader)
		}
	}
	if o.PartitionOffset == 0 {
		o.PartitionOffset = mib
	}
	if o.PartitionOffset < mib || o.PartitionOffset%mib != 0 {
		return o, fmt.Errorf("disk: the first partition's offset %d is not a whole number of MiB of at least 1 MiB", o.PartitionOffset)
	}
	if o.Hook != nil && (o.Hook.Script == "" || !filepath.IsAbs(o.Hook.Script)) {
		return o, fmt.Errorf("disk: the image hook %q is not an absolute path", o.Hook.Script)
	}
	if (o.bios() || o.extlinux()) && !a.HasFirmware(arch.BIOS) {
		return o, fmt.Errorf("disk: boot loader %s needs a PC BIOS, which %s does not have (use grub-uefi)", o.Bootloader, a.Name)
	}
	if o.extlinux() && !slices.Contains(extlinuxFS, o.bootFS()) {
		return o, fmt.Errorf("disk: extlinux cannot boot from %s (it reads %s): add a separate /boot (boot-size), which is ext4", o.bootFS(), strings.Join(extlinuxFS, ", "))
	}
	if o.uefi() && (!a.HasFirmware(arch.UEFI) || a.GrubEFITarget == "" || a.EFIBootName == "") {
		return o, fmt.Errorf("disk: boot loader %s needs UEFI, which vmdeb does not support on %s", o.Bootloader, a.Name)
	}
	if o.ESPSize < 0 || o.BootSize < 0 || o.SwapSize < 0 {
		return o, errors.New("disk: partition sizes cannot be negative")
	}
	if o.uefi() {
		if o.ESPSize == 0 {
			o.ESPSize = defaultESPSize
		}
		if o.ESPSize < minESPSize {
			return o, fmt.Errorf("disk: the EFI system partition needs at least %s, %s was given", bytesize.Format(minESPSize), bytesize.Format(o.ESPSize))
		}
	} else if o.ESPSize > 0 {
		return o, fmt.Errorf("disk: an EFI system partition (esp-size) only makes sense with a UEFI boot loader (grub-uefi or grub-hybrid), not %s", o.Bootloader)
	}
	if o.BootSize > 0 && o.BootSize < minBootSize {
		return o, fmt.Errorf("disk: a separate /boot needs at least %s, %s was given", bytesize.Format(minBootSize), bytesize.Format(o.BootSize))
	}
	if o.Size <= 0 {
		return o, errors.New("disk: the image size is not set")
	}
	if o.Size%sector != 0 {
		return o, fmt.Errorf("disk: the image size %d is not a multiple of %d bytes", o.Size, sector)
	}
	if o.Table == MBR && o.Size/sector > maxMBRSectors {
		return o, fmt.Errorf("disk: an MBR partition table cannot address %s; use gpt", bytesize.Format(o.Size))
	}
	return o, nil
}

// choose sets *p to the first of valid when empty, and refuses a value
// that is not one of them, with the valid ones in the message.
func choose[T ~string](p *T, valid []T, what string) error {
	if *p == "" {
		*p = valid[0]
	}
	if !slices.Contains(valid, *p) {
		return fmt.Errorf("disk: %s %q is not valid (valid: %s)", what, *p, Join(valid))
	}
	return nil
}

// bootFS is the file system the boot loader reads the kernels from: the
// root's, or that of a separate /boot: ext2 beside an ext2 root (a system
// without a journal anywhere), ext4 otherwise, which every boot loader
// reads.
func (o Options) bootFS() string {
	switch {
	case o.BootSize == 0:
		return string(o.RootFS)
	case o.BootFS != "":
		return string(o.BootFS)
	case o.RootFS == Ext2:
		return "ext2"
	}
	return "ext4"
}

// extlinuxFS are the file systems extlinux (syslinux 6) installs to and
// boots from in vmdeb's images.
var extlinuxFS = []string{"ext4", "ext3", "ext2", "btrfs"}

// grubDir is the module directory of a GRUB platform.
func (o Options) grubDir(platform string) string {
	if d, ok := o.GrubDirs[platform]; ok && d != "" {
		return d
	}
	return filepath.Join("/usr/lib/grub", platform)
}

// Missing is a tool or file the build needs that the host lacks.
type Missing = buildlog.Missing

// CheckTools lists what Build needs on this host for o and is missing,
// each with the Debian package that provides it.
func CheckTools(o Options) []Missing {
	o, _ = o.normalize() // defaults only; Build reports bad options itself
	var need buildlog.Needs
	bin, file := need.Bin, need.File
	bin("sfdisk", "fdisk")
	bin("mke2fs", "e2fsprogs")
	bin("e2fsck", "e2fsprogs")
	bin("blkid", "util-linux")
	if o.SwapSize > 0 {
		bin("mkswap", "util-linux")
	}
	for _, t := range fsTools[string(o.RootFS)] {
		bin(t[0], t[1])
	}
	if o.extlinux() {
		bin("extlinux", "extlinux")
		bin("unshare", "util-linux")
		bin("mount", "mount")
		bin("umount", "mount")
		file(mbrCode(o.Table), "syslinux-common")
	}
	if o.Format == Qcow2 {
		bin("qemu-img", "qemu-utils")
	}
	if o.BootFS == VFAT {
		bin("mkfs.vfat", "dosfstools")
		bin("mcopy", "mtools")
	}
	if o.Hook != nil {
		bin("unshare", "util-linux")
	}
	if o.grub() {
		bin("grub-mkimage", "grub-common")
	}
	if o.bios() {
		d := o.grubDir("i386-pc")
		for _, f := range []string{"boot.img", "diskboot.img", "biosdisk.mod", "normal.mod"} {
			file(filepath.Join(d, f), "grub-pc-bin")
		}
	}
	if o.uefi() {
		pkg := o.Arch.GrubEFIPackage
		if pkg == "" {
			pkg = "grub-efi-" + o.Arch.Name + "-bin"
		}
		file(filepath.Join(o.grubDir(o.Arch.GrubEFITarget), "normal.mod"), pkg)
		bin("mkfs.vfat", "dosfstools")
		bin("mmd", "mtools")
		bin("mcopy", "mtools")
		bin("mdir", "mtools")
	}
	return need.Missing
}
