package disk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copySparseFile copies the data of file src into file dst at offset off,
// skipping src's holes and every all-zero 4 KiB block, so that a sparse
// dst stays sparse.
func copySparseFile(ctx context.Context, dst string, off int64, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	return copySparse(ctx, out, off, in, fi.Size())
}

const zeroBlock = 4096

var zeros = make([]byte, zeroBlock)

func copySparse(ctx context.Context, out *os.File, off int64, in *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for pos := int64(0); pos < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(int(in.Fd()), pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		} else if err != nil {
			data = pos // no SEEK_DATA here: read everything
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		for p := data; p < hole; {
			n := int(min(int64(len(buf)), hole-p))
			if _, err := in.ReadAt(buf[:n], p); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			for i := 0; i < n; i += zeroBlock {
				j := min(i+zeroBlock, n)
				if bytes.Equal(buf[i:j], zeros[:j-i]) {
					continue
				}
				if _, err := out.WriteAt(buf[i:j], off+p+int64(i)); err != nil {
					return err
				}
			}
			p += int64(n)
		}
		pos = hole
	}
	return nil
}
