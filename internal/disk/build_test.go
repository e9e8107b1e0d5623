package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

// testLog keeps the build log in memory and prints it when a test fails.
func testLog(t *testing.T) *buildlog.Log {
	t.Helper()
	var buf syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("build log:\n%s", buf.String())
		}
	})
	return buildlog.New(&buf, "", nil)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// needBuild skips a test that needs root and the real tools: it must never
// fake what they do.
func needBuild(t *testing.T, o Options) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (image files owned by root, device nodes)")
	}
	if miss := CheckTools(o); len(miss) > 0 {
		t.Skipf("missing: %v", miss)
	}
	for _, n := range []string{"blkid", "debugfs", "mdir"} {
		if _, err := buildlog.LookPath(n); err != nil {
			t.Skipf("%s not installed", n)
		}
	}
}

// run runs a host command and returns its standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(buildlog.Tool(name), args...)
	cmd.Env = append(buildlog.BaseEnv(), "MTOOLS_SKIP_CHECK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

const fakeKernel = "6.1.0-99-amd64"

// fakeRootfs is a small tree with what a disk build reads: a kernel and
// its initramfs, systemd's units, a hard link, long and short symbolic
// links, a sparse file and a device node.
func fakeRootfs(t *testing.T) string {
	t.Helper()
	root := fakeSystemd(t)
	random := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		return string(b)
	}
	put(t, root, "boot/vmlinuz-"+fakeKernel, random(1<<20))
	put(t, root, "boot/initrd.img-"+fakeKernel, random(512<<10))
	put(t, root, "boot/efi/EFI/debian/note.txt", "kept on the ESP\n")
	put(t, root, "etc/os-release", "PRETTY_NAME=\"fake\"\n")
	put(t, root, "usr/share/doc/a", random(300<<10))
	if err := os.Link(filepath.Join(root, "usr/share/doc/a"), filepath.Join(root, "usr/share/doc/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("long/", 20)+"target", filepath.Join(root, "usr/share/doc/long")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(root, "var/sparse"))
	if err != nil {
		if err := os.MkdirAll(filepath.Join(root, "var"), 0o755); err != nil {
			t.Fatal(err)
		}
		if f, err = os.Create(filepath.Join(root, "var/sparse")); err != nil {
			t.Fatal(err)
		}
	}
	f.WriteAt([]byte("end"), 5<<20)
	f.Close()
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	return root
}

// partImage copies partition p (start and size in sectors) of img to its
// own file, the way a user would check it.
func partImage(t *testing.T, img string, start, size int64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "part.img")
	run(t, "dd", "if="+img, "of="+out, "bs=512", "skip="+strconv.FormatInt(start, 10), "count="+strconv.FormatInt(size, 10), "conv=sparse", "status=none")
	return out
}

type dumpPart struct {
	Start, Size int64
	Type, UUID  string
	Bootable    bool
}

func readTable(t *testing.T, img string) (label string, parts []dumpPart) {
	t.Helper()
	var js sfdiskJSON
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", img)), &js); err != nil {
		t.Fatal(err)
	}
	for _, p := range js.Table.Partitions {
		parts = append(parts, dumpPart{p.Start, p.Size, p.Type, p.UUID, p.Bootable})
	}
	return js.Table.Label, parts
}

func blkidUUID(t *testing.T, file string) string {
	t.Helper()
	return strings.TrimSpace(run(t, "blkid", "--probe", "--match-tag", "UUID", "--output", "value", file))
}

// onlyEntry checks that dir holds nothing but name: no temporary file is
// left beside an output.
func onlyEntry(t *testing.T, dir, name string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if (name == "" && len(names) != 0) || (name != "" && (len(names) != 1 || names[0] != name)) {
		t.Errorf("%s holds %v, want only %q", dir, names, name)
	}
}

