// Package imgroot does vmdeb's own file operations inside an image's root
// file system, which packages' maintainer scripts and hooks have filled and
// may have filled with links meant to lead out of it.
//
// Paths are resolved as the booted image (or chroot) would resolve them:
// with openat2(2) and RESOLVE_IN_ROOT, the root is "/" for every link met on
// the way, so an absolute link such as etc/localtime -> /usr/share/zoneinfo/…
// leads to the image's file and "../.." stops at the root. Go's os.Root was
// the other choice; it refuses absolute links, which images hold everywhere
// (/lib -> usr/lib, etc/resolv.conf, …), and so would fail legitimate images.
//
// The last component of a name is not followed by anything that changes or
// removes it: WriteFile replaces a link with a file rather than writing
// through it, Remove removes the link, Chmod refuses a link, Lchown and
// Lutimes act on the link. Walks open every directory relative to its parent
// with O_NOFOLLOW and never enter a link.
package imgroot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Root is an open image root. Its methods take names relative to it (a
// leading "/" is allowed: it means the image's root).
type Root struct {
	fd   int
	path string
}

const resolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// Open opens the image root at dir, which must be a directory (not a link).
func Open(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open image root", Path: dir, Err: err}
	}
	return &Root{fd: fd, path: dir}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error {
	if r == nil || r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Path is the root's host path, for messages.
func (r *Root) Path() string { return r.path }

// clean makes name relative to the root; "" for the root itself.
func clean(name string) string {
	c := path.Clean("/" + name)
	return strings.TrimPrefix(c, "/")
}

func (r *Root) err(op, name string, err error) error {
	return &fs.PathError{Op: op, Path: path.Join(r.path, clean(name)), Err: err}
}

// open resolves name inside the root.
func (r *Root) open(name string, flags int, mode uint32) (int, error) {
	rel := clean(name)
	if rel == "" {
		rel = "."
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolve})
		if err == unix.EAGAIN || err == unix.EINTR {
			continue // a rename elsewhere raced the lookup: the kernel asks to retry
		}
		return fd, err
	}
}

// parent opens the directory holding name and returns it with name's last
// component, which the caller acts on without following it.
func (r *Root) parent(name string) (int, string, error) {
	rel := clean(name)
	if rel == "" {
		return -1, "", errors.New("the image's root itself")
	}
	dir, base := path.Split(rel)
	fd, err := r.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, base, err
}

// OpenFile opens a regular file for reading, following links inside the
// image. Anything else (a fifo, a device, a directory) is refused.
func (r *Root) OpenFile(name string) (*os.File, error) {
	fd, err := r.open(name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, r.err("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, r.err("open", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, r.err("open", name, errors.New("not a regular file"))
	}
	return os.NewFile(uintptr(fd), path.Join(r.path, clean(name))), nil
}

// ReadFile reads a regular file, following links inside the image.
func (r *Root) ReadFile(name string) ([]byte, error) {
	f, err := r.OpenFile(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFile replaces name with a new file holding data, with mode perm
// whatever the umask: written beside it and renamed over it, so a link at
// name is replaced, never written through, and a reader never sees half a
// file. The directory must exist.
func (r *Root) WriteFile(name string, data []byte, perm fs.FileMode) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("write", name, err)
	}
	defer unix.Close(dfd)
	tmp := "." + base + ".vmdeb-new"
	if err := unix.Unlinkat(dfd, tmp, 0); err != nil && err != unix.ENOENT {
		return r.err("write", name, err)
	}
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return r.err("write", name, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // past the umask
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = unix.Renameat(dfd, tmp, dfd, base)
	}
	if err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return r.err("write", name, err)
	}
	return nil
}

