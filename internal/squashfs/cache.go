package squashfs

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Cache holds compressed squashfs blocks by what they hold: the key of a
// block is the SHA256 of the compressor's identity (Ident: mksquashfs's
// version, the compression libraries' versions and the compressor's
// options, any of which can change the bytes) and the block's own bytes.
// An entry is its stored bytes with their SHA256, checked whenever it is
// read: a damaged entry is removed and counts as missing. The checksum
// covers the key too, so an entry copied over another is refused.
type Cache struct {
	Dir   string
	Ident string
}

// entryMagic begins every entry: a version, then a flags byte (bit 0: the
// block is stored uncompressed), the SHA256 of the key and the stored
// bytes (entrySum), and the bytes.
const entryMagic = "vmdeb-sqfs-block-2\n"

// entrySum is what an entry's checksum covers: its key, then its bytes.
func entrySum(key string, data []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write(data)
	var s [sha256.Size]byte
	h.Sum(s[:0])
	return s
}

// Key is the cache key of a block with these uncompressed bytes.
func (c *Cache) Key(raw []byte) string {
	h := sha256.New()
	h.Write([]byte(c.Ident))
	h.Write([]byte{0})
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil))
}

func (c *Cache) path(key string) string { return filepath.Join(c.Dir, key[:2], key) }

// ErrCorrupt marks an entry whose bytes do not match their checksum.
var ErrCorrupt = errors.New("damaged cache entry")

// Get reads the entry for key. A missing entry is fs.ErrNotExist; a
// damaged one is removed and reported as ErrCorrupt.
func (c *Cache) Get(key string) (Stored, error) {
	p := c.path(key)
	f, err := os.Open(p)
	if err != nil {
		return Stored{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return Stored{}, err
	}
	s, err := parseEntry(b, key)
	if err != nil {
		// Removed only if the name still holds what was read: another
		// build may have just put a good entry there.
		if fi, ferr := f.Stat(); ferr == nil {
			if now, serr := os.Stat(p); serr == nil && os.SameFile(fi, now) {
				os.Remove(p)
			}
		}
		return Stored{}, fmt.Errorf("%s: %w", p, err)
	}
	if fi, err := f.Stat(); err == nil && time.Since(fi.ModTime()) > time.Hour {
		// Its time says when it was last used, for Prune.
		now := time.Now()
		os.Chtimes(p, now, now)
	}
	return s, nil
}

func parseEntry(b []byte, key string) (Stored, error) {
	n := len(entryMagic)
	if len(b) < n+1+sha256.Size+1 || string(b[:n]) != entryMagic || b[n]&^1 != 0 {
		return Stored{}, ErrCorrupt
	}
	data := b[n+1+sha256.Size:]
	sum := entrySum(key, data)
	if !bytes.Equal(sum[:], b[n+1:n+1+sha256.Size]) {
		return Stored{}, ErrCorrupt
	}
	return Stored{Data: data, Uncompressed: b[n]&1 != 0}, nil
}

// entryInfo is one entry on disk.
type entryInfo struct {
	path string
	size int64
	used time.Time
}

func (c *Cache) entries() ([]entryInfo, error) {
	var l []entryInfo
	err := filepath.WalkDir(c.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			l = append(l, entryInfo{p, fi.Size(), fi.ModTime()})
		}
		return nil
	})
	return l, err
}

// Usage counts the entries and their bytes.
func (c *Cache) Usage() (n int, size int64, err error) {
	l, err := c.entries()
	for _, e := range l {
		size += e.size
	}
	return len(l), size, err
}

// Prune removes the entries unused for longer than olderThan (0: no age
// limit), then the least recently used beyond maxBytes (0: no limit).
func (c *Cache) Prune(olderThan time.Duration, maxBytes int64) (removed int, freed int64, err error) {
	l, err := c.entries()
	if err != nil {
		return 0, 0, err
	}
	sort.Slice(l, func(i, j int) bool { return l[i].used.After(l[j].used) })
	var kept int64
	for _, e := range l {
		old := olderThan > 0 && time.Since(e.used) > olderThan
		if !old && (maxBytes == 0 || kept+e.size <= maxBytes) {
			kept += e.size
			continue
		}
		if err := os.Remove(e.path); err == nil {
			removed++
			freed += e.size
		}
	}
	return removed, freed, nil
}

// Put stores s under key: written under a temporary name in the entry's
// directory and renamed into place, so a reader never sees half of it and
// a killed writer leaves only a temporary file (Sweep removes those).
func (c *Cache) Put(key string, s Stored) error {
	dir := filepath.Dir(c.path(key))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var r [8]byte
	rand.Read(r[:])
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(r[:]))
	flags := byte(0)
	if s.Uncompressed {
		flags = 1
	}
	sum := entrySum(key, s.Data)
	b := make([]byte, 0, len(entryMagic)+1+len(sum)+len(s.Data))
	b = append(append(append(append(b, entryMagic...), flags), sum[:]...), s.Data...)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path(key))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Sweep removes the temporary files killed writers left: those older than
// ten minutes (a live writer renames its file within moments).
func (c *Cache) Sweep() error {
	return filepath.WalkDir(c.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".tmp-") {
			if fi, err := d.Info(); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
				os.Remove(p)
			}
		}
		return nil
	})
}
