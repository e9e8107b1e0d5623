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
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Edge cases of the rebuild, each against a direct mksquashfs run of the
// same tree and options: the data bytes, unsquashfs's listing, the
// extracted contents (xattrs included) and what the kernel reads.

// edgeTree makes a tree under a fresh directory with fill.
func edgeTree(t *testing.T, fill func(root string, must func(error))) string {
	t.Helper()
	return edgeTreeIn(t, t.TempDir(), fill)
}

// edgeTreeIn makes the tree in base.
func edgeTreeIn(t *testing.T, base string, fill func(root string, must func(error))) string {
	t.Helper()
	root := filepath.Join(base, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(root, 0o755))
	fill(root, must)
	return root
}

// layoutAndRebuild is build without t.Fatal: safe in goroutines, and the
// error is the test's to judge.
func layoutAndRebuild(root, out string, comp []string, c *Cache, extra ...string) (Stats, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(out), "tmp")
	if err != nil {
		return Stats{}, err
	}
	defer os.RemoveAll(tmp)
	layout := filepath.Join(tmp, "layout.sqfs")
	args := append(append(append([]string{root, layout, "-noappend", "-quiet", "-no-progress"}, timeArgs...), extra...), "-noD", "-noF", "-noI", "-noX")
	if err := runMksquashfs(context.Background(), args, nil); err != nil {
		return Stats{}, fmt.Errorf("layout: %w", err)
	}
	return Rebuild(context.Background(), runMksquashfs, layout, out, tmp, comp, c, nil)
}

func directImage(t *testing.T, root, out string, comp []string, extra ...string) {
	t.Helper()
	args := append(append(append([]string{root, out, "-noappend", "-quiet", "-no-progress"}, comp...), timeArgs...), extra...)
	if err := runMksquashfs(context.Background(), args, nil); err != nil {
		t.Fatal(err)
	}
}

// xattrDigest lists every xattr of every entry under root (any
// namespace), sorted.
func xattrDigest(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		buf := make([]byte, 1<<16)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return nil
		}
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name == "" {
				continue
			}
			v := make([]byte, 1<<16)
			m, err := unix.Lgetxattr(p, name, v)
			if err != nil {
				return fmt.Errorf("%s %s: %w", rel, name, err)
			}
			lines = append(lines, fmt.Sprintf("%s %s %d %x", rel, name, m, sha256sum(v[:m])))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return fmt.Sprintf("%d xattrs\n%s", len(lines), strings.Join(lines, "\n"))
}

func sha256sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// mounted runs f on the image mounted by the kernel; false if it cannot
// be mounted here (not root).
func mounted(t *testing.T, img string, f func(dir string)) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return false
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "squashfs", "-o", "loop,ro", img, mnt).CombinedOutput(); err != nil {
		t.Errorf("the kernel does not mount %s: %v %s", filepath.Base(img), err, out)
		return false
	}
	defer exec.Command("umount", mnt).Run()
	f(mnt)
	return true
}

