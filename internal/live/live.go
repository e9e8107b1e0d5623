// Package live makes the pieces of a Debian live ISO: the squashfs of the
// root file system, the ISOLINUX and GRUB boot menus, the EFI boot loader
// and its FAT image, and the hybrid ISO that boots from CD and USB on BIOS
// and UEFI machines. It follows the layout of live-build's images, so
// live-boot finds /live/filesystem.squashfs as it does on Debian's own.
package live

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"vmdeb/internal/arch"
	"vmdeb/internal/buildlog"
)

// Host paths of the boot loader files, as Debian's packages install them.
const (
	isolinuxDir   = "/usr/lib/ISOLINUX"
	syslinuxBIOS  = "/usr/lib/syslinux/modules/bios"
	grubLibDir    = "/usr/lib/grub"
	grubUnicodeFn = "/usr/share/grub/unicode.pf2"
)

// Missing is a tool or file the build needs that the host lacks.
type Missing = buildlog.Missing

// CheckTools lists what BuildISO and MakeSquashfs need on this host for
// architecture a, and are missing, each with the Debian package that
// provides it. splash adds what a graphical menu needs.
func CheckTools(a arch.Arch, splash bool) []Missing {
	var need buildlog.Needs
	bin, file := need.Bin, need.File
	bin("mksquashfs", "squashfs-tools")
	bin("unsquashfs", "squashfs-tools")
	bin("xorriso", "xorriso")
	if a.HasFirmware(arch.BIOS) {
		file(filepath.Join(isolinuxDir, "isolinux.bin"), "isolinux")
		file(filepath.Join(isolinuxDir, "isohdpfx.bin"), "isolinux")
		for _, m := range isolinuxModules(splash) {
			file(filepath.Join(syslinuxBIOS, m), "syslinux-common")
		}
	}
	if a.HasFirmware(arch.UEFI) {
		// The EFI modules are not checked: without the host's (HostGrubDir),
		// the build takes the target archive's own.
		bin("grub-mkimage", "grub-common")
		bin("mkfs.vfat", "dosfstools")
		bin("mmd", "mtools")
		bin("mcopy", "mtools")
		if splash {
			file(grubUnicodeFn, "grub-common")
		}
	}
	return need.Missing
}

// HostGrubDir is the host's GRUB module directory for a's EFI loader, and
// whether it exists.
func HostGrubDir(a arch.Arch) (string, bool) {
	d := filepath.Join(grubLibDir, a.GrubEFITarget)
	fi, err := os.Stat(d)
	return d, err == nil && fi.IsDir()
}

// isolinuxModules are the COM32 modules the ISOLINUX menu loads.
func isolinuxModules(splash bool) []string {
	ui := "menu.c32"
	if splash {
		ui = "vesamenu.c32"
	}
	return []string{"ldlinux.c32", "libcom32.c32", "libutil.c32", ui}
}

// freeSpace is the space an unprivileged writer can use on dir's file
// system; the root reserve is not counted on, to stay on the safe side.
func freeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// copyFile copies src to dst with mode perm.
func copyFile(src, dst string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// linkOrCopy hard-links src to dst, which costs no space for a large
// squashfs, and copies when the two are on different file systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst, 0o644)
}
