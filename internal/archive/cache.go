package archive

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultCacheDir is where builds share downloaded files.
const DefaultCacheDir = "/var/cache/vmdeb/debs"

// Cache is a content-addressed store of downloaded files shared by every
// build on the machine:
//
//	sha256/ab/abcdef…   a file whose SHA256 is its name, never written in place
//	by-name/NAME        a hard link per package file name (the name index)
//	derived/ab/abcdef…  "SHA256 SIZE" of a faster form of file abcdef… (a
//	                    package with its data uncompressed), itself in sha256/
//	tmp/                downloads in progress, each locked by its writer
//	staging/ID/         one build's view as apt's archive directory
//
// A file reaches sha256/ only by rename after its hash was checked, and is
// checked again before every use. Two builds may fill the cache at once:
// a lock per file makes the second wait for the first one's download
// instead of fetching it again, and correctness never depends on the
// lock (same hash, same bytes; renames are atomic).
type Cache struct {
	Dir string
	// Notef receives one line per notable event (a partial or corrupt
	// file replaced). May be nil.
	Notef func(format string, a ...any)
	// Remote, if set, is asked for a package before the mirror and told
	// of every package the cache gets from elsewhere (OpenCache sets it
	// to SharedRemote).
	Remote Remote
}

// Remote is a second store of package files, shared between machines (an
// OCI registry: internal/remotecache). It is trusted no more than the
// mirror: what it gives is checked against the index like a download.
type Remote interface {
	// FetchDeb writes the file with this size and SHA256 to w. Any error
	// means "not from here": the cache then downloads it from the mirror.
	FetchDeb(ctx context.Context, name string, want FileInfo, w io.Writer) error
	// StoreDeb is told of a verified package file the cache got from the
	// mirror, to keep it remotely as well; it must not block for long.
	StoreDeb(name string, want FileInfo, path string)
}

// SharedRemote is the remote store every package cache opened in this
// process uses: the one build a build process runs sets it before its
// bootstrapper opens the cache.
var SharedRemote Remote

// OpenCache creates the cache's directories if needed and removes what
// interrupted builds left: partial downloads and staging directories
// whose owner is gone (their lock is free).
func OpenCache(dir string, notef func(string, ...any)) (*Cache, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &Cache{Dir: abs, Notef: notef, Remote: SharedRemote}
	for _, d := range []string{"sha256", "by-name", "derived", "tmp", "staging"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("package cache: %w", err)
		}
	}
	if err := c.removeStale(); err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	return c, nil
}

func (c *Cache) notef(format string, a ...any) {
	if c.Notef != nil {
		c.Notef(format, a...)
	}
}

// removeStale deletes partial downloads and staging directories of builds
// that died: whoever works on one holds an flock on it.
func (c *Cache) removeStale() error {
	tmp := filepath.Join(c.Dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(tmp, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			c.notef("removing %s: a partial download left by an interrupted build", p)
			os.Remove(p)
		}
		f.Close()
	}
	st := filepath.Join(c.Dir, "staging")
	ents, err = os.ReadDir(st)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(st, e.Name())
		f, err := os.Open(filepath.Join(p, ".lock"))
		if err != nil {
			// No lock file: a staging directory being created right now
			// has one within microseconds; only remove old ones.
			if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > time.Hour {
				os.RemoveAll(p)
			}
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		f.Close()
	}
	return nil
}

// Path is where the file with this SHA256 lives in the cache.
func (c *Cache) Path(sha string) string {
	return filepath.Join(c.Dir, "sha256", sha[:2], sha)
}

// HashError is a file whose content is not what the archive says.
type HashError struct {
	File       string // the archive's name for it
	Want, Got  string
	WantSize   int64
	GotSize    int64
	Downloaded bool // false: a corrupt cached copy
}

func (e *HashError) Error() string {
	if e.WantSize >= 0 && e.GotSize != e.WantSize {
		return fmt.Sprintf("%s: size %d, expected %d: refused (does not match the archive's index)", e.File, e.GotSize, e.WantSize)
	}
	return fmt.Sprintf("%s: SHA256 %s, expected %s: refused (does not match the archive's index)", e.File, e.Got, e.Want)
}

// Verify checks that the file at path has the given size and SHA256.
// name is the archive's name for it, used in the error.
func Verify(path, name string, want FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != want.Size || got != want.SHA256 {
		return &HashError{File: name, Want: want.SHA256, Got: got, WantSize: want.Size, GotSize: n}
	}
	return nil
}

