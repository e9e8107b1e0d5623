package squashfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// chunkBytes is how much a run of the compressor takes at most.
var chunkBytes uint64 = 512 << 20

// Stats says what a Rebuild did with the image's blocks.
type Stats struct {
	Blocks     int    // stored data and fragment blocks in the image
	Reused     int    // found in the cache
	Compressed int    // compressed by this build (distinct contents)
	Damaged    int    // cache entries refused as damaged (and compressed again)
	RawBytes   uint64 // the blocks' uncompressed bytes
}

// Rebuild writes to out the compressed image of the uncompressed layout
// at layout (made by mksquashfs with -noD -noF -noI -noX and otherwise
// the image's own options), compressed with comp (mksquashfs's -comp and
// -X arguments, whose metadata compressor must be Supported): each block
// is taken from c when it holds it (under a key of its bytes, c.Ident, comp
// and the block size), the others are compressed by one
// mksquashfs run (run) and added to c. tmp is a directory for that run's
// image. progress, if set, hears how many of the blocks were hashed and
// found in the cache or sent to the compressor. The same layout gives the same bytes whatever the cache
// held.
func Rebuild(ctx context.Context, run RunFunc, layout, out, tmp string, comp []string, c *Cache, progress func(done, total int)) (Stats, error) {
	var st Stats
	if len(comp) < 2 || comp[0] != "-comp" || !Supported(comp[1]) {
		return st, fmt.Errorf("squashfs: compressor arguments %q: not one whose metadata can be compressed here", comp)
	}
	mc, err := metaCompressor(comp[1])
	if err != nil {
		return st, err
	}
	l, err := ReadLayout(layout)
	if err != nil {
		return st, err
	}
	defer l.Close()
	st.Blocks = len(l.Blocks)
	// The key covers what else decides a block's compressed bytes: the
	// compressor's arguments and the block size (xz's dictionary).
	c = &Cache{Dir: c.Dir, Ident: fmt.Sprintf("%s\x00%q\x00-b %d", c.Ident, comp, l.sb.BlockSize)}

	// One pass over the layout: each block is hashed as it is read, and
	// what the cache lacks (each content once) goes to the compressor, in
	// runs of at most chunkBytes, each one's blocks stored in the cache
	// when it ends: a build stopped half way keeps what it compressed.
	keys := make([]string, len(l.Blocks))
	var missing []int
	seen := map[string]bool{}
	i := 0
	var buf []byte
	var chunk uint64
	next := func() ([]byte, error) {
		for i < len(l.Blocks) && chunk < chunkBytes {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b, err := l.ReadBlock(i, buf)
			if err != nil {
				return nil, err
			}
			buf = b
			k := c.Key(b)
			keys[i] = k
			st.RawBytes += uint64(len(b))
			at := i
			i++
			if progress != nil && (i%256 == 0 || i == len(l.Blocks)) {
				progress(i, len(l.Blocks))
			}
			if seen[k] {
				continue
			}
			seen[k] = true
			_, err = c.Get(k)
			switch {
			case err == nil:
				st.Reused++
				continue
			case errors.Is(err, ErrCorrupt):
				st.Damaged++
			case !errors.Is(err, fs.ErrNotExist):
				return nil, err
			}
			missing = append(missing, at)
			chunk += uint64(len(b))
			return b, nil
		}
		return nil, nil
	}
	var h Header
	for first := true; first || i < len(l.Blocks); first = false {
		chunk = 0
		from := len(missing)
		h, err = compressBlocks(ctx, run, tmp, comp, l.sb.BlockSize, next, func(k int, s Stored) error {
			return c.Put(keys[missing[from+k]], s)
		})
		st.Compressed = len(missing)
		if err != nil {
			return st, err
		}
	}

	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return st, err
	}
	err = l.Write(f, h, func(i int) (Stored, error) {
		if err := ctx.Err(); err != nil {
			return Stored{}, err
		}
		s, err := c.Get(keys[i])
		if err != nil {
			return s, fmt.Errorf("block %d: %w", i, err)
		}
		return s, nil
	}, mc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return st, err
}
