package live

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmdeb/internal/arch"
)

func TestXorrisoArgs(t *testing.T) {
	got := xorrisoArgs(mustArch(t, "amd64"), "DEBIAN_LIVE", "/t/iso", "/t/image.iso", 0)
	want := []string{"-as", "mkisofs", "-o", "/t/image.iso", "-V", "DEBIAN_LIVE", "-iso-level", "3", "-J", "-joliet-long", "-r",
		"-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin",
		"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-eltorito-alt-boot", "-e", "boot/grub/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat",
		"/t/iso"}
	if !slices.Equal(got, want) {
		t.Errorf("amd64:\n got %q\nwant %q", got, want)
	}

	got = xorrisoArgs(mustArch(t, "arm64"), "DEBIAN_LIVE", "/t/iso", "/t/image.iso", 1700000000)
	want = []string{"-as", "mkisofs", "-o", "/t/image.iso", "-V", "DEBIAN_LIVE", "-iso-level", "3", "-J", "-joliet-long", "-r",
		"--set_all_file_dates", "=1700000000",
		"-e", "boot/grub/efi.img", "-no-emul-boot", "-append_partition", "2", "0xef", "/t/iso/boot/grub/efi.img",
		"/t/iso"}
	if !slices.Equal(got, want) {
		t.Errorf("arm64:\n got %q\nwant %q", got, want)
	}
}

func TestGrubLoader(t *testing.T) {
	got := mkimageArgs("arm64-efi", "/usr/lib/grub/arm64-efi", "/w/bootaa64.efi", "/w/memdisk.tar")
	want := []string{"--format", "arm64-efi", "--directory", "/usr/lib/grub/arm64-efi", "--prefix", "(memdisk)/boot/grub",
		"--output", "/w/bootaa64.efi", "--memdisk", "/w/memdisk.tar", "memdisk", "tar"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	cfg := earlyConfig("vmdeb-0123")
	if !strings.Contains(cfg, "search --no-floppy --set=root --file /.disk/vmdeb-0123;") || !strings.Contains(cfg, "configfile /boot/grub/grub.cfg") {
		t.Errorf("early config:\n%s", cfg)
	}

	// The memdisk: early config, the modules, one time, nothing else.
	mods := t.TempDir()
	for _, f := range []string{"normal.mod", "linux.mod", "moddep.lst", "kernel.img", "modinfo.sh"} {
		writeFile(t, filepath.Join(mods, f), []byte(f))
	}
	tarPath := filepath.Join(t.TempDir(), "memdisk.tar")
	mtime := time.Unix(1700000000, 0)
	if err := writeMemdisk(tarPath, mods, "x86_64-efi", cfg, mtime); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(mtime) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
		if h.Name == "boot/grub/grub.cfg" {
			if b, _ := io.ReadAll(tr); string(b) != cfg {
				t.Errorf("grub.cfg in the memdisk = %q", b)
			}
		}
	}
	wantNames := []string{"boot/", "boot/grub/", "boot/grub/x86_64-efi/", "boot/grub/grub.cfg",
		"boot/grub/x86_64-efi/linux.mod", "boot/grub/x86_64-efi/moddep.lst", "boot/grub/x86_64-efi/normal.mod"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("memdisk holds %q, want %q", names, wantNames)
	}
	if err := writeMemdisk(tarPath, t.TempDir(), "x86_64-efi", cfg, mtime); err == nil {
		t.Error("a memdisk without modules was written")
	}
}

