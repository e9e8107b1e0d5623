package disk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"vmdeb/internal/bytesize"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/imgroot"
	"vmdeb/internal/live"
)

// Build writes the disk image of rootfs to out. rootfs itself is not
// changed: the image's own files (fstab, network, boot menu, …) go into a
// staging copy, hard links where rootfs is on out's file system.
//
// Nothing is mounted and no loop device is used, but for extlinux's
// install (in its own mount namespace, see extlinuxScript). Everything temporary
// lives in one directory beside out, removed whatever happens; out appears
// only once the image is complete and read back: the partition table by
// sfdisk, each ext file system by e2fsck, each UUID by blkid, the EFI
// loader by mtools, the BIOS boot code byte for byte, a qcow2 by qemu-img
// check.
func Build(ctx context.Context, log *buildlog.Log, rootfs, out string, o Options) (err error) {
	o, err = o.normalize()
	if err != nil {
		return err
	}
	if miss := CheckTools(o); len(miss) > 0 {
		return fmt.Errorf("disk: %w", buildlog.MissingError(miss))
	}
	rootfs, err = filepath.Abs(rootfs)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(rootfs); err != nil {
		return fmt.Errorf("disk: root file system: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("disk: root file system %s is not a directory", rootfs)
	}
	if m, err := chroot.MountsUnder(rootfs); err != nil {
		return err
	} else if len(m) > 0 {
		// A copy would take in /proc or a bind-mounted host directory.
		return fmt.Errorf("disk: %s still has file systems mounted below it: %s", rootfs, strings.Join(m, ", "))
	}
	if o.SecureBoot && o.uefi() {
		if o, err = o.imageGrub(rootfs); err != nil {
			return err
		}
	}
	var kernels []string
	if o.bootMenu() {
		ks, err := live.FindKernels(rootfs)
		if err != nil {
			return fmt.Errorf("disk: %w", err)
		}
		for _, k := range ks {
			kernels = append(kernels, k.Version)
		}
	}
	if err := checkDeviceTree(o, rootfs, kernels); err != nil {
		return err
	}

	log.Printf("measuring %s", rootfs)
	rootUse, bootUse, err := measure(ctx, rootfs, o.BootSize > 0)
	if err != nil {
		return fmt.Errorf("disk: measuring the root file system: %w", err)
	}
	if o.BootSize == 0 {
		rootUse.Bytes += bootFilesBytes(o) // GRUB's modules, extlinux's files
	}
	l, err := plan(o, rootUse)
	if err != nil {
		return err
	}
	if bp, _, ok := l.Part("boot"); ok {
		bootUse.Bytes += bootFilesBytes(o)
		if !extFits(bootUse, bp.Bytes(), bp.FS) {
			return fmt.Errorf("disk: /boot does not fit: its %s of files need a partition of at least %s, boot-size is %s",
				bytesize.Format(bootUse.Bytes), bytesize.Format(extMinSize(bootUse, bp.FS)), bytesize.Format(bp.Bytes()))
		}
	}
	for _, p := range l.Parts {
		log.Logf("partition %-4s start %d sectors %d type %s fs %s uuid %s", p.Name, p.Start, p.Sectors, p.Type, p.FS, p.UUID)
	}

	outDir := filepath.Dir(out)
	hardlinks, err := sameFS(rootfs, outDir)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	if !linksKept(string(o.RootFS)) {
		hardlinks = false // a staging tree of links would give every file a link count of 2
	}
	if o.Hook != nil {
		hardlinks = false // the hook may write into files, which must not reach rootfs
	}
	need := rootUse.Bytes + bootUse.Bytes + 16*mib
	if !hardlinks {
		need += rootUse.Bytes + bootUse.Bytes
	}
	if o.Format == Qcow2 {
		need += rootUse.Bytes + bootUse.Bytes
	}
	if !linksKept(string(o.RootFS)) {
		need += rootUse.Bytes // made in a file of its own, then copied in
	}
	if free, err := freeSpace(outDir); err != nil {
		return err
	} else if need > free {
		return fmt.Errorf("disk: not enough space in %s: the image needs about %s (%d bytes) while it is built, only %s is free",
			outDir, bytesize.Format(need), need, bytesize.Format(free))
	}

	tmp, err := os.MkdirTemp(outDir, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer func() {
		if rerr := chroot.RemoveAll(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("disk: removing %s: %w", tmp, rerr))
		}
	}()
	b := &builder{ctx: ctx, log: log, o: o, l: l, tmp: tmp, kernels: kernels,
		stage: filepath.Join(tmp, "root"), img: "disk.raw"}
	if err := b.run(rootfs, hardlinks); err != nil {
		return err
	}
	final := b.img
	if o.Format == Qcow2 {
		if final, err = b.qcow2(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, final), out); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	if st, err := os.Stat(out); err == nil {
		log.Printf("%s: %s %s image of %s, %s allocated", filepath.Base(out), o.Format, o.Table, bytesize.Format(o.Size), bytesize.Format(st.Sys().(*syscall.Stat_t).Blocks*512))
	}
	return nil
}

// builder holds one image build's state; every path is inside tmp.
type builder struct {
	ctx     context.Context
	log     *buildlog.Log
	o       Options
	l       Layout
	tmp     string
	stage   string // the image's root tree
	bootDir string // the separate /boot's tree ("" = none)
	espDir  string // the ESP's tree ("" = none)
	img     string // the raw image, relative to tmp
	kernels []string
}

func (b *builder) run(rootfs string, hardlinks bool) error {
	steps := []struct {
		what string
		fn   func() error
	}{
		{"staging the root file system", func() error { return b.stageTree(rootfs, hardlinks) }},
		{"breaking hard links", b.breakLinks},
		{"writing the system's files", b.prepare},
		{"adding GRUB's files", b.grubFiles},
		{"writing extlinux's menu", b.extlinuxConf},
		{"writing the partition table", b.partition},
		{"running the image hook", b.runHook},
		{"splitting /boot and the ESP", b.split},
		{"fixing dates (SOURCE_DATE_EPOCH)", b.clampDates},
		{"making the file systems", b.filesystems},
		{"installing the BIOS boot code", b.biosBoot},
		{"installing extlinux", b.extlinuxInstall},
		{"checking the image", b.check},
	}
	for _, s := range steps {
		if err := b.ctx.Err(); err != nil {
			return fmt.Errorf("disk: interrupted before %s: %w", s.what, err)
		}
		b.log.Logf("disk: %s", s.what)
		if err := s.fn(); err != nil {
			return fmt.Errorf("disk: %s: %w", s.what, err)
		}
	}
	return nil
}

// runTool runs a host tool in tmp, where the image is named relatively:
// "disk.raw?offset=" (e2fsprogs) and "disk.raw@@" (mtools) must not meet
// a '?' or "@@" in the output's directory name.
func (b *builder) runTool(name string, args []string, env ...string) error {
	return b.log.Run(b.ctx, buildlog.Cmd{Name: buildlog.Tool(name), Args: args, Dir: b.tmp, Env: append(b.epochEnv(), env...)})
}

func (b *builder) output(name string, args []string, env ...string) (string, error) {
	var out bytes.Buffer
	err := b.log.Run(b.ctx, buildlog.Cmd{Name: buildlog.Tool(name), Args: args, Dir: b.tmp, Env: append(b.epochEnv(), env...), Stdout: &out})
	b.log.Logf("%s", out.String())
	return out.String(), err
}

// epochEnv gives the tools a fixed clock for reproducible builds.
func (b *builder) epochEnv() []string {
	if b.o.SourceDateEpoch <= 0 {
		return nil
	}
	e := strconv.FormatInt(b.o.SourceDateEpoch, 10)
	return []string{"SOURCE_DATE_EPOCH=" + e, "E2FSPROGS_FAKE_TIME=" + e}
}

// stageTree copies rootfs to the staging tree: hard links when both are on
// one file system (every later change replaces files, never writes into
// them), a full copy otherwise.
func (b *builder) stageTree(rootfs string, hardlinks bool) error {
	args := []string{"-a", "--reflink=auto"}
	how := "a copy"
	if hardlinks {
		args, how = []string{"-a", "-l"}, "hard links"
	}
	b.log.Printf("staging the root file system (%s)", how)
	err := b.log.Run(b.ctx, buildlog.Cmd{Name: "cp", Args: append(args, "--", rootfs, b.stage)})
	if err == nil || !hardlinks || b.ctx.Err() != nil {
		return err
	}
	// Some files cannot be linked (immutable ones): copy them all.
	b.log.Printf("hard links failed, copying instead")
	if err := chroot.RemoveAll(b.stage); err != nil {
		return err
	}
	return b.stageTree(rootfs, false)
}

func (b *builder) prepare() error {
	notes, err := prepareRootfs(b.stage, b.l, b.o)
	for _, n := range notes {
		b.log.Printf("note: %s", n)
	}
	return err
}

// grubPlatforms are the GRUB platforms the image boots with.
func (o Options) grubPlatforms() []string {
	var p []string
	if o.bios() {
		p = append(p, "i386-pc")
	}
	if o.uefi() {
		p = append(p, o.Arch.GrubEFITarget)
	}
	return p
}

// imageGrub points the EFI platform's modules at the image's own GRUB
// (grub-efi-ARCH-bin, there with the signed loaders): /boot/grub gets the
// modules of the GRUB on the ESP, as the image's grub-install would copy.
func (o Options) imageGrub(rootfs string) (Options, error) {
	r, err := imgroot.Open(rootfs)
	if err != nil {
		return o, err
	}
	defer r.Close()
	t := o.Arch.GrubEFITarget
	rel, err := r.Resolve(path.Join("usr/lib/grub", t))
	if err == nil {
		var fi fs.FileInfo
		if fi, err = r.Lstat(rel); err == nil && !fi.IsDir() {
			err = fmt.Errorf("/%s is not a directory", rel)
		}
	}
	if err != nil {
		return o, fmt.Errorf("disk: Secure Boot needs the image's own GRUB (%s): %w", strings.Join(ImagePackages(o.Arch), ", "), err)
	}
	dirs := maps.Clone(o.GrubDirs)
	if dirs == nil {
		dirs = map[string]string{}
	}
	dirs[t] = filepath.Join(rootfs, rel)
	o.GrubDirs = dirs
	return o, nil
}

// bootFilesBytes is what the boot loader adds to the boot file system,
// rounded to blocks, for the size checks.
func bootFilesBytes(o Options) int64 {
	if o.extlinux() {
		return 256 * 1024 // ldlinux.sys, ldlinux.c32, extlinux.conf
	}
	if !o.grub() {
		return 0
	}
	var n int64 = 64 * 1024 // grub.cfg, directories
	for _, p := range o.grubPlatforms() {
		ents, _ := os.ReadDir(o.grubDir(p))
		for _, e := range ents {
			if grubFile(e.Name()) {
				if fi, err := e.Info(); err == nil {
					n += roundUp(fi.Size(), 4096)
				}
			}
		}
	}
	return n
}

func grubFile(name string) bool {
	return strings.HasSuffix(name, ".mod") || strings.HasSuffix(name, ".lst")
}

// grubFiles puts GRUB's modules and the menu under /boot/grub, as
// grub-install lays them out: the core images load normal.mod and the rest
// from there, so their own embedded modules stay few.
func (b *builder) grubFiles() error {
	if !b.o.grub() {
		return nil
	}
	r := root(b.stage)
	for _, p := range b.o.grubPlatforms() {
		src := b.o.grubDir(p)
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		dst := filepath.Join("boot/grub", p)
		if err := r.mkdir(dst); err != nil {
			return err
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || !grubFile(e.Name()) {
				continue
			}
			data, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				return err
			}
			if err := r.write(filepath.Join(dst, e.Name()), string(data), 0o644); err != nil {
				return err
			}
		}
	}
	return r.write("boot/grub/grub.cfg", RenderGrubCfg(b.l, b.o, b.kernels), 0o644)
}