// compareImages checks rebuilt against direct: superblock counts and
// flags, the data bytes, unsquashfs's listing and extracted contents
// (xattrs too), and both as the kernel mounts them.
func compareImages(t *testing.T, direct, rebuilt string) {
	t.Helper()
	dsb, db := readSuper(t, direct)
	csb, cb := readSuper(t, rebuilt)
	start := uint64(superSize)
	if dsb.Flags&flagCompOpt != 0 {
		start += 2 + uint64(le.Uint16(db[superSize:])&^mdUncompBit)
	}
	if !bytes.Equal(db[20:22], cb[20:22]) || uint64(len(cb)) < start || !bytes.Equal(db[superSize:start], cb[superSize:start]) {
		t.Errorf("compressor or its options differ")
	}
	if uint64(len(cb)) < csb.InodeTable || !bytes.Equal(db[start:dsb.InodeTable], cb[start:csb.InodeTable]) {
		t.Errorf("data differs from mksquashfs's: %d bytes against %d", csb.InodeTable-start, dsb.InodeTable-start)
	}
	if dsb.Inodes != csb.Inodes || dsb.Fragments != csb.Fragments || dsb.Flags != csb.Flags || dsb.IDs != csb.IDs ||
		dsb.MkfsTime != csb.MkfsTime || dsb.BlockSize != csb.BlockSize || dsb.BlockLog != csb.BlockLog ||
		(dsb.ExportTable == invalidTable) != (csb.ExportTable == invalidTable) || (dsb.XattrTable == invalidTable) != (csb.XattrTable == invalidTable) {
		t.Errorf("superblocks differ:\n%+v\n%+v", dsb, csb)
	}
	list := func(p string) string {
		return strings.ReplaceAll(unsquashfs(t, "-lln", "-d", "", p), p, "")
	}
	if a, b := list(direct), list(rebuilt); a != b {
		t.Errorf("listings differ:\n%s\n%s", a, b)
	}
	// Extracted on tmpfs, which takes more xattrs per file than ext4.
	dir, err := os.MkdirTemp("/dev/shm", "edge")
	if err != nil {
		dir = t.TempDir()
	} else {
		defer os.RemoveAll(dir)
	}
	xd, xc := filepath.Join(dir, "xd"), filepath.Join(dir, "xc")
	unsquashfs(t, "-d", xd, direct)
	unsquashfs(t, "-d", xc, rebuilt)
	if a, b := treeDigest(t, xd)+xattrDigest(t, xd), treeDigest(t, xc)+xattrDigest(t, xc); a != b {
		t.Errorf("extracted contents differ:\n%s\n%s", a, b)
	}
	var md string
	if mounted(t, direct, func(d string) { md = treeDigest(t, d) + xattrDigest(t, d) }) {
		mounted(t, rebuilt, func(d string) {
			if mc := treeDigest(t, d) + xattrDigest(t, d); mc != md {
				t.Errorf("the kernel reads the images differently:\n%s\n%s", md, mc)
			}
		})
	}
}

// edgeCase makes the direct image and the rebuilt one of root (cold, then
// warm from the same cache) and compares them; it returns the rebuilt
// image's path and the cold build's stats.
func edgeCase(t *testing.T, root string, comp []string, extra ...string) (string, Stats) {
	t.Helper()
	dir := t.TempDir()
	direct, cold, warm := filepath.Join(dir, "direct.sqfs"), filepath.Join(dir, "cold.sqfs"), filepath.Join(dir, "warm.sqfs")
	directImage(t, root, direct, comp, extra...)
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: strings.Join(comp, " ")}
	st, err := layoutAndRebuild(root, cold, comp, c, extra...)
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	compareImages(t, direct, cold)
	wst, err := layoutAndRebuild(root, warm, comp, c, extra...)
	if err != nil {
		t.Fatalf("warm rebuild: %v", err)
	}
	if wst.Compressed != 0 || wst.Reused != st.Compressed {
		t.Errorf("warm build: %+v after %+v", wst, st)
	}
	_, cb := readSuper(t, cold)
	if _, wb := readSuper(t, warm); !bytes.Equal(cb, wb) {
		t.Errorf("warm and cold builds differ")
	}
	return cold, st
}

var gz = []string{"-comp", "gzip"}