func TestEFIImageArgs(t *testing.T) {
	one := []efiLoader{{"/w/bootx64.efi", "bootx64.efi"}}
	mkfs, mmd, mcopy := efiImageArgs("/s/efi.img", one, 3000000, 0)
	if !slices.Equal(mkfs, []string{"-C", "-n", "EFIBOOT", "/s/efi.img", "3392"}) {
		t.Errorf("mkfs.vfat %q", mkfs)
	}
	if !slices.Equal(mmd, []string{"-i", "/s/efi.img", "::/EFI", "::/EFI/boot"}) {
		t.Errorf("mmd %q", mmd)
	}
	if len(mcopy) != 1 || !slices.Equal(mcopy[0], []string{"-i", "/s/efi.img", "/w/bootx64.efi", "::/EFI/boot/bootx64.efi"}) {
		t.Errorf("mcopy %q", mcopy)
	}
	mkfs, _, mcopy = efiImageArgs("/s/efi.img", one, 3000000, 1700000000)
	if !slices.Contains(mkfs, "--invariant") || !slices.Contains(mcopy[0], "-m") {
		t.Errorf("reproducible: mkfs %q mcopy %q", mkfs, mcopy)
	}
	// Secure Boot: shim under the removable-media name, GRUB beside it.
	signed := []efiLoader{{"/w/bootx64.efi", "bootx64.efi"}, {"/w/grubx64.efi", "grubx64.efi"}}
	_, _, mcopy = efiImageArgs("/s/efi.img", signed, 2000000, 1700000000)
	if len(mcopy) != 2 || !slices.Equal(mcopy[1], []string{"-i", "/s/efi.img", "-m", "/w/grubx64.efi", "::/EFI/boot/grubx64.efi"}) {
		t.Errorf("mcopy %q", mcopy)
	}
	for _, size := range []int64{1, 1 << 20, 3000000, 20 << 20} {
		if kib := efiImageKiB(size); kib*1024 < size+256*1024 || kib%64 != 0 {
			t.Errorf("efiImageKiB(%d) = %d", size, kib)
		}
	}
}

func TestVolumeID(t *testing.T) {
	if v, cut, err := volumeID("d-live 13.0.0 st amd64"); err != nil || cut || v != "d-live 13.0.0 st amd64" {
		t.Errorf("%q %v %v", v, cut, err)
	}
	if v, cut, err := volumeID(strings.Repeat("x", 40)); err != nil || !cut || len(v) != 32 {
		t.Errorf("long: %q %v %v", v, cut, err)
	}
	// Cut on a character boundary: 31 x and a 2-byte é would be 33 bytes.
	if v, _, _ := volumeID(strings.Repeat("x", 31) + "éé"); v != strings.Repeat("x", 31) {
		t.Errorf("cut inside a character: %q", v)
	}
	if _, _, err := volumeID("  "); err == nil {
		t.Error("empty volume id accepted")
	}
}

func TestMarkerName(t *testing.T) {
	a, b := markerName("V", 1700000000), markerName("V", 1700000000)
	if a != b || !strings.HasPrefix(a, "vmdeb-") || len(a) != len("vmdeb-")+16 {
		t.Errorf("reproducible marker: %q %q", a, b)
	}
	if markerName("V", 1700000001) == a || markerName("W", 1700000000) == a {
		t.Error("marker ignores its inputs")
	}
	if markerName("V", 0) == markerName("V", 0) {
		t.Error("random markers repeat")
	}
}

func TestParseISOReport(t *testing.T) {
	report := `Drive current: -indev 'x.iso'
PVD address  : 16s
Volume Id    : DEBIAN_LIVE
Preparer Id  : XORRISO-1.5.4 2021.01.30.150001, LIBISOBURN-1.5.4, LIBISOFS-1.5.4, LIBBURN-1.5.4
El Torito catalog  : 33  1
El Torito images   :   N  Pltf  B   Emul  Ld_seg  Hdpt  Ldsiz         LBA
El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4        2082
El Torito boot img :   2  UEFI  y   none  0x0000  0x00   8192          34
-r--r--r--    1 0        0         5242880 Nov 26 04:03 '/live/filesystem.squashfs'
`
	if err := parseISOReport(report, "DEBIAN_LIVE", 5242880, true, true); err != nil {
		t.Errorf("good report: %v", err)
	}
	for name, c := range map[string]struct {
		vol        string
		size       int64
		bios, uefi bool
		report     string
	}{
		"volume id":   {"OTHER", 5242880, true, true, report},
		"size":        {"DEBIAN_LIVE", 5242881, true, true, report},
		"no squashfs": {"DEBIAN_LIVE", 5242880, true, true, strings.ReplaceAll(report, "/live/filesystem.squashfs", "/live/x")},
		"no BIOS":     {"DEBIAN_LIVE", 5242880, true, true, strings.ReplaceAll(report, "BIOS", "Mac ")},
		"no UEFI":     {"DEBIAN_LIVE", 5242880, true, true, strings.ReplaceAll(report, "UEFI", "PPC ")},
	} {
		if err := parseISOReport(c.report, c.vol, c.size, c.bios, c.uefi); err == nil {
			t.Errorf("%s: bad report passed", name)
		}
	}
}

