package live

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/bytesize"
)

// compressions are mksquashfs's compressors that vmdeb offers; the first
// is the default (smallest image, what Debian's live images use).
var compressions = []string{"xz", "zstd", "gzip", "lz4", "lzo"}

// Compressions lists the valid SquashfsOptions.Compression values.
func Compressions() []string { return slices.Clone(compressions) }

// ValidCompression reports whether s is a compressor MakeSquashfs accepts
// ("" is valid and means the default, xz).
func ValidCompression(s string) bool {
	return s == "" || slices.Contains(compressions, s)
}

// SquashfsOptions tune MakeSquashfs.
type SquashfsOptions struct {
	Compression string   // xz (default), zstd, gzip, lz4, lzo
	Exclude     []string // paths relative to rootfs to leave out (nothing is excluded by default)
	// SourceDateEpoch > 0 makes the image reproducible: every time stamp in
	// it is set to this time. 0 keeps the files' own times.
	SourceDateEpoch int64
	// BlockCache, when set, is a directory of compressed blocks kept
	// between builds (internal/squashfs): only the blocks no earlier
	// build compressed are compressed (makeWithBlockCache).
	BlockCache string
	// Blocks, when set, receives what the block cache did.
	Blocks *BlockReport
}

// minSquashfs is the size below which an image is junk rather than a root
// file system: mksquashfs can leave a few KiB behind on a full disk and
// still exit 0 (a lesson vmdebootstrap learnt for debian-cd).
const minSquashfs = 1 << 20

// MakeSquashfs writes the squashfs of rootfs to out. It refuses to start
// when out's file system cannot hold the uncompressed tree, and checks the
// result; on any failure out is removed.
func MakeSquashfs(ctx context.Context, log *buildlog.Log, rootfs, out string, o SquashfsOptions) (err error) {
	if !ValidCompression(o.Compression) {
		return fmt.Errorf("squashfs compression %q is not valid (valid: %s)", o.Compression, strings.Join(compressions, ", "))
	}
	var tools buildlog.Needs
	tools.Bin("mksquashfs", "squashfs-tools")
	tools.Bin("unsquashfs", "squashfs-tools")
	if err := buildlog.MissingError(tools.Missing); err != nil {
		return fmt.Errorf("squashfs: %w", err)
	}
	excl, err := cleanExcludes(o.Exclude)
	if err != nil {
		return err
	}
	fi, err := os.Stat(rootfs)
	if err != nil {
		return fmt.Errorf("squashfs: root file system: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("squashfs: root file system %s is not a directory", rootfs)
	}
	outDir := filepath.Dir(out)
	tree, err := checkSpace(ctx, log, rootfs, out, excl)
	if err != nil {
		return err
	}

	defer func() {
		if err != nil {
			if rmErr := os.Remove(out); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
				err = errors.Join(err, rmErr)
			}
		}
	}()
	// A failure with space left is likely not a full disk; say what is free
	// now so the user can tell.
	fullDisk := func(what string) error {
		f, _ := freeSpace(outDir)
		return fmt.Errorf("%s: a full disk is the likely cause (%s (%d bytes) free now in %s)", what, bytesize.Format(f), f, outDir)
	}
	excludes := append(excl, mountExcludes(tree.mounts)...)
	cached := false
	if o.BlockCache != "" {
		why, err := makeWithBlockCache(ctx, log, rootfs, out, o, excludes, tree)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("squashfs: %w", ctx.Err())
		case err != nil:
			why = err.Error()
		}
		cached = why == ""
		if !cached {
			log.Printf("squashfs: the block cache is not used (%s); mksquashfs compresses it all", why)
		}
		if o.Blocks != nil {
			o.Blocks.Image, o.Blocks.Used, o.Blocks.Why = out, cached, why
		}
	}
	var runErr error
	if !cached {
		runErr = log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("mksquashfs"), Args: squashfsArgs(rootfs, out, o, excludes),
			Stdout: &squashfsProgress{log: log, lines: log.Writer(false)}})
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mksquashfs: %w", runErr)
		}
		return errors.Join(fullDisk("mksquashfs failed"), runErr)
	}
	st, statErr := os.Stat(out)
	if statErr != nil {
		return errors.Join(fullDisk("mksquashfs wrote no image"), statErr)
	}
	if st.Size() < minSquashfs {
		return fullDisk(fmt.Sprintf("the squashfs %s is only %d bytes, under 1 MiB", out, st.Size()))
	}
	if err := checkSuperblock(out, st.Size()); err != nil {
		return errors.Join(fullDisk("the squashfs "+out+" is damaged"), err)
	}
	if err := log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("unsquashfs"), Args: []string{"-s", out}}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("unsquashfs: %w", err)
		}
		return errors.Join(fullDisk("unsquashfs cannot read the squashfs "+out), err)
	}
	log.Printf("filesystem.squashfs: %s (%s)", bytesize.Format(uint64(st.Size())), compressionOrDefault(o.Compression))
	return nil
}

