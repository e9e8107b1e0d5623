package live

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"vmdeb/internal/bytesize"

	"vmdeb/internal/arch"
	"vmdeb/internal/buildlog"
)

// ISOOptions describe the live ISO.
type ISOOptions struct {
	Arch         arch.Arch
	Title        string   // menu title, e.g. "Debian GNU/Linux trixie (amd64)"
	VolumeID     string   // ISO volume id, at most 32 bytes (longer is cut)
	Splash       string   // PNG on the host for the menus' background ("" = text menus)
	Info         string   // /.disk/info ("" = Title)
	KernelParams []string // appended to every entry's kernel command line
	// GrubDir holds the GRUB EFI modules ("" = the host's, see HostGrubDir);
	// a foreign architecture's come from its own archive.
	GrubDir string
	// Installer, if set, puts debian-installer on the ISO under
	// InstallDir(arch) with its menu entries.
	Installer *InstallerFiles
	// Locales, if any, make the localisation submenu.
	Locales []Locale
	// DeviceTree names the board's device tree, relative to the kernel's
	// DTBDir (rockchip/rk3399-rockpro64.dtb); the live entries' GRUB
	// loads it. "" loads none: the firmware's is used.
	DeviceTree string
	// SecureBoot, if set, boots UEFI through Debian's signed chain: these
	// loaders replace vmdeb's own GRUB image.
	SecureBoot *SignedLoaders
	// SourceDateEpoch > 0 fixes every date in the ISO (files, volume, FAT
	// image, EFI loader) so that the same inputs give the same bytes.
	SourceDateEpoch int64
}

// SignedLoaders are the signed shim and GRUB on the host (unpacked from
// the target's packages) for an ISO that boots with Secure Boot on.
type SignedLoaders struct {
	Shim, Grub string
}

// InstallerFiles are debian-installer's kernels and initrds on the host,
// laid out as on the ISO: Dir/vmlinuz, Dir/initrd.gz and, when Graphical,
// Dir/gtk/vmlinuz and Dir/gtk/initrd.gz (internal/installer fetches them).
type InstallerFiles struct {
	Dir       string
	Graphical bool
	// Medium, if set, is a tree merged into the ISO's root: the pool of
	// udebs and .debs, its /dists indices and the .disk files d-i reads
	// to install with no network. md5sum.txt then lists every file.
	Medium string
}

// files lists the installer's files relative to Dir.
func (f *InstallerFiles) files() []string {
	l := []string{"vmlinuz", "initrd.gz"}
	if f.Graphical {
		l = append(l, "gtk/vmlinuz", "gtk/initrd.gz")
	}
	return l
}

// maxVolumeID is ISO 9660's limit for the volume id.
const maxVolumeID = 32

// volumeID checks and, when too long, cuts id (on a character boundary).
func volumeID(id string) (v string, cut bool, err error) {
	v = strings.TrimSpace(id)
	if v == "" {
		return "", false, errors.New("live ISO: the volume id is empty")
	}
	if len(v) <= maxVolumeID {
		return v, false, nil
	}
	n := maxVolumeID
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n], true, nil
}

