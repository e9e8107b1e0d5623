package build

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"vmdeb/internal/chroot"
)

// tempDir is vmdeb's own directory (mode 0700) beside an output, where the
// output is made before it takes its final name. The output directory may
// belong to another user (a CI runner's workspace), who can rename or
// replace any name in it at any moment, even the name of a directory of
// root's. So the directory is held by descriptors and reached only through
// them: tools get a path through /proc/PID/fd, which names this very
// directory whatever happens to its name; publishing is a renameat from it
// into the held output directory.
type tempDir struct {
	parent   *os.File // the output's directory
	dir      *os.File // the temporary directory itself
	name     string   // its name in parent, for messages and removal
	dev, ino uint64
}

// tempDirTries is how many new names newTempDir tries when the directory
// it made is taken from under it before it could open it.
const tempDirTries = 20

// afterMkdir, when set (tests), runs between making a temporary directory
// and opening it: the moment another user can swap it.
var afterMkdir func(outDir, name string)

// newTempDir makes a new directory named prefix-RANDOM in outDir. Whoever
// owns outDir can rename the new directory away and put something else in
// its place before it is opened; what is then opened is refused, and a
// new name is tried, tempDirTries times: a neighbour racing with the build
// makes it slower, and fail only if it wins every time.
func newTempDir(outDir, prefix string) (*tempDir, error) {
	pfd, err := unix.Open(outDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: outDir, Err: err}
	}
	parent := os.NewFile(uintptr(pfd), outDir)
	var first error
	for i := 0; i < tempDirTries; i++ {
		t, err := makeTempDir(parent, prefix)
		if err == nil {
			return t, nil
		}
		var sw *swappedError
		if !errors.As(err, &sw) {
			parent.Close()
			return nil, err
		}
		if first == nil {
			first = err
		}
	}
	parent.Close()
	return nil, fmt.Errorf("%s: another user replaced each of the %d directories vmdeb made there before it could open them; the first: %w",
		outDir, tempDirTries, first)
}

// swappedError is a new temporary directory found replaced as it was
// opened.
type swappedError struct{ err error }

func (e *swappedError) Error() string { return e.err.Error() }
func (e *swappedError) Unwrap() error { return e.err }

// makeTempDir makes one new directory named prefix-RANDOM in parent and
// opens it; a *swappedError says it was replaced before it was opened.
func makeTempDir(parent *os.File, prefix string) (*tempDir, error) {
	pfd, outDir := int(parent.Fd()), parent.Name()
	var b [8]byte
	rand.Read(b[:])
	name := prefix + "-" + hex.EncodeToString(b[:])
	if err := unix.Mkdirat(pfd, name, 0o700); err != nil {
		return nil, &os.PathError{Op: "mkdir", Path: filepath.Join(outDir, name), Err: err}
	}
	if afterMkdir != nil {
		afterMkdir(outDir, name)
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
			err = &swappedError{fmt.Errorf("replaced as it was made: %w", err)}
		}
		return nil, fmt.Errorf("%s: %w", filepath.Join(outDir, name), err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	// Swapped between mkdir and open for a directory of someone
	// else's: nobody but this user makes one it owns with mode 0700.
	if err == nil && !madeHere(fd, pfd, &st) {
		err = &swappedError{fmt.Errorf("replaced by another user's directory (uid %d, mode %o) as it was made", st.Uid, st.Mode&0o7777)}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", filepath.Join(outDir, name), err)
	}
	return &tempDir{parent: parent, name: name, dir: os.NewFile(uintptr(fd), filepath.Join(outDir, name)), dev: st.Dev, ino: st.Ino}, nil
}

// madeHere tells whether st, the directory just made and opened as fd in
// the directory pfd, is the one this process made: its own, mode 0700.
// On a 9p share (a builder VM's output directory, which qemu serves with
// security_model=none) a new file belongs to the host user who runs qemu,
// as the share itself does, whoever makes it inside the VM.
func madeHere(fd, pfd int, st *unix.Stat_t) bool {
	if st.Mode&0o777 != 0o700 {
		return false
	}
	if int(st.Uid) == os.Geteuid() {
		return true
	}
	var pst unix.Stat_t
	if unix.Fstat(pfd, &pst) != nil {
		return false
	}
	return ownedAsShare(mountType(fd), st.Uid, pst.Uid)
}

// ownedAsShare: on a 9p file system, a new directory owned by its parent's
// owner is what this process's mkdir makes there.
func ownedAsShare(fsType string, uid, parentUID uint32) bool {
	return fsType == "9p" && uid == parentUID
}

// mountType is the file system type of the mount fd is on, as
// /proc/self/mountinfo names it ("" if unknown). statfs cannot tell 9p:
// its f_type is the type of the server's file system.
func mountType(fd int) string {
	var stx unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx) != nil || stx.Mask&unix.STATX_MNT_ID == 0 {
		return ""
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	return mountinfoType(f, stx.Mnt_id)
}

// mountinfoType is the file system type of the mount with ID id in the
// mountinfo table r ("" if it is not there).
func mountinfoType(r io.Reader, id uint64) string {
	ms, err := mountinfo.GetMountsFromReader(r, func(m *mountinfo.Info) (skip, stop bool) {
		return uint64(m.ID) != id, uint64(m.ID) == id
	})
	if err != nil || len(ms) == 0 {
		return ""
	}
	return ms[0].FSType
}

// swapped tells the errors of an rmdir whose name was just taken from the
// directory it was checked to be.
func swapped(err error) bool {
	return errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST)
}

// Path is the path of base inside the directory, for vmdeb and the tools
// it runs (in its PID namespace: the same /proc).
func (t *tempDir) Path(base string) string {
	return "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(t.dir.Fd())) + "/" + base
}

// Publish renames base from the directory to final in the output
// directory, replacing what stands there (a link is replaced, never
// followed; an empty directory is removed first).
func (t *tempDir) Publish(base, final string) error {
	unix.Unlinkat(int(t.parent.Fd()), final, unix.AT_REMOVEDIR) // only an empty directory
	if err := unix.Renameat(int(t.dir.Fd()), base, int(t.parent.Fd()), final); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(t.dir.Name(), base), New: filepath.Join(t.parent.Name(), final), Err: err}
	}
	return nil
}

// Remove deletes what is in the directory (through its descriptor), then
// the directory's name if it still names this directory, and releases
// both descriptors. Calling it again does nothing.
func (t *tempDir) Remove() error {
	if t == nil || t.dir == nil {
		return nil
	}
	var errs []error
	names, err := t.dir.Readdirnames(-1)
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		errs = append(errs, chroot.RemoveAt(int(t.dir.Fd()), n, filepath.Join(t.dir.Name(), n)))
	}
	var st unix.Stat_t
	if unix.Fstatat(int(t.parent.Fd()), t.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == t.dev && st.Ino == t.ino {
		// Whoever owns the output directory can swap the name for
		// something else between the check and the rmdir: then it names
		// no directory of vmdeb's any more (a file, a directory with
		// files, nothing), rmdir removes none of it, and that is no
		// failure of the build. An empty directory put there is removed.
		if err := unix.Unlinkat(int(t.parent.Fd()), t.name, unix.AT_REMOVEDIR); err != nil && !swapped(err) {
			errs = append(errs, &os.PathError{Op: "rmdir", Path: t.dir.Name(), Err: err})
		}
	}
	errs = append(errs, t.dir.Close(), t.parent.Close())
	t.dir, t.parent = nil, nil
	return errors.Join(errs...)
}
