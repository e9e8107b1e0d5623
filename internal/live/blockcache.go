package live

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/squashfs"
)

// BlockReport is what the block cache did for one squashfs.
type BlockReport struct {
	Image string
	Used  bool   // the image was made through the cache
	Why   string // why not, when not
	squashfs.Stats
}

// makeWithBlockCache makes the squashfs through the block cache in
// o.BlockCache: mksquashfs lays the tree out uncompressed beside out
// (all it does for an image but compressing), and squashfs.Rebuild makes
// the image from it, compressing only the blocks no earlier build
// compressed with the same mksquashfs, libraries and options. It returns
// why the cache cannot serve this image (and nothing was made), or an
// error.
func makeWithBlockCache(ctx context.Context, log *buildlog.Log, rootfs, out string, o SquashfsOptions, excludes []string, tree treeSize) (why string, err error) {
	comp := compressionOrDefault(o.Compression)
	if !squashfs.Supported(comp) {
		return fmt.Sprintf("the %s compressor is not one it serves (xz, zstd, gzip)", comp), nil
	}
	// The layout is as big as the tree; the image and the blocks being
	// compressed need at most as much again each.
	need := 3 * tree.need()
	if free, err := freeSpace(filepath.Dir(out)); err != nil || free < need {
		return fmt.Sprintf("%s free in %s, %s needed for the uncompressed layout besides the image", bytesize.Format(free), filepath.Dir(out), bytesize.Format(need)), nil
	}
	ident, err := compressorIdent()
	if err != nil {
		return fmt.Sprintf("cannot tell which mksquashfs and libraries compress: %v", err), nil
	}
	c := &squashfs.Cache{Dir: o.BlockCache, Ident: ident}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Sprintf("%v", err), nil
	}
	c.Sweep()

	layout := out + ".layout"
	defer os.Remove(layout)
	args := squashfsArgs(rootfs, layout, o, excludes)
	for i := range args {
		if args[i] == "-comp" {
			args = append(append(args[:i:i], "-noD", "-noF", "-noI", "-noX"), args[i+2:]...)
			break
		}
	}
	log.Printf("laying the squashfs out uncompressed, to compress only what the block cache lacks")
	if err := log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("mksquashfs"), Args: args, Stdout: &squashfsProgress{log: log, lines: log.Writer(false), what: "squashfs blocks laid out"}}); err != nil {
		return "", fmt.Errorf("mksquashfs (layout): %w", err)
	}
	run := func(ctx context.Context, args []string, stdin io.Reader) error {
		// -mem does not change what is written (so it is not part of
		// the blocks' keys), only how much memory the run may hold.
		return log.Run(ctx, buildlog.Cmd{Name: buildlog.Tool("mksquashfs"), Args: append(args, "-mem", squashfsMemory()), Stdin: stdin})
	}
	st, err := squashfs.Rebuild(ctx, run, layout, out, filepath.Dir(out), []string{"-comp", comp}, c, func(done, total int) {
		log.Progress("squashfs blocks hashed, compressed or reused", done, total)
	})
	if o.Blocks != nil {
		o.Blocks.Stats = st
	}
	if err != nil {
		os.Remove(out)
		return "", err
	}
	log.Printf("squashfs blocks: %d, %d reused from the block cache, %d compressed (%s uncompressed in all)%s",
		st.Blocks, st.Reused, st.Compressed, bytesize.Format(st.RawBytes), damaged(st.Damaged))
	return "", nil
}

func damaged(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d damaged cache entries refused and made again", n)
}

// compressorIdent names the mksquashfs program and the shared libraries
// it runs with, by their contents (a new liblzma may compress
// differently), so that a block one compressed never serves another; the
// compressor, its options and the block size are added by
// squashfs.Rebuild.
func compressorIdent() (string, error) {
	bin, err := buildlog.LookPath("mksquashfs")
	if err != nil {
		return "", err
	}
	files := []string{bin}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return "", fmt.Errorf("ldd %s: %w", bin, err)
	}
	lib := regexp.MustCompile(`=>\s*(/\S+)`)
	sc := bufio.NewScanner(bytes.NewReader(out))
	var libs []string
	for sc.Scan() {
		if m := lib.FindStringSubmatch(sc.Text()); m != nil {
			libs = append(libs, m[1])
		}
	}
	sort.Strings(libs)
	h := sha256.New()
	fmt.Fprintf(h, "squashfs block cache 1\x00")
	for _, f := range append(files, libs...) {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		s := sha256.Sum256(data)
		fmt.Fprintf(h, "%s %x\x00", filepath.Base(f), s)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
