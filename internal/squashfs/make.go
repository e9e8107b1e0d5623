package squashfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync"
)

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
// is taken from c when it holds it, the others are compressed by one
// mksquashfs run (run) and added to c. tmp is a directory for that run's
// image. progress, if set, hears how many of the missing blocks went to
// the compressor. The same layout gives the same bytes whatever the cache
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

	keys, err := l.keys(ctx, c)
	if err != nil {
		return st, err
	}
	// What the cache lacks, each content once, in image order.
	var missing []int
	seen := map[string]bool{}
	for i, k := range keys {
		st.RawBytes += uint64(l.Blocks[i].Size)
		if seen[k] {
			continue
		}
		seen[k] = true
		_, err := c.Get(k)
		switch {
		case err == nil:
			st.Reused++
		case errors.Is(err, ErrCorrupt):
			st.Damaged++
			missing = append(missing, i)
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, i)
		default:
			return st, err
		}
	}
	st.Compressed = len(missing)
	n := 0
	var buf []byte
	next := func() ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if n == len(missing) {
			return nil, nil
		}
		b, err := l.ReadBlock(missing[n], buf)
		buf = b
		n++
		if progress != nil && (n%64 == 0 || n == len(missing)) {
			progress(n, len(missing))
		}
		return b, err
	}
	h, err := compressBlocks(ctx, run, tmp, comp, l.sb.BlockSize, next, func(i int, s Stored) error {
		return c.Put(keys[missing[i]], s)
	})
	if err != nil {
		return st, err
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

// keys computes every block's cache key, reading the layout with as
// many workers as there are CPUs.
func (l *Layout) keys(ctx context.Context, c *Cache) ([]string, error) {
	keys := make([]string, len(l.Blocks))
	workers := runtime.NumCPU()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var buf []byte
			for i := w; i < len(l.Blocks); i += workers {
				if i%256 == w && ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				b, err := l.ReadBlock(i, buf)
				if err != nil {
					errs[w] = err
					return
				}
				buf = b
				keys[i] = c.Key(b)
			}
		}(w)
	}
	wg.Wait()
	return keys, errors.Join(errs...)
}
