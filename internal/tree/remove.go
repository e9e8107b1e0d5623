package tree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RemoveAll deletes dir, but refuses while anything is mounted below it and
// never descends into another file system: a leftover bind mount must never
// turn a cleanup into a deletion of the host's files. The walk is relative
// to open directories and never follows a symbolic link, so a directory
// swapped for a link while it runs cannot redirect it.
func RemoveAll(dir string) error {
	mounts, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if err := Unmount(m); err != nil {
			return fmt.Errorf("not removing %s: %w", dir, err)
		}
	}
	if mounts, _ := MountsUnder(dir); len(mounts) > 0 {
		return fmt.Errorf("not removing %s: still mounted below it: %s", dir, strings.Join(mounts, ", "))
	}
	dir = filepath.Clean(dir)
	parent, err := unix.Open(filepath.Dir(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	defer unix.Close(parent)
	return RemoveAt(parent, filepath.Base(dir), dir)
}

// RemoveAt deletes the entry name of the open directory parent (shown as
// path in errors) and, if it is a directory, everything below it on the
// same file system. It never follows a symbolic link: a link is removed,
// not what it points to.
func RemoveAt(parent int, name, path string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unlinkAt(parent, name, path, 0)
	}
	return removeDirAt(parent, name, path, st.Dev)
}

func removeDirAt(parent int, name, path string, dev uint64) error {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		// Images have 0700 and 0555 directories: make it listable, through
		// a handle on the directory itself (a path could be swapped for a link).
		if p, perr := unix.Openat(parent, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); perr == nil {
			if unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", p), 0o700) == nil {
				fd, err = unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
			unix.Close(p)
		}
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		// Replaced by something else since it was looked at: remove that.
		return unlinkAt(parent, name, path, 0)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Dev != dev {
		return fmt.Errorf("not removing %s: it is on another file system", path)
	}
	if st.Mode&0o700 != 0o700 {
		unix.Fchmod(fd, 0o700) // so that its entries can be deleted
	}
	var errs []error
	for {
		ents, err := f.ReadDir(512)
		for _, e := range ents {
			p := filepath.Join(path, e.Name())
			var rerr error
			if e.IsDir() {
				rerr = removeDirAt(fd, e.Name(), p, dev)
			} else {
				rerr = unlinkAt(fd, e.Name(), p, 0)
			}
			if rerr != nil {
				errs = append(errs, rerr)
			}
		}
		if err != nil || len(ents) == 0 {
			break
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return unlinkAt(parent, name, path, unix.AT_REMOVEDIR)
}

func unlinkAt(dir int, name, path string, flags int) error {
	err := unix.Unlinkat(dir, name, flags)
	if errors.Is(err, unix.EISDIR) && flags == 0 {
		// A directory now stands where a file was: walk it.
		var st unix.Stat_t
		if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return removeDirAt(dir, name, path, st.Dev)
		}
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
