package archive

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/xi2/xz"
	"golang.org/x/sys/unix"
)

// member is one file of a .deb's ar archive.
type member struct {
	name         string
	offset, size int64
}

// readAr lists the members of an ar archive (a .deb).
func readAr(f io.ReaderAt, name string) ([]member, error) {
	magic := make([]byte, 8)
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != "!<arch>\n" {
		return nil, fmt.Errorf("%s: not a Debian package (no ar header)", name)
	}
	var out []member
	off := int64(8)
	hdr := make([]byte, 60)
	for {
		_, err := f.ReadAt(hdr, off)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if hdr[58] != '`' || hdr[59] != '\n' {
			return nil, fmt.Errorf("%s: corrupt ar member header at %d", name, off)
		}
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%s: corrupt ar member size at %d", name, off)
		}
		mname := strings.TrimRight(strings.TrimSpace(string(hdr[:16])), "/")
		out = append(out, member{name: mname, offset: off + 60, size: size})
		off += 60 + size + size%2
	}
}

// decompress wraps r by the compression a member's name says.
func decompress(r io.Reader, name string) (io.ReadCloser, error) {
	switch path.Ext(name) {
	case ".tar":
		return io.NopCloser(r), nil
	case ".gz":
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		return z, nil
	case ".xz":
		// xi2/xz (a port of XZ Embedded) decodes about 1.5 times as fast
		// as the other pure Go decoders; most packages are xz.
		z, err := xz.NewReader(bufio.NewReaderSize(r, 1<<16), 0)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(z), nil
	case ".zst":
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	case ".bz2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	}
	return nil, fmt.Errorf("unknown compression of %s", name)
}

// debMember opens the tar member of a .deb whose name starts with prefix
// ("control.tar" or "data.tar"), decompressed.
func debMember(f *os.File, prefix string) (*tar.Reader, io.Closer, error) {
	ms, err := readAr(f, f.Name())
	if err != nil {
		return nil, nil, err
	}
	if len(ms) < 3 || ms[0].name != "debian-binary" {
		return nil, nil, fmt.Errorf("%s: not a Debian binary package", f.Name())
	}
	for _, m := range ms {
		if strings.HasPrefix(m.name, prefix) {
			z, err := decompress(bufio.NewReaderSize(io.NewSectionReader(f, m.offset, m.size), 1<<17), m.name)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", f.Name(), m.name, err)
			}
			return tar.NewReader(z), z, nil
		}
	}
	return nil, nil, fmt.Errorf("%s: no %s member", f.Name(), prefix)
}

// ControlFile returns one file of a package's control archive (such as
// "control" or "postinst"); nil when the package has none.
func ControlFile(debPath, name string) ([]byte, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr, z, err := debMember(f, "control.tar")
	if err != nil {
		return nil, err
	}
	defer z.Close()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: control archive: %w", debPath, err)
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) == name {
			return io.ReadAll(tr)
		}
	}
}

// Extract unpacks a package's data archive into the directory that root
// holds, like `dpkg-deb --fsys-tarfile | tar -x --keep-old-files`: files
// already there are kept (the first package to ship a path wins), owners,
// modes and times are restored. Paths are resolved inside root, so no
// entry and no symlink in the package can write outside it.
func Extract(debPath string, root *os.Root) error { return Unpack(debPath, root, nil) }

// Unpack extracts the package's data into root (when root is not nil)
// and writes to plain (when not nil) the same package with its data
// archive uncompressed: dpkg installs that one without decompressing it
// again, and a later build extracts it without decompressing at all.
func Unpack(debPath string, root *os.Root, plain *os.File) error {
	return unpack(debPath, root, plain, true)
}

