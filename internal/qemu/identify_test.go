package qemu

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// peFile is the start of a PE image for machine m, as an EFI loader has.
func peFile(m uint16) []byte {
	b := make([]byte, 1024)
	b[0], b[1] = 'M', 'Z'
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x84:], m)
	return b
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// loaders writes PE files of the given machines as EFI/boot/NAME in a dir,
// name => machine.
func loaders(t *testing.T, files map[string]uint16) string {
	dir := t.TempDir()
	for name, m := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, peFile(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fatImage makes a FAT file system of kib KiB in img at offset (fat: 12,
// 16, 32 or 0 for mkfs.vfat's choice) with EFI/boot holding the files.
func fatImage(t *testing.T, img string, offset int64, kib int, fatBits int, files map[string]uint16) {
	args := []string{"--offset=" + strconv.FormatInt(offset/512, 10)}
	if offset == 0 {
		args = []string{"-C"}
	}
	if fatBits != 0 {
		args = append(args, "-F", strconv.Itoa(fatBits))
		if fatBits == 32 {
			args = append(args, "-s", "1")
		}
	}
	runTool(t, "mkfs.vfat", append(args, img, strconv.Itoa(kib))...)
	target := img
	if offset > 0 {
		target += "@@" + strconv.FormatInt(offset, 10)
	}
	runTool(t, "mmd", "-i", target, "::/EFI", "::/EFI/boot")
	// A file outside EFI/boot that must not count.
	dir := loaders(t, files)
	other := filepath.Join(t.TempDir(), "grubia32.efi")
	os.WriteFile(other, peFile(0x014c), 0o644)
	runTool(t, "mcopy", "-i", target, other, "::/EFI/")
	for name := range files {
		runTool(t, "mcopy", "-i", target, filepath.Join(dir, name), "::/EFI/boot/"+name)
	}
}

// isoImage makes an ISO as vmdeb lays them out: with bios, a BIOS El
// Torito entry and the EFI image as a second one; without, the EFI image
// alone (arm64).
func isoImage(t *testing.T, bios bool, files map[string]uint16) string {
	needTools(t, "xorriso", "mkfs.vfat", "mcopy", "mmd")
	stage := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stage, "boot/grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	fatImage(t, filepath.Join(stage, "boot/grub/efi.img"), 0, 1024, 0, files)
	args := []string{"-as", "mkisofs", "-o", filepath.Join(t.TempDir(), "t.iso"), "-V", "T", "-r"}
	if bios {
		if err := os.WriteFile(filepath.Join(stage, "bios.bin"), make([]byte, 2048), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-b", "bios.bin", "-c", "boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-eltorito-alt-boot")
	}
	args = append(args, "-e", "boot/grub/efi.img", "-no-emul-boot", stage)
	runTool(t, "xorriso", args...)
	return args[3]
}

// gptImage makes a raw disk with a GPT whose first partition is an ESP
// (FAT of fatBits) holding files; with biosCode, bytes in the MBR's boot
// code area as GRUB's boot.img puts there.
func gptImage(t *testing.T, fatBits int, biosCode bool, files map[string]uint16) string {
	needTools(t, "mkfs.vfat", "mcopy", "mmd")
	img := filepath.Join(t.TempDir(), "disk.img")
	const start, espSectors = 2048, 2 * 70 * 1024 // 70 MiB: room for FAT32
	size := int64(start+espSectors+2048) * 512
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	mbr := make([]byte, 512)
	if biosCode {
		copy(mbr, []byte{0xeb, 0x63, 0x90})
	}
	mbr[446+4] = 0xee
	binary.LittleEndian.PutUint32(mbr[446+8:], 1)
	binary.LittleEndian.PutUint32(mbr[446+12:], uint32(size/512-1))
	mbr[510], mbr[511] = 0x55, 0xaa
	hdr := make([]byte, 512)
	copy(hdr, "EFI PART")
	binary.LittleEndian.PutUint64(hdr[72:], 2)
	binary.LittleEndian.PutUint32(hdr[80:], 128)
	binary.LittleEndian.PutUint32(hdr[84:], 128)
	ents := make([]byte, 128*128)
	// A Linux root partition first, the ESP second.
	copy(ents[0:], []byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4})
	copy(ents[128:], espGUID)
	binary.LittleEndian.PutUint64(ents[128+32:], start)
	binary.LittleEndian.PutUint64(ents[128+40:], start+espSectors-1)
	for off, b := range map[int64][]byte{0: mbr, 512: hdr, 1024: ents} {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	fatImage(t, img, start*512, espSectors/2, fatBits, files)
	return img
}

func TestIdentifyISO(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bios      bool
		files     map[string]uint16
		wantArchs []string
	}{
		{"arm64", false, map[string]uint16{"bootaa64.efi": 0xaa64}, []string{"arm64"}},
		{"amd64", true, map[string]uint16{"bootx64.efi": 0x8664}, []string{"amd64"}},
		{"i386", true, map[string]uint16{"bootia32.efi": 0x014c}, []string{"i386"}},
		// Debian's amd64 media carry a 32-bit loader too.
		{"amd64+ia32", true, map[string]uint16{"bootx64.efi": 0x8664, "bootia32.efi": 0x014c}, []string{"amd64", "i386"}},
		// The machine counts, not the name.
		{"misnamed", false, map[string]uint16{"bootx64.efi": 0xaa64}, []string{"arm64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iso := isoImage(t, tc.bios, tc.files)
			kind, err := DetectImage(iso)
			if err != nil || kind != KindISO {
				t.Fatalf("DetectImage: %q %v", kind, err)
			}
			id, err := Identify(iso, kind)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(id.Archs, tc.wantArchs) || id.BIOS != tc.bios {
				t.Errorf("got archs %v BIOS %v, want %v %v (loaders %v)", id.Archs, id.BIOS, tc.wantArchs, tc.bios, id.Loaders)
			}
		})
	}
}

func TestIdentifyDisk(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fat       int
		bios      bool
		files     map[string]uint16
		wantArchs []string
	}{
		{"arm64 FAT32", 32, false, map[string]uint16{"BOOTAA64.EFI": 0xaa64}, []string{"arm64"}},
		{"amd64 hybrid FAT16", 16, true, map[string]uint16{"BOOTX64.EFI": 0x8664}, []string{"amd64"}},
		{"bios only", 16, true, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := gptImage(t, tc.fat, tc.bios, tc.files)
			check := func(path, kind string) {
				t.Helper()
				id, err := Identify(path, kind)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(id.Archs, tc.wantArchs) || id.BIOS != tc.bios {
					t.Errorf("%s: got archs %v BIOS %v, want %v %v", kind, id.Archs, id.BIOS, tc.wantArchs, tc.bios)
				}
			}
			check(img, KindRaw)
			if _, err := exec.LookPath("qemu-img"); err != nil {
				return
			}
			q := filepath.Join(t.TempDir(), "disk.qcow2")
			runTool(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", img, q)
			check(q, KindQcow2)
		})
	}
}

// A disk image that is not one gives an error, not a guess.
func TestIdentifyUnreadable(t *testing.T) {
	img := filepath.Join(t.TempDir(), "junk.img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Identify(img, KindRaw); err == nil || !strings.Contains(err.Error(), "no partition table") {
		t.Errorf("got %v", err)
	}
}

func TestChoose(t *testing.T) {
	yes, no := true, false
	arm := Identity{Archs: []string{"arm64"}, Loaders: []string{"EFI/BOOT/BOOTAA64.EFI in the El Torito EFI image"}}
	pc := Identity{Archs: []string{"amd64"}, Loaders: []string{"EFI/BOOT/BOOTX64.EFI in EFI system partition 1"}, BIOS: true}
	pcUEFI := Identity{Archs: []string{"amd64"}, Loaders: []string{"EFI/BOOT/BOOTX64.EFI in EFI system partition 1"}}
	multi := Identity{Archs: []string{"amd64", "i386"}, Loaders: []string{"a", "b"}, BIOS: true}
	i386 := Identity{Archs: []string{"i386"}, Loaders: []string{"EFI/BOOT/BOOTIA32.EFI"}, BIOS: true}
	for _, tc := range []struct {
		name     string
		id       Identity
		idErr    error
		arch     string
		uefi     *bool
		wantArch string
		wantUEFI bool
		wantWhy  string
		wantErr  string
	}{
		{name: "arm64 ISO", id: arm, wantArch: "arm64", wantUEFI: true, wantWhy: "arm64 (qemu-system-aarch64) with UEFI: the image's UEFI loader EFI/BOOT/BOOTAA64.EFI in the El Torito EFI image is arm64 code; arm64 has no BIOS"},
		{name: "arm64 agreeing", id: arm, arch: "arm64", wantArch: "arm64", wantUEFI: true},
		{name: "arm64 contradicted", id: arm, arch: "amd64", wantErr: "--arch amd64, but the image's UEFI loader (EFI/BOOT/BOOTAA64.EFI in the El Torito EFI image) is arm64 code"},
		{name: "arm64 BIOS asked", id: arm, uefi: &no, wantErr: ""}, // Boot refuses it: arm64 has no BIOS
		{name: "pc hybrid", id: pc, wantArch: "amd64", wantUEFI: false, wantWhy: "BIOS boot code"},
		{name: "pc hybrid, --uefi", id: pc, uefi: &yes, wantArch: "amd64", wantUEFI: true, wantWhy: "as asked"},
		{name: "pc UEFI only", id: pcUEFI, wantArch: "amd64", wantUEFI: true, wantWhy: "no BIOS boot code"},
		{name: "amd64 with ia32 loader", id: multi, wantArch: "amd64"},
		{name: "amd64 with ia32 loader, --arch i386", id: multi, arch: "i386", wantArch: "i386"},
		{name: "i386", id: i386, wantArch: "i386", wantWhy: "BOOTIA32.EFI is i386 code"},
		{name: "BIOS only", id: Identity{BIOS: true}, wantArch: "amd64", wantWhy: "amd64 assumed"},
		{name: "BIOS only, --arch i386", id: Identity{BIOS: true}, arch: "i386", wantArch: "i386"},
		{name: "BIOS only, --arch arm64", id: Identity{BIOS: true}, arch: "arm64", wantErr: "only PC BIOS boot code"},
		{name: "unreadable", idErr: errors.New("no partition table"), wantArch: "amd64", wantWhy: "could not tell the architecture from the image (no partition table)"},
		{name: "unreadable, --arch", idErr: errors.New("x"), arch: "arm64", wantArch: "arm64", wantUEFI: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Choose(tc.id, tc.idErr, tc.arch, tc.uefi)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantArch != "" && (c.Arch.Name != tc.wantArch || c.UEFI != tc.wantUEFI) {
				t.Errorf("got %s UEFI=%v, want %s UEFI=%v (%s)", c.Arch.Name, c.UEFI, tc.wantArch, tc.wantUEFI, c.Why)
			}
			if !strings.Contains(c.Why, tc.wantWhy) {
				t.Errorf("why %q lacks %q", c.Why, tc.wantWhy)
			}
		})
	}
}