// checkSpace measures rootfs (less excl and what is mounted below it) and
// fails when out's directory has not room for its squashfs at worst.
func checkSpace(ctx context.Context, log *buildlog.Log, rootfs, out string, excl []string) (treeSize, error) {
	outDir := filepath.Dir(out)
	mounts, err := mountPointsUnder(rootfs)
	if err != nil {
		return treeSize{}, err
	}
	tree, err := measureTree(ctx, rootfs, excl, mounts)
	if err != nil {
		return tree, err
	}
	need := tree.need()
	free, err := freeSpace(outDir)
	if err != nil {
		return tree, err
	}
	if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() {
		free += uint64(st.Size()) // -noappend replaces it
	}
	log.Logf("squashfs: %s holds %s in %d files (%d bytes), %s needed at worst, %s free in %s",
		rootfs, bytesize.Format(tree.bytes), tree.inodes, tree.bytes, bytesize.Format(need), bytesize.Format(free), outDir)
	if len(tree.mounts) > 0 {
		log.Logf("squashfs: leaving out the contents of mount points: %s", strings.Join(tree.mounts, ", "))
	}
	if need > free {
		return tree, fmt.Errorf("not enough space for the squashfs in %s: the root file system %s holds %s (%d bytes) and its image may need %s (%d bytes), only %s (%d bytes) is free",
			outDir, rootfs, bytesize.Format(tree.bytes), tree.bytes, bytesize.Format(need), need, bytesize.Format(free), free)
	}
	return tree, nil
}

func compressionOrDefault(c string) string {
	if c == "" {
		return compressions[0]
	}
	return c
}

// squashfsArgs is mksquashfs's command line. excludes are relative paths,
// escaped here: -wildcards is on whenever there are any, because the
// contents of mount points are left out with "dir/*"-style patterns while
// the mount point itself stays (the live system mounts proc, sys... on it).
func squashfsArgs(rootfs, out string, o SquashfsOptions, excludes []string) []string {
	// mksquashfs's progress bar (its default) is read by squashfsProgress
	// for the terminal; it never reaches the log.
	args := []string{rootfs, out, "-noappend", "-comp", compressionOrDefault(o.Compression), "-mem", squashfsMemory()}
	if o.SourceDateEpoch > 0 {
		t := strconv.FormatInt(o.SourceDateEpoch, 10)
		// Reproducible is mksquashfs's default since 4.4; saying so keeps
		// it true whatever the default becomes.
		args = append(args, "-reproducible", "-mkfs-time", t, "-all-time", t)
	}
	if len(excludes) > 0 {
		// -e takes everything after it, so it comes last.
		args = append(args, "-wildcards", "-e")
		args = append(args, excludes...)
	}
	return args
}

// maxSquashfsMemory bounds what mksquashfs may use for its queues and
// caches. Its own default is a quarter of the machine's memory, and the
// caches fill as the tree is read: the layout of the xfce image's 8.8 GB
// root reached 2.8 GiB on a 24 GiB machine. Bounded, its output is the
// same bytes and no slower (docs/benchmarks.md, "configs/xfce.yaml, and
// mksquashfs's memory").
const maxSquashfsMemory = 512 << 20

// squashfsMemory is mksquashfs's -mem for this machine.
var squashfsMemory = sync.OnceValue(func() string {
	var si unix.Sysinfo_t
	total := uint64(0)
	if unix.Sysinfo(&si) == nil {
		total = uint64(si.Totalram) * uint64(si.Unit)
	}
	return memoryFor(total)
})

// memoryFor is the -mem argument for a machine of total bytes (0:
// unknown): a quarter of it, as mksquashfs would take, at most
// maxSquashfsMemory, at least 64 MiB.
func memoryFor(total uint64) string {
	m := total / 4
	if total == 0 || m > maxSquashfsMemory {
		m = maxSquashfsMemory
	}
	m = max(m>>20, 64)
	return strconv.FormatUint(m, 10) + "M"
}

// wildcardEscape makes a literal path safe under -wildcards (fnmatch with
// extended patterns); "/" separates components and is never escaped.
func wildcardEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`\*?[]+@!()`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mountExcludes are the patterns that leave out a mount point's contents,
// hidden files included ("*" does not match a leading dot).
func mountExcludes(mounts []string) []string {
	var ex []string
	for _, m := range mounts {
		e := wildcardEscape(m)
		ex = append(ex, e+"/*", e+"/.*")
	}
	return ex
}