func TestEdgeTrees(t *testing.T) {
	needMksquashfs(t)
	bs := 128 << 10
	cases := []struct {
		name  string
		comp  []string
		extra []string
		fill  func(root string, must func(error))
		shm   bool // made on tmpfs: xattrs bigger than ext4's block
		// blocks is the number of stored blocks expected, -1 to skip
		blocks int
	}{
		{"empty root", gz, nil, func(string, func(error)) {}, false, 0},
		{"one empty file", gz, nil, func(r string, must func(error)) {
			must(os.WriteFile(filepath.Join(r, "empty"), nil, 0o644))
		}, false, 0},
		{"no fragments: whole blocks only", gz, nil, func(r string, must func(error)) {
			must(os.WriteFile(filepath.Join(r, "one-block"), textBytes(bs, 1), 0o644))
			must(os.WriteFile(filepath.Join(r, "three-blocks"), textBytes(3*bs, 2), 0o644))
		}, false, 4},
		{"-no-fragments", []string{"-comp", "zstd"}, []string{"-no-fragments"}, sizesTree(bs), false, -1},
		{"-always-use-fragments", []string{"-comp", "zstd"}, []string{"-always-use-fragments"}, sizesTree(bs), false, -1},
		{"-no-exports", gz, []string{"-no-exports"}, sizesTree(bs), false, -1},
		{"-no-xattrs", gz, []string{"-no-xattrs"}, xattrTree(true), true, -1},
		{"xattrs", []string{"-comp", "zstd"}, nil, xattrTree(false), true, -1},
		{"xattrs xz", []string{"-comp", "xz"}, nil, xattrTree(false), true, -1},
		{"big directory, deep, long names, hard links", []string{"-comp", "zstd"}, nil, shapeTree, false, -1},
		{"sparse and zero files", gz, nil, sparseTree(bs), false, -1},
		{"sparse and zero files -no-fragments", gz, []string{"-no-fragments"}, sparseTree(bs), false, -1},
		{"-b 4096", []string{"-comp", "zstd"}, []string{"-b", "4096"}, sizesTree(4096), false, -1},
		{"-b 1M", []string{"-comp", "gzip"}, []string{"-b", "1M"}, sizesTree(1 << 20), false, -1},
		{"xz -Xbcj x86 -Xdict-size 64K", []string{"-comp", "xz", "-Xbcj", "x86", "-Xdict-size", "64K"}, nil, sizesTree(bs), false, -1},
		{"gzip -Xcompression-level 1 -Xwindow-size 10", []string{"-comp", "gzip", "-Xcompression-level", "1", "-Xwindow-size", "10"}, nil, sizesTree(bs), false, -1},
		// Tables of several metadata blocks: over 2048 ids, over 512
		// fragments.
		{"many owners", gz, nil, func(r string, must func(error)) {
			for i := 0; i < 2100; i++ {
				p := filepath.Join(r, fmt.Sprint("f", i))
				must(os.WriteFile(p, []byte(fmt.Sprint(i)), 0o644))
				must(os.Lchown(p, 1000+i, 5000+i))
			}
		}, false, -1},
		{"many fragments", []string{"-comp", "zstd"}, []string{"-b", "4096"}, func(r string, must func(error)) {
			for i := 0; i < 700; i++ {
				must(os.WriteFile(filepath.Join(r, fmt.Sprint("f", i)), textBytes(3000, i), 0o644))
			}
		}, false, 700},
		{"incompressible", []string{"-comp", "zstd"}, nil, func(r string, must func(error)) {
			must(os.WriteFile(filepath.Join(r, "random"), randomBytes(3*bs+100), 0o644))
			must(os.WriteFile(filepath.Join(r, "random-small"), randomBytes(5000), 0o644))
		}, false, -1},
	}
	for _, tc := range cases {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			if tc.shm {
				var err error
				if base, err = os.MkdirTemp("/dev/shm", "edge"); err != nil {
					t.Skip(err)
				}
				t.Cleanup(func() { os.RemoveAll(base) })
			}
			root := edgeTreeIn(t, base, tc.fill)
			img, st := edgeCase(t, root, tc.comp, tc.extra...)
			if tc.shm && len(tc.extra) == 0 {
				want := xattrDigest(t, root)
				mounted(t, img, func(d string) {
					if got := xattrDigest(t, d); got != want {
						t.Errorf("the kernel reads other xattrs than the tree's:\n%s\n%s", want, got)
					}
				})
			}
			t.Logf("%+v", st)
			sb, b := readSuper(t, img)
			switch tc.name {
			case "many owners":
				if sb.IDs < 2049 {
					t.Errorf("%d ids: the table is one metadata block", sb.IDs)
				}
			case "xattrs":
				if n := le.Uint32(b[sb.XattrTable+8:]); n < 513 {
					t.Errorf("%d xattr ids: the table is one metadata block", n)
				}
			}
			if tc.blocks >= 0 && st.Blocks != tc.blocks {
				t.Errorf("%d blocks, want %d", st.Blocks, tc.blocks)
			}
		})
	}
}

// xattr values over 128 bytes: mksquashfs writes such a value on its own
// in the key/value table (size, bytes) and the keys that use it with the
// out-of-line flag and a reference to it, so the table is not a run of
// key/value pairs; up to values of several metadata blocks.
func TestEdgeLargeXattrValues(t *testing.T) {
	needMksquashfs(t)
	base, err := os.MkdirTemp("/dev/shm", "edge")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	for _, size := range []int{129, 3000, 20000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			root := edgeTreeIn(t, filepath.Join(base, fmt.Sprint(size)), func(r string, must func(error)) {
				for i := 0; i < 3; i++ {
					p := filepath.Join(r, fmt.Sprint("f", i))
					must(os.WriteFile(p, []byte("x"), 0o644))
					must(unix.Setxattr(p, "user.big", textBytes(size, 1), 0))
				}
			})
			img, _ := edgeCase(t, root, gz)
			want := xattrDigest(t, root)
			mounted(t, img, func(d string) {
				if got := xattrDigest(t, d); got != want {
					t.Errorf("the kernel reads other xattrs:\n%s\n%s", want, got)
				}
			})
		})
	}
	t.Run("tree", func(t *testing.T) {
		root := edgeTreeIn(t, filepath.Join(base, "tree"), xattrTree(true))
		img, _ := edgeCase(t, root, []string{"-comp", "zstd"})
		want := xattrDigest(t, root)
		mounted(t, img, func(d string) {
			if got := xattrDigest(t, d); got != want {
				t.Errorf("the kernel reads other xattrs:\n%s\n%s", want, got)
			}
		})
	})
}