// BuildISO assembles a hybrid ISO at out from squashfs (made by
// MakeSquashfs) and the kernels found in rootfs: ISOLINUX for BIOS when the
// architecture has it, GRUB for UEFI, bootable from CD and from USB. out
// appears only once the ISO is written and read back; the staging tree and
// any partial image are removed whatever happens.
func BuildISO(ctx context.Context, log *buildlog.Log, rootfs, squashfs, out string, o ISOOptions) (err error) {
	a := o.Arch
	bios, uefi := a.HasFirmware(arch.BIOS), a.HasFirmware(arch.UEFI)
	if !bios && !uefi {
		return fmt.Errorf("live ISO: architecture %s boots neither from BIOS nor UEFI; it has no live ISO", a.Name)
	}
	if uefi && (a.GrubEFITarget == "" || a.EFIBootName == "") {
		return fmt.Errorf("live ISO: architecture %s lacks its GRUB EFI target or loader name", a.Name)
	}
	volID, cut, err := volumeID(o.VolumeID)
	if err != nil {
		return err
	}
	if cut {
		log.Printf("volume id cut to %d bytes: %q", maxVolumeID, volID)
	}
	if miss := isoTools(a, o.Splash != ""); len(miss) > 0 {
		return fmt.Errorf("live ISO: %w", buildlog.MissingError(miss))
	}
	kernels, err := FindKernels(rootfs)
	if err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	dtbs, err := kernelDTBs(a, rootfs, kernels, o.DeviceTree)
	if err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	sq, err := os.Stat(squashfs)
	if err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	if !sq.Mode().IsRegular() {
		return fmt.Errorf("live ISO: squashfs %s is not a regular file", squashfs)
	}
	if o.Splash != "" {
		if _, err := os.Stat(o.Splash); err != nil {
			return fmt.Errorf("live ISO: splash image: %w", err)
		}
	}

	// Everything temporary lives in one directory beside out: on out's
	// file system, so the finished image is renamed, not copied, and one
	// RemoveAll cleans up after any failure.
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	stage, work := filepath.Join(tmp, "iso"), filepath.Join(tmp, "work")
	for _, d := range []string{stage, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}

	if err := stageLive(stage, squashfs, kernels); err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	if err := stageDTBs(stage, rootfs, kernels, dtbs); err != nil {
		return fmt.Errorf("live ISO: device trees: %w", err)
	}
	for i, d := range dtbs {
		log.Logf("kernel %s: %d device trees onto the ISO in %s", kernels[i].Version, len(d), isoDTBDir(i))
	}
	if o.Installer != nil {
		if err := stageInstaller(stage, a.Name, o.Installer); err != nil {
			return fmt.Errorf("live ISO: debian-installer: %w", err)
		}
	}
	entries := MenuEntries(o, kernels)
	if bios {
		if err := stageIsolinux(stage, o, entries); err != nil {
			return fmt.Errorf("live ISO: ISOLINUX: %w", err)
		}
	}
	marker := markerName(volID, o.SourceDateEpoch)
	if uefi {
		if err := stageGrub(ctx, log, stage, work, marker, o, entries); err != nil {
			return fmt.Errorf("live ISO: GRUB EFI: %w", err)
		}
	}
	info := o.Info
	if info == "" {
		info = o.Title
	}
	if err := writeFiles(stage, map[string]string{
		".disk/info": info,
		// GRUB finds the ISO by this file; /.disk/info would also match
		// another live medium plugged in beside it.
		".disk/" + marker: volID + "\n",
	}); err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}

	if o.Installer != nil && o.Installer.Medium != "" {
		sums, err := MD5Sums(stage)
		if err == nil {
			err = os.WriteFile(filepath.Join(stage, "md5sum.txt"), []byte(sums), 0o644)
		}
		if err != nil {
			return fmt.Errorf("live ISO: md5sum.txt: %w", err)
		}
	}

	need, err := treeBytes(stage)
	if err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	if !bios {
		need += efiImageBytes(stage) // stored again as partition 2
	}
	need += 4 << 20 // ISO 9660, Joliet and Rock Ridge metadata, boot area
	if free, err := freeSpace(tmp); err != nil {
		return fmt.Errorf("live ISO: %w", err)
	} else if need > free {
		return fmt.Errorf("not enough space for the ISO in %s: it needs about %s (%d bytes), only %s (%d bytes) is free",
			filepath.Dir(out), bytesize.Format(need), need, bytesize.Format(free), free)
	}

	image := filepath.Join(tmp, "image.iso")
	if err := log.Run(ctx, buildlog.Cmd{
		Name: buildlog.Tool("xorriso"),
		Args: xorrisoArgs(a, volID, stage, image, o.SourceDateEpoch),
		Env:  epochEnv(o.SourceDateEpoch),
	}); err != nil {
		return fmt.Errorf("live ISO: xorriso: %w", err)
	}
	if err := checkISO(ctx, log, image, volID, sq.Size(), bios, uefi); err != nil {
		return fmt.Errorf("live ISO: the written image fails its check: %w", err)
	}
	if err := os.Rename(image, out); err != nil {
		return fmt.Errorf("live ISO: %w", err)
	}
	if st, err := os.Stat(out); err == nil {
		log.Printf("%s: %s", filepath.Base(out), bytesize.Format(uint64(st.Size())))
	}
	return nil
}