// cleanExcludes checks the caller's excludes and returns them escaped for
// -wildcards, in order.
func cleanExcludes(in []string) ([]string, error) {
	var out []string
	for _, e := range in {
		c := filepath.Clean("/" + e)[1:]
		if c == "" || slices.Contains(strings.Split(e, "/"), "..") {
			return nil, fmt.Errorf("squashfs exclude %q: not a path inside the root file system", e)
		}
		out = append(out, wildcardEscape(c))
	}
	return out, nil
}

// treeSize is what a walk of the root file system found.
type treeSize struct {
	bytes  uint64   // file contents, each inode once
	inodes uint64   // entries
	mounts []string // relative paths of mount points whose contents are skipped
}

// need is a worst case for the image: incompressible data stored as is,
// plus room for uncompressed metadata.
func (t treeSize) need() uint64 { return t.bytes + 256*t.inodes }

// measureTree adds up rootfs like "du -x": it does not descend into other
// file systems (st_dev differs) nor into mount points from mountinfo (which
// also catches bind mounts from the same file system), nor into excludes.
func measureTree(ctx context.Context, rootfs string, excludes []string, mounts map[string]bool) (treeSize, error) {
	var t treeSize
	root, err := os.Lstat(rootfs)
	if err != nil {
		return t, err
	}
	rootDev := root.Sys().(*syscall.Stat_t).Dev
	excl := map[string]bool{}
	for _, e := range excludes {
		excl[unescape(e)] = true
	}
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err = filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("squashfs: measuring the root file system: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(rootfs, path)
		if rel == "." {
			return nil
		}
		if excl[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("squashfs: measuring the root file system: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		t.inodes++
		if d.IsDir() && (uint64(st.Dev) != uint64(rootDev) || mounts[rel]) {
			t.mounts = append(t.mounts, rel)
			return filepath.SkipDir
		}
		if fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0 {
			if st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if seen[k] {
					return nil
				}
				seen[k] = true
			}
			t.bytes += uint64(fi.Size())
		}
		return nil
	})
	return t, err
}

// unescape undoes wildcardEscape, to compare an exclude with walked paths.
func unescape(p string) string {
	var b strings.Builder
	esc := false
	for _, r := range p {
		if r == '\\' && !esc {
			esc = true
			continue
		}
		esc = false
		b.WriteRune(r)
	}
	return b.String()
}

// mountPointsUnder lists the mount points strictly inside dir, relative to
// it, from
// /proc/self/mountinfo. A host without it (no /proc) yields none: the
// st_dev test in measureTree still applies.
func mountPointsUnder(dir string) (map[string]bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	f, err := os.Open("/proc/self/mountinfo")
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f, abs)
}

// parseMountinfo returns the mount points below abs (a resolved path) from
// the mountinfo table r, relative to abs.
func parseMountinfo(r io.Reader, abs string) (map[string]bool, error) {
	ms, err := mountinfo.GetMountsFromReader(r, mountinfo.PrefixFilter(abs))
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	m := map[string]bool{}
	for _, mi := range ms {
		if rel, err := filepath.Rel(abs, mi.Mountpoint); err == nil && rel != "." {
			m[rel] = true
		}
	}
	return m, nil
}

// checkSuperblock reads the squashfs superblock: the magic must be there
// and the bytes it says are used must all be in the file, which catches a
// truncated image that unsquashfs -s alone would still describe.
func checkSuperblock(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sb := make([]byte, 96)
	if _, err := io.ReadFull(f, sb); err != nil {
		return fmt.Errorf("reading the superblock: %w", err)
	}
	if magic := binary.LittleEndian.Uint32(sb[0:4]); magic != 0x73717368 {
		return fmt.Errorf("no squashfs superblock (magic %#x)", magic)
	}
	if used := binary.LittleEndian.Uint64(sb[40:48]); used > uint64(size) {
		return fmt.Errorf("superblock says %d bytes are used, the file has %d", used, size)
	}
	return nil
}

// squashfsProgress reads mksquashfs's standard output: its progress bar
// ("[===\\   ] 1200/3300  36%", redrawn after a carriage return) becomes
// the log's progress counter, every other line goes to lines (the log).
type squashfsProgress struct {
	log   *buildlog.Log
	lines io.Writer
	what  string // what the counter counts ("" = squashfs blocks compressed)
	buf   []byte
}

var squashfsBar = regexp.MustCompile(`\] +(\d+)/(\d+) +\d+%`)

func (p *squashfsProgress) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexAny(p.buf, "\r\n")
		if i < 0 {
			break
		}
		p.segment(string(p.buf[:i]))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *squashfsProgress) segment(s string) {
	if m := squashfsBar.FindStringSubmatch(s); m != nil {
		done, _ := strconv.Atoi(m[1])
		total, _ := strconv.Atoi(m[2])
		what := p.what
		if what == "" {
			what = "squashfs blocks compressed"
		}
		p.log.Progress(what, done, total)
		return
	}
	if s != "" {
		p.lines.Write([]byte(s + "\n"))
	}
}
