// Package stagecache keeps the root file system after a build stage, keyed
// by everything that can change it, so that a later build of the same
// config starts from there instead of from nothing.
//
// An entry is a directory named by its key holding the tree and
// entry.json, which says what went into the key. Where the file system
// under the cache and the build can share data between files (reflinks:
// btrfs, xfs), the tree is a reflinked copy: saving and restoring copy
// metadata only. Elsewhere it is one ordered tar archive (GNU tar
// --sort=name, numeric owners, extended attributes), compressed with zstd
// at its fastest level (a root file system's archive to about 0.35-0.37 of
// its size, for about 5 s of CPU a GB: docs/benchmarks.md), whose SHA256
// is checked as it is restored. Entries are written
// under a temporary name and renamed into place when complete: a build
// killed while writing one leaves a temporary directory that no lookup
// sees and the next Open removes. A stored entry is never changed; a build
// restores a copy of it.
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
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"vmdeb/internal/archive"
	"vmdeb/internal/bytesize"
)

// DefaultDir is where builds keep stage results unless told otherwise.
const DefaultDir = "/var/cache/vmdeb/stages"

// Input is one thing a stage's result depends on, by name.
type Input struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Inputs are a stage's inputs. Their order does not matter.
type Inputs []Input

// Add appends an input.
func (in *Inputs) Add(name, value string) { *in = append(*in, Input{name, value}) }

// AddFile appends the SHA256 of a file's content (or why it cannot be
// read, which also changes the key).
func (in *Inputs) AddFile(name, path string) {
	sum, _, err := archive.HashFile(path)
	if err != nil {
		sum = "unreadable: " + err.Error()
	}
	in.Add(name, sum)
}