// Get returns the path of a verified copy of the file with hash want,
// downloading it from u when the cache lacks it or holds a corrupt copy.
// name is how the archive calls it (for messages and the name index; ""
// for none). The file at the returned path is never rewritten: hard-link
// or read it.
// With a Remote, a file the cache lacks is asked of it first, and a file
// downloaded from u is handed to it.
func (c *Cache) Get(ctx context.Context, cl *Client, u, name string, want FileInfo) (string, error) {
	if c.Remote != nil && IsSHA256(want.SHA256) && strings.HasSuffix(name, ".deb") {
		path, err := c.store(ctx, name, want, func(w io.Writer) error {
			return c.Remote.FetchDeb(ctx, name, want, io.Writer(w))
		}, false)
		if err == nil || ctx.Err() != nil {
			return path, err
		}
		var he *HashError
		if errors.As(err, &he) {
			c.notef("%s: the remote cache's copy was refused (%v); downloading it", name, err)
		}
	}
	fetched := false
	path, err := c.store(ctx, name, want, func(w io.Writer) error {
		fetched = true
		return cl.Fetch(ctx, u, func(r io.Reader) error {
			if err := w.(*hashWriter).reset(); err != nil {
				return err
			}
			_, err := io.Copy(w, io.LimitReader(r, want.Size+1))
			return err
		})
	}, true)
	if err == nil && fetched && c.Remote != nil && strings.HasSuffix(name, ".deb") && !strings.Contains(name, "/") {
		c.Remote.StoreDeb(name, want, path)
	}
	return path, err
}

// Put stores content that the caller made (an index it decompressed)
// under its hash, if it has the wanted size and hash.
func (c *Cache) Put(ctx context.Context, name string, want FileInfo, fill func(io.Writer) error) (string, error) {
	return c.store(ctx, name, want, fill, false)
}

// store is Get and Put: under the file's lock, fill a partial file, check
// it and rename it into place.
func (c *Cache) store(ctx context.Context, name string, want FileInfo, fill func(io.Writer) error, downloaded bool) (string, error) {
	if !IsSHA256(want.SHA256) {
		return "", fmt.Errorf("%s: no SHA256 in the index", name)
	}
	final := c.Path(want.SHA256)
	if ok, err := c.check(final, name, want); ok || err != nil {
		return final, err
	}
	// One writer per file: the lock is on the partial file itself, so a
	// build that finds it locked waits, then finds the file done.
	lock, err := c.lockTemp(ctx, want.SHA256)
	if err != nil {
		return "", err
	}
	defer lock.release()
	if ok, err := c.check(final, name, want); ok || err != nil {
		return final, err
	}
	if fi, err := lock.f.Stat(); err == nil && fi.Size() > 0 {
		c.notef("%s: replacing a partial download left by an interrupted build", name)
	}
	hw := &hashWriter{f: lock.f, h: sha256.New()}
	if err := hw.reset(); err != nil {
		return "", err
	}
	if err := fill(hw); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(hw.h.Sum(nil)); hw.n != want.Size || got != want.SHA256 {
		return "", &HashError{File: name, Want: want.SHA256, Got: got, WantSize: want.Size, GotSize: hw.n, Downloaded: downloaded}
	}
	if err := c.commit(lock, final); err != nil {
		return "", err
	}
	if name != "" && !strings.Contains(name, "/") {
		c.index(final, name)
	}
	return final, nil
}

// commit makes a complete, checked partial file the cached file final.
func (c *Cache) commit(lock *tempLock, final string) error {
	if err := lock.f.Sync(); err != nil {
		return err
	}
	if err := lock.f.Chmod(0o444); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if err := os.Rename(lock.path, final); err != nil {
		return err
	}
	lock.renamed = true
	return nil
}

// hashWriter writes to a partial file and hashes what it writes.
type hashWriter struct {
	f *os.File
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// reset starts over (a retried download).
func (w *hashWriter) reset() error {
	w.h.Reset()
	w.n = 0
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	_, err := w.f.Seek(0, 0)
	return err
}

// Derived returns the verified cached file derived from the file with
// hash orig (see MakeDerived), or "" when there is none (or it was
// corrupt, and has been removed).
func (c *Cache) Derived(orig string) string {
	m := filepath.Join(c.Dir, "derived", orig[:2], orig)
	data, err := os.ReadFile(m)
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) != 2 || !IsSHA256(f[0]) {
		os.Remove(m)
		return ""
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		os.Remove(m)
		return ""
	}
	p := c.Path(f[0])
	if ok, _ := c.check(p, "derived copy of "+orig, FileInfo{Size: size, SHA256: f[0]}); !ok {
		os.Remove(m)
		return ""
	}
	return p
}

// MakeDerived stores what build writes (a form of the file with hash orig
// that is faster to use, such as a package with its data uncompressed)
// and records its own hash, which Derived checks before every use.
// built is false when another build made it meanwhile (build was not
// called).
func (c *Cache) MakeDerived(ctx context.Context, orig string, build func(*os.File) error) (path string, built bool, err error) {
	lock, err := c.lockTemp(ctx, "derived-"+orig)
	if err != nil {
		return "", false, err
	}
	defer lock.release()
	if p := c.Derived(orig); p != "" {
		return p, false, nil
	}
	if err := lock.f.Truncate(0); err != nil {
		return "", false, err
	}
	if err := build(lock.f); err != nil {
		return "", false, err
	}
	sum, size, err := HashFile(lock.path)
	if err != nil {
		return "", false, err
	}
	final := c.Path(sum)
	if err := c.commit(lock, final); err != nil {
		return "", false, err
	}
	m := filepath.Join(c.Dir, "derived", orig[:2], orig)
	if err := os.MkdirAll(filepath.Dir(m), 0o755); err != nil {
		return "", false, err
	}
	tmp := m + "." + randomSuffix()
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%s %d\n", sum, size)), 0o644); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, m); err != nil {
		os.Remove(tmp)
		return "", false, err
	}
	return final, true, nil
}

