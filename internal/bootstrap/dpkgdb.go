package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"vmdeb/internal/imgroot"
	"vmdeb/internal/tree"
)

// dbOnTmpfs moves target's /var/lib/dpkg onto a tmpfs. The function it
// returns copies the database back to the disk (when keep is set) and
// unmounts the tmpfs. Every file is reached through imgroot: by then a
// package's script may have made a link of any directory on the way.
func dbOnTmpfs(target string) (func(keep bool) error, error) {
	img, err := imgroot.Open(target)
	if err != nil {
		return nil, err
	}
	const db, disk = "var/lib/dpkg", "var/lib/dpkg.vmdeb-disk"
	dbPath := filepath.Join(target, db)
	fail := func(err error) (func(bool) error, error) { return nil, errors.Join(err, img.Close()) }
	if err := img.Rename(db, disk); err != nil {
		return fail(err)
	}
	if err := img.Mkdir(db, 0o755); err != nil {
		return fail(err)
	}
	m, err := img.MountOn(db, func(at string) error {
		return unix.Mount("tmpfs", at, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
	})
	if err != nil {
		return fail(fmt.Errorf("mounting a tmpfs on %s: %w", dbPath, err))
	}
	if err := tree.Copy(img, disk, db); err != nil {
		return fail(errors.Join(err, m.Unmount()))
	}
	return func(keep bool) error {
		defer img.Close()
		var err error
		if keep {
			if err = img.RemoveAll(disk); err == nil {
				err = tree.Copy(img, db, disk)
			}
		}
		if uerr := m.Unmount(); uerr != nil {
			return errors.Join(err, uerr)
		}
		return errors.Join(err, img.Remove(db), img.Rename(disk, db))
	}, nil
}

// unsafeIOConf is the dpkg configuration file that ShareCache adds for
// the time of the build.
const unsafeIOConf = "etc/dpkg/dpkg.cfg.d/vmdeb-build-unsafe-io"

// fastDpkg makes the target's dpkg skip the syncs that cost most of its
// time on a busy disk, as the bootstrap itself does: no fsync per
// unpacked file (force-unsafe-io) and the database on a tmpfs, where its
// many journal syncs are free. A build that dies is thrown away whole, so
// the syncs buy nothing until it ends. The function returned puts the
// database back on disk and removes the option: the image has neither.
func fastDpkg(root string) (func() error, error) {
	img, err := imgroot.Open(root)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if _, err := img.Stat("var/lib/dpkg/status"); err != nil {
		return nil, fmt.Errorf("no dpkg database in %s: %w", root, err)
	}
	if err := img.MkdirAll(path.Dir(unsafeIOConf), 0o755); err != nil {
		return nil, err
	}
	if err := img.WriteFile(unsafeIOConf, []byte("# vmdeb: for the build only (removed before the image is made)\nforce-unsafe-io\n"), 0o644); err != nil {
		return nil, err
	}
	keepDB, err := dbOnTmpfs(root)
	if err != nil {
		return nil, errors.Join(err, img.Remove(unsafeIOConf))
	}
	return func() error {
		err := keepDB(true)
		img, ierr := imgroot.Open(root)
		if ierr != nil {
			return errors.Join(err, ierr)
		}
		defer img.Close()
		if rerr := img.Remove(unsafeIOConf); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return err
	}, nil
}