// isoTools is CheckTools without what only MakeSquashfs needs.
func isoTools(a arch.Arch, splash bool) []Missing {
	var miss []Missing
	for _, m := range CheckTools(a, splash) {
		if m.Package != "squashfs-tools" {
			miss = append(miss, m)
		}
	}
	return miss
}

// epochEnv passes SOURCE_DATE_EPOCH to the tools that honour it (xorriso,
// mkfs.vfat, mtools).
func epochEnv(epoch int64) []string {
	if epoch <= 0 {
		return nil
	}
	return []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)}
}

// markerName is the file GRUB's EFI loader searches for. Reproducible
// builds derive it from their inputs; others take a random one.
func markerName(volID string, epoch int64) string {
	if epoch > 0 {
		h := sha256.Sum256([]byte(volID + "\x00" + strconv.FormatInt(epoch, 10)))
		return "vmdeb-" + hex.EncodeToString(h[:8])
	}
	b := make([]byte, 8)
	rand.Read(b) // never fails since Go 1.24
	return "vmdeb-" + hex.EncodeToString(b)
}

// stageLive puts the squashfs and kernels under /live.
func stageLive(stage, squashfs string, kernels []Kernel) error {
	dir := filepath.Join(stage, "live")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := linkOrCopy(squashfs, filepath.Join(dir, "filesystem.squashfs")); err != nil {
		return err
	}
	for i, k := range kernels {
		vmlinuz, initrd := isoKernelPaths(i)
		if err := linkOrCopy(k.Vmlinuz, filepath.Join(stage, vmlinuz)); err != nil {
			return err
		}
		if err := linkOrCopy(k.Initrd, filepath.Join(stage, initrd)); err != nil {
			return err
		}
	}
	return nil
}

// kernelDTBs lists each kernel's device trees (FindDTBs) when architecture
// a uses them, and checks that every kernel has the one the config names.
func kernelDTBs(a arch.Arch, rootfs string, kernels []Kernel, name string) ([][]string, error) {
	if !a.DeviceTrees {
		if name != "" {
			return nil, fmt.Errorf("device tree %s: architecture %s does not use device trees", name, a.Name)
		}
		return nil, nil
	}
	if name != "" {
		if err := ValidDeviceTree(name); err != nil {
			return nil, fmt.Errorf("device tree: %w", err)
		}
	}
	all := make([][]string, len(kernels))
	for i, k := range kernels {
		dtbs, err := FindDTBs(rootfs, k.Version)
		if err != nil {
			return nil, err
		}
		if name != "" {
			if err := CheckDeviceTree(name, k.Version, dtbs); err != nil {
				return nil, err
			}
		}
		all[i] = dtbs
	}
	return all, nil
}

// stageDTBs puts the i-th kernel's device trees under isoDTBDir(i), in
// their vendor directories as the kernel package has them, so a user (or
// the menu, with a config's device-tree) can load any board's.
func stageDTBs(stage, rootfs string, kernels []Kernel, dtbs [][]string) error {
	for i, files := range dtbs {
		if len(files) == 0 {
			continue
		}
		src, err := dtbDirIn(rootfs, kernels[i].Version)
		if err != nil {
			return err
		}
		dst := filepath.Join(stage, isoDTBDir(i))
		for _, f := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
				return err
			}
			if err := linkOrCopy(filepath.Join(src, f), filepath.Join(dst, f)); err != nil {
				return err
			}
		}
	}
	return nil
}

// stageInstaller puts the installer's files under InstallDir, as debian-cd
// does on Debian's live images, and merges its medium (pool, dists,
// .disk) into the ISO's root.
func stageInstaller(stage, archName string, f *InstallerFiles) error {
	dir := filepath.Join(stage, InstallDir(archName))
	for _, name := range f.files() {
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := linkOrCopy(filepath.Join(f.Dir, name), dst); err != nil {
			return err
		}
	}
	if f.Medium == "" {
		return nil
	}
	return filepath.WalkDir(f.Medium, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(f.Medium, p)
		if err != nil || rel == "." {
			return err
		}
		dst := filepath.Join(stage, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(t) {
				return fmt.Errorf("%s: an absolute link has no place on the medium", rel)
			}
			return os.Symlink(t, dst)
		case d.Type().IsRegular():
			return linkOrCopy(p, dst)
		}
		return fmt.Errorf("%s: not a file, directory or link", rel)
	})
}