// A small file of nothing but zeros: were its fragment block stored, the
// run that compresses the blocks would get it as a file of its own,
// whose only block is all zeros, and make it sparse. mksquashfs makes
// the zero tail itself sparse (no fragment), so the image is right.
func TestEdgeZeroFragment(t *testing.T) {
	needMksquashfs(t)
	root := edgeTree(t, func(r string, must func(error)) {
		must(os.WriteFile(filepath.Join(r, "zeros"), make([]byte, 1000), 0o644))
	})
	_, st := edgeCase(t, root, gz)
	t.Logf("%+v", st)
}

// textBytes is n bytes of compressible text, different for each seed.
func textBytes(n, seed int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "seed %d line %d of some compressible text\n", seed, i)
	}
	return b.Bytes()[:n]
}

// sizesTree has files around the block size: exactly one block, exactly
// three, one block and a byte, one byte short, small ones.
func sizesTree(bs int) func(string, func(error)) {
	return func(r string, must func(error)) {
		for i, n := range []int{1, 100, bs - 1, bs, bs + 1, 3 * bs, 3*bs + 1, 2*bs + bs/2} {
			must(os.WriteFile(filepath.Join(r, fmt.Sprintf("f%d-%d", i, n)), textBytes(n, i), 0o644))
		}
		must(os.Symlink("f1-100", filepath.Join(r, "link")))
		must(os.WriteFile(filepath.Join(r, "empty"), nil, 0o600))
	}
}

// xattrTree has xattrs of several namespaces, on files, a directory, a
// symbolic link and a fifo: a value used by many files, many names on
// one file, and, if large, values over 128 bytes, which mksquashfs
// stores out of line (the value alone, then the keys that refer to it),
// up to several metadata blocks long.
func xattrTree(large bool) func(string, func(error)) {
	return func(r string, must func(error)) { xattrFill(r, must, large) }
}

func xattrFill(r string, must func(error), large bool) {
	must(os.MkdirAll(filepath.Join(r, "d"), 0o755))
	shared := bytes.Repeat([]byte("shared value "), 9)
	if large {
		shared = bytes.Repeat([]byte("shared value "), 20)
	}
	for i := 0; i < 600; i++ {
		p := filepath.Join(r, "d", fmt.Sprintf("file-%03d", i))
		must(os.WriteFile(p, textBytes(i%40*37, i), 0o644))
		must(unix.Setxattr(p, "user.shared", shared, 0))
		must(unix.Setxattr(p, "user.own", []byte(fmt.Sprint("own value ", i)), 0))
		if i%3 == 0 {
			must(unix.Setxattr(p, "security.capability", capability(uint32(i)), 0))
		}
	}
	big := filepath.Join(r, "big-values")
	must(os.WriteFile(big, []byte("x"), 0o644))
	for i := 0; i < 4; i++ {
		n := 100 + i*9
		if large {
			n = 3000 + i*4000
		}
		must(unix.Setxattr(big, fmt.Sprintf("user.big%d", i), textBytes(n, 100+i), 0))
	}
	many := filepath.Join(r, "many-names")
	must(os.WriteFile(many, []byte("y"), 0o644))
	for i := 0; i < 100; i++ {
		must(unix.Setxattr(many, fmt.Sprintf("user.name-%03d-%s", i, strings.Repeat("n", 40)), []byte(fmt.Sprint(i)), 0))
	}
	must(unix.Setxattr(filepath.Join(r, "d"), "user.dir", []byte("a directory's"), 0))
	must(unix.Setxattr(r, "user.root", []byte("the root's"), 0))
	must(os.Symlink("d/file-001", filepath.Join(r, "link")))
	// security.* (and trusted.*) are the namespaces a symbolic link can take.
	if err := unix.Lsetxattr(filepath.Join(r, "link"), "trusted.link", []byte("a link's"), 0); err != nil && os.Geteuid() == 0 {
		must(err)
	}
	must(unix.Mkfifo(filepath.Join(r, "fifo"), 0o600))
	must(unix.Setxattr(filepath.Join(r, "fifo"), "trusted.fifo", []byte("a fifo's"), 0))
}

