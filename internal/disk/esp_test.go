package disk

import (
	"slices"
	"strings"
	"testing"
)

// The ESP of a Secure Boot disk, per architecture, as the image's own
// grub-install --uefi-secure-boot --force-extra-removable lays it out.
func TestSecureBootESP(t *testing.T) {
	type f = espFile
	for name, want := range map[string][]espFile{
		"amd64": {
			{Path: "EFI/debian/shimx64.efi", Src: "usr/lib/shim/shimx64.efi.signed"},
			{Path: "EFI/debian/grubx64.efi", Src: "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"},
			{Path: "EFI/debian/mmx64.efi", Src: "usr/lib/shim/mmx64.efi.signed", Optional: true},
			{Path: "EFI/debian/fbx64.efi", Src: "usr/lib/shim/fbx64.efi.signed", Optional: true},
			{Path: "EFI/debian/BOOTX64.CSV", Src: "usr/lib/shim/BOOTX64.CSV", Optional: true},
			{Path: "EFI/debian/grub.cfg"},
			{Path: "EFI/BOOT/BOOTX64.EFI", Src: "usr/lib/shim/shimx64.efi.signed"},
			{Path: "EFI/BOOT/grubx64.efi", Src: "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"},
			{Path: "EFI/BOOT/mmx64.efi", Src: "usr/lib/shim/mmx64.efi.signed", Optional: true},
		},
		"arm64": {
			{Path: "EFI/debian/shimaa64.efi", Src: "usr/lib/shim/shimaa64.efi.signed"},
			{Path: "EFI/debian/grubaa64.efi", Src: "usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed"},
			{Path: "EFI/debian/mmaa64.efi", Src: "usr/lib/shim/mmaa64.efi.signed", Optional: true},
			{Path: "EFI/debian/fbaa64.efi", Src: "usr/lib/shim/fbaa64.efi.signed", Optional: true},
			{Path: "EFI/debian/BOOTAA64.CSV", Src: "usr/lib/shim/BOOTAA64.CSV", Optional: true},
			{Path: "EFI/debian/grub.cfg"},
			{Path: "EFI/BOOT/BOOTAA64.EFI", Src: "usr/lib/shim/shimaa64.efi.signed"},
			{Path: "EFI/BOOT/grubaa64.efi", Src: "usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed"},
			{Path: "EFI/BOOT/mmaa64.efi", Src: "usr/lib/shim/mmaa64.efi.signed", Optional: true},
		},
	} {
		t.Run(name, func(t *testing.T) {
			a := archOf(t, name)
			got, err := secureBootESP(a)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("ESP:\n%v\nwant\n%v", got, want)
			}
			if p := (Options{Arch: a, SecureBoot: true}).removablePath(); p != want[6].Path {
				t.Errorf("the loader the firmware boots is %s, want %s", p, want[6].Path)
			}
			pk := ImagePackages(a)
			if !slices.Contains(pk, "shim-signed") || !slices.Contains(pk, "grub-efi-"+name+"-signed") || !slices.Contains(pk, "grub-efi-"+name) {
				t.Errorf("the image's packages %v lack shim-signed, grub-efi-%s-signed or grub-efi-%[2]s", pk, name)
			}
		})
	}
	for _, name := range []string{"i386", "armhf"} {
		a := archOf(t, name)
		if _, err := secureBootESP(a); err == nil || !strings.Contains(err.Error(), "signs no boot loaders") {
			t.Errorf("%s: err = %v, want Debian signs no boot loaders", name, err)
		}
		if pk := ImagePackages(a); pk != nil {
			t.Errorf("%s: image packages %v, want none", name, pk)
		}
	}
	// Without Secure Boot the loader stays where vmdeb's GRUB core was.
	if p := (Options{Arch: archOf(t, "amd64")}).removablePath(); p != "EFI/boot/bootx64.efi" {
		t.Errorf("unsigned loader at %s", p)
	}
}
