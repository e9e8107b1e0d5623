package imgroot

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Mount is a file system vmdeb mounted inside an image, held by a
// descriptor of the mount's own root: unmounting it acts on that mount,
// wherever the image's scripts have since moved, linked or replaced the
// directories on its path, never on whatever a path names by then.
type Mount struct {
	fd   int
	Name string // inside the image, as it was mounted
	Host string // the host path it was mounted on, for messages
}

// MountOn mounts a file system on name inside the image: mount is given a
// path (/proc/self/fd/N) naming the directory or file that name resolves
// to, so the mount cannot be led elsewhere by a link or a swap. The new
// mount's root is then opened and kept for Unmount.
func (r *Root) MountOn(name string, mount func(at string) error) (*Mount, error) {
	at, done, err := r.Mountpoint(name)
	if err != nil {
		return nil, err
	}
	err = mount(at)
	done()
	if err != nil {
		return nil, err
	}
	m := &Mount{fd: -1, Name: clean(name), Host: filepath.Join(r.path, clean(name))}
	// Nothing runs in the image while vmdeb mounts, so name still leads
	// to the mount just made; the mount-root check makes sure.
	fd, err := r.open(name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err == nil {
		var stx unix.Statx_t
		err = unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &stx)
		if err == nil && stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
			err = errors.New("not the root of the mount just made")
		}
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		// Undo through the path that was mounted on: it is the one the
		// mount point's descriptor named a moment ago.
		return nil, errors.Join(r.err("hold mount", name, err), r.unmountName(name))
	}
	m.fd = fd
	return m, nil
}

// At is a path naming the mounted file system's root itself, for a
// remount of it.
func (m *Mount) At() string { return "/proc/self/fd/" + strconv.Itoa(m.fd) }

// unmountName detaches what is mounted on name, resolved in the image.
func (r *Root) unmountName(name string) error {
	fd, err := r.open(name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return r.err("unmount", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Unmount("/proc/self/fd/"+strconv.Itoa(fd), unix.MNT_DETACH); err != nil {
		return r.err("unmount", name, err)
	}
	return nil
}

// Unmount detaches the mount and releases its descriptor. The detach is
// lazy (MNT_DETACH): the descriptor that names the mount keeps it busy
// until it is closed, right after; a process still using the mount keeps
// its files until it exits, but the mount is gone from the image at once.
// A mount already gone (unmounted by a teardown of the whole tree) is not
// an error. Calling Unmount again does nothing.
func (m *Mount) Unmount() error {
	if m == nil || m.fd < 0 {
		return nil
	}
	err := unix.Unmount("/proc/self/fd/"+strconv.Itoa(m.fd), unix.MNT_DETACH)
	unix.Close(m.fd)
	m.fd = -1
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", m.Host, err)
	}
	return nil
}