// capability is a valid security.capability value (version 2).
func capability(perm uint32) []byte {
	b := make([]byte, 20)
	le.PutUint32(b, 0x02000000)
	le.PutUint32(b[4:], perm|1)
	return b
}

// shapeTree: a directory of 5000 entries (an extended directory inode
// with many index entries, a listing over several metadata blocks),
// nesting 100 deep, 255-byte names, 500 hard links to one file.
func shapeTree(r string, must func(error)) {
	big := filepath.Join(r, "big")
	must(os.MkdirAll(big, 0o755))
	for i := 0; i < 5000; i++ {
		p := filepath.Join(big, fmt.Sprintf("entry-%05d", i))
		switch i % 4 {
		case 0:
			must(os.WriteFile(p, []byte(fmt.Sprint(i)), 0o644))
		case 1:
			must(os.Symlink(fmt.Sprintf("target-%d", i), p))
		case 2:
			must(os.Mkdir(p, 0o755))
		case 3:
			must(os.WriteFile(p, nil, 0o600))
		}
	}
	deep := r
	for i := 0; i < 100; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("d%02d", i))
	}
	must(os.MkdirAll(deep, 0o755))
	must(os.WriteFile(filepath.Join(deep, "bottom"), []byte("deep"), 0o644))
	long := filepath.Join(r, "long")
	must(os.MkdirAll(long, 0o755))
	for c := 'a'; c < 'a'+20; c++ {
		name := strings.Repeat(string(c), 255)
		must(os.WriteFile(filepath.Join(long, name), []byte(name), 0o644))
	}
	must(os.Mkdir(filepath.Join(long, strings.Repeat("D", 255)), 0o755))
	must(os.Symlink(strings.Repeat("t", 4000), filepath.Join(long, "long-target")))
	links := filepath.Join(r, "links")
	must(os.MkdirAll(links, 0o755))
	must(os.WriteFile(filepath.Join(links, "target"), textBytes(200_000, 7), 0o644))
	for i := 0; i < 500; i++ {
		must(os.Link(filepath.Join(links, "target"), filepath.Join(links, fmt.Sprintf("link-%03d", i))))
	}
}

// sparseTree: files whose first blocks are holes, all-zero files of one
// and several blocks, a zero file with a text tail, zero tails.
func sparseTree(bs int) func(string, func(error)) {
	return func(r string, must func(error)) {
		write := func(name string, size int64, parts map[int64][]byte) {
			f, err := os.Create(filepath.Join(r, name))
			must(err)
			must(f.Truncate(size))
			for at, b := range parts {
				_, err := f.WriteAt(b, at)
				must(err)
			}
			must(f.Close())
		}
		b := int64(bs)
		write("holes-first", 5*b+300, map[int64][]byte{4 * b: textBytes(bs+300, 1)})
		write("hole-middle", 5*b, map[int64][]byte{0: textBytes(bs, 2), 4 * b: textBytes(bs, 3)})
		write("zeros-one-block", b, nil)
		write("zeros-three-blocks", 3*b, nil)
		write("zeros-and-tail", 2*b+10, map[int64][]byte{2 * b: []byte("0123456789")})
		write("text-and-zero-tail", 2*b+500, map[int64][]byte{0: textBytes(2*bs, 4)})
		write("small", 300, map[int64][]byte{0: []byte("not zeros")})
	}
}