// split moves /boot's contents to their own tree when /boot is a
// partition, and /boot/efi's to the ESP's tree, leaving the empty mount
// points behind.
func (b *builder) split() error {
	bootHost := filepath.Join(b.stage, "boot")
	if _, _, ok := b.l.Part("boot"); ok {
		b.bootDir = filepath.Join(b.tmp, "boot")
		if err := moveOut(bootHost, b.bootDir); err != nil {
			return err
		}
		bootHost = b.bootDir
	}
	if _, _, ok := b.l.Part("esp"); ok {
		b.espDir = filepath.Join(b.tmp, "esp")
		if err := moveOut(filepath.Join(bootHost, "efi"), b.espDir); err != nil {
			return err
		}
		if b.o.SecureBoot {
			return b.secureBootLoader()
		}
		loader := filepath.Join(b.espDir, filepath.FromSlash(b.o.removablePath()))
		if err := os.MkdirAll(filepath.Dir(loader), 0o755); err != nil {
			return err
		}
		b.log.Printf("GRUB for UEFI: /%s (unsigned: firmware with Secure Boot on refuses it)", b.o.removablePath())
		return b.mkimage(b.o.Arch.GrubEFITarget, loader)
	}
	return nil
}

// removablePath is where on the ESP the firmware finds the loader it
// boots with no boot entry in its NVRAM: shim with Secure Boot, where
// grub-install puts it; vmdeb's own GRUB core otherwise.
func (o Options) removablePath() string {
	if o.SecureBoot {
		return "EFI/BOOT/BOOT" + strings.ToUpper(efiSuffix(o.Arch)) + ".EFI"
	}
	return "EFI/boot/" + o.Arch.EFIBootName
}