// Create makes name a new, empty regular file with mode perm (less the
// umask) and opens it for writing; whatever was at name (a file, a link)
// is removed first, never written through. The directory must exist.
func (r *Root) Create(name string, perm fs.FileMode) (*os.File, error) {
	dfd, base, err := r.parent(name)
	if err != nil {
		return nil, r.err("create", name, err)
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, 0); err != nil && err != unix.ENOENT {
		return nil, r.err("create", name, err)
	}
	fd, err := unix.Openat(dfd, base, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil, r.err("create", name, err)
	}
	return os.NewFile(uintptr(fd), path.Join(r.path, clean(name))), nil
}

// LinkFrom makes name a hard link to the host file src (a path outside
// the image, whose final component is not followed if it is a link).
// Whatever was at name (a file, a link) is replaced, never written
// through; the directory must exist. Across file systems it fails with
// an error that errors.Is reports as syscall.EXDEV.
func (r *Root) LinkFrom(src, name string) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("link", name, err)
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, 0); err != nil && err != unix.ENOENT {
		return r.err("link", name, err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, src, dfd, base, 0); err != nil {
		return r.err("link", name, err)
	}
	return nil
}

// Remove removes name (a file, a link itself, or an empty directory).
func (r *Root) Remove(name string) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("remove", name, err)
	}
	defer unix.Close(dfd)
	err = unix.Unlinkat(dfd, base, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return r.err("remove", name, err)
	}
	return nil
}

// RemoveAll removes name and what is below it, entering no link; a name
// that does not exist is no error.
func (r *Root) RemoveAll(name string) error {
	dfd, base, err := r.parent(name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return r.err("remove", name, err)
	}
	defer unix.Close(dfd)
	if err := removeAt(dfd, base); err != nil {
		return r.err("remove", name, err)
	}
	return nil
}

func removeAt(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return err
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		if err := removeAt(fd, n); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", name, n, err))
		}
	}
	d.Close()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// Rename renames oldname to newname, both inside the image; links at
// either name are moved or replaced, not followed.
func (r *Root) Rename(oldname, newname string) error {
	ofd, obase, err := r.parent(oldname)
	if err != nil {
		return r.err("rename", oldname, err)
	}
	defer unix.Close(ofd)
	nfd, nbase, err := r.parent(newname)
	if err != nil {
		return r.err("rename", newname, err)
	}
	defer unix.Close(nfd)
	if err := unix.Renameat(ofd, obase, nfd, nbase); err != nil {
		return r.err("rename", oldname, err)
	}
	return nil
}

// Mkdir makes the directory name with mode perm (less the umask).
func (r *Root) Mkdir(name string, perm fs.FileMode) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("mkdir", name, err)
	}
	defer unix.Close(dfd)
	if err := unix.Mkdirat(dfd, base, uint32(perm.Perm())); err != nil {
		return r.err("mkdir", name, err)
	}
	return nil
}

// MkdirAll makes name and its missing parents, following links inside the
// image as a chroot's mkdir -p would.
func (r *Root) MkdirAll(name string, perm fs.FileMode) error {
	rel := clean(name)
	if rel == "" {
		return nil
	}
	fd, err := r.open(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	if err != unix.ENOENT {
		return r.err("mkdir", name, err)
	}
	if err := r.MkdirAll(path.Dir(rel), perm); err != nil {
		return err
	}
	if err := r.Mkdir(rel, perm); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// Lstat describes name itself (a link is not followed).
func (r *Root) Lstat(name string) (fs.FileInfo, error) {
	rel := clean(name)
	if rel == "" {
		return r.Stat(name)
	}
	dfd, base, err := r.parent(rel)
	if err != nil {
		return nil, r.err("lstat", name, err)
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, r.err("lstat", name, err)
	}
	return newInfo(base, &st), nil
}

// Stat describes what name leads to inside the image.
func (r *Root) Stat(name string) (fs.FileInfo, error) {
	fd, err := r.open(name, unix.O_PATH, 0)
	if err != nil {
		return nil, r.err("stat", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, r.err("stat", name, err)
	}
	return newInfo(path.Base("/"+clean(name)), &st), nil
}

// Resolve returns the name, relative to the root, of the file that name
// leads to inside the image, every link followed.
func (r *Root) Resolve(name string) (string, error) {
	fd, err := r.open(name, unix.O_PATH, 0)
	if err != nil {
		return "", r.err("resolve", name, err)
	}
	defer unix.Close(fd)
	top, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(r.fd))
	if err != nil {
		return "", err
	}
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", r.err("resolve", name, err)
	}
	if p == top {
		return "", nil
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(top, "/")+"/")
	if !ok {
		return "", r.err("resolve", name, errors.New("resolved outside the root")) // the root moved
	}
	return rel, nil
}

// Readlink returns the target of the link name.
func (r *Root) Readlink(name string) (string, error) {
	dfd, base, err := r.parent(name)
	if err != nil {
		return "", r.err("readlink", name, err)
	}
	defer unix.Close(dfd)
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dfd, base, buf)
	if err != nil {
		return "", r.err("readlink", name, err)
	}
	return string(buf[:n]), nil
}