func TestCheckToolsUEFIOnly(t *testing.T) {
	a := mustArch(t, "arm64")
	miss := CheckTools(a, true)
	for _, m := range miss {
		if m.Package == "isolinux" || m.Package == "syslinux-common" {
			t.Errorf("UEFI-only arm64 asks for %v", m)
		}
	}
	for _, m := range miss {
		if strings.Contains(m.What, "arm64-efi") {
			t.Errorf("the GRUB modules come from the target when the host lacks them; reported %v", m)
		}
	}
}

// isoFixture is a fake rootfs with one kernel and a stand-in squashfs:
// BuildISO copies them and never looks inside.
func isoFixture(t *testing.T) (dir, rootfs, squashfs string) {
	t.Helper()
	dir = t.TempDir()
	rootfs = filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(rootfs, "boot", "vmlinuz-1.0-amd64"), []byte("kernel 1.0\n"))
	writeFile(t, filepath.Join(rootfs, "boot", "initrd.img-1.0-amd64"), []byte("initrd 1.0\n"))
	squashfs = filepath.Join(dir, "filesystem.squashfs")
	writeFile(t, squashfs, randomBytes(256<<10))
	return dir, rootfs, squashfs
}

func needISOTools(t *testing.T, a arch.Arch, splash bool) {
	t.Helper()
	for _, m := range isoTools(a, splash) {
		t.Skipf("%s missing (package %s)", m.What, m.Package)
	}
	needTools(t, "mdir")
}

// isoFiles lists the files in an ISO.
func isoFiles(t *testing.T, iso string) []string {
	t.Helper()
	var files []string
	for _, l := range strings.Split(output(t, "xorriso", "-indev", iso, "-find", "/", "-type", "f"), "\n") {
		if l != "" {
			files = append(files, strings.Trim(l, "'"))
		}
	}
	return files
}

// extract copies one file out of an ISO.
func extract(t *testing.T, iso, path string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	output(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", path, dst)
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildISO(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	out := filepath.Join(dir, "live.iso")
	o := ISOOptions{Arch: a, Title: "Debian GNU/Linux trixie (amd64)", VolumeID: "DEBIAN_LIVE", Info: "vmdeb test image"}
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, o); err != nil {
		t.Fatal(err)
	}

	files := isoFiles(t, out)
	for _, f := range []string{
		"/live/filesystem.squashfs", "/live/vmlinuz", "/live/initrd.img",
		"/isolinux/isolinux.bin", "/isolinux/isolinux.cfg", "/isolinux/ldlinux.c32", "/isolinux/menu.c32",
		"/isolinux/libcom32.c32", "/isolinux/libutil.c32",
		"/boot/grub/grub.cfg", "/boot/grub/efi.img", "/EFI/boot/bootx64.efi", "/.disk/info",
	} {
		if !slices.Contains(files, f) {
			t.Errorf("ISO lacks %s; it has %q", f, files)
		}
	}
	var marker string
	for _, f := range files {
		if strings.HasPrefix(f, "/.disk/vmdeb-") {
			marker = f
		}
	}
	if marker == "" {
		t.Errorf("no GRUB marker file in /.disk: %q", files)
	}

	sq, _ := os.ReadFile(squashfs)
	if !bytes.Equal(extract(t, out, "/live/filesystem.squashfs"), sq) {
		t.Error("/live/filesystem.squashfs differs from the squashfs")
	}
	if got := string(extract(t, out, "/live/vmlinuz")); got != "kernel 1.0\n" {
		t.Errorf("/live/vmlinuz = %q", got)
	}
	if got := string(extract(t, out, "/.disk/info")); got != "vmdeb test image" {
		t.Errorf("/.disk/info = %q", got)
	}
	if cfg := string(extract(t, out, "/isolinux/isolinux.cfg")); !strings.Contains(cfg, "console=ttyS0,115200n8") {
		t.Errorf("isolinux.cfg:\n%s", cfg)
	}
	if cfg := string(extract(t, out, "/boot/grub/grub.cfg")); !strings.Contains(cfg, "linux /live/vmlinuz boot=live") {
		t.Errorf("grub.cfg:\n%s", cfg)
	}

	// The FAT image holds the same loader as the ISO's /EFI/boot.
	img := filepath.Join(t.TempDir(), "efi.img")
	output(t, "xorriso", "-osirrox", "on", "-indev", out, "-extract", "/boot/grub/efi.img", img)
	if l := output(t, "mdir", "-i", img, "::/EFI/boot"); !strings.Contains(strings.ToLower(l), "bootx64  efi") {
		t.Errorf("efi.img lacks EFI/boot/bootx64.efi:\n%s", l)
	}
	fromImg := filepath.Join(t.TempDir(), "bootx64.efi")
	output(t, "mcopy", "-i", img, "::/EFI/boot/bootx64.efi", fromImg)
	b, _ := os.ReadFile(fromImg)
	if !bytes.Equal(b, extract(t, out, "/EFI/boot/bootx64.efi")) || len(b) < 100<<10 {
		t.Errorf("efi.img's loader (%d bytes) differs from /EFI/boot/bootx64.efi", len(b))
	}

	report := output(t, "xorriso", "-indev", out, "-report_el_torito", "plain", "-report_system_area", "plain")
	for _, want := range []string{"/isolinux/isolinux.bin", "/boot/grub/efi.img", "MBR isohybrid", "GPT"} {
		if !strings.Contains(report, want) {
			t.Errorf("boot report lacks %q:\n%s", want, report)
		}
	}
	if err := parseISOReport(output(t, "xorriso", "-indev", out, "-pvd_info", "-report_el_torito", "plain", "-find", "/live/filesystem.squashfs", "-exec", "lsdl", "--"),
		"DEBIAN_LIVE", int64(len(sq)), true, true); err != nil {
		t.Error(err)
	}

	if names := dirNames(t, dir); !slices.Equal(names, []string{"filesystem.squashfs", "live.iso", "rootfs"}) {
		t.Errorf("left beside the ISO: %q", names)
	}
}

func TestBuildISOSplash(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, true)
	dir, rootfs, squashfs := isoFixture(t)
	splash := filepath.Join(dir, "splash.png")
	writeFile(t, splash, []byte("\x89PNG\r\n\x1a\nnot really"))
	out := filepath.Join(dir, "live.iso")
	o := ISOOptions{Arch: a, Title: "T", VolumeID: "V", Splash: splash}
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, o); err != nil {
		t.Fatal(err)
	}
	files := isoFiles(t, out)
	for _, f := range []string{"/isolinux/vesamenu.c32", "/isolinux/splash.png", "/boot/grub/fonts/unicode.pf2", "/boot/grub/splash.png"} {
		if !slices.Contains(files, f) {
			t.Errorf("ISO lacks %s; it has %q", f, files)
		}
	}
	if slices.Contains(files, "/isolinux/menu.c32") {
		t.Error("text menu module on a splash ISO")
	}
}

