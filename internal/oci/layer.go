package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"vmdeb/internal/imgroot"
)

// File is a file the layer gets where the tree has none.
type File struct {
	Path string // relative to the root, e.g. "etc/apt/apt.conf.d/docker-clean"
	Mode fs.FileMode
	Data []byte
}

// LayerOptions shape the layer.
type LayerOptions struct {
	// Epoch, when > 0, is SOURCE_DATE_EPOCH: no date in the layer is later,
	// and the added files have it. 0 dates them Now.
	Epoch int64
	Now   time.Time
	// Add are files put in the layer where their directory is in the tree
	// and they are not: a file the image has wins.
	Add []File
}

// Emptied are the directories whose contents a container image leaves
// out: the container runtime mounts its own /dev, /proc and /sys there
// (Debian's official images leave them empty too). The directories stay.
var Emptied = []string{"dev", "proc", "sys"}

// ContainerFiles are the files a container image gets beside the tree's,
// as Debian's official container images have them:
// apt cleans its package cache after each install, so a layer made by
// apt-get install in a derived image does not carry the .deb files; and
// policy-rc.d keeps the packages apt installs in a container from starting
// their services, there being no init to run them.
var ContainerFiles = []File{
	{Path: "etc/apt/apt.conf.d/docker-clean", Mode: 0o644, Data: []byte(`# Written by vmdeb for container images: apt's caches are removed after each
# run, so that an image layer made by apt-get install does not carry them.
# Remove this file to keep downloaded packages (e.g. in a build cache).
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
`)},
	{Path: "usr/sbin/policy-rc.d", Mode: 0o755, Data: []byte(`#!/bin/sh
# Written by vmdeb for container images: a container has no init to run
# services, so packages installed in it do not start theirs (invoke-rc.d
# reads exit status 101 as "action forbidden"). Remove it to allow them.
exit 101
`)},
}