// loopsUnder lists the loop devices whose backing file is below dir:
// those of the test's own build, whatever other builds on the machine do
// with theirs meanwhile.
func loopsUnder(t *testing.T, dir string) string {
	t.Helper()
	if _, err := buildlog.LookPath("losetup"); err != nil {
		return ""
	}
	var l []string
	for _, line := range strings.Split(run(t, "losetup", "--all"), "\n") {
		if strings.Contains(line, dir) {
			l = append(l, line)
		}
	}
	return strings.Join(l, "\n")
}

// noLoopsUnder waits a little for dir's loop devices to go: one with
// autoclear is freed as its last mount goes, which the kernel finishes
// just after the mount namespace holding it ends.
func noLoopsUnder(t *testing.T, dir string) {
	t.Helper()
	var got string
	for i := 0; i < 50; i++ {
		if got = loopsUnder(t, dir); got == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("loop devices of the build left:\n%s", got)
}

func TestBuildRawHybrid(t *testing.T) {
	o := Options{Size: 160 * mib, Arch: archOf(t, "amd64"), BootSize: 40 * mib, SwapSize: 8 * mib, ESPSize: 32 * mib, Hostname: "disk-test"}
	needBuild(t, o)
	root := fakeRootfs(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "test.img")
	if err := Build(context.Background(), testLog(t), root, out, o); err != nil {
		t.Fatal(err)
	}
	onlyEntry(t, dir, "test.img")
	noLoopsUnder(t, dir)
	if m, _ := chroot.MountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	// The source tree is not the image: nothing was written into it.
	if _, err := os.Stat(filepath.Join(root, "etc/fstab")); err == nil {
		t.Error("Build wrote /etc/fstab into the root file system it was given")
	}
	if read(t, root, "etc/hostname") != "builder\n" {
		t.Error("Build changed the source's host name")
	}

	var st syscall.Stat_t
	if err := syscall.Stat(out, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != o.Size || st.Blocks*512 > o.Size/2 {
		t.Errorf("image of %d bytes with %d allocated: want %d, sparse", st.Size, st.Blocks*512, o.Size)
	}

	label, parts := readTable(t, out)
	wantTypes := []string{gptBIOSBoot, gptESP, gptLinux, gptSwap, gptRoot["amd64"]}
	if label != "gpt" || len(parts) != len(wantTypes) {
		t.Fatalf("table %s with %+v", label, parts)
	}
	for i, w := range wantTypes {
		if !strings.EqualFold(parts[i].Type, w) {
			t.Errorf("partition %d has type %s, want %s", i+1, parts[i].Type, w)
		}
	}
	t.Logf("sfdisk --dump:\n%s", run(t, "sfdisk", "--dump", out))

	// The root partition, cut out and checked on its own.
	rootImg := partImage(t, out, parts[4].Start, parts[4].Size)
	run(t, "e2fsck", "-f", "-n", rootImg)
	rootUUID := blkidUUID(t, rootImg)
	fstab := run(t, "debugfs", "-R", "cat /etc/fstab", rootImg)
	if !strings.Contains(fstab, "UUID="+rootUUID+"\t/\text4\t") {
		t.Errorf("fstab does not mount the root by its UUID %s:\n%s", rootUUID, fstab)
	}
	if got := run(t, "debugfs", "-R", "cat /etc/hostname", rootImg); got != "disk-test\n" {
		t.Errorf("image host name %q", got)
	}
	if got := run(t, "debugfs", "-R", "ls -p /boot", rootImg); strings.Contains(got, "vmlinuz") || strings.Contains(got, "grub") {
		t.Errorf("/boot's files are in the root file system:\n%s", got)
	}
	if got := run(t, "debugfs", "-R", "stat /usr/share/doc/b", rootImg); !strings.Contains(got, "Links: 2") {
		t.Errorf("hard link lost:\n%s", got)
	}
	if got := run(t, "debugfs", "-R", "stat /dev/null", rootImg); !strings.Contains(got, "Type: character special") {
		t.Errorf("device node lost:\n%s", got)
	}
	if got := run(t, "debugfs", "-R", "cat /etc/systemd/network/90-vmdeb-dhcp.network", rootImg); !strings.Contains(got, "DHCP=yes") {
		t.Errorf("no DHCP config:\n%s", got)
	}

	// /boot: kernels, GRUB's modules and menu, the menu naming the root.
	bootImg := partImage(t, out, parts[2].Start, parts[2].Size)
	run(t, "e2fsck", "-f", "-n", bootImg)
	if !strings.Contains(fstab, "UUID="+blkidUUID(t, bootImg)+"\t/boot\t") {
		t.Errorf("fstab lacks /boot's UUID:\n%s", fstab)
	}
	cfg := run(t, "debugfs", "-R", "cat /grub/grub.cfg", bootImg)
	if !strings.Contains(cfg, "linux /vmlinuz-"+fakeKernel+" root=UUID="+rootUUID+" ro console=tty0 console=ttyS0,115200n8") {
		t.Errorf("grub.cfg:\n%s", cfg)
	}
	for _, f := range []string{"/vmlinuz-" + fakeKernel, "/grub/i386-pc/normal.mod", "/grub/x86_64-efi/normal.mod", "/efi"} {
		if got := run(t, "debugfs", "-R", "stat "+f, bootImg); !strings.Contains(got, "Inode:") {
			t.Errorf("/boot%s missing", f)
		}
	}

	// The ESP, read in place with mtools: the loader and the tree's files.
	esp := out + "@@" + strconv.FormatInt(parts[1].Start*512, 10)
	if got := run(t, "mdir", "-b", "-i", esp, "::/EFI/boot"); !strings.Contains(strings.ToLower(got), "/efi/boot/bootx64.efi") {
		t.Errorf("no loader on the ESP:\n%s", got)
	}
	if got := run(t, "mtype", "-i", esp, "::/EFI/debian/note.txt"); got != "kept on the ESP\n" {
		t.Errorf("the source's /boot/efi files: %q", got)
	}
	if !strings.Contains(fstab, "UUID="+strings.TrimSpace(run(t, "blkid", "--probe", "--offset", strconv.FormatInt(parts[1].Start*512, 10), "--match-tag", "UUID", "--output", "value", out))+"\t/boot/efi\tvfat") {
		t.Errorf("fstab lacks the ESP's UUID:\n%s", fstab)
	}
	swapUUID := strings.TrimSpace(run(t, "blkid", "--probe", "--offset", strconv.FormatInt(parts[3].Start*512, 10), "--match-tag", "UUID", "--output", "value", out))
	if swapUUID == "" || !strings.Contains(fstab, "UUID="+swapUUID+"\tnone\tswap") {
		t.Errorf("swap %q not in fstab:\n%s", swapUUID, fstab)
	}

	// BIOS: GRUB's boot code points at the BIOS boot partition.
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if binary.LittleEndian.Uint64(mbr[bootKernelSector:]) != uint64(parts[0].Start) || mbr[510] != 0x55 || mbr[511] != 0xaa || mbr[0x1c2] != 0xee {
		t.Errorf("MBR: kernel sector %d (BIOS boot partition at %d), signature % x, protective type %#x",
			binary.LittleEndian.Uint64(mbr[bootKernelSector:]), parts[0].Start, mbr[510:], mbr[0x1c2])
	}
	diskboot := make([]byte, 512)
	f.ReadAt(diskboot, parts[0].Start*512)
	if start := binary.LittleEndian.Uint64(diskboot[500:]); start != uint64(parts[0].Start+1) {
		t.Errorf("diskboot loads from sector %d, want %d", start, parts[0].Start+1)
	}
}

func TestBuildQcow2MBR(t *testing.T) {
	o := Options{Size: 96 * mib, Arch: archOf(t, "amd64"), Format: "qcow2", Table: "mbr", Bootloader: "grub-bios", RootFS: "ext2", Network: "none",
		SourceDateEpoch: 1700000000, Seed: "qcow2-test"}
	needBuild(t, o)
	root := fakeRootfs(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "test.qcow2")
	if err := Build(context.Background(), testLog(t), root, out, o); err != nil {
		t.Fatal(err)
	}
	onlyEntry(t, dir, "test.qcow2")
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(run(t, "qemu-img", "info", "--output=json", out)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != o.Size {
		t.Errorf("qemu-img info: %+v", info)
	}
	raw := filepath.Join(t.TempDir(), "back.raw")
	run(t, "qemu-img", "convert", "-O", "raw", out, raw)
	label, parts := readTable(t, raw)
	if label != "dos" || len(parts) != 1 || parts[0].Type != "83" || !parts[0].Bootable || parts[0].Start != 2048 {
		t.Fatalf("table %s %+v", label, parts)
	}
	rootImg := partImage(t, raw, parts[0].Start, parts[0].Size)
	run(t, "e2fsck", "-f", "-n", rootImg)
	if got := strings.TrimSpace(run(t, "blkid", "--probe", "--match-tag", "TYPE", "--output", "value", rootImg)); got != "ext2" {
		t.Errorf("root file system %s, want ext2", got)
	}
	// Reproducible ids: the same seed and epoch give the same UUID.
	l, err := Plan(o, 0)
	if err != nil {
		t.Fatal(err)
	}
	if u := blkidUUID(t, rootImg); u != l.Parts[0].UUID {
		t.Errorf("root UUID %s, the plan for this seed says %s", u, l.Parts[0].UUID)
	}
	// The core image sits right after the MBR.
	f, _ := os.Open(raw)
	defer f.Close()
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	if binary.LittleEndian.Uint64(mbr[bootKernelSector:]) != 1 {
		t.Errorf("core image at sector %d, want 1", binary.LittleEndian.Uint64(mbr[bootKernelSector:]))
	}
}

func TestBuildTooSmall(t *testing.T) {
	o := Options{Size: 40 * mib, Arch: archOf(t, "amd64"), ESPSize: 32 * mib}
	needBuild(t, o)
	root := fakeRootfs(t)
	dir := t.TempDir()
	err := Build(context.Background(), testLog(t), root, filepath.Join(dir, "small.img"), o)
	var ts *TooSmallError
	if !errors.As(err, &ts) {
		t.Fatalf("err = %v, want a TooSmallError", err)
	}
	if !strings.Contains(err.Error(), "40 MiB") || ts.Need <= o.Size {
		t.Errorf("%v", err)
	}
	onlyEntry(t, dir, "")
}

// cancelOn cancels when a line of the build log contains what.
type cancelOn struct {
	what   string
	cancel context.CancelFunc
	buf    syncBuffer
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(c.what)) {
		c.cancel()
	}
	return c.buf.Write(p)
}

func TestBuildCancelled(t *testing.T) {
	o := Options{Size: 160 * mib, Arch: archOf(t, "amd64"), ESPSize: 32 * mib, SwapSize: 8 * mib}
	needBuild(t, o)
	for _, step := range []string{"cp -a", "sfdisk --quiet", "mke2fs", "mcopy -s", "e2fsck"} {
		t.Run(step, func(t *testing.T) {
			root := fakeRootfs(t)
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &cancelOn{what: "$ ", cancel: cancel}
			w.what = step
			err := Build(ctx, buildlog.New(w, "", nil), root, filepath.Join(dir, "c.img"), o)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled\n%s", err, w.buf.String())
			}
			onlyEntry(t, dir, "")
			noLoopsUnder(t, dir)
			if m, _ := chroot.MountsUnder(dir); len(m) > 0 {
				t.Errorf("mounts left: %v", m)
			}
		})
	}
}

// With SecureBoot the ESP holds the image's own signed loaders under the
// names grub-install gives them, in /EFI/debian and on the removable-media
// path, and the grub.cfg the signed GRUB reads beside itself: it finds
// /boot's file system by UUID and reads the menu. /boot/grub gets the
// image's own GRUB modules.
func TestBuildSecureBootESP(t *testing.T) {
	dir := t.TempDir()
	o := Options{Size: 160 * mib, ESPSize: 32 * mib, Arch: archOf(t, "amd64"), Bootloader: GrubUEFI, Hostname: "sb", SecureBoot: true}
	needBuild(t, o)
	root := fakeRootfs(t)
	image := map[string]string{
		"usr/lib/shim/shimx64.efi.signed":                   "signed shim",
		"usr/lib/shim/mmx64.efi.signed":                     "signed mok manager",
		"usr/lib/shim/fbx64.efi.signed":                     "signed fallback",
		"usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed": "signed grub",
		"usr/lib/grub/x86_64-efi/normal.mod":                "the image's normal.mod",
		"usr/lib/grub/x86_64-efi/command.lst":               "the image's command.lst",
	}
	for p, data := range image {
		put(t, root, p, data)
	}
	out := filepath.Join(dir, "sb.img")
	if err := Build(context.Background(), testLog(t), root, out, o); err != nil {
		t.Fatal(err)
	}
	_, parts := readTable(t, out)
	if len(parts) < 2 || !strings.EqualFold(parts[0].Type, gptESP) {
		t.Fatalf("partitions %+v: want the ESP first", parts)
	}
	esp := out + "@@" + strconv.FormatInt(parts[0].Start*512, 10)
	for name, want := range map[string]string{
		"EFI/debian/shimx64.efi": "signed shim", "EFI/debian/grubx64.efi": "signed grub",
		"EFI/debian/mmx64.efi": "signed mok manager", "EFI/debian/fbx64.efi": "signed fallback",
		"EFI/BOOT/BOOTX64.EFI": "signed shim", "EFI/BOOT/grubx64.efi": "signed grub", "EFI/BOOT/mmx64.efi": "signed mok manager",
		"EFI/debian/note.txt": "kept on the ESP\n",
	} {
		if got := run(t, "mtype", "-i", esp, "::/"+name); got != want {
			t.Errorf("/%s holds %q, want %q", name, got, want)
		}
	}
	// The image has no BOOTX64.CSV: grub-install then puts none either;
	// nothing else is there (vmdeb's own GRUB core is not).
	list := strings.ToLower(run(t, "mdir", "-/", "-b", "-i", esp, "::/"))
	if !strings.Contains(list, "::/efi/boot/bootx64.efi") {
		t.Errorf("mdir lists no /EFI/BOOT/BOOTX64.EFI:\n%s", list)
	}
	for _, f := range strings.Fields(list) {
		switch strings.TrimSuffix(f, "/") {
		case "::/efi", "::/efi/debian", "::/efi/boot", "::/efi/debian/shimx64.efi", "::/efi/debian/grubx64.efi", "::/efi/debian/mmx64.efi",
			"::/efi/debian/fbx64.efi", "::/efi/debian/grub.cfg", "::/efi/debian/note.txt",
			"::/efi/boot/bootx64.efi", "::/efi/boot/grubx64.efi", "::/efi/boot/mmx64.efi":
		default:
			t.Errorf("the ESP has %s", f)
		}
	}
	rootImg := partImage(t, out, parts[1].Start, parts[1].Size)
	uuid := blkidUUID(t, rootImg)
	cfg := run(t, "mtype", "-i", esp, "::/EFI/debian/grub.cfg")
	if cfg != "search.fs_uuid "+uuid+" root\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n" {
		t.Errorf("the ESP's grub.cfg:\n%s", cfg)
	}
	if got := run(t, "debugfs", "-R", "cat /boot/grub/x86_64-efi/normal.mod", rootImg); got != "the image's normal.mod" {
		t.Errorf("/boot/grub/x86_64-efi/normal.mod is %q, want the image's", got)
	}

	// An image without the signed loaders is refused, naming the packages.
	root = fakeRootfs(t)
	put(t, root, "usr/lib/grub/x86_64-efi/normal.mod", "")
	err := Build(context.Background(), testLog(t), root, filepath.Join(dir, "none.img"), o)
	if err == nil || !strings.Contains(err.Error(), "shim-signed") {
		t.Errorf("an image without shim: err = %v, want one naming shim-signed", err)
	}
}
