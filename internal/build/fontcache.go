package build

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/imgroot"
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
// etc/fonts/conf.d/*.conf, relative to root, without duplicates. Every
// path is resolved inside the image.
func fontDirs(root string) []string {
	r, err := imgroot.Open(root)
	if err != nil {
		return nil
	}
	defer r.Close()
	seen := map[string]bool{}
	var dirs []string
	add := func(rel string) {
		rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
		if rel == "" || seen[rel] {
			return
		}
		seen[rel] = true
		if fi, err := r.Lstat(rel); err == nil && fi.IsDir() {
			dirs = append(dirs, rel)
		}
	}
	for _, d := range fontRoots {
		add(d)
	}
	confs, _ := r.Glob("etc/fonts/conf.d/*.conf")
	confs = append([]string{"etc/fonts/fonts.conf"}, confs...)
	for _, c := range confs {
		data, err := r.ReadFile(c)
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
// targets are walked too, resolved as the booted image would (absolute
// targets from the image's root, never the host's); access times are left
// alone.
func truncateDirTimes(root string, rels []string) (int, error) {
	r, err := imgroot.Open(root)
	if err != nil {
		return 0, err
	}
	defer r.Close()
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
		err := r.Walk(rel, func(p string, e imgroot.Entry) error {
			fi := e.Info()
			if fi.Mode()&fs.ModeSymlink != 0 {
				if t, err := r.Resolve(p); err == nil {
					if ti, err := r.Lstat(t); err == nil && ti.IsDir() {
						queue = append(queue, t)
					}
				}
				return nil
			}
			if !fi.IsDir() {
				return nil
			}
			mt := fi.ModTime()
			if mt.Nanosecond() == 0 {
				return nil
			}
			n++
			return e.Lutimes(time.Time{}, time.Unix(mt.Unix(), 0))
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
	}
	return n, nil
}

// renewFontCaches makes the image's fontconfig caches valid on a file
// system that keeps whole seconds: font directories' mtimes truncated,
// then `fc-cache -s` in the image (the target's own fontconfig, under
// SOURCE_DATE_EPOCH when the build has one). Nothing happens in an image
// without fc-cache.
func renewFontCaches(ctx context.Context, st *State) error {
	r := st.Rootfs
	img, err := imgroot.Open(r)
	if err != nil {
		return err
	}
	_, err = img.Lstat("usr/bin/fc-cache")
	img.Close()
	if err != nil {
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
