package stagecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Import stores an entry that came from elsewhere (a remote cache): e is
// its entry.json, r its archive. The archive is written under a
// temporary name, its size and SHA256 are checked against e as it is
// written, and it takes its key's name only when complete and checked:
// an imported entry is no more trusted than a saved one. e.Key must be
// the key the caller computed (it names the entry's directory).
func (c *Cache) Import(ctx context.Context, e *Entry, r io.Reader) (err error) {
	if !IsArchive(e.Format) || len(e.SHA256) != 64 || e.Size < 0 || len(e.Key) < 12 {
		return fmt.Errorf("%w: an imported entry must be an archive (%s or %s) with its size and SHA256", ErrCorrupt, FormatTarZstd, FormatTar)
	}
	if _, ok := c.Lookup(e.Key); ok {
		return nil
	}
	tmp, lock, err := c.newTemp(e.Key[:12])
	if err != nil {
		return err
	}
	defer lock.Close()
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	f, err := os.Create(filepath.Join(tmp, ArchiveName(e.Format)))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	// One byte more than recorded: a longer stream is refused, not cut.
	rw := &reserving{w: io.MultiWriter(f, h), dir: c.Dir}
	n, err := io.Copy(rw, io.LimitReader(ctxReader{ctx, r}, e.Size+1))
	if rw.full != nil {
		return rw.full
	}
	if err != nil {
		return fmt.Errorf("stage cache: importing %s: %w", e.Key[:12], err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != e.Size || got != e.SHA256 {
		return fmt.Errorf("%w: the archive received has %d bytes and SHA256 %s, its entry records %d and %s", ErrCorrupt, n, got, e.Size, e.SHA256)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	meta, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, metaName), meta); err != nil {
		return err
	}
	os.Remove(filepath.Join(tmp, lockName))
	final := filepath.Join(c.Dir, e.Key)
	if err := os.Rename(tmp, final); err != nil {
		if _, ok := c.Lookup(e.Key); ok {
			os.RemoveAll(tmp)
			return nil
		}
		return fmt.Errorf("stage cache: %w", err)
	}
	if d, err := os.Open(c.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	e.dir, e.used = final, e.Created
	return nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Export gives the entry as an archive, as Import takes it: the stored
// archive itself, or for a reflinked entry a compressed one written from
// its tree into a temporary file that done removes. The returned entry
// describes the archive (its format, size and SHA256).
func (c *Cache) Export(ctx context.Context, e *Entry) (out *Entry, path string, done func(), err error) {
	cp := *e
	if IsArchive(e.Format) {
		return &cp, e.archive(), func() {}, nil
	}
	if e.Format != FormatReflink {
		return nil, "", nil, fmt.Errorf("stage cache: entry %s has an unknown format %q", e.Key, e.Format)
	}
	tmp, lock, err := c.newTemp("export")
	if err != nil {
		return nil, "", nil, err
	}
	done = func() {
		os.RemoveAll(tmp)
		lock.Close()
	}
	cp.Format = FormatTarZstd
	path = filepath.Join(tmp, ArchiveName(cp.Format))
	if err := writeArchive(ctx, &cp, filepath.Join(e.dir, treeName), path, nil, c.Dir); err != nil {
		done()
		return nil, "", nil, errors.Join(fmt.Errorf("stage cache: exporting %s", e.Key[:12]), err)
	}
	return &cp, path, done, nil
}
