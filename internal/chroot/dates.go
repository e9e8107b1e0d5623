package chroot

import (
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ClampTimes sets the access and modification times of every file under
// root newer than epoch (SOURCE_DATE_EPOCH) to epoch, links themselves
// rather than their targets, so that every image made from the tree holds
// the same dates whenever it is built. It returns how many it changed.
func ClampTimes(root string, epoch int64) (int, error) {
	n := 0
	ts := []unix.Timespec{{Sec: epoch}, {Sec: epoch}}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if mt := fi.ModTime(); mt.Unix() < epoch || (mt.Unix() == epoch && mt.Nanosecond() == 0) {
			return nil
		}
		n++
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	return n, err
}