// md5sumExcluded are files whose bytes on the ISO differ from the staged
// ones: xorriso writes the boot information table into ISOLINUX's loader.
var md5sumExcluded = map[string]bool{"./isolinux/isolinux.bin": true, "./md5sum.txt": true}

// MD5Sums is md5sum.txt as debian-cd writes it, for d-i's "Check the
// integrity of the installation medium" (cdrom-checker) and md5sum -c:
// "MD5  ./PATH" for every regular file below root, sorted by path.
// Links are not followed: their targets are listed under their own names.
func MD5Sums(root string) (string, error) {
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := "./" + filepath.ToSlash(rel)
		if md5sumExcluded[name] {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := md5.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		lines = append(lines, hex.EncodeToString(h.Sum(nil))+"  "+name+"\n")
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][34:] < lines[j][34:] })
	return strings.Join(lines, ""), nil
}

// stageIsolinux adds /isolinux: the loader, its modules and the menu.
func stageIsolinux(stage string, o ISOOptions, entries []Entry) error {
	dir := filepath.Join(stage, "isolinux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Copied, never linked: -boot-info-table patches isolinux.bin, and
	// some mkisofs variants do it in the source file.
	if err := copyFile(filepath.Join(isolinuxDir, "isolinux.bin"), filepath.Join(dir, "isolinux.bin"), 0o644); err != nil {
		return err
	}
	for _, m := range isolinuxModules(o.Splash != "") {
		if err := copyFile(filepath.Join(syslinuxBIOS, m), filepath.Join(dir, m), 0o644); err != nil {
			return err
		}
	}
	if o.Splash != "" {
		if err := copyFile(o.Splash, filepath.Join(dir, "splash.png"), 0o644); err != nil {
			return err
		}
	}
	return writeFiles(stage, map[string]string{"isolinux/isolinux.cfg": RenderIsolinux(o, entries)})
}

// earlyConfig is the config built into the EFI loader: find this ISO, then
// read its menu. The prefix stays on the loader's memdisk, where the
// modules are, so insmod works without a module tree on the ISO.
func earlyConfig(marker string) string {
	return fmt.Sprintf(`if search --no-floppy --set=root --file /.disk/%s; then
	configfile /boot/grub/grub.cfg
else
	echo "vmdeb: cannot find the boot medium (no /.disk/%s)"
	sleep 30
fi
`, marker, marker)
}

// mkimageArgs is grub-mkimage's command line for a standalone EFI loader,
// as grub-mkstandalone makes one: a core with the memdisk and tar modules,
// its prefix on the memdisk. grub-mkstandalone itself is not used because
// it stamps the memdisk's files with the current time, so its loader could
// never be reproducible; vmdeb writes the memdisk itself.
func mkimageArgs(target, dir, loader, memdisk string) []string {
	return []string{
		"--format", target,
		"--directory", dir,
		"--prefix", "(memdisk)/boot/grub",
		"--output", loader,
		"--memdisk", memdisk,
		"memdisk", "tar",
	}
}

// writeMemdisk writes the tar the EFI loader carries: earlyCfg as
// boot/grub/grub.cfg, which normal mode reads first, and every module and
// module list of the target, so any insmod works without a module tree on
// the ISO. Names are sorted and times fixed: the tar depends only on its
// inputs. No fonts, locales or themes: the menu's font is read from the ISO.
func writeMemdisk(path, modDir, target, earlyCfg string, mtime time.Time) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	tw := tar.NewWriter(f)
	hdr := func(name string, mode int64, size int64, typ byte) *tar.Header {
		return &tar.Header{Name: name, Mode: mode, Size: size, Typeflag: typ, ModTime: mtime, Format: tar.FormatUSTAR}
	}
	modPrefix := "boot/grub/" + target + "/"
	for _, d := range []string{"boot/", "boot/grub/", modPrefix} {
		if err := tw.WriteHeader(hdr(d, 0o755, 0, tar.TypeDir)); err != nil {
			return err
		}
	}
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(hdr(name, 0o644, int64(len(data)), tar.TypeReg)); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("boot/grub/grub.cfg", []byte(earlyCfg)); err != nil {
		return err
	}
	ents, err := os.ReadDir(modDir) // sorted by name
	if err != nil {
		return err
	}
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || !(strings.HasSuffix(e.Name(), ".mod") || strings.HasSuffix(e.Name(), ".lst")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(modDir, e.Name()))
		if err != nil {
			return err
		}
		if err := add(modPrefix+e.Name(), data); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no GRUB modules in %s", modDir)
	}
	return tw.Close()
}