// moveOut renames dir to dst and puts an empty directory with dir's mode
// and owner in its place.
func moveOut(dir, dst string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Rename(dir, dst); err != nil {
		return err
	}
	if err := os.Mkdir(dir, fi.Mode().Perm()); err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return os.Chmod(dir, fi.Mode().Perm())
}

// coreModules are built into the BIOS core image and the EFI loader: what
// it takes to find the boot file system by UUID and read GRUB's modules
// from it.
func coreModules(platform, fs string) []string {
	m := []string{"part_gpt", "part_msdos", "search_fs_uuid"}
	if platform == "i386-pc" {
		m = append([]string{"biosdisk"}, m...)
	}
	switch fs {
	case "ext2", "ext3", "ext4":
		m = append(m, "ext2")
	default:
		m = append(m, fs)
	}
	return m
}

// mkimage makes a GRUB core image for platform with the early config.
func (b *builder) mkimage(platform, out string) error {
	cfg := filepath.Join(b.tmp, "early-"+platform+".cfg")
	if err := os.WriteFile(cfg, []byte(earlyGrubCfg(b.l)), 0o644); err != nil {
		return err
	}
	args := []string{"--format", platform, "--directory", b.o.grubDir(platform),
		"--prefix", "/boot/grub", "--config", cfg, "--output", out}
	return b.runTool("grub-mkimage", append(args, coreModules(platform, b.l.BootPart().FS)...))
}

