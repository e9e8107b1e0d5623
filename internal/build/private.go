package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PrivateDir returns parent/vmdeb-UID, made if missing: a directory of the
// builder's own (mode 0700) that work directories and locks live in, so
// that nobody else on the machine can plant, swap or remove entries there.
// UID is the builder's uid on the host (the user's, in a rootless build).
// It refuses a directory that is a link, not the builder's or open to
// others, and a parent path that another user could change.
func PrivateDir(parent string) (string, error) { return privateDir(parent, true) }

// CheckPrivateDir is PrivateDir's checks, making nothing: for the
// preflight, so that a refusal comes before the build log is written.
func CheckPrivateDir(parent string) error {
	_, err := privateDir(parent, false)
	return err
}

func privateDir(parent string, create bool) (string, error) {
	parent, err := filepath.Abs(parent)
	if err != nil {
		return "", err
	}
	asked := parent
	if !create {
		// Check the nearest existing ancestor: the rest would be made.
		for {
			if _, err := os.Stat(parent); err == nil || filepath.Dir(parent) == parent {
				break
			}
			parent = filepath.Dir(parent)
		}
	} else if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	if parent, err = filepath.EvalSymlinks(parent); err != nil {
		return "", err
	}
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("work directory %s (--workdir): %s is not a directory", asked, parent)
	}
	if err := safeAncestors(parent); err != nil {
		return "", err
	}
	d := filepath.Join(parent, "vmdeb-"+strconv.Itoa(hostUID()))
	if !create {
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); errors.Is(err, unix.ENOENT) {
			return d, nil
		}
	} else if err := unix.Mkdir(d, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("making %s: %w", d, err)
	}
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("%s is not a directory of vmdeb's (%v): remove it, or choose another --workdir", d, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		return "", fmt.Errorf("%s belongs to uid %d (mode %o), and vmdeb needs it to be uid %d's with mode 700: someone else made it; remove it, or choose another --workdir",
			d, st.Uid, st.Mode&0o7777, os.Geteuid())
	}
	return d, nil
}

// safeAncestors refuses a path whose directories another user could
// rename or replace: each must belong to root or the builder, and be
// writable by nobody else unless it is sticky (/tmp, /var/tmp).
func safeAncestors(dir string) error {
	me := uint32(os.Geteuid())
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return err
		}
		owner := st.Uid == 0 || st.Uid == me || (inUserns() && st.Uid == overflowUID())
		if !owner || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0) {
			return fmt.Errorf("work directory %s: %s (uid %d, mode %o) can be changed by another user, who could swap the build's files for links; choose a --workdir that only root or you can change",
				dir, d, st.Uid, st.Mode&0o7777)
		}
		if d == "/" {
			return nil
		}
	}
}

// hostUID is this process's uid on the host: in a user namespace, the
// outside id that its uid maps to.
func hostUID() int {
	uid := os.Geteuid()
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return uid
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		in, e1 := strconv.Atoi(f[0])
		out, e2 := strconv.Atoi(f[1])
		n, e3 := strconv.Atoi(f[2])
		if e1 == nil && e2 == nil && e3 == nil && uid >= in && uid < in+n {
			return out + uid - in
		}
	}
	return uid
}

func inUserns() bool { return hostUID() != os.Geteuid() }

// overflowUID is the owner a user namespace shows for ids it does not map.
func overflowUID() uint32 {
	b, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 65534
	}
	return uint32(n)
}
