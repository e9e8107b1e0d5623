package squashfs

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// RunFunc runs mksquashfs with args, feeding it stdin.
type RunFunc func(ctx context.Context, args []string, stdin io.Reader) error

// compressBlocks has mksquashfs compress each block next() returns (nil
// at the end) on its own, with the compressor arguments comp (-comp and
// its -X options) and the image's block size: they go in as the files of
// a tar on its standard input, one block each, with no fragments, no
// duplicate detection and uncompressed inodes, so each comes out as one
// data block that the image's inode table locates. A block's compressed
// bytes depend only on its contents and those options, so they are the
// ones a direct mksquashfs run would have written. got receives each
// block's result in order; next is called from another goroutine, and
// never again once compressBlocks returns. It returns the compressor's header (its id
// and options block) for the final image, also when there is no block.
func compressBlocks(ctx context.Context, run RunFunc, tmp string, comp []string, blockSize uint32,
	next func() ([]byte, error), got func(i int, s Stored) error) (Header, error) {
	out := filepath.Join(tmp, "blocks.sqfs")
	defer os.Remove(out)
	pr, pw := io.Pipe()
	count := 0
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		tw := tar.NewWriter(pw)
		var err error
		for {
			var b []byte
			if b, err = next(); err != nil || b == nil {
				break
			}
			hdr := &tar.Header{Name: fmt.Sprintf("b%09d", count), Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
			if err = tw.WriteHeader(hdr); err != nil {
				break
			}
			if _, err = tw.Write(b); err != nil {
				break
			}
			count++
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	args := append([]string{"-", out, "-tar", "-noappend", "-quiet", "-no-progress"}, comp...)
	args = append(args, "-b", fmt.Sprint(blockSize), "-noI", "-no-fragments", "-no-duplicates", "-no-xattrs", "-no-exports",
		"-reproducible", "-mkfs-time", "0", "-all-time", "0", "-all-root")
	err := run(ctx, args, pr)
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops if mksquashfs did not read it all
	<-fed                               // and next is not called again
	if err != nil {
		return Header{}, fmt.Errorf("mksquashfs compressing %d blocks: %w", count, err)
	}
	return readBlocks(out, count, got)
}

// readBlocks reads what compressBlocks's mksquashfs run wrote: the files
// b000000000... of its root directory, one data block each.
func readBlocks(path string, count int, got func(i int, s Stored) error) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	sbb := make([]byte, superSize)
	if _, err := f.ReadAt(sbb, 0); err != nil {
		return Header{}, err
	}
	sb, err := parseSuperblock(sbb)
	if err != nil {
		return Header{}, err
	}
	h := Header{Compressor: sb.Compressor}
	if sb.Flags&flagCompOpt != 0 {
		b := make([]byte, 2)
		if _, err := f.ReadAt(b, superSize); err != nil {
			return h, err
		}
		n := int(le.Uint16(b) &^ mdUncompBit)
		h.Options = make([]byte, 2+n)
		if _, err := f.ReadAt(h.Options, superSize); err != nil {
			return h, err
		}
	}
	r := &reader{f: f}
	idIdx, err := r.u64s(sb.IDTable, 1)
	if err != nil {
		return h, err
	}
	inodes, err := r.metadata(sb.InodeTable, sb.DirTable)
	if err != nil {
		return h, fmt.Errorf("inode table: %w", err)
	}
	dirs, err := r.metadata(sb.DirTable, idIdx[0])
	if err != nil {
		return h, fmt.Errorf("directory table: %w", err)
	}
	at := func(x ref) int { return int(x.block()/layoutBlockStep*metadataSize + x.offset()) }
	// The root directory: a basic inode, or an extended one (a listing
	// over 8 KiB has an index).
	root := at(ref(sb.RootInode))
	var listing, end int
	switch {
	case root+32 <= len(inodes) && le.Uint16(inodes[root:]) == typeDir:
		b := inodes[root+16:]
		listing = at(mkref(uint64(le.Uint32(b)), uint64(le.Uint16(b[10:]))))
		end = listing + int(le.Uint16(b[8:])) - 3
	case root+40 <= len(inodes) && le.Uint16(inodes[root:]) == typeExtDir:
		b := inodes[root+16:]
		listing = at(mkref(uint64(le.Uint32(b[8:])), uint64(le.Uint16(b[18:]))))
		end = listing + int(le.Uint32(b[4:])) - 3
	default:
		return h, fmt.Errorf("the root inode is not a directory")
	}
	if count == 0 {
		return h, nil
	}
	if end > len(dirs) {
		return h, fmt.Errorf("the root directory runs past its table")
	}
	i := 0
	buf := make([]byte, 0, sb.BlockSize)
	for p := listing; p < end; {
		n, iblock := int(le.Uint32(dirs[p:]))+1, uint64(le.Uint32(dirs[p+4:]))
		p += 12
		for k := 0; k < n; k++ {
			off, size := uint64(le.Uint16(dirs[p:])), int(le.Uint16(dirs[p+6:]))+1
			name := string(dirs[p+8 : p+8+size])
			p += 8 + size
			if name != fmt.Sprintf("b%09d", i) {
				return h, fmt.Errorf("file %q where b%09d was expected", name, i)
			}
			ino := at(mkref(iblock, off))
			var start uint64
			var frag, word uint32
			switch {
			case ino+36 <= len(inodes) && le.Uint16(inodes[ino:]) == typeFile:
				b := inodes[ino+16:]
				start, frag, word = uint64(le.Uint32(b)), le.Uint32(b[4:]), le.Uint32(b[16:])
			case ino+60 <= len(inodes) && le.Uint16(inodes[ino:]) == typeExtFile:
				b := inodes[ino+16:]
				start, frag, word = le.Uint64(b), le.Uint32(b[28:]), le.Uint32(b[40:])
			default:
				return h, fmt.Errorf("%s is not a plain file", name)
			}
			if frag != noFragment || word&dataSizeMask == 0 {
				return h, fmt.Errorf("%s is not one stored block", name)
			}
			buf = buf[:word&dataSizeMask]
			if _, err := f.ReadAt(buf, int64(start)); err != nil {
				return h, err
			}
			if err := got(i, Stored{Data: buf, Uncompressed: word&dataUncompBit != 0}); err != nil {
				return h, err
			}
			i++
		}
	}
	if i != count {
		return h, fmt.Errorf("%d blocks came out of %d", i, count)
	}
	return h, nil
}