// partition makes the sparse image file and its partition table.
func (b *builder) partition() error {
	f, err := os.OpenFile(filepath.Join(b.tmp, b.img), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = f.Truncate(b.o.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	script := sfdiskScript(b.l)
	b.log.Logf("sfdisk script:\n%s", script)
	return b.log.Run(b.ctx, buildlog.Cmd{Name: buildlog.Tool("sfdisk"), Args: []string{"--quiet", "--no-reread", "--no-tell-kernel", b.img},
		Dir: b.tmp, Stdin: strings.NewReader(script)})
}

// filesystems makes each partition's file system in place in the image.
func (b *builder) filesystems() error {
	for _, p := range b.l.Parts {
		var err error
		switch p.FS {
		case "ext2", "ext3", "ext4":
			dir := b.stage
			if p.Name == "boot" {
				dir = b.bootDir
			}
			b.log.Printf("%s: %s, %s", p.Mount, p.FS, bytesize.Format(p.Bytes()))
			err = b.mkext(p, dir)
		case "vfat":
			if p.Name == "boot" {
				b.log.Printf("%s: vfat, %s", p.Mount, bytesize.Format(p.Bytes()))
				err = b.mkvfat(p, b.bootDir, "BOOT")
			} else {
				b.log.Printf("%s: vfat (EFI system partition)", p.Mount)
				err = b.mkvfat(p, b.espDir, "EFI")
			}
		case "btrfs", "xfs":
			b.log.Printf("%s: %s, %s", p.Mount, p.FS, bytesize.Format(p.Bytes()))
			err = b.mkfsFromFile(p, b.stage)
		case "swap":
			b.log.Printf("swap: %s", bytesize.Format(p.Bytes()))
			err = b.mkswap(p)
		}
		if err != nil {
			return fmt.Errorf("partition %s: %w", p.Name, err)
		}
	}
	return nil
}

// mkext makes an ext file system from dir at p's offset. The image file
// is fresh and sparse, so mke2fs may skip zeroing its inode tables and
// journal (assume_storage_prezeroed), which keeps the image sparse.
func (b *builder) mkext(p Part, dir string) error {
	u, _, err := measure(b.ctx, dir, false)
	if err != nil {
		return err
	}
	ext := []string{"offset=" + strconv.FormatInt(p.Offset(), 10), "nodiscard", "assume_storage_prezeroed=1"}
	if b.o.SourceDateEpoch > 0 {
		ext = append(ext, "hash_seed="+p.UUID)
	}
	args := []string{"-F", "-q", "-t", p.FS, "-b", "4096", "-I", "256", "-i", "16384",
		"-N", strconv.FormatInt(extInodes(u, p.Bytes()), 10),
		"-U", p.UUID, "-E", strings.Join(ext, ","), "-d", dir, b.img, strconv.FormatInt(p.Bytes()/4096, 10)}
	var env []string
	// The image's own mke2fs.conf names the features its e2fsck knows; the
	// host's may enable newer ones (orphan_file) that an older suite's
	// fsck refuses at boot.
	if conf := filepath.Join(b.stage, "etc/mke2fs.conf"); regular(conf) {
		env = append(env, "MKE2FS_CONFIG="+conf)
	}
	err = b.runTool("mke2fs", args, env...)
	if err != nil && noSpace(b.log.LastLines()) {
		return fmt.Errorf("%s does not fit in its %s partition (vmdeb's estimate was too low): make the image or partition larger: %w", p.Mount, bytesize.Format(p.Bytes()), err)
	}
	if err != nil {
		return err
	}
	return b.fixExtDates(p)
}

func noSpace(lines []string) bool {
	for _, l := range lines {
		if strings.Contains(l, "Could not allocate block") || strings.Contains(l, "No space left") || strings.Contains(l, "Could not allocate inode") {
			return true
		}
	}
	return false
}

func regular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// mtoolsImage is how mtools names a partition of the image: file@@offset.
func (b *builder) mtoolsImage(p Part) string {
	return b.img + "@@" + strconv.FormatInt(p.Offset(), 10)
}

var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1"}

// fat32From is the partition size from which mkvfat makes FAT32.
const fat32From = 64 * mib

// mkvfat makes a FAT (the ESP's, or a board's /boot) in place, labelled
// label, and copies dir's tree in with mtools.
func (b *builder) mkvfat(p Part, dir, label string) error {
	var args []string
	if b.o.SourceDateEpoch > 0 {
		// Fixed dates and serial; first, because it also sets the volume
		// id, which the -i that follows must override.
		args = append(args, "--invariant")
	}
	args = append(args, "--offset="+strconv.FormatInt(p.Start, 10), "-h", strconv.FormatInt(p.Start, 10),
		"-i", strings.ReplaceAll(p.UUID, "-", ""), "-n", label)
	if p.Bytes() >= fat32From {
		// FAT32, the UEFI spec's FAT for an ESP, with clusters small enough
		// for the 65525 a FAT32 must have: mtools reads it as FAT16 otherwise.
		cluster := "8"
		if p.Bytes() < 512*mib {
			cluster = "1"
		}
		args = append(args, "-F", "32", "-s", cluster)
	} else {
		// Said, not left to mkfs.fat: it picks the FAT size from the
		// whole file past the offset, FAT32 for a large image, and then
		// refuses the small partition.
		args = append(args, "-F", "16")
	}
	args = append(args, b.img, strconv.FormatInt(p.Bytes()/1024, 10))
	if err := b.runTool("mkfs.vfat", args); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	// No -m: the staged files' dates are the build's; with
	// SOURCE_DATE_EPOCH in its environment mtools dates every entry it
	// makes at the epoch.
	cp := []string{"-s", "-Q", "-i", b.mtoolsImage(p)}
	for _, e := range ents {
		cp = append(cp, filepath.Join(dir, e.Name()))
	}
	return b.runTool("mcopy", append(cp, "::/"), mtoolsEnv...)
}

// mkswap writes the swap signature: mkswap on a file of the partition's
// size, whose one written page is then copied into the image.
func (b *builder) mkswap(p Part) error {
	sw := filepath.Join(b.tmp, "swap")
	f, err := os.Create(sw)
	if err != nil {
		return err
	}
	err = f.Truncate(p.Bytes())
	f.Close()
	if err != nil {
		return err
	}
	if err := b.runTool("mkswap", []string{"-U", p.UUID, sw}); err != nil {
		return err
	}
	if err := copySparseFile(b.ctx, filepath.Join(b.tmp, b.img), p.Offset(), sw); err != nil {
		return err
	}
	return os.Remove(sw)
}

// biosBoot installs GRUB for BIOS: boot.img in the first 440 bytes of the
// MBR, the core image in the BIOS boot partition (GPT) or the gap after
// the MBR, each patched as grub-bios-setup would.
func (b *builder) biosBoot() error {
	if !b.o.bios() {
		return nil
	}
	core := filepath.Join(b.tmp, "core.img")
	if err := b.mkimage("i386-pc", core); err != nil {
		return err
	}
	coreImg, err := os.ReadFile(core)
	if err != nil {
		return err
	}
	bootImg, err := os.ReadFile(filepath.Join(b.o.grubDir("i386-pc"), "boot.img"))
	if err != nil {
		return err
	}
	lba, room := b.coreArea()
	nsec := (int64(len(coreImg)) + sector - 1) / sector
	if nsec > room {
		return fmt.Errorf("GRUB's core image has %d sectors, its place on the disk only %d", nsec, room)
	}
	f, err := os.OpenFile(filepath.Join(b.tmp, b.img), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	mbr := make([]byte, sector)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return err
	}
	newMBR, err := patchBootSector(mbr, bootImg, uint64(lba))
	if err != nil {
		return err
	}
	newCore, err := patchCore(coreImg, uint64(lba))
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(newCore, lba*sector); err != nil {
		return err
	}
	if _, err := f.WriteAt(newMBR, 0); err != nil {
		return err
	}
	b.log.Printf("GRUB for BIOS: boot code in the MBR, core image (%d sectors) at sector %d", nsec, lba)
	return f.Close()
}

// coreArea is where the BIOS core image goes and how many sectors it may
// take: the BIOS boot partition, or the sectors between the MBR and the
// first partition.
func (b *builder) coreArea() (lba, sectors int64) {
	if p, _, ok := b.l.Part("bios"); ok {
		return p.Start, p.Sectors
	}
	return 1, b.l.Parts[0].Start - 1
}

// qcow2 converts the checked raw image and checks the result.
func (b *builder) qcow2() (string, error) {
	q := "disk.qcow2"
	b.log.Printf("converting to qcow2")
	if err := b.runTool("qemu-img", []string{"convert", "-f", "raw", "-O", "qcow2", b.img, q}); err != nil {
		return "", fmt.Errorf("disk: %w", err)
	}
	if err := b.runTool("qemu-img", []string{"check", "-f", "qcow2", q}); err != nil {
		return "", fmt.Errorf("disk: the qcow2 image fails its check: %w", err)
	}
	info, err := b.output("qemu-img", []string{"info", "--output=json", "-f", "qcow2", q})
	if err != nil {
		return "", fmt.Errorf("disk: %w", err)
	}
	var qi struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
	}
	if err := json.Unmarshal([]byte(info), &qi); err != nil {
		return "", fmt.Errorf("disk: qemu-img info: %w", err)
	}
	if qi.Format != "qcow2" || qi.VirtualSize != b.o.Size {
		return "", fmt.Errorf("disk: the qcow2 image is %s of %d bytes, want qcow2 of %d", qi.Format, qi.VirtualSize, b.o.Size)
	}
	return q, os.Remove(filepath.Join(b.tmp, b.img))
}

// Measure is what the tree at dir takes on an ext file system with 4 KiB
// blocks (the ext4 output sizes its image by it).
func Measure(ctx context.Context, dir string) (Usage, error) {
	u, _, err := measure(ctx, dir, false)
	return u, err
}

// measure adds up what dir takes on an ext file system: files and
// directories rounded to 4 KiB blocks (hard links once), long symbolic
// links, and the inodes. With splitBoot, boot/ is measured on its own.
func measure(ctx context.Context, dir string, splitBoot bool) (rootU, bootU Usage, err error) {
	seen := map[[2]uint64]bool{}
	bootDir := filepath.Join(dir, "boot")
	n := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		u := &rootU
		if splitBoot && (p == bootDir || strings.HasPrefix(p, bootDir+"/")) {
			u = &bootU
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() && st.Nlink > 1 {
			k := [2]uint64{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Inodes++
		switch {
		case fi.Mode().IsRegular():
			u.Bytes += roundUp(fi.Size(), 4096)
		case fi.IsDir():
			u.Bytes += max(roundUp(fi.Size(), 4096), 4096)
		case fi.Mode()&fs.ModeSymlink != 0 && fi.Size() >= 60:
			u.Bytes += 4096 // longer than fits in the inode
		}
		return nil
	})
	return rootU, bootU, err
}

// sameFS reports whether a and b are on one file system (hard links work).
func sameFS(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, err
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev, nil
}

// freeSpace is what an unprivileged writer may use on dir's file system.
func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("disk: free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}