// Symlink makes name a link to target (which is not looked at).
func (r *Root) Symlink(target, name string) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("symlink", name, err)
	}
	defer unix.Close(dfd)
	if err := unix.Symlinkat(target, dfd, base); err != nil {
		return r.err("symlink", name, err)
	}
	return nil
}

// Mknod makes the device node name.
func (r *Root) Mknod(name string, mode uint32, dev int) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("mknod", name, err)
	}
	defer unix.Close(dfd)
	if err := unix.Mknodat(dfd, base, mode, dev); err != nil {
		return r.err("mknod", name, err)
	}
	return nil
}

// Chmod sets name's mode; a link is refused, not followed.
func (r *Root) Chmod(name string, mode fs.FileMode) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("chmod", name, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return r.err("chmod", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return r.err("chmod", name, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return r.err("chmod", name, errors.New("is a symbolic link"))
	}
	// An O_PATH descriptor takes no fchmod; its /proc name is the file
	// itself, whatever happens to its path meanwhile.
	if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), unixMode(mode)); err != nil {
		return r.err("chmod", name, err)
	}
	return nil
}

// Lchown sets the owner of name itself.
func (r *Root) Lchown(name string, uid, gid int) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("lchown", name, err)
	}
	defer unix.Close(dfd)
	if err := unix.Fchownat(dfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return r.err("lchown", name, err)
	}
	return nil
}

// Lutimes sets the access and modification times of name itself; a zero
// time leaves that time as it is.
func (r *Root) Lutimes(name string, atime, mtime time.Time) error {
	dfd, base, err := r.parent(name)
	if err != nil {
		return r.err("utimes", name, err)
	}
	defer unix.Close(dfd)
	if err := utimesAt(dfd, base, atime, mtime); err != nil {
		return r.err("utimes", name, err)
	}
	return nil
}

func utimesAt(dfd int, name string, atime, mtime time.Time) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if !atime.IsZero() {
		ts[0] = unix.NsecToTimespec(atime.UnixNano())
	}
	if !mtime.IsZero() {
		ts[1] = unix.NsecToTimespec(mtime.UnixNano())
	}
	return unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// ReadDir lists the directory name (links inside the image followed to
// it), sorted by name; each entry describes the file itself, not a link's
// target.
func (r *Root) ReadDir(name string) ([]fs.DirEntry, error) {
	fd, err := r.open(name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, r.err("readdir", name, err)
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	ents, err := readDirAt(d, fd)
	if err != nil {
		return nil, r.err("readdir", name, err)
	}
	return ents, nil
}

func readDirAt(d *os.File, fd int) ([]fs.DirEntry, error) {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	ents := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue // removed meanwhile
			}
			return nil, err
		}
		ents = append(ents, fs.FileInfoToDirEntry(newInfo(n, &st)))
	}
	return ents, nil
}