// An architecture with UEFI only (arm64's layout, built with amd64's GRUB
// since that is what the host has): no ISOLINUX, the FAT image appended as
// an EFI system partition.
func TestBuildISOUEFIOnly(t *testing.T) {
	a := mustArch(t, "amd64")
	a.Firmware = []arch.Firmware{arch.UEFI}
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	out := filepath.Join(dir, "live.iso")
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, ISOOptions{Arch: a, VolumeID: "UEFI_ONLY"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range isoFiles(t, out) {
		if strings.HasPrefix(f, "/isolinux/") {
			t.Errorf("UEFI-only ISO has %s", f)
		}
	}
	report := output(t, "xorriso", "-indev", out, "-report_el_torito", "plain", "-report_system_area", "plain")
	if strings.Contains(report, "BIOS") || !strings.Contains(report, "UEFI") {
		t.Errorf("El Torito entries:\n%s", report)
	}
	efiPart := false
	for _, l := range strings.Split(report, "\n") {
		if f := strings.Fields(l); len(f) >= 6 && strings.HasPrefix(l, "MBR partition  ") && f[3] == "2" && f[5] == "0xef" {
			efiPart = true
		}
	}
	if !efiPart {
		t.Errorf("no EFI system partition 2:\n%s", report)
	}
}

// Same inputs and epoch, same ISO, whatever the files' own times.
func TestBuildISOReproducible(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	o := ISOOptions{Arch: a, Title: "T", VolumeID: "REPRO", SourceDateEpoch: 1700000000}
	var sums [][]byte
	for i, name := range []string{"a.iso", "b.iso"} {
		if i == 1 {
			writeFile(t, filepath.Join(rootfs, "boot", "vmlinuz-1.0-amd64"), []byte("kernel 1.0\n")) // new mtime
		}
		out := filepath.Join(dir, name)
		if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, b)
	}
	if !bytes.Equal(sums[0], sums[1]) {
		t.Error("two builds with the same epoch differ")
	}
}