// Key is the cache key of a stage: its inputs and the key of the stage
// before it ("" for the first).
func Key(parent string, in Inputs) string {
	h := sha256.New()
	fmt.Fprintf(h, "vmdeb stage cache 1\nparent %s\n", parent)
	s := append(Inputs{}, in...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	for _, i := range s {
		// Length-prefixed, so that no two different input sets hash alike.
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(i.Name), i.Name, len(i.Value), i.Value)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Changed names the inputs that differ between two sets (added, removed or
// with another value), sorted.
func Changed(old, new Inputs) []string {
	o, n := map[string]string{}, map[string]string{}
	for _, i := range old {
		o[i.Name] = i.Value
	}
	for _, i := range new {
		n[i.Name] = i.Value
	}
	set := map[string]bool{}
	for k, v := range n {
		if ov, ok := o[k]; !ok || ov != v {
			set[k] = true
		}
	}
	for k := range o {
		if _, ok := n[k]; !ok {
			set[k] = true
		}
	}
	var l []string
	for k := range set {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

// Entry describes one stored stage result.
type Entry struct {
	Key     string    `json:"key"`
	Config  string    `json:"config"` // the config's name
	Stage   string    `json:"stage"`
	Parent  string    `json:"parent,omitempty"`
	Inputs  Inputs    `json:"inputs"`
	Created time.Time `json:"created"`
	// Format is how the tree is kept: FormatTarZstd or FormatTar (an
	// archive) or FormatReflink (a copy sharing its data with the tree it
	// was made from).
	Format string `json:"format"`
	// Size is the archive's size or the tree's; SHA256 the archive's,
	// checked on restore.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`

	dir  string
	used time.Time
}

// Formats of an entry.
const (
	FormatTarZstd = "tar.zst" // a tar archive compressed with zstd: what Save writes where there are no reflinks
	FormatTar     = "tar"     // a tar archive as it is (written by earlier versions, still read)
	FormatReflink = "reflink" // a reflinked copy of the tree
)

// IsArchive says whether entries of format f are one archive file (which
// Export gives as it is and Import takes).
func IsArchive(f string) bool { return f == FormatTar || f == FormatTarZstd }

// ArchiveName is the name of an archive of format f in its entry's
// directory.
func ArchiveName(f string) string {
	if f == FormatTarZstd {
		return archiveName + ".zst"
	}
	return archiveName
}

// archive is the entry's archive file.
func (e *Entry) archive() string { return filepath.Join(e.dir, ArchiveName(e.Format)) }

// usedMark is the file whose date says when the entry was last used.
func (e *Entry) usedMark() string {
	if e.Format == FormatReflink {
		return filepath.Join(e.dir, metaName)
	}
	return e.archive()
}

// Dir is the entry's directory.
func (e *Entry) Dir() string { return e.dir }

// LastUsed is when a build last restored the entry (or when it was made).
func (e *Entry) LastUsed() time.Time { return e.used }

const (
	treeName    = "rootfs"
	archiveName = "rootfs.tar"
	metaName    = "entry.json"
	tmpPrefix   = ".tmp-"
	newPrefix   = ".new-"
	lockName    = ".lock"
)

// Cache is a directory of entries.
type Cache struct {
	Dir string
}

// Open makes the cache directory if needed and removes what builds killed
// while writing an entry left behind.
func Open(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("stage cache: %w", err)
	}
	c := &Cache{Dir: dir}
	c.sweep()
	return c, nil
}

// newTemp makes a temporary entry directory named after label, its lock
// held. The directory is made under a name the sweep leaves alone while
// it is young (newPrefix), and takes its temporary name only once its
// lock is held: a sweep by another build never finds a temporary entry
// whose lock is free while its writer lives, and a writer killed at any
// moment leaves a directory the next sweep removes.
func (c *Cache) newTemp(label string) (string, *os.File, error) {
	made, err := os.MkdirTemp(c.Dir, newPrefix+label+"-")
	if err != nil {
		return "", nil, fmt.Errorf("stage cache: %w", err)
	}
	tmp := filepath.Join(c.Dir, tmpPrefix+strings.TrimPrefix(filepath.Base(made), newPrefix))
	lock, err := os.OpenFile(filepath.Join(made, lockName), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err == nil {
		if err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			err = os.Rename(made, tmp)
		}
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(made)
		return "", nil, fmt.Errorf("stage cache: %w", err)
	}
	return tmp, lock, nil
}

// newAge is the age past which a directory still under its new name is
// surely abandoned: its writer was killed between making it and locking
// it, which takes a moment.
const newAge = 10 * time.Minute

// sweep removes temporary entries whose writer is gone (its lock is free),
// and directories left by a writer killed before it could lock one.
func (c *Cache) sweep() {
	tmps, _ := filepath.Glob(filepath.Join(c.Dir, tmpPrefix+"*"))
	for _, t := range tmps {
		f, err := os.OpenFile(filepath.Join(t, lockName), os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Made by an older vmdeb, whose lock came after
				// the directory: only old ones are surely abandoned.
				if fi, serr := os.Stat(t); serr == nil && time.Since(fi.ModTime()) > time.Hour {
					os.RemoveAll(t)
				}
			}
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(t)
		}
		f.Close()
	}
	news, _ := filepath.Glob(filepath.Join(c.Dir, newPrefix+"*"))
	for _, n := range news {
		if fi, err := os.Stat(n); err == nil && time.Since(fi.ModTime()) > newAge {
			os.RemoveAll(n)
		}
	}
}

// Lookup returns the complete entry with this key, if there is one.
func (c *Cache) Lookup(key string) (*Entry, bool) {
	e, err := c.read(filepath.Join(c.Dir, key))
	if err != nil || e.Key != key {
		return nil, false
	}
	return e, true
}

func (c *Cache) read(dir string) (*Entry, error) {
	data, err := os.ReadFile(filepath.Join(dir, metaName))
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, metaName), err)
	}
	e.dir = dir
	// The modification time of the entry's marker is when it was last
	// restored.
	e.used = e.Created
	if fi, err := os.Stat(e.usedMark()); err == nil {
		e.used = fi.ModTime()
	}
	return &e, nil
}

// List returns every complete entry, newest first.
func (c *Cache) List() ([]*Entry, error) {
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var l []*Entry
	for _, d := range ents {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		if e, err := c.read(filepath.Join(c.Dir, d.Name())); err == nil {
			l = append(l, e)
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].used.After(l[j].used) })
	return l, nil
}

// Latest is the most recently used entry of a config's stage, the one to
// compare with when saying why a stage is rebuilt.
func (c *Cache) Latest(config, stage string) *Entry {
	l, _ := c.List()
	for _, e := range l {
		if e.Config == config && e.Stage == stage {
			return e
		}
	}
	return nil
}

// tarArgs are GNU tar's options for an exact, ordered copy of a root file
// system: owners by number, permissions, extended attributes (file
// capabilities), hard links, and no crossing into other file systems.
func tarCreateArgs(root string, exclude []string) []string {
	a := []string{"--create", "--file=-", "--directory=" + root, "--sort=name", "--numeric-owner",
		"--xattrs", "--xattrs-include=*", "--acls", "--one-file-system"}
	for _, x := range exclude {
		a = append(a, "--exclude="+x)
	}
	return append(a, ".")
}

