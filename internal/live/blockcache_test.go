package live

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Through the block cache: the first image compresses its blocks, the
// second (one file changed) reuses all but that file's, and a third of the
// first tree gives the first image's bytes; excludes still apply; lz4,
// which the cache does not serve, is made by mksquashfs alone and the
// report says why.
func TestMakeSquashfsBlockCache(t *testing.T) {
	needTools(t, "mksquashfs", "unsquashfs", "ldd")
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	writeFile(t, filepath.Join(root, "usr", "lib", "blob"), randomBytes(1536<<10))
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("debian\n"))
	writeFile(t, filepath.Join(root, "var", "cache", "apt", "pkgcache.bin"), []byte("cache"))
	cache := filepath.Join(dir, "blocks")
	mk := func(name, comp string) (BlockReport, []byte) {
		t.Helper()
		var rep BlockReport
		out := filepath.Join(dir, name)
		o := SquashfsOptions{Compression: comp, SourceDateEpoch: 1700000000, BlockCache: cache, Blocks: &rep, Exclude: []string{"var/cache/apt"}}
		if err := MakeSquashfs(context.Background(), testLog(t), root, out, o); err != nil {
			t.Fatal(err)
		}
		if list := output(t, "unsquashfs", "-l", out); strings.Contains(list, "apt") || !strings.Contains(list, "usr/lib/blob") {
			t.Errorf("%s's files:\n%s", name, list)
		}
		b, _ := os.ReadFile(out)
		if _, err := os.Stat(out + ".layout"); err == nil {
			t.Errorf("the layout of %s was left", name)
		}
		return rep, b
	}
	first, a := mk("a.squashfs", "zstd")
	if !first.Used || first.Compressed != first.Blocks || first.Reused != 0 || first.Blocks < 12 {
		t.Errorf("first image: %+v", first)
	}
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("changed\n"))
	second, _ := mk("b.squashfs", "zstd")
	if !second.Used || second.Compressed != 1 || second.Reused != first.Blocks-1 {
		t.Errorf("one small file changed: %+v (first: %+v)", second, first)
	}
	writeFile(t, filepath.Join(root, "etc", "hostname"), []byte("debian\n"))
	third, c := mk("c.squashfs", "zstd")
	if third.Compressed != 0 || !bytes.Equal(a, c) {
		t.Errorf("the first tree again: %+v, same bytes %v", third, bytes.Equal(a, c))
	}
	// Another compressor never takes zstd's blocks.
	gz, _ := mk("d.squashfs", "gzip")
	if gz.Reused != 0 || gz.Compressed != gz.Blocks {
		t.Errorf("gzip after zstd: %+v", gz)
	}
	lz4, _ := mk("e.squashfs", "lz4")
	if lz4.Used || !strings.Contains(lz4.Why, "lz4") {
		t.Errorf("lz4: %+v", lz4)
	}
}
