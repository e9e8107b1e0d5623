package tree

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"vmdeb/internal/imgroot"
)

// Copy copies the directory tree src of img to dst, both relative to
// its root: directories, regular files and symlinks, keeping owners, modes
// and times. It enters no link.
func Copy(img *imgroot.Root, src, dst string) error {
	return img.Walk(src, func(p string, e imgroot.Entry) error {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, strings.TrimPrefix(src, "/")), "/")
		to := path.Join(dst, rel)
		fi := e.Info()
		st := fi.Sys().(*unix.Stat_t)
		switch {
		case fi.IsDir():
			if err := img.Mkdir(to, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := img.Readlink(p)
			if err != nil {
				return err
			}
			if err := img.Symlink(l, to); err != nil {
				return err
			}
			return img.Lchown(to, int(st.Uid), int(st.Gid))
		case fi.Mode().IsRegular():
			data, err := img.ReadFile(p)
			if err != nil {
				return err
			}
			if err := img.WriteFile(to, data, 0o600); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: not a file, directory or symlink", filepath.Join(img.Path(), p))
		}
		if err := img.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := img.Chmod(to, fi.Mode()); err != nil {
			return err
		}
		return img.Lutimes(to, fi.ModTime(), fi.ModTime())
	})
}