// stageGrub adds the UEFI boot: the EFI loader on the ISO and in the FAT
// image that El Torito (and the partition table on USB) point to, and the
// menu.
func stageGrub(ctx context.Context, log *buildlog.Log, stage, work, marker string, o ISOOptions, entries []Entry) error {
	a := o.Arch
	loaders, err := efiLoaders(ctx, log, work, marker, o)
	if err != nil {
		return err
	}
	efiDir := filepath.Join(stage, "EFI", "boot")
	grubDir := filepath.Join(stage, "boot", "grub")
	for _, d := range []string{efiDir, grubDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, l := range loaders {
		if err := copyFile(l.src, filepath.Join(efiDir, l.name), 0o644); err != nil {
			return err
		}
	}
	if err := makeEFIImage(ctx, log, loaders, filepath.Join(grubDir, "efi.img"), o.SourceDateEpoch); err != nil {
		return err
	}
	files := map[string]string{"boot/grub/grub.cfg": RenderGrub(o, entries)}
	if o.SecureBoot != nil {
		// The signed GRUB finds a medium by /.disk/info, which another
		// one may have too, and reads TARGET/grub.cfg there: find this
		// ISO by its own marker, then its menu.
		files["boot/grub/"+a.GrubEFITarget+"/grub.cfg"] = earlyConfig(marker)
	}
	if o.Splash != "" {
		if err := os.MkdirAll(filepath.Join(stage, filepath.Dir(grubFont)), 0o755); err != nil {
			return err
		}
		if err := copyFile(grubUnicodeFn, filepath.Join(stage, grubFont), 0o644); err != nil {
			return err
		}
		if err := copyFile(o.Splash, filepath.Join(stage, grubSplash), 0o644); err != nil {
			return err
		}
	}
	return writeFiles(stage, files)
}

// efiLoader is a file for EFI/boot/ (on the ISO and in its FAT image).
type efiLoader struct{ src, name string }

// efiLoaders are the files of EFI/boot/: vmdeb's own GRUB image (its
// config and every module on a memdisk), or, for Secure Boot, Debian's
// signed shim under the removable-media name and the signed GRUB beside
// it, where shim looks for it. Their dates are the epoch's.
func efiLoaders(ctx context.Context, log *buildlog.Log, work, marker string, o ISOOptions) ([]efiLoader, error) {
	a := o.Arch
	if sb := o.SecureBoot; sb != nil {
		if a.SecureBoot == nil {
			return nil, fmt.Errorf("Debian signs no boot loaders for %s", a.Name)
		}
		ls := []efiLoader{{filepath.Join(work, a.EFIBootName), a.EFIBootName}, {filepath.Join(work, a.SecureBoot.GrubName), a.SecureBoot.GrubName}}
		for i, src := range []string{sb.Shim, sb.Grub} {
			if err := copyFile(src, ls[i].src, 0o644); err != nil {
				return nil, fmt.Errorf("signed loader: %w", err)
			}
			if err := setEpoch(ls[i].src, o.SourceDateEpoch); err != nil {
				return nil, err
			}
		}
		log.Printf("UEFI: Secure Boot through the signed %s and %s", filepath.Base(sb.Shim), filepath.Base(sb.Grub))
		return ls, nil
	}
	mtime := time.Now()
	if o.SourceDateEpoch > 0 {
		mtime = time.Unix(o.SourceDateEpoch, 0)
	}
	memdisk := filepath.Join(work, "memdisk.tar")
	modDir := o.GrubDir
	if modDir == "" {
		modDir = filepath.Join(grubLibDir, a.GrubEFITarget)
	}
	if err := writeMemdisk(memdisk, modDir, a.GrubEFITarget, earlyConfig(marker), mtime); err != nil {
		return nil, fmt.Errorf("memdisk: %w", err)
	}
	loader := filepath.Join(work, a.EFIBootName)
	if err := log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("grub-mkimage"), Args: mkimageArgs(a.GrubEFITarget, modDir, loader, memdisk)}); err != nil {
		return nil, err
	}
	if err := setEpoch(loader, o.SourceDateEpoch); err != nil {
		return nil, err
	}
	log.Printf("UEFI: vmdeb's own GRUB image, unsigned (firmware with Secure Boot on refuses it)")
	return []efiLoader{{loader, a.EFIBootName}}, nil
}

