package build

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
)

// fontconfig keeps, in each directory's cache, that directory's mtime in
// seconds and its nanoseconds, and throws the cache away when either
// differs. A squashfs (and ISO 9660) keeps whole seconds only, so on a
// booted live system every cache made during the build was stale: each
// user's first program to use fonts rebuilt them all, which under qemu's
// TCG kept an Xfce session's screen black for minutes. Giving the font
// directories whole-second mtimes and renewing the caches in the image
// makes them valid on any file system.

// fontRoots are where Debian's fontconfig looks for fonts (fonts.conf),
// relative to the image's root; the config's own <dir> entries are added.
var fontRoots = []string{"usr/share/fonts", "usr/local/share/fonts", "usr/share/X11/fonts", "usr/lib/X11/fonts"}

var fontDirElem = regexp.MustCompile(`<dir(?:\s[^>]*)?>\s*(/[^<\s]+)\s*</dir>`)

// fontDirs lists the font directories of the image at root that exist:
// fontRoots and the absolute <dir> entries of etc/fonts/fonts.conf and
// etc/fonts/conf.d/*.conf, relative to root, without duplicates.
func fontDirs(root string) []string {
	seen := map[string]bool{}
	var dirs []string
	add := func(rel string) {
		rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
		if rel == "" || seen[rel] {
			return
		}
		seen[rel] = true
		// Lstat: a link could lead out of the image.
		if fi, err := os.Lstat(filepath.Join(root, rel)); err == nil && fi.IsDir() {
			dirs = append(dirs, rel)
		}
	}
	for _, d := range fontRoots {
		add(d)
	}
	confs, _ := filepath.Glob(filepath.Join(root, "etc/fonts/conf.d/*.conf"))
	confs = append([]string{filepath.Join(root, "etc/fonts/fonts.conf")}, confs...)
	for _, c := range confs {
		data, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		for _, m := range fontDirElem.FindAllStringSubmatch(string(data), -1) {
			add(m[1])
		}
	}
	sort.Strings(dirs)
	return dirs
}

// truncateDirTimes sets the mtime of every directory under root/rel (rel
// from fontDirs) to its whole second, and says how many it changed.
// fontconfig follows symbolic links to directories (fonts/cmap/* lead into
// poppler's data, fonts/opentype/mathjax into javascript/), so their
// targets are walked too when they are inside the image; access times are
// left alone.
func truncateDirTimes(root string, rels []string) (int, error) {
	n := 0
	done := map[string]bool{}
	queue := append([]string{}, rels...)
	for len(queue) > 0 {
		rel := queue[0]
		queue = queue[1:]
		if done[rel] {
			continue
		}
		done[rel] = true
		err := filepath.WalkDir(filepath.Join(root, rel), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if t, ok := dirInside(root, p); ok {
					queue = append(queue, t)
				}
				return nil
			}
			if !d.IsDir() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			mt := fi.ModTime()
			if mt.Nanosecond() == 0 {
				return nil
			}
			n++
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: mt.Unix()}}
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// dirInside resolves the symbolic link at p (a path under root) as the
// booted image would, absolute targets taken from root, and returns the
// directory it leads to relative to root; ok is false for a target that
// is no directory or lies outside the image.
func dirInside(root, p string) (rel string, ok bool) {
	for range 16 { // a chain of links, not a loop
		t, err := os.Readlink(p)
		if err != nil {
			return "", false
		}
		if filepath.IsAbs(t) {
			p = filepath.Join(root, t)
		} else {
			p = filepath.Join(filepath.Dir(p), t)
		}
		r, err := filepath.Rel(root, p)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return "", false
		}
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			return "", false
		case fi.IsDir():
			return r, true
		case fi.Mode()&fs.ModeSymlink == 0:
			return "", false
		}
	}
	return "", false
}

// renewFontCaches makes the image's fontconfig caches valid on a file
// system that keeps whole seconds: font directories' mtimes truncated,
// then `fc-cache -s` in the image (the target's own fontconfig, under
// SOURCE_DATE_EPOCH when the build has one). Nothing happens in an image
// without fc-cache.
func renewFontCaches(ctx context.Context, st *State) error {
	r := st.Rootfs
	if _, err := os.Lstat(filepath.Join(r, "usr/bin/fc-cache")); err != nil {
		return nil
	}
	n, err := truncateDirTimes(r, fontDirs(r))
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	st.Log.Printf("fontconfig: %d font directories' mtimes truncated to whole seconds (squashfs keeps no more); renewing the caches", n)
	err = st.Chroot.Run(ctx, buildlog.Cmd{Name: "fc-cache", Args: []string{"-s"}})
	if err != nil && ctx.Err() == nil {
		// The image works without valid caches, only its first session
		// is slow: not worth failing the build for.
		st.Log.Printf("warning: fc-cache -s failed in the image (%v): fontconfig will rebuild its caches at the first login", err)
		return nil
	}
	return err
}
