package build

import (
	"slices"
	"testing"

	"vmdeb/internal/config"
	"vmdeb/internal/disk"
)

// A disk that boots UEFI with Secure Boot has Debian's signed chain and
// grub-install installed, as Debian's installer leaves a system; other
// disks, and disks without Secure Boot, get none of it.
func TestDiskPackages(t *testing.T) {
	sb := []string{"shim-signed", "grub-efi-amd64-signed", "grub-efi-amd64"}
	for _, c := range []struct {
		name, arch, bootloader string
		mode                   config.SecureBootMode
		want                   []string
	}{
		{"hybrid by default", "amd64", "", config.SecureBootAuto, sb},
		{"uefi", "amd64", "grub-uefi", config.SecureBootOn, sb},
		{"arm64", "arm64", "", config.SecureBootAuto, []string{"shim-signed", "grub-efi-arm64-signed", "grub-efi-arm64"}},
		{"secure-boot false", "amd64", "grub-hybrid", config.SecureBootOff, nil},
		{"BIOS only", "amd64", "grub-bios", config.SecureBootAuto, nil},
		{"extlinux", "amd64", "extlinux", config.SecureBootAuto, nil},
		{"no signed chain", "i386", "grub-uefi", config.SecureBootAuto, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := spec(t, "")
			s.Architecture, s.SecureBoot = c.arch, c.mode
			s.Outputs[0] = config.Output{Type: "disk", Path: "vm.img", Bootloader: disk.Bootloader(c.bootloader)}
			got := packageList(s)
			for _, p := range sb[:2] {
				if c.want == nil && slices.Contains(got, p) {
					t.Errorf("installs %s: %v", p, got)
				}
			}
			for _, p := range c.want {
				if !slices.Contains(got, p) {
					t.Errorf("%v lacks %s", got, p)
				}
			}
		})
	}
	// A live ISO alone takes its loaders from outside the image.
	if got := packageList(spec(t, "")); slices.Contains(got, "shim-signed") {
		t.Errorf("a live ISO's root installs shim-signed: %v", got)
	}
}
