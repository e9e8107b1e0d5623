package tree

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// MountsUnder lists the mount points at or below dir in this process's
// mount namespace, deepest first.
func MountsUnder(dir string) ([]string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(dir)))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// Unmount detaches target, lazily if it is busy: a busy mount must not
// stop the rest of a teardown.
func Unmount(target string) error {
	err := unix.Unmount(target, 0)
	if err == nil || errors.Is(err, unix.EINVAL) {
		return nil // EINVAL: not mounted any more
	}
	if err2 := unix.Unmount(target, unix.MNT_DETACH); err2 != nil {
		return fmt.Errorf("unmount %s: %v; lazy unmount: %w", target, err, err2)
	}
	return nil
}