// efiImageKiB sizes the FAT image for a loader of size bytes: the file,
// cluster rounding and FAT12/16 overhead, with room to spare.
func efiImageKiB(size int64) int64 {
	kib := (size + 1023) / 1024
	kib += kib/16 + 256
	return (kib + 63) / 64 * 64
}

// efiImageArgs are the commands that make the FAT image without a loop
// device or a mount: mkfs.vfat -C creates the file, mtools fill it (one
// mcopy per loader). size is the loaders' total size.
func efiImageArgs(img string, loaders []efiLoader, size, epoch int64) (mkfs, mmd []string, mcopy [][]string) {
	mkfs = []string{"-C", "-n", "EFIBOOT"}
	if epoch > 0 {
		mkfs = append(mkfs, "--invariant") // fixed serial and dates
	}
	mkfs = append(mkfs, img, strconv.FormatInt(efiImageKiB(size), 10))
	mmd = []string{"-i", img, "::/EFI", "::/EFI/boot"}
	for _, l := range loaders {
		c := []string{"-i", img}
		if epoch > 0 {
			c = append(c, "-m") // keep the loader's (epoch) mtime
		}
		mcopy = append(mcopy, append(c, l.src, "::/EFI/boot/"+l.name))
	}
	return mkfs, mmd, mcopy
}

func makeEFIImage(ctx context.Context, log *buildlog.Log, loaders []efiLoader, img string, epoch int64) error {
	var size int64
	for _, l := range loaders {
		st, err := os.Stat(l.src)
		if err != nil {
			return err
		}
		size += st.Size()
	}
	mkfs, mmd, mcopy := efiImageArgs(img, loaders, size, epoch)
	// mtools would refuse a FAT image whose geometry it finds odd.
	env := append([]string{"MTOOLS_SKIP_CHECK=1"}, epochEnv(epoch)...)
	cmds := []buildlog.Cmd{
		{Name: buildlog.Tool("mkfs.vfat"), Args: mkfs, Env: env},
		{Name: buildlog.Tool("mmd"), Args: mmd, Env: env},
	}
	for _, c := range mcopy {
		cmds = append(cmds, buildlog.Cmd{Name: buildlog.Tool("mcopy"), Args: c, Env: env})
	}
	for _, c := range cmds {
		if err := log.Run(ctx, c); err != nil {
			return fmt.Errorf("EFI boot image: %w", err)
		}
	}
	return nil
}