// xorriso failing (here: the file size limit, as a full disk would) leaves
// neither the ISO nor a temporary file.
func TestBuildISOXorrisoFails(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	if err := os.Truncate(squashfs, 32<<20); err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = 16 << 20 // the loader and FAT image fit, the ISO does not
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	out := filepath.Join(dir, "live.iso")
	err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, ISOOptions{Arch: a, VolumeID: "V"})
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("xorriso wrote a 32 MiB ISO under a 16 MiB file size limit")
	}
	if !strings.Contains(err.Error(), "xorriso") {
		t.Errorf("error does not name xorriso: %v", err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"filesystem.squashfs", "rootfs"}) {
		t.Errorf("left behind after a failed xorriso: %q", names)
	}
}

// When the finished ISO cannot take its name, nothing is left either.
func TestBuildISORenameFails(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	out := filepath.Join(dir, "live.iso")
	writeFile(t, filepath.Join(out, "keep"), []byte("x")) // a non-empty directory
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, ISOOptions{Arch: a, VolumeID: "V"}); err == nil {
		t.Fatal("renamed onto a non-empty directory")
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"filesystem.squashfs", "live.iso", "rootfs"}) {
		t.Errorf("left behind: %q", names)
	}
	if names := dirNames(t, out); !slices.Equal(names, []string{"keep"}) {
		t.Errorf("the directory in the way was changed: %q", names)
	}
}

func TestBuildISOBadInput(t *testing.T) {
	dir, rootfs, squashfs := isoFixture(t)
	out := filepath.Join(dir, "live.iso")
	ctx := context.Background()
	if err := BuildISO(ctx, testLog(t), rootfs, squashfs, out, ISOOptions{Arch: mustArch(t, "armel"), VolumeID: "V"}); err == nil || !strings.Contains(err.Error(), "neither from BIOS nor UEFI") {
		t.Errorf("armel: %v", err)
	}
	amd64 := mustArch(t, "amd64")
	if err := BuildISO(ctx, testLog(t), rootfs, squashfs, out, ISOOptions{Arch: amd64}); err == nil || !strings.Contains(err.Error(), "volume id") {
		t.Errorf("no volume id: %v", err)
	}
	if len(isoTools(amd64, false)) == 0 {
		if err := BuildISO(ctx, testLog(t), t.TempDir(), squashfs, out, ISOOptions{Arch: amd64, VolumeID: "V"}); err == nil || !strings.Contains(err.Error(), "kernel") {
			t.Errorf("no kernel: %v", err)
		}
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"filesystem.squashfs", "rootfs"}) {
		t.Errorf("left behind: %q", names)
	}
}

func TestBuildISOInstaller(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	di := filepath.Join(dir, "installer")
	want := map[string]string{"vmlinuz": "d-i kernel", "initrd.gz": "d-i initrd", "gtk/vmlinuz": "d-i kernel", "gtk/initrd.gz": "d-i gtk initrd"}
	for name, data := range want {
		writeFile(t, filepath.Join(di, name), []byte(data))
	}
	out := filepath.Join(dir, "live.iso")
	o := ISOOptions{Arch: a, Title: "T", VolumeID: "V", Installer: &InstallerFiles{Dir: di, Graphical: true}, Locales: Locales[:3]}
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, o); err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		if got := string(extract(t, out, "/install.amd/"+name)); got != data {
			t.Errorf("/install.amd/%s = %q, want %q", name, got, data)
		}
	}
	for _, cfgPath := range []string{"/isolinux/isolinux.cfg", "/boot/grub/grub.cfg"} {
		cfg := string(extract(t, out, cfgPath))
		for _, w := range []string{"Install with speech synthesis", "/install.amd/gtk/initrd.gz", "Localisation support", "locales=sq_AL.UTF-8"} {
			if !strings.Contains(cfg, w) {
				t.Errorf("%s lacks %q:\n%s", cfgPath, w, cfg)
			}
		}
	}

	// Installer files that are not there fail the build, and leave nothing.
	os.Remove(filepath.Join(di, "gtk/initrd.gz"))
	out2 := filepath.Join(dir, "live2.iso")
	err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out2, o)
	if err == nil || !strings.Contains(err.Error(), "debian-installer") {
		t.Errorf("a missing installer file: %v", err)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Error("an ISO was written without its installer")
	}
}