// ExtractDir unpacks a package's data archive into dir (made if need be),
// as `dpkg-deb -x` does, with Extract's guarantees: data.tar.xz, .zst,
// .gz, .bz2 or plain; symbolic and hard links, modes (setuid, setgid and
// sticky bits too) and times kept; nothing written outside dir, whatever
// the package's paths and links say. Files already in dir are kept.
// Owners are restored when running as root, as tar does.
func ExtractDir(debPath, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	err = unpack(debPath, root, nil, os.Geteuid() == 0)
	if cerr := root.Close(); err == nil {
		err = cerr
	}
	return err
}

// WalkData calls fn for each entry of a package's data archive in turn,
// with a reader of a regular file's content (whatever the archive's
// compression). An error from fn stops the walk and is returned.
func WalkData(debPath string, fn func(h *tar.Header, r io.Reader) error) error {
	f, err := os.Open(debPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr, z, err := debMember(f, "data.tar")
	if err != nil {
		return err
	}
	defer z.Close()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: data archive: %w", debPath, err)
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

// unpack is Unpack; chown says whether owners are restored.
func unpack(debPath string, root *os.Root, plain *os.File, chown bool) error {
	f, err := os.Open(debPath)
	if err != nil {
		return err
	}
	defer f.Close()
	ms, err := readAr(f, debPath)
	if err != nil {
		return err
	}
	if len(ms) < 3 || ms[0].name != "debian-binary" {
		return fmt.Errorf("%s: not a Debian binary package", debPath)
	}
	var data *member
	for i := range ms {
		if strings.HasPrefix(ms[i].name, "data.tar") {
			data = &ms[i]
			break
		}
	}
	if data == nil {
		return fmt.Errorf("%s: no data.tar member", debPath)
	}
	var tee io.Writer
	var sizeAt int64
	if plain != nil {
		// Every member but the data archive is copied as it is, header
		// included; the data archive's size is patched in at the end.
		if _, err := plain.WriteString("!<arch>\n"); err != nil {
			return err
		}
		for _, m := range ms {
			if m.name == data.name {
				break
			}
			if _, err := io.Copy(plain, io.NewSectionReader(f, m.offset-60, 60+m.size+m.size%2)); err != nil {
				return err
			}
		}
		if sizeAt, err = plain.Seek(0, io.SeekCurrent); err != nil {
			return err
		}
		if _, err := plain.WriteString(arHeader("data.tar", 0)); err != nil {
			return err
		}
		tee = plain
	}
	z, err := decompress(bufio.NewReaderSize(io.NewSectionReader(f, data.offset, data.size), 1<<17), data.name)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", debPath, data.name, err)
	}
	defer z.Close()
	var src io.Reader = z
	counter := &countWriter{}
	if tee != nil {
		src = io.TeeReader(z, io.MultiWriter(tee, counter))
	}
	if root != nil {
		if err := extractTar(tar.NewReader(src), root, debPath, chown); err != nil {
			return err
		}
	}
	// The rest of the stream (tar's end blocks, or all of it when nothing
	// is extracted) must reach the copy too.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("%s: %s: %w", debPath, data.name, err)
	}
	if plain == nil {
		return nil
	}
	if counter.n%2 == 1 {
		if _, err := plain.Write([]byte{'\n'}); err != nil {
			return err
		}
	}
	_, err = plain.WriteAt([]byte(arHeader("data.tar", counter.n)), sizeAt)
	return err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// arHeader is an ar member header as dpkg-deb writes it.
func arHeader(name string, size int64) string {
	return fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", size)
}

func extractTar(tr *tar.Reader, root *os.Root, debPath string, chown bool) error {
	buf := make([]byte, 256<<10)
	var dirs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: data archive: %w", debPath, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == "." || name == "" {
			continue
		}
		if strings.HasPrefix(name, "../") || name == ".." {
			return fmt.Errorf("%s: %s points outside the root", debPath, h.Name)
		}
		if !chown {
			h.Uid, h.Gid = -1, -1 // chown(2) leaves an ID of -1 as it is
		}
		if err := extractOne(root, tr, h, name, buf); err != nil {
			return fmt.Errorf("%s: %s: %w", debPath, h.Name, err)
		}
		if h.Typeflag == tar.TypeDir {
			hc := *h
			hc.Name = name
			dirs = append(dirs, &hc)
		}
	}
	// Directory times last: creating entries inside changes them.
	for _, h := range dirs {
		root.Chtimes(h.Name, h.ModTime, h.ModTime)
	}
	return nil
}