func tarExtractArgs(root string) []string {
	return []string{"--extract", "--file=-", "--directory=" + root, "--numeric-owner", "--same-owner",
		"--preserve-permissions", "--xattrs", "--xattrs-include=*", "--acls"}
}

// Save stores the tree at root as the entry e (Key, Config, Stage, Parent
// and Inputs set by the caller), leaving out the paths matching exclude
// (tar patterns relative to root, e.g. "./var/cache/apt/archives/*.deb").
// The entry appears under its key only once complete.
func (c *Cache) Save(ctx context.Context, e *Entry, root string, exclude []string) (err error) {
	final := filepath.Join(c.Dir, e.Key)
	if _, ok := c.Lookup(e.Key); ok {
		return nil // another build stored it meanwhile
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
	if Reflinks(filepath.Dir(root), tmp) {
		e.Format = FormatReflink
		if err := copyTree(ctx, root, filepath.Join(tmp, treeName)); err != nil {
			return err
		}
		for _, x := range exclude {
			m, _ := filepath.Glob(filepath.Join(tmp, treeName, x))
			for _, p := range m {
				os.RemoveAll(p)
			}
		}
		if e.Size, err = treeSize(filepath.Join(tmp, treeName)); err != nil {
			return err
		}
		if err := syncFS(tmp); err != nil {
			return err
		}
	} else {
		e.Format = FormatTarZstd
		if err := writeArchive(ctx, e, root, filepath.Join(tmp, ArchiveName(e.Format)), exclude, c.Dir); err != nil {
			return err
		}
	}
	if e.Created.IsZero() {
		e.Created = time.Now().UTC()
	}
	meta, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, metaName), meta); err != nil {
		return err
	}
	os.Remove(filepath.Join(tmp, lockName))
	if err := os.Rename(tmp, final); err != nil {
		if _, ok := c.Lookup(e.Key); ok {
			os.RemoveAll(tmp)
			return nil // another build won the race with the same content
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

// writeArchive writes root as an ordered tar archive of format e.Format
// (FormatTarZstd or FormatTar) and records its size and SHA256 in e.
func writeArchive(ctx context.Context, e *Entry, root, path string, exclude []string, cacheDir string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	rw := &reserving{w: io.MultiWriter(f, h), dir: cacheDir}
	cw := &countWriter{w: rw}
	var out io.Writer = cw
	var zw *zstd.Encoder
	if e.Format == FormatTarZstd {
		// The fastest level: the archive is written once per stage
		// that ran and read back on every restore, and a stage's
		// save is on the build's path.
		if zw, err = zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedFastest)); err != nil {
			return err
		}
		defer func() {
			if zw != nil {
				zw.Close()
			}
		}()
		out = zw
	}
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "tar", tarCreateArgs(root, exclude)...)
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rw.full != nil {
			// tar failed writing to a pipe nobody reads any more.
			return rw.full
		}
		return fmt.Errorf("stage cache: tar of %s: %v: %s", root, err, strings.TrimSpace(stderr.String()))
	}
	if zw != nil {
		err := zw.Close()
		zw = nil
		if rw.full != nil {
			return rw.full
		}
		if err != nil {
			return fmt.Errorf("stage cache: compressing %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("stage cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("stage cache: %w", err)
	}
	e.Size, e.SHA256 = cw.n, hex.EncodeToString(h.Sum(nil))
	return nil
}

// Reflinks reports whether files under a can be cloned into b (one file
// system with shared extents: btrfs, xfs with reflink). It tries it.
func Reflinks(a, b string) bool {
	src, err := os.CreateTemp(a, ".vmdeb-reflink-")
	if err != nil {
		return false
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write([]byte("reflink probe")); err != nil {
		return false
	}
	dst, err := os.CreateTemp(b, ".vmdeb-reflink-")
	if err != nil {
		return false
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil
}

// copyTree makes dst a reflinked copy of the tree src: owners, modes,
// dates, links, extended attributes; no other file system crossed.
// tree.Copy does not fit: it reads every file whole, refuses device
// nodes, and keeps neither hard links nor extended attributes.
func copyTree(ctx context.Context, src, dst string) error {
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "cp", "-a", "--reflink=always", "--one-file-system", "--no-target-directory", src, dst)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("stage cache: reflink copy of %s: %v: %s", src, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// treeSize is the sum of the sizes of the regular files under dir.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// syncFS flushes the file system holding dir.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// NoSpaceError says an entry was not saved because writing it would have
// left the file system holding the cache with less than it keeps free
// (reserve): a cache must not fill the disk that the build, and the host,
// need.
type NoSpaceError struct {
	Dir           string
	Free, Reserve int64
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("stage cache: stopped writing an entry: the file system of %s has %s free, and the cache leaves at least %s (5%% of it, at least 2 GiB) to the rest of the machine",
		e.Dir, bytesize.Format(e.Free), bytesize.Format(e.Reserve))
}

// statFS is the free and the total space of the file system holding dir
// (a variable: tests give a full disk).
var statFS = func(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// reserveOf is what the cache leaves free on a file system of this size.
func reserveOf(total int64) int64 { return max(total/20, 2<<30) }

// reserveCheck is how often, in bytes written, the free space is looked
// at (a variable for tests).
var reserveCheck int64 = 64 << 20

// reserving writes through w, and fails with a NoSpaceError once the file
// system holding dir has less free than its reserve: checked before the
// first write and every reserveCheck bytes.
type reserving struct {
	w       io.Writer
	dir     string
	written int64         // since the last check; the first write checks
	full    *NoSpaceError // once the reserve was reached
}

func (r *reserving) Write(p []byte) (int, error) {
	if r.written == 0 || r.written >= reserveCheck {
		r.written = 0
		if free, total, err := statFS(r.dir); err == nil {
			if res := reserveOf(total); free < res {
				r.full = &NoSpaceError{Dir: r.dir, Free: free, Reserve: res}
			}
		}
	}
	if r.full != nil {
		return 0, r.full
	}
	n, err := r.w.Write(p)
	r.written += int64(n)
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrCorrupt says a stored archive does not match its recorded checksum.
var ErrCorrupt = errors.New("stage cache entry is corrupt")

// Restore unpacks the entry into root (an empty directory). The archive's
// SHA256 is checked as it streams; a mismatch returns ErrCorrupt (root
// then holds a partial tree the caller must discard) and removes the
// entry so that no later build uses it.
func (c *Cache) Restore(ctx context.Context, e *Entry, root string) error {
	now := time.Now()
	if e.Format == FormatReflink {
		// Into root (which exists): copy the tree's contents and root's
		// own owner, mode and date.
		if err := copyTree(ctx, filepath.Join(e.dir, treeName)+"/.", root); err != nil {
			return err
		}
		os.Chtimes(e.usedMark(), now, now)
		return nil
	}
	if !IsArchive(e.Format) {
		return fmt.Errorf("stage cache: entry %s has an unknown format %q", e.Key, e.Format)
	}
	f, err := os.Open(e.archive())
	if err != nil {
		return fmt.Errorf("stage cache: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	var in io.Reader = io.TeeReader(f, h)
	var zr *zstd.Decoder
	if e.Format == FormatTarZstd {
		// Synchronous (one goroutine, no reading ahead in the
		// background): what it read went through the hash, and once
		// it is closed the rest of f is hashed below.
		if zr, err = zstd.NewReader(in, zstd.WithDecoderConcurrency(1)); err != nil {
			return err
		}
		defer zr.Close()
		in = zr
	}
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "tar", tarExtractArgs(root)...)
	cmd.Stdin, cmd.Stderr = in, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if zr != nil {
		zr.Close()
	}
	// tar may stop reading at the end-of-archive marker, or fail on a
	// damaged archive: hash the rest, so that damage is told as such.
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		os.RemoveAll(e.dir)
		return fmt.Errorf("%w: %s has SHA256 %s, recorded %s (entry removed)", ErrCorrupt, e.archive(), got, e.SHA256)
	}
	if runErr != nil {
		return fmt.Errorf("stage cache: unpacking %s: %v: %s", e.dir, runErr, strings.TrimSpace(stderr.String()))
	}
	os.Chtimes(e.usedMark(), now, now) // last used, for pruning
	return nil
}

// Remove deletes an entry.
func (c *Cache) Remove(e *Entry) error { return os.RemoveAll(e.dir) }

// Prune removes entries unused for longer than maxAge (0: no age limit),
// then the least recently used ones until the rest take at most maxSize
// bytes (0: no size limit). It returns what it removed.
func (c *Cache) Prune(maxAge time.Duration, maxSize int64) ([]*Entry, error) {
	l, err := c.List() // newest first
	if err != nil {
		return nil, err
	}
	var removed []*Entry
	var total int64
	now := time.Now()
	for _, e := range l {
		tooOld := maxAge > 0 && now.Sub(e.used) > maxAge
		tooBig := maxSize > 0 && total+e.Size > maxSize
		if tooOld || tooBig {
			if err := c.Remove(e); err != nil {
				return removed, err
			}
			removed = append(removed, e)
			continue
		}
		total += e.Size
	}
	return removed, nil
}