// WriteLayer writes the tree at root as the image's layer to w: a tar,
// gzip-compressed, and returns its digests and size. Entries come in the
// order of the tarball output (names sorted, directories before what they
// hold), named without a leading "./", with numeric owners, modes,
// extended attributes (security.selinux left out: the runtime labels the
// container) and hard links; dates are clamped to opts.Epoch. A socket is
// left out (tar cannot hold one); a name starting with .wh. is refused:
// container runtimes read it as a deletion.
func WriteLayer(ctx context.Context, root string, w io.Writer, opts LayerOptions) (Layer, error) {
	r, err := imgroot.Open(root)
	if err != nil {
		return Layer{}, err
	}
	defer r.Close()
	diff, comp := sha256.New(), sha256.New()
	count := &counter{}
	gz, err := gzip.NewWriterLevel(io.MultiWriter(w, comp, count), gzip.DefaultCompression)
	if err != nil {
		return Layer{}, err
	}
	// A fixed gzip header: no name, no date.
	gz.Header = gzip.Header{OS: 255}
	lw := &layerWriter{ctx: ctx, r: r, root: root, tw: tar.NewWriter(io.MultiWriter(gz, diff)), opts: opts, links: map[[2]uint64]string{}}
	if opts.Now.IsZero() {
		lw.opts.Now = time.Now()
	}
	if err := lw.dir(""); err != nil {
		return Layer{}, err
	}
	if err := lw.tw.Close(); err != nil {
		return Layer{}, err
	}
	if err := gz.Close(); err != nil {
		return Layer{}, err
	}
	return Layer{
		Digest: digest.NewDigest(digest.SHA256, comp),
		DiffID: digest.NewDigest(digest.SHA256, diff),
		Size:   count.n,
	}, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type layerWriter struct {
	ctx   context.Context
	r     *imgroot.Root
	root  string
	tw    *tar.Writer
	opts  LayerOptions
	links map[[2]uint64]string // (device, inode) of a file with more than one name: its first name
}

// item is one name in a directory: a file of the tree (info) or one to
// add (add).
type item struct {
	name string
	info fs.FileInfo
	add  *File
}

// dir writes the entries of the directory rel (its own entry written by
// the caller), in name order, with the files to add merged in.
func (lw *layerWriter) dir(rel string) error {
	if err := lw.ctx.Err(); err != nil {
		return err
	}
	if rel != "" && slices.Contains(Emptied, rel) {
		return nil
	}
	ents, err := lw.r.ReadDir(rel)
	if err != nil {
		return err
	}
	var items []item
	have := map[string]bool{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			return err
		}
		items = append(items, item{name: e.Name(), info: info})
		have[e.Name()] = true
	}
	for i := range lw.opts.Add {
		a := &lw.opts.Add[i]
		if d, base := path.Split(a.Path); strings.TrimSuffix(d, "/") == rel && !have[base] {
			items = append(items, item{name: base, add: a})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.name, b.name) })
	for _, it := range items {
		name := path.Join(rel, it.name)
		if it.add != nil {
			if err := lw.added(name, it.add); err != nil {
				return err
			}
			continue
		}
		if strings.HasPrefix(it.name, ".wh.") {
			return fmt.Errorf("/%s: a name starting with .wh. is a deletion (whiteout) in a container image layer, so the image cannot hold this file; remove or rename it", name)
		}
		isDir, err := lw.entry(name, it.info)
		if err != nil {
			return err
		}
		if isDir {
			if err := lw.dir(name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (lw *layerWriter) mtime(sec int64) time.Time {
	if lw.opts.Epoch > 0 && sec > lw.opts.Epoch {
		sec = lw.opts.Epoch
	}
	return time.Unix(sec, 0)
}

// added writes a file of opts.Add.
func (lw *layerWriter) added(name string, f *File) error {
	date := lw.opts.Now.Unix()
	if lw.opts.Epoch > 0 {
		date = lw.opts.Epoch
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(f.Mode.Perm()), Size: int64(len(f.Data)), ModTime: time.Unix(date, 0)}
	if err := lw.tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := lw.tw.Write(f.Data)
	return err
}

// entry writes the entry of the file name (a directory's without what it
// holds) and says whether it is a directory.
func (lw *layerWriter) entry(name string, info fs.FileInfo) (bool, error) {
	st, ok := info.Sys().(*unix.Stat_t)
	if !ok {
		return false, fmt.Errorf("/%s: no stat information", name)
	}
	h := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: lw.mtime(st.Mtim.Sec),
	}
	var content *imgFile
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
	case unix.S_IFLNK:
		target, err := lw.r.Readlink(name)
		if err != nil {
			return false, err
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
	case unix.S_IFREG:
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := lw.links[key]; ok && st.Nlink > 1 {
			h.Typeflag, h.Linkname = tar.TypeLink, first
			break
		}
		if st.Nlink > 1 {
			lw.links[key] = name
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		content = &imgFile{name: name, st: st}
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return false, nil // a socket
	}
	if h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeLink {
		x, err := xattrs(filepath.Join(lw.root, name))
		if err != nil {
			return false, fmt.Errorf("/%s: reading extended attributes: %w", name, err)
		}
		if len(x) > 0 {
			h.PAXRecords = x
		}
	}
	if err := lw.tw.WriteHeader(h); err != nil {
		return false, fmt.Errorf("/%s: %w", name, err)
	}
	if content != nil {
		if err := content.copy(lw.r, lw.tw); err != nil {
			return false, err
		}
	}
	return h.Typeflag == tar.TypeDir, nil
}

// imgFile is a regular file of the tree whose content goes in the layer.
type imgFile struct {
	name string
	st   *unix.Stat_t
}

// copy copies the file's content, refusing a file that is not the one
// walked (replaced meanwhile) or whose size changed.
func (f *imgFile) copy(r *imgroot.Root, w io.Writer) error {
	fh, err := r.OpenFile(f.name)
	if err != nil {
		return err
	}
	defer fh.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil {
		return err
	}
	if st.Ino != f.st.Ino || st.Dev != f.st.Dev || st.Size != f.st.Size {
		return fmt.Errorf("/%s changed while it was being archived", f.name)
	}
	if n, err := io.CopyN(w, fh, f.st.Size); err != nil {
		return fmt.Errorf("/%s: %d of %d bytes read: %w", f.name, n, f.st.Size, err)
	}
	return nil
}

// xattrs are a file's extended attributes as PAX records
// (SCHILY.xattr.NAME, as GNU tar and container runtimes write and read
// them), security.selinux left out.
func xattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	recs := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		vs, err := unix.Lgetxattr(p, name, nil)
		if errors.Is(err, unix.ENODATA) {
			continue
		} else if err != nil {
			return nil, err
		}
		v := make([]byte, vs)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, err
		}
		recs["SCHILY.xattr."+name] = string(v[:m])
	}
	if len(recs) == 0 {
		return nil, nil
	}
	return recs, nil
}