func extractOne(root *os.Root, tr *tar.Reader, h *tar.Header, name string, buf []byte) error {
	mode := os.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		err := root.Mkdir(name, 0o700)
		if errors.Is(err, os.ErrNotExist) {
			if err = root.MkdirAll(path.Dir(name), 0o755); err == nil {
				err = root.Mkdir(name, 0o700)
			}
		}
		if errors.Is(err, os.ErrExist) {
			return nil // a directory or a symlink to one (merged /usr): keep it
		}
		if err != nil {
			return err
		}
		if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
			return err
		}
		return root.Chmod(name, mode|specialBits(h.Mode))
	case tar.TypeReg:
		out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			if err = root.MkdirAll(path.Dir(name), 0o755); err == nil {
				out, err = root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			}
		}
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(onlyWriter{out}, tr, buf); err != nil {
			out.Close()
			return err
		}
		// Owner before mode: chown clears the setuid bit.
		if err := out.Chown(h.Uid, h.Gid); err != nil {
			out.Close()
			return err
		}
		if err := out.Chmod(mode | specialBits(h.Mode)); err != nil {
			out.Close()
			return err
		}
		t := unix.NsecToTimeval(h.ModTime.UnixNano())
		unix.Futimes(int(out.Fd()), []unix.Timeval{t, t})
		return out.Close()
	case tar.TypeSymlink:
		err := root.Symlink(h.Linkname, name)
		if errors.Is(err, os.ErrNotExist) {
			if err = root.MkdirAll(path.Dir(name), 0o755); err == nil {
				err = root.Symlink(h.Linkname, name)
			}
		}
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return root.Lchown(name, h.Uid, h.Gid)
	case tar.TypeLink:
		target := path.Clean(strings.TrimPrefix(h.Linkname, "/"))
		err := root.Link(target, name)
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("unsupported entry type %q", h.Typeflag)
}

// specialBits turns tar's setuid, setgid and sticky bits into Go's.
func specialBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// onlyWriter hides ReadFrom, so io.CopyBuffer uses our large buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// DebInfo is what a package's control file says about it.
type DebInfo struct{ Package, Version, Architecture string }

// maxControl bounds a control file read into memory: real ones are a few
// KiB; a crafted package must not make the reader allocate without end.
const maxControl = 1 << 20

// ReadDebInfo checks that debPath is a Debian binary package (an ar
// archive with debian-binary, a control archive holding a control file
// with Package, Version and Architecture) and returns those fields.
func ReadDebInfo(debPath string) (DebInfo, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return DebInfo{}, err
	}
	defer f.Close()
	tr, z, err := debMember(f, "control.tar")
	if err != nil {
		return DebInfo{}, err
	}
	defer z.Close()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return DebInfo{}, fmt.Errorf("%s: not a Debian binary package (no control file in its control archive)", debPath)
		}
		if err != nil {
			return DebInfo{}, fmt.Errorf("%s: control archive: %w", debPath, err)
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) != "control" {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxControl+1))
		if err != nil {
			return DebInfo{}, fmt.Errorf("%s: control archive: %w", debPath, err)
		}
		if len(data) > maxControl {
			return DebInfo{}, fmt.Errorf("%s: its control file is larger than %d KiB", debPath, maxControl>>10)
		}
		var d DebInfo
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.ToLower(k) {
			case "package":
				d.Package = v
			case "version":
				d.Version = v
			case "architecture":
				d.Architecture = v
			}
		}
		if d.Package == "" || d.Version == "" || d.Architecture == "" {
			return DebInfo{}, fmt.Errorf("%s: its control file lacks Package, Version or Architecture", debPath)
		}
		return d, nil
	}
}