// A cache entry cut short is refused and made again. One that holds
// another block's valid entry (a copy, a rename gone wrong) must not end
// up in the image: an entry's checksum covers its stored bytes, not the
// key it is stored under, so nothing tells it from the right one.
func TestEdgeCacheSubstitution(t *testing.T) {
	needMksquashfs(t)
	bs := 128 << 10
	root := edgeTree(t, func(r string, must func(error)) {
		sizesTree(bs)(r, must)
		must(os.WriteFile(filepath.Join(r, "random"), randomBytes(2*bs), 0o644))
	})
	dir := t.TempDir()
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "gzip"}
	cold := filepath.Join(dir, "cold.sqfs")
	if _, err := layoutAndRebuild(root, cold, gz, c); err != nil {
		t.Fatal(err)
	}
	_, cb := readSuper(t, cold)
	entries, err := c.entries()
	if err != nil || len(entries) < 2 {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })

	t.Run("cut short", func(t *testing.T) {
		b, _ := os.ReadFile(entries[0].path)
		os.WriteFile(entries[0].path, b[:len(b)/2], 0o644)
		again := filepath.Join(dir, "cut.sqfs")
		st, err := layoutAndRebuild(root, again, gz, c)
		if err != nil {
			t.Fatal(err)
		}
		if st.Damaged != 1 || st.Compressed != 1 {
			t.Errorf("with an entry cut short: %+v", st)
		}
		if _, ab := readSuper(t, again); !bytes.Equal(ab, cb) {
			t.Errorf("the build after an entry cut short differs from the cold build")
		}
	})

	// Another block's valid entry copied over an entry: the compressed
	// entries, then the uncompressed ones (an incompressible file's
	// blocks, all a block long).
	for _, uncompressed := range []bool{false, true} {
		t.Run(fmt.Sprint("another block's entry, uncompressed ", uncompressed), func(t *testing.T) {
			var from, to string
			for _, e := range entries {
				b, _ := os.ReadFile(e.path)
				if s, err := parseEntry(b, filepath.Base(e.path)); err == nil && s.Uncompressed == uncompressed {
					if from == "" {
						from = e.path
					} else if to == "" {
						to = e.path
					}
				}
			}
			if to == "" {
				t.Fatal("fewer than two such entries")
			}
			b, _ := os.ReadFile(from)
			keep, _ := os.ReadFile(to)
			os.WriteFile(to, b, 0o644)
			defer os.WriteFile(to, keep, 0o644)
			again := filepath.Join(dir, fmt.Sprint("swapped-", uncompressed, ".sqfs"))
			st, err := layoutAndRebuild(root, again, gz, c)
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			if _, ab := readSuper(t, again); !bytes.Equal(ab, cb) {
				x := filepath.Join(t.TempDir(), "x")
				err := exec.Command("unsquashfs", "-d", x, again).Run()
				t.Errorf("another block's entry went into the image: %+v; unsquashfs: %v", st, err)
				if err == nil && treeDigest(t, x) != treeDigest(t, root) {
					t.Errorf("and the image reads back with other contents")
				}
			}
		})
	}
}

// One cache serves builds of several block sizes and compressor options
// (xz's dictionary follows the block size): each image is the one a
// direct run makes, and the kernel reads it, whatever the builds before
// it left in the cache.
func TestEdgeOneCacheManyOptions(t *testing.T) {
	needMksquashfs(t)
	root := edgeTree(t, func(r string, must func(error)) {
		must(os.WriteFile(filepath.Join(r, "small"), textBytes(1000, 1), 0o644))
		must(os.WriteFile(filepath.Join(r, "big"), textBytes(200_000, 2), 0o644))
		must(os.WriteFile(filepath.Join(r, "page"), textBytes(4096, 3), 0o644))
	})
	dir := t.TempDir()
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "test"}
	for i, o := range [][]string{
		{"-comp", "xz"},
		{"-comp", "xz", "-b", "4096"},
		{"-comp", "xz", "-Xbcj", "x86"},
		{"-comp", "xz", "-Xdict-size", "8K"},
		{"-comp", "gzip", "-Xcompression-level", "1"},
		{"-comp", "gzip"},
	} {
		comp, extra := o, []string(nil)
		if len(o) == 4 && o[2] == "-b" {
			comp, extra = o[:2], o[2:]
		}
		direct, out := filepath.Join(dir, fmt.Sprint("direct", i)), filepath.Join(dir, fmt.Sprint("out", i))
		directImage(t, root, direct, comp, extra...)
		if _, err := layoutAndRebuild(root, out, comp, c, extra...); err != nil {
			t.Fatalf("%q: %v", o, err)
		}
		compareImages(t, direct, out)
	}
}