// Has reports whether path is a cached file with the wanted content (a
// corrupt one is removed).
func (c *Cache) Has(path, name string, want FileInfo) bool {
	ok, _ := c.check(path, name, want)
	return ok
}

// check reports whether path holds the wanted content; a corrupt copy is
// removed (and reported) so that it is fetched again.
func (c *Cache) check(path, name string, want FileInfo) (bool, error) {
	err := Verify(path, name, want)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	var he *HashError
	if errors.As(err, &he) {
		c.notef("%s: the cached copy is corrupt (%v); downloading it again", name, err)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
		return false, nil
	}
	return false, err
}

// index links a cached file under its package file name, for people and
// for tools that look files up by name. Best effort: the index is only a
// convenience, the content store is what vmdeb trusts.
func (c *Cache) index(path, name string) {
	dst := filepath.Join(c.Dir, "by-name", name)
	if fi, err := os.Stat(dst); err == nil {
		if fj, err := os.Stat(path); err == nil && os.SameFile(fi, fj) {
			return
		}
	}
	tmp := filepath.Join(c.Dir, "by-name", "."+name+"."+randomSuffix())
	if os.Link(path, tmp) == nil {
		if os.Rename(tmp, dst) != nil {
			os.Remove(tmp)
		}
	}
}

type tempLock struct {
	f       *os.File
	path    string
	renamed bool
}

func (l *tempLock) release() {
	if !l.renamed {
		os.Remove(l.path)
	}
	l.f.Close() // drops the flock
}

// lockTemp opens tmp/SHA.partial and takes its lock, waiting for another
// build that holds it (checking ctx while waiting).
func (c *Cache) lockTemp(ctx context.Context, sha string) (*tempLock, error) {
	p := filepath.Join(c.Dir, "tmp", sha+".partial")
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			// The file may have been renamed into the store or removed
			// by its previous owner after we opened it: lock the file
			// that is at the path now.
			fi, err1 := f.Stat()
			fj, err2 := os.Stat(p)
			if err1 == nil && err2 == nil && os.SameFile(fi, fj) {
				return &tempLock{f: f, path: p}, nil
			}
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Staging is one build's directory of hard links to cached packages,
// named as apt names them: bind-mounted as the chroot's
// /var/cache/apt/archives, it lets dpkg and apt use the cache while
// nothing done inside (apt-get clean) can delete the shared files.
type Staging struct {
	Dir   string
	cache *Cache
	lock  *os.File
}

// NewStaging makes an empty staging directory (with apt's partial/).
func (c *Cache) NewStaging() (*Staging, error) {
	dir, err := os.MkdirTemp(filepath.Join(c.Dir, "staging"), "build-")
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(dir, "partial"), 0o700)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(dir)
		return nil, err
	}
	return &Staging{Dir: dir, cache: c, lock: lock}, nil
}

// Link puts a verified cached file into the staging directory under name.
func (s *Staging) Link(cached, name string) error {
	dst := filepath.Join(s.Dir, name)
	if err := os.Link(cached, dst); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// Ingest moves the packages apt downloaded into the staging directory into
// the store, so the next build finds them. They are stored under their own
// SHA256: a later use checks it against that build's index like any other.
func (s *Staging) Ingest() (int, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".deb") {
			continue
		}
		p := filepath.Join(s.Dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			return n, err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().Perm() == 0o444 && st.Nlink > 1 {
			continue // one of our own links into the store
		}
		sum, size, err := HashFile(p)
		if err != nil {
			return n, err
		}
		final := s.cache.Path(sum)
		if fj, err := os.Stat(final); err == nil && fj.Size() == size {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
			return n, err
		}
		if err := os.Chmod(p, 0o444); err != nil {
			return n, err
		}
		tmp := final + "." + randomSuffix()
		if err := os.Link(p, tmp); err != nil {
			return n, err
		}
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			return n, err
		}
		s.cache.index(final, e.Name())
		if s.cache.Remote != nil {
			s.cache.Remote.StoreDeb(e.Name(), FileInfo{Size: size, SHA256: sum}, final)
		}
		n++
	}
	return n, nil
}

// Remove deletes the staging directory (never the cached files: only
// links to them).
func (s *Staging) Remove() error {
	err := os.RemoveAll(s.Dir)
	s.lock.Close()
	return err
}

// HashFile returns the SHA256 (hex) and size of the file at p.
func HashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