// An architecture with device trees (amd64's UEFI GRUB standing in for
// the target's, which the host lacks): every device tree of each kernel
// onto the ISO, the named one in the menu; a name the kernel lacks fails
// the build, saying what and where, and leaves nothing.
func TestBuildISODeviceTrees(t *testing.T) {
	a := mustArch(t, "amd64")
	a.Firmware, a.DeviceTrees = []arch.Firmware{arch.UEFI}, true
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	writeFile(t, filepath.Join(rootfs, "boot", "vmlinuz-0.9-amd64"), []byte("kernel 0.9\n"))
	writeFile(t, filepath.Join(rootfs, "boot", "initrd.img-0.9-amd64"), []byte("initrd 0.9\n"))
	dtbTree(t, rootfs, "1.0-amd64", "rockchip/rk3399-rockpro64.dtb", "allwinner/sun50i-a64-pine64.dtb", "allwinner/overlay/spi.dtbo")
	dtbTree(t, rootfs, "0.9-amd64", "rockchip/rk3399-rockpro64.dtb")

	out := filepath.Join(dir, "live.iso")
	o := ISOOptions{Arch: a, VolumeID: "DTB", DeviceTree: "rockchip/rk3399-rockpro64.dtb"}
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, o); err != nil {
		t.Fatal(err)
	}
	files := isoFiles(t, out)
	for iso, src := range map[string]string{
		"/live/dtbs/rockchip/rk3399-rockpro64.dtb":   "1.0-amd64 rockchip/rk3399-rockpro64.dtb",
		"/live/dtbs/allwinner/sun50i-a64-pine64.dtb": "1.0-amd64 allwinner/sun50i-a64-pine64.dtb",
		"/live/dtbs/allwinner/overlay/spi.dtbo":      "1.0-amd64 allwinner/overlay/spi.dtbo",
		"/live/dtbs2/rockchip/rk3399-rockpro64.dtb":  "0.9-amd64 rockchip/rk3399-rockpro64.dtb",
	} {
		if !slices.Contains(files, iso) {
			t.Errorf("ISO lacks %s; it has %q", iso, files)
		} else if got := string(extract(t, out, iso)); got != "dtb "+src {
			t.Errorf("%s = %q, want kernel %s's", iso, got, src)
		}
	}
	cfg := string(extract(t, out, "/boot/grub/grub.cfg"))
	for _, w := range []string{"devicetree /live/dtbs/rockchip/rk3399-rockpro64.dtb\n", "devicetree /live/dtbs2/rockchip/rk3399-rockpro64.dtb\n"} {
		if !strings.Contains(cfg, w) {
			t.Errorf("grub.cfg lacks %q:\n%s", w, cfg)
		}
	}

	// Only the newer kernel has the pine64's device tree.
	o.DeviceTree = "allwinner/sun50i-a64-pine64.dtb"
	out2 := filepath.Join(dir, "live2.iso")
	err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out2, o)
	if err == nil || !strings.Contains(err.Error(), "allwinner/sun50i-a64-pine64.dtb") || !strings.Contains(err.Error(), "/usr/lib/linux-image-0.9-amd64") {
		t.Errorf("a device tree one kernel lacks: %v", err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"filesystem.squashfs", "live.iso", "rootfs"}) {
		t.Errorf("left behind: %q", names)
	}

	// None named: the device trees are still carried, the menu loads none.
	o.DeviceTree = ""
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out2, o); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(isoFiles(t, out2), "/live/dtbs/rockchip/rk3399-rockpro64.dtb") {
		t.Error("device trees not carried when none is named")
	}
	if cfg := string(extract(t, out2, "/boot/grub/grub.cfg")); strings.Contains(cfg, "devicetree") {
		t.Errorf("grub.cfg loads a device tree none named:\n%s", cfg)
	}
}

// Architectures without device trees get none on the ISO, and naming one
// is an error, not silently ignored.
func TestBuildISONoDeviceTrees(t *testing.T) {
	a := mustArch(t, "amd64")
	needISOTools(t, a, false)
	dir, rootfs, squashfs := isoFixture(t)
	dtbTree(t, rootfs, "1.0-amd64", "vendor/board.dtb")
	out := filepath.Join(dir, "live.iso")
	err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, ISOOptions{Arch: a, VolumeID: "V", DeviceTree: "vendor/board.dtb"})
	if err == nil || !strings.Contains(err.Error(), "amd64 does not use device trees") {
		t.Errorf("a device tree on amd64: %v", err)
	}
	if err := BuildISO(context.Background(), testLog(t), rootfs, squashfs, out, ISOOptions{Arch: a, VolumeID: "V"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range isoFiles(t, out) {
		if strings.Contains(f, "dtb") {
			t.Errorf("amd64 ISO has %s", f)
		}
	}
}