// Two rebuilds at once through one cache directory, of trees sharing
// most of their blocks, both give the images a direct run gives.
func TestEdgeConcurrentRebuilds(t *testing.T) {
	needMksquashfs(t)
	bs := 128 << 10
	a := edgeTree(t, sizesTree(bs))
	b := edgeTree(t, func(r string, must func(error)) {
		sizesTree(bs)(r, must)
		must(os.WriteFile(filepath.Join(r, "extra"), textBytes(2*bs+5, 99), 0o644))
	})
	dir := t.TempDir()
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "zstd"}
	comp := []string{"-comp", "zstd"}
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		outs := []string{filepath.Join(dir, fmt.Sprintf("a%d.sqfs", round)), filepath.Join(dir, fmt.Sprintf("b%d.sqfs", round)), filepath.Join(dir, fmt.Sprintf("a%d-again.sqfs", round))}
		roots := []string{a, b, a}
		errs := make([]error, len(outs))
		stats := make([]Stats, len(outs))
		for i := range outs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				stats[i], errs[i] = layoutAndRebuild(roots[i], outs[i], comp, c)
			}(i)
		}
		wg.Wait()
		for i := range outs {
			if errs[i] != nil {
				t.Fatalf("round %d, rebuild %d: %v", round, i, errs[i])
			}
			t.Logf("round %d, rebuild %d: %+v", round, i, stats[i])
		}
		// The first round against direct runs; the same tree's images,
		// and the second round's, byte for byte.
		if round == 0 {
			for i := 0; i < 2; i++ {
				direct := filepath.Join(dir, fmt.Sprintf("direct-%d.sqfs", i))
				directImage(t, roots[i], direct, comp)
				compareImages(t, direct, outs[i])
			}
		}
		for i, o := range outs {
			_, got := readSuper(t, o)
			_, want := readSuper(t, filepath.Join(dir, []string{"a0.sqfs", "b0.sqfs", "a0.sqfs"}[i]))
			if !bytes.Equal(got, want) {
				t.Errorf("round %d, rebuild %d: the image differs from the first of its tree", round, i)
			}
		}
	}
}

// Rebuild refuses what is not an uncompressed layout, and a compressor
// whose metadata it cannot compress, with an error that says so, and
// writes nothing.
func TestEdgeRefused(t *testing.T) {
	needMksquashfs(t)
	root := edgeTree(t, sizesTree(4096))
	dir := t.TempDir()
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "test"}
	compressed := filepath.Join(dir, "compressed.sqfs")
	directImage(t, root, compressed, gz)
	halfLayout := filepath.Join(dir, "half.sqfs")
	directImage(t, root, halfLayout, []string{"-noD", "-noF", "-noX"})
	for _, tc := range []struct {
		layout string
		comp   []string
		want   string
	}{
		{compressed, gz, "not an uncompressed layout"},
		{halfLayout, gz, "not an uncompressed layout"},
		{filepath.Join(dir, "missing.sqfs"), gz, "no such file"},
		{root + "/f1-100", gz, "not a squashfs image"},
		{root + "/f0-1", gz, "not a squashfs image"},
		{halfLayout, []string{"-comp", "lz4"}, "lz4"},
		{halfLayout, []string{"-Xbcj", "x86"}, "compressor arguments"},
	} {
		t.Run(fmt.Sprint(filepath.Base(tc.layout), tc.comp), func(t *testing.T) {
			out := filepath.Join(dir, "out.sqfs")
			_, err := Rebuild(context.Background(), runMksquashfs, tc.layout, out, dir, tc.comp, c, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want an error saying %q", err, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("an image was written")
				os.Remove(out)
			}
		})
	}
}

// A build cancelled while its blocks are being compressed stops with the
// context's error and leaves no compressor image and no temporary cache
// file behind.
func TestEdgeCancelled(t *testing.T) {
	needMksquashfs(t)
	root := edgeTree(t, sizesTree(128<<10))
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.MkdirAll(tmp, 0o755)
	layout := filepath.Join(dir, "layout.sqfs")
	args := append(append([]string{root, layout, "-noappend", "-quiet", "-no-progress"}, timeArgs...), "-noD", "-noF", "-noI", "-noX")
	if err := runMksquashfs(context.Background(), args, nil); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "test"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := func(rctx context.Context, args []string, stdin io.Reader) error {
		cancel()
		return runMksquashfs(rctx, args, stdin)
	}
	out := filepath.Join(dir, "out.sqfs")
	_, err := Rebuild(ctx, run, layout, out, tmp, gz, c, nil)
	if err == nil {
		t.Fatal("a cancelled build succeeded")
	}
	t.Logf("cancelled: %v", err)
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in the work directory: %v", left)
	}
	filepath.WalkDir(c.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("a temporary cache file is left: %s", p)
		}
		return nil
	})
}

