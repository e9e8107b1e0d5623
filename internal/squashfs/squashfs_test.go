package squashfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func needMksquashfs(t *testing.T) {
	t.Helper()
	for _, b := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
}

func runMksquashfs(ctx context.Context, args []string, stdin io.Reader) error {
	cmd := exec.CommandContext(ctx, "mksquashfs", args...)
	cmd.Stdin = stdin
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// testTree makes a tree with what a root file system holds: big files
// (several blocks, a short tail), small ones (fragments), duplicates,
// hard links, symbolic links, a device, a fifo, a socket-free sparse
// file, a directory with more than 8 KiB of entries (an indexed,
// extended directory inode, and several metadata blocks), and an xattr
// where the file system takes one.
func testTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/share/doc"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o700))
	var big bytes.Buffer
	for i := 0; big.Len() < 600_000; i++ {
		fmt.Fprintf(&big, "line %d of a file big enough for several blocks %x\n", i, sha256.Sum256([]byte(fmt.Sprint(i))))
	}
	must(os.WriteFile(filepath.Join(root, "usr/big"), big.Bytes(), 0o644))
	must(os.WriteFile(filepath.Join(root, "usr/big-copy"), big.Bytes(), 0o644))
	must(os.WriteFile(filepath.Join(root, "usr/random"), randomBytes(300_000), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/random-big"), randomBytes(2_500_000)[300_000:], 0o644))
	for i := 0; i < 700; i++ {
		must(os.WriteFile(filepath.Join(root, "usr/share/doc", fmt.Sprintf("a-rather-long-file-name-for-the-index-%04d", i)), []byte(strings.Repeat(fmt.Sprintf("doc %d\n", i), i%50+1)), 0o644))
	}
	must(os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("debian\n"), 0o644))
	must(os.Link(filepath.Join(root, "etc/hostname"), filepath.Join(root, "etc/hostname-link")))
	must(os.Symlink("../usr/big", filepath.Join(root, "etc/big")))
	must(unix.Mkfifo(filepath.Join(root, "etc/fifo"), 0o600))
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(root, "etc/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	f, err := os.Create(filepath.Join(root, "usr/sparse"))
	must(err)
	f.WriteAt([]byte("end"), 3<<20)
	f.WriteAt([]byte("start"), 0)
	f.Close()
	unix.Setxattr(filepath.Join(root, "usr/random"), "user.vmdeb", []byte("test value"), 0)
	unix.Setxattr(filepath.Join(root, "usr/big"), "user.vmdeb", []byte("test value"), 0)
	return root
}

func randomBytes(n int) []byte {
	b := make([]byte, 0, n)
	for i := 0; len(b) < n; i++ {
		s := sha256.Sum256([]byte(fmt.Sprint("random", i)))
		b = append(b, s[:]...)
	}
	return b[:n]
}

var timeArgs = []string{"-reproducible", "-mkfs-time", "1700000000", "-all-time", "1700000000"}

// build makes the layout of root and rebuilds it with comp through c.
func build(t *testing.T, root, out string, comp []string, c *Cache, extra ...string) Stats {
	t.Helper()
	tmp := t.TempDir()
	layout := filepath.Join(tmp, "layout.sqfs")
	args := append(append(append([]string{root, layout, "-noappend", "-quiet", "-no-progress"}, timeArgs...), extra...), "-noD", "-noF", "-noI", "-noX")
	if err := runMksquashfs(context.Background(), args, nil); err != nil {
		t.Fatal(err)
	}
	st, err := Rebuild(context.Background(), runMksquashfs, layout, out, tmp, comp, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func readSuper(t *testing.T, path string) (superblock, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := parseSuperblock(b)
	if err != nil {
		t.Fatal(err)
	}
	return sb, b
}

func unsquashfs(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The rebuilt image holds mksquashfs's own compressed data, byte for byte
// where a direct run puts it, and reads back as the same tree; a second
// build from a warm cache compresses nothing and gives the same bytes; a
// damaged entry is refused and made again.
func TestRebuildMatchesMksquashfs(t *testing.T) {
	needMksquashfs(t)
	root := testTree(t)
	for _, tc := range []struct {
		comp  string
		extra []string
	}{
		{"xz", nil}, {"zstd", nil}, {"gzip", nil},
		// Small blocks: over a thousand of them, so that the run which
		// compresses them has a root directory with an index.
		{"zstd", []string{"-b", "4096"}},
	} {
		comp, extra := tc.comp, tc.extra
		t.Run(strings.Join(append([]string{comp}, extra...), " "), func(t *testing.T) {
			dir := t.TempDir()
			direct := filepath.Join(dir, "direct.sqfs")
			args := append(append([]string{root, direct, "-noappend", "-quiet", "-no-progress", "-comp", comp}, timeArgs...), extra...)
			if err := runMksquashfs(context.Background(), args, nil); err != nil {
				t.Fatal(err)
			}
			c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "test " + comp}
			cold := filepath.Join(dir, "cold.sqfs")
			st := build(t, root, cold, []string{"-comp", comp}, c, extra...)
			t.Logf("cold: %+v", st)
			if st.Reused != 0 || st.Compressed == 0 || st.Blocks < st.Compressed {
				t.Errorf("cold build: %+v", st)
			}

			dsb, db := readSuper(t, direct)
			csb, cb := readSuper(t, cold)
			start := uint64(superSize)
			if dsb.Flags&flagCompOpt != 0 {
				start += 2 + uint64(le.Uint16(db[superSize:])&^mdUncompBit)
			}
			if !bytes.Equal(db[:start][20:22], cb[:start][20:22]) || !bytes.Equal(db[superSize:start], cb[superSize:start]) {
				t.Errorf("compressor or its options differ")
			}
			if !bytes.Equal(db[start:dsb.InodeTable], cb[start:csb.InodeTable]) {
				t.Errorf("data differs from mksquashfs's: %d bytes against %d", csb.InodeTable-start, dsb.InodeTable-start)
			}
			if dsb.Inodes != csb.Inodes || dsb.Fragments != csb.Fragments || dsb.Flags != csb.Flags || dsb.IDs != csb.IDs || dsb.MkfsTime != csb.MkfsTime {
				t.Errorf("superblocks differ:\n%+v\n%+v", dsb, csb)
			}
			growth := float64(len(cb)-len(db)) / float64(len(db))
			t.Logf("direct %d bytes, rebuilt %d (%+.2f%%)", len(db), len(cb), 100*growth)

			list := func(p string) string {
				return strings.ReplaceAll(unsquashfs(t, "-lln", "-d", "", p), p, "")
			}
			if a, b := list(direct), list(cold); a != b {
				t.Errorf("listings differ:\n%s\n%s", a, b)
			}
			xd, xc := filepath.Join(dir, "xd"), filepath.Join(dir, "xc")
			unsquashfs(t, "-d", xd, direct)
			unsquashfs(t, "-d", xc, cold)
			if a, b := treeDigest(t, xd), treeDigest(t, xc); a != b {
				t.Errorf("contents differ:\n%s\n%s", a, b)
			}
			if x, err := exec.Command("unsquashfs", "-lls", "-d", "", cold).CombinedOutput(); err != nil || !strings.Contains(string(x), "usr/sparse") {
				t.Errorf("listing: %v %s", err, x)
			}

			warm := filepath.Join(dir, "warm.sqfs")
			st = build(t, root, warm, []string{"-comp", comp}, c, extra...)
			if st.Compressed != 0 || st.Reused == 0 {
				t.Errorf("warm build: %+v", st)
			}
			if _, wb := readSuper(t, warm); !bytes.Equal(wb, cb) {
				t.Errorf("the warm build's bytes differ from the cold build's")
			}

			// A damaged entry: one byte of one block changed.
			var victim string
			filepath.WalkDir(c.Dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && victim == "" {
					victim = p
				}
				return nil
			})
			b, _ := os.ReadFile(victim)
			b[len(b)-1] ^= 0xff
			os.WriteFile(victim, b, 0o644)
			again := filepath.Join(dir, "again.sqfs")
			st = build(t, root, again, []string{"-comp", comp}, c, extra...)
			if st.Damaged != 1 || st.Compressed != 1 {
				t.Errorf("with a damaged entry: %+v", st)
			}
			if _, ab := readSuper(t, again); !bytes.Equal(ab, cb) {
				t.Errorf("the build after a damaged entry differs from the cold build")
			}
			mountCompare(t, cold, root)
		})
	}
}

// mountCompare has the kernel read the image (root only, where loop
// devices work) and compares it with the tree it was made from.
func mountCompare(t *testing.T, img, root string) {
	if os.Geteuid() != 0 {
		return
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "squashfs", "-o", "loop,ro", img, mnt).CombinedOutput(); err != nil {
		t.Logf("no kernel mount here: %v %s", err, out)
		return
	}
	defer exec.Command("umount", mnt).Run()
	if a, b := treeDigest(t, root), treeDigest(t, mnt); a != b {
		t.Errorf("the kernel reads another tree:\n%s\n%s", a, b)
	}
}

// treeDigest lists a tree: each entry's path, type, permissions, size,
// contents' SHA256, link target, device number, link count and user
// xattr (not times: the image sets them all).
func treeDigest(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	xattrs := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %o", rel, st.Mode)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %d %x nlink %d", len(data), sha256.Sum256(data), st.Nlink)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", l)
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(&b, " dev %d", st.Rdev)
		}
		x := make([]byte, 64)
		if n, err := unix.Lgetxattr(p, "user.vmdeb", x); err == nil {
			fmt.Fprintf(&b, " xattr %q", x[:n])
			xattrs++
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d entries, %d with xattrs\n%s", strings.Count(b.String(), "\n"), xattrs, b.String())
}

// A block's key follows its bytes, the compressor's arguments and the
// block size, and nothing else: the same file under another name, in
// another directory of another tree, takes its blocks from the cache;
// another block size or compressor level takes none.
func TestRebuildKeys(t *testing.T) {
	needMksquashfs(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	data := randomBytes(8 * 131072)
	os.MkdirAll(filepath.Join(a, "usr/lib"), 0o755)
	os.MkdirAll(filepath.Join(b, "opt/elsewhere/deeper"), 0o755)
	os.WriteFile(filepath.Join(a, "usr/lib/data"), data, 0o644)
	os.WriteFile(filepath.Join(b, "opt/elsewhere/deeper/renamed"), data, 0o600)
	os.WriteFile(filepath.Join(b, "first"), []byte("a file before it"), 0o644)
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "test"}
	out := filepath.Join(dir, "out.sqfs")
	if st := build(t, a, out, []string{"-comp", "gzip"}, c); st.Compressed != 8 {
		t.Fatalf("first tree: %+v", st)
	}
	if st := build(t, b, out, []string{"-comp", "gzip"}, c); st.Reused != 8 || st.Compressed != 1 {
		t.Errorf("the same data elsewhere: %+v", st)
	}
	if st := build(t, a, out, []string{"-comp", "gzip"}, c, "-b", "65536"); st.Reused != 0 {
		t.Errorf("another block size: %+v", st)
	}
	if st := build(t, a, out, []string{"-comp", "gzip", "-Xcompression-level", "1"}, c); st.Reused != 0 {
		t.Errorf("another compression level: %+v", st)
	}
}

// Blocks compressed in several runs of the compressor (a run ends after
// chunkBytes, and its blocks are stored then) make the same image as one
// run.
func TestRebuildInRuns(t *testing.T) {
	needMksquashfs(t)
	root := testTree(t)
	dir := t.TempDir()
	one, many := filepath.Join(dir, "one.sqfs"), filepath.Join(dir, "many.sqfs")
	build(t, root, one, []string{"-comp", "zstd"}, &Cache{Dir: filepath.Join(dir, "a"), Ident: "t"})
	defer func(n uint64) { chunkBytes = n }(chunkBytes)
	chunkBytes = 200 << 10
	st := build(t, root, many, []string{"-comp", "zstd"}, &Cache{Dir: filepath.Join(dir, "b"), Ident: "t"})
	a, _ := os.ReadFile(one)
	b, _ := os.ReadFile(many)
	if !bytes.Equal(a, b) || st.Compressed < 10 {
		t.Errorf("in runs of 200 KiB: %+v, same bytes %v", st, bytes.Equal(a, b))
	}
}