// xorrisoArgs is the command line for the hybrid ISO at image, laid out as
// Debian's live images are. With BIOS: ISOLINUX's El Torito entry, its MBR
// for USB sticks, and the EFI image as a second entry that
// -isohybrid-gpt-basdat also lists as a partition. Without BIOS (arm64):
// -isohybrid-gpt-basdat needs isohdpfx's x86 MBR, so the EFI image is
// appended as MBR partition 2 of type 0xef, as debian-cd does for arm64.
func xorrisoArgs(a arch.Arch, volID, stage, image string, epoch int64) []string {
	bios, uefi := a.HasFirmware(arch.BIOS), a.HasFirmware(arch.UEFI)
	args := []string{"-as", "mkisofs", "-o", image, "-V", volID, "-iso-level", "3", "-J", "-joliet-long", "-r"}
	if epoch > 0 {
		// SOURCE_DATE_EPOCH alone fixes the volume's dates but keeps the
		// files' mtimes, which the staging copies just got.
		args = append(args, "--set_all_file_dates", "="+strconv.FormatInt(epoch, 10))
	}
	if bios {
		args = append(args,
			"-isohybrid-mbr", filepath.Join(isolinuxDir, "isohdpfx.bin"),
			"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
			"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table")
	}
	if uefi {
		if bios {
			args = append(args, "-eltorito-alt-boot", "-e", "boot/grub/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat")
		} else {
			args = append(args, "-e", "boot/grub/efi.img", "-no-emul-boot",
				"-append_partition", "2", "0xef", filepath.Join(stage, "boot", "grub", "efi.img"))
		}
	}
	return append(args, stage)
}

// checkISO reads the image back: the volume id, the squashfs at its full
// size, and one El Torito boot entry per firmware.
func checkISO(ctx context.Context, log *buildlog.Log, image, volID string, squashfsSize int64, bios, uefi bool) error {
	var out bytes.Buffer
	if err := log.Run(ctx, buildlog.Cmd{
		Name:   buildlog.Tool("xorriso"),
		Args:   []string{"-indev", image, "-pvd_info", "-report_el_torito", "plain", "-find", "/live/filesystem.squashfs", "-exec", "lsdl", "--"},
		Stdout: &out,
	}); err != nil {
		return err
	}
	log.Logf("%s", out.String())
	return parseISOReport(out.String(), volID, squashfsSize, bios, uefi)
}

// parseISOReport checks xorriso's -pvd_info, -report_el_torito plain and
// -find ... -exec lsdl output.
func parseISOReport(report, volID string, squashfsSize int64, bios, uefi bool) error {
	var gotVol string
	var haveVol, haveBIOS, haveUEFI bool
	sqSize := int64(-1)
	for _, line := range strings.Split(report, "\n") {
		if v, ok := strings.CutPrefix(line, "Volume Id    : "); ok {
			gotVol, haveVol = v, true
		}
		if rest, ok := strings.CutPrefix(line, "El Torito boot img :"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				haveBIOS = haveBIOS || f[1] == "BIOS"
				haveUEFI = haveUEFI || f[1] == "UEFI"
			}
		}
		if strings.HasSuffix(line, "'/live/filesystem.squashfs'") {
			if f := strings.Fields(line); len(f) >= 5 {
				if n, err := strconv.ParseInt(f[4], 10, 64); err == nil {
					sqSize = n
				}
			}
		}
	}
	var errs []error
	if !haveVol || gotVol != volID {
		errs = append(errs, fmt.Errorf("volume id is %q, want %q", gotVol, volID))
	}
	if sqSize != squashfsSize {
		errs = append(errs, fmt.Errorf("/live/filesystem.squashfs has %d bytes, want %d", sqSize, squashfsSize))
	}
	if bios && !haveBIOS {
		errs = append(errs, errors.New("no BIOS El Torito boot entry"))
	}
	if uefi && !haveUEFI {
		errs = append(errs, errors.New("no UEFI El Torito boot entry"))
	}
	return errors.Join(errs...)
}

// writeFiles writes text files under root, making their directories.
func writeFiles(root string, files map[string]string) error {
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// setEpoch sets path's times to epoch (when > 0), for tools that copy a
// file's mtime into what they make.
func setEpoch(path string, epoch int64) error {
	if epoch <= 0 {
		return nil
	}
	t := time.Unix(epoch, 0)
	return os.Chtimes(path, t, t)
}

// treeBytes adds up the regular files under root (a hard-linked squashfs
// counts: the ISO holds a copy).
func treeBytes(root string) (uint64, error) {
	var n uint64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += uint64(fi.Size())
		}
		return nil
	})
	return n, err
}

// efiImageBytes is the size of the staged FAT image, 0 if there is none.
func efiImageBytes(stage string) uint64 {
	if st, err := os.Stat(filepath.Join(stage, "boot", "grub", "efi.img")); err == nil {
		return uint64(st.Size())
	}
	return 0
}
