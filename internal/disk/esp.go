package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"vmdeb/internal/arch"
)

// ImagePackages are the packages a disk image with Secure Boot has
// installed, as Debian's installer leaves a UEFI system: shim-signed, the
// signed GRUB, and grub-efi-ARCH, whose grub-install and update-grub keep
// the ESP and the menu current inside the booted system (its postinst runs
// grub-install itself on upgrades once /boot/efi/EFI/debian exists). nil
// where Debian signs no boot chain for a.
func ImagePackages(a arch.Arch) []string {
	if a.SecureBoot == nil || a.GrubEFIPackage == "" {
		return nil
	}
	return append(append([]string{}, a.SecureBoot.Packages...), strings.TrimSuffix(a.GrubEFIPackage, "-bin"))
}

// espFile is one file of the ESP: its path there and where it comes from
// in the image ("" for the grub.cfg vmdeb writes).
type espFile struct {
	Path, Src string
	Optional  bool // grub-install skips it when the image lacks it
}

// efiSuffix is the architecture's suffix in EFI file names: "x64" for
// bootx64.efi, "aa64" for bootaa64.efi.
func efiSuffix(a arch.Arch) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(a.EFIBootName), "boot"), ".efi")
}

// espDistributor is the directory under /EFI that grub-install names after
// GRUB_DISTRIBUTOR, "debian" on Debian, and that grub-efi-ARCH's postinst
// looks for before it runs grub-install on an upgrade.
const espDistributor = "debian"

// secureBootESP is the ESP as the image's own `grub-install
// --uefi-secure-boot --force-extra-removable --no-nvram` lays it out, each
// file taken from the image's packages: in /EFI/debian shim (which the
// firmware's boot entry, or shim's fallback reading BOOTX64.CSV, names),
// the signed GRUB beside it where shim looks for it, shim's MOK manager
// and fallback, and the grub.cfg that makes that GRUB find /boot/grub;
// and on the removable-media path /EFI/BOOT, which firmware boots with no
// boot entry in its NVRAM (a new VM), shim as BOOTX64.EFI with the signed
// GRUB and the MOK manager beside it.
func secureBootESP(a arch.Arch) ([]espFile, error) {
	sb := a.SecureBoot
	if sb == nil || a.EFIBootName == "" {
		return nil, fmt.Errorf("Debian signs no boot loaders for %s", a.Name)
	}
	sfx, up := efiSuffix(a), strings.ToUpper(efiSuffix(a))
	shimDir := path.Dir(sb.Shim)
	mm := path.Join(shimDir, "mm"+sfx+".efi.signed")
	fb := path.Join(shimDir, "fb"+sfx+".efi.signed")
	csv := path.Join(shimDir, "BOOT"+up+".CSV")
	vendor, removable := "EFI/"+espDistributor+"/", "EFI/BOOT/"
	return []espFile{
		{Path: vendor + "shim" + sfx + ".efi", Src: sb.Shim},
		{Path: vendor + sb.GrubName, Src: sb.DiskGrub},
		{Path: vendor + "mm" + sfx + ".efi", Src: mm, Optional: true},
		{Path: vendor + "fb" + sfx + ".efi", Src: fb, Optional: true},
		{Path: vendor + "BOOT" + up + ".CSV", Src: csv, Optional: true},
		{Path: vendor + "grub.cfg"},
		{Path: removable + "BOOT" + up + ".EFI", Src: sb.Shim},
		{Path: removable + sb.GrubName, Src: sb.DiskGrub},
		{Path: removable + "mm" + sfx + ".efi", Src: mm, Optional: true},
	}, nil
}

// secureBootLoader lays the ESP out as secureBootESP says, from the
// image's own files in b.stage, with grub.cfg as grub-install writes it:
// the boot file system by UUID, then the menu.
func (b *builder) secureBootLoader() error {
	files, err := secureBootESP(b.o.Arch)
	if err != nil {
		return err
	}
	var put []string
	for _, f := range files {
		var data []byte
		if f.Src == "" {
			data = []byte(earlyGrubCfg(b.l) + "configfile $prefix/grub.cfg\n")
		} else {
			s, err := root(b.stage).read(f.Src)
			if errors.Is(err, fs.ErrNotExist) && f.Optional {
				continue
			} else if err != nil {
				return fmt.Errorf("Secure Boot: the image's /%s (from %s): %w", f.Src, strings.Join(ImagePackages(b.o.Arch), ", "), err)
			}
			data = []byte(s)
		}
		dst := filepath.Join(b.espDir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
		put = append(put, f.Path)
	}
	b.log.Printf("UEFI with Secure Boot, from the image's packages: %s", strings.Join(put, ", "))
	return nil
}