// A damaged layout (cut short, or bytes of its tables changed) gives an
// error or an image, never a panic.
func TestEdgeDamagedLayout(t *testing.T) {
	needMksquashfs(t)
	base, err := os.MkdirTemp("/dev/shm", "edge")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	root := edgeTreeIn(t, base, func(r string, must func(error)) {
		sizesTree(4096)(r, must)
		must(os.Mkdir(filepath.Join(r, "x"), 0o755))
		xattrFill(filepath.Join(r, "x"), must, true)
		shapeSmall := filepath.Join(r, "dir")
		must(os.MkdirAll(shapeSmall, 0o755))
		for i := 0; i < 400; i++ {
			must(os.WriteFile(filepath.Join(shapeSmall, fmt.Sprintf("a-longer-name-%04d", i)), []byte(fmt.Sprint(i)), 0o644))
		}
	})
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout.sqfs")
	args := append(append([]string{root, layout, "-noappend", "-quiet", "-no-progress", "-b", "4096"}, timeArgs...), "-noD", "-noF", "-noI", "-noX")
	if err := runMksquashfs(context.Background(), args, nil); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(layout)
	sb, err := parseSuperblock(good)
	if err != nil {
		t.Fatal(err)
	}
	mc, _ := metaCompressor("gzip")
	try := func(what string, b []byte) {
		t.Helper()
		p := filepath.Join(dir, "damaged.sqfs")
		os.WriteFile(p, b, 0o644)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s: panic: %v", what, r)
			}
		}()
		l, err := ReadLayout(p)
		if err != nil {
			return
		}
		defer l.Close()
		f, err := os.Create(filepath.Join(dir, "out.sqfs"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		l.Write(f, Header{Compressor: compGzip}, func(i int) (Stored, error) {
			b, err := l.ReadBlock(i, nil)
			return Stored{Data: b, Uncompressed: true}, err
		}, mc)
	}
	for n := 0; n < len(good); n += 1 + len(good)/60 {
		try(fmt.Sprint("cut at ", n), good[:n])
	}
	// Bytes changed in the tables (after the data).
	seed := uint64(1)
	rnd := func(n uint64) uint64 {
		seed = seed*6364136223846793005 + 1442695040888963407
		return (seed >> 33) % n
	}
	for i := 0; i < 100; i++ {
		b := append([]byte(nil), good...)
		for k := 0; k < 1+int(rnd(3)); k++ {
			at := sb.InodeTable + rnd(uint64(len(good))-sb.InodeTable)
			b[at] = byte(rnd(256))
		}
		try(fmt.Sprint("changed ", i), b)
	}
}

// Runs of one block each, with the cache partly filled (the last runs
// find nothing to compress) and an entry damaged: the image is the
// direct run's all the same.
func TestEdgeOneBlockRuns(t *testing.T) {
	needMksquashfs(t)
	defer func(n uint64) { chunkBytes = n }(chunkBytes)
	chunkBytes = 1
	root := edgeTree(t, func(r string, must func(error)) {
		sizesTree(4096)(r, must)
		must(os.WriteFile(filepath.Join(r, "copy"), textBytes(3*4096+1, 6), 0o644))
	})
	dir := t.TempDir()
	direct, cold, again := filepath.Join(dir, "direct.sqfs"), filepath.Join(dir, "cold.sqfs"), filepath.Join(dir, "again.sqfs")
	comp, extra := []string{"-comp", "zstd"}, []string{"-b", "4096"}
	directImage(t, root, direct, comp, extra...)
	c := &Cache{Dir: filepath.Join(dir, "cache"), Ident: "test"}
	st, err := layoutAndRebuild(root, cold, comp, c, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold: %+v", st)
	compareImages(t, direct, cold)
	entries, _ := c.entries()
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })
	if len(entries) < 3 {
		t.Fatalf("%d entries", len(entries))
	}
	os.Remove(entries[0].path)
	os.WriteFile(entries[1].path, []byte("damaged"), 0o644)
	st, err = layoutAndRebuild(root, again, comp, c, extra...)
	if err != nil {
		t.Fatal(err)
	}
	if st.Compressed != 2 || st.Damaged != 1 {
		t.Errorf("again: %+v", st)
	}
	_, cb := readSuper(t, cold)
	if _, ab := readSuper(t, again); !bytes.Equal(ab, cb) {
		t.Errorf("the image made again differs")
	}
}
