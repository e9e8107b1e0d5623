package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"vmdeb/internal/archive"
)

// mergeUsr turns /bin, /sbin, /lib… into symlinks to their /usr
// counterparts, as debootstrap's merge_usr does, unless the system must
// stay unmerged (before buster, or a buildd chroot up to bookworm).
func mergeUsr(target, codename string, variant archive.Variant) error {
	switch codename {
	case "etch", "lenny", "squeeze", "wheezy", "jessie", "stretch":
		return nil
	case "buster", "bullseye", "bookworm":
		if variant == archive.Buildd {
			if codename == "bookworm" {
				return os.WriteFile(filepath.Join(target, "etc/unsupported-skip-usrmerge-conversion"),
					[]byte("this system will not be supported in the future\n"), 0o644)
			}
			return nil
		}
	}
	for _, d := range []string{"bin", "lib", "lib32", "lib64", "libo32", "libx32", "sbin"} {
		p := filepath.Join(target, d)
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		if err := mergeEntry(target, d); err != nil {
			return err
		}
		if err := os.Symlink("usr/"+d, p); err != nil {
			return err
		}
	}
	return nil
}

// mergeEntry moves target/rel to target/usr/rel, merging directories.
func mergeEntry(target, rel string) error {
	src, dst := filepath.Join(target, rel), filepath.Join(target, "usr", rel)
	dfi, err := os.Lstat(dst)
	if errors.Is(err, os.ErrNotExist) {
		return os.Rename(src, dst)
	}
	if err != nil {
		return err
	}
	sfi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if dfi.Mode()&os.ModeSymlink != 0 || !dfi.IsDir() || !sfi.IsDir() {
		return fmt.Errorf("merging /usr: cannot move /%s, /usr/%s exists", rel, rel)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := mergeEntry(target, filepath.Join(rel, e.Name())); err != nil {
			return err
		}
	}
	return os.Remove(src)
}