// Glob returns the names matching pattern, whose wildcards (path.Match)
// may be in its last component only, sorted.
func (r *Root) Glob(pattern string) ([]string, error) {
	rel := clean(pattern)
	dir, base := path.Split(rel)
	if strings.ContainsAny(dir, `*?[\`) {
		return nil, fmt.Errorf("imgroot: %s: wildcards only in the last component", pattern)
	}
	if _, err := path.Match(base, ""); err != nil {
		return nil, err
	}
	ents, err := r.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m []string
	for _, e := range ents {
		if ok, _ := path.Match(base, e.Name()); ok {
			m = append(m, dir+e.Name())
		}
	}
	return m, nil
}

// An Entry is a file met by Walk, named relative to the directory that
// holds it, which stays open while the walk function runs: acting through
// the entry never resolves a path again.
type Entry struct {
	dfd  int
	name string
	info fs.FileInfo
}

// Info describes the file itself (a link is not followed).
func (e Entry) Info() fs.FileInfo { return e.info }

// Lutimes sets the file's own times (a link's, not its target's); a zero
// time leaves that time as it is.
func (e Entry) Lutimes(atime, mtime time.Time) error {
	return utimesAt(e.dfd, e.name, atime, mtime)
}

// WalkFunc is called by Walk for each file, rel naming it relative to the
// image's root. Returning fs.SkipDir for a directory skips what is in it.
type WalkFunc func(rel string, e Entry) error

// Walk calls fn for name and every file below it, directories before what
// they hold, in name order. It enters no link, and opens each directory
// relative to the one holding it, so no path is resolved twice. name
// itself is resolved inside the image.
func (r *Root) Walk(name string, fn WalkFunc) error {
	rel := clean(name)
	var dfd int
	var base string
	if rel == "" {
		fd, err := unix.Dup(r.fd)
		if err != nil {
			return err
		}
		dfd, base = fd, "."
	} else {
		fd, b, err := r.parent(rel)
		if err != nil {
			return r.err("walk", name, err)
		}
		dfd, base = fd, b
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return r.err("walk", name, err)
	}
	err := r.walk(dfd, base, rel, newInfo(path.Base("/"+rel), &st), fn)
	if err == fs.SkipDir || err == fs.SkipAll {
		return nil
	}
	return err
}

func (r *Root) walk(dfd int, name, rel string, info fs.FileInfo, fn WalkFunc) error {
	if err := fn(rel, Entry{dfd, name, info}); err != nil || !info.IsDir() {
		return err
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return r.err("walk", rel, err)
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	ents, err := readDirAt(d, fd)
	if err != nil {
		return r.err("walk", rel, err)
	}
	for _, e := range ents {
		info, _ := e.Info()
		err := r.walk(fd, e.Name(), path.Join(rel, e.Name()), info, fn)
		if err == fs.SkipDir && info.IsDir() {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Mountpoint opens the directory or file name inside the image for
// mounting on it and returns a path naming that very file
// (/proc/self/fd/N) and a function closing it: mount(2) on that path
// cannot be led elsewhere by a link, nor by a swap after the check.
func (r *Root) Mountpoint(name string) (string, func(), error) {
	fd, err := r.open(name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", nil, r.err("mount point", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || (st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Mode&unix.S_IFMT != unix.S_IFREG) {
		unix.Close(fd)
		return "", nil, r.err("mount point", name, errors.New("not a directory or a regular file"))
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), func() { unix.Close(fd) }, nil
}

// unixMode turns a FileMode into chmod(2)'s bits, setuid/setgid/sticky
// included.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

// info is an fs.FileInfo made from a stat(2) result.
type info struct {
	name string
	st   unix.Stat_t
}

func newInfo(name string, st *unix.Stat_t) fs.FileInfo { return &info{name, *st} }

func (i *info) Name() string       { return i.name }
func (i *info) Size() int64        { return i.st.Size }
func (i *info) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }
func (i *info) IsDir() bool        { return i.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (i *info) Sys() any           { return &i.st }
func (i *info) Mode() fs.FileMode {
	m := fs.FileMode(i.st.Mode & 0o777)
	switch i.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	if i.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if i.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if i.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
