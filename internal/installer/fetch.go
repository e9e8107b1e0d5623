package installer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"vmdeb/internal/aptauth"

	"vmdeb/internal/archive"
)

// DefaultKeyring is where debian-archive-keyring puts the archive's keys.
const DefaultKeyring = archive.DefaultKeyring

// image is one installer file: its path below images/ in the archive,
// below the netboot package's image directory, and in Files.Dir.
type image struct {
	archive, netboot, local string
	graphical               bool
}

// images are the files Debian's live images carry under /install.<arch>:
// the text installer's kernel and initrd and the graphical one's.
func images(arch string) []image {
	nb := "debian-installer/" + arch + "/"
	return []image{
		{"cdrom/vmlinuz", "text/" + nb + "linux", "vmlinuz", false},
		{"cdrom/initrd.gz", "text/" + nb + "initrd.gz", "initrd.gz", false},
		{"cdrom/gtk/vmlinuz", "gtk/" + nb + "linux", "gtk/vmlinuz", true},
		{"cdrom/gtk/initrd.gz", "gtk/" + nb + "initrd.gz", "gtk/initrd.gz", true},
	}
}

// Files are the fetched and verified installer files in Dir, laid out as
// on the ISO: vmlinuz, initrd.gz and (when the architecture has the
// graphical installer) gtk/vmlinuz, gtk/initrd.gz.
type Files struct {
	Dir       string
	Suite     string // the codename, from the signed Release
	Version   string // the release's version, e.g. 13.2 ("" for testing)
	Arch      string
	Graphical bool
	Signer    string // who signed the Release
	// Source says where the files came from: "images/current" (or a dated
	// build), or the netboot package and its version.
	Source string
	// Netboot: the initrds are netboot's, which load the rest of the
	// installer from a mirror rather than from a CD.
	Netboot bool
}

// Fetcher downloads with timeouts; the zero value is usable.
type Fetcher struct {
	Client *http.Client // nil = a client with connect, header and stall timeouts
	// Stall is the window over which a download must receive MinSpeed
	// bytes a second (default 60 s); one that does not (nothing at all,
	// or a mirror that trickles) is abandoned.
	Stall time.Duration
	// MinSpeed in bytes a second (default archive.DefaultMinSpeed).
	MinSpeed int64
	// MaxIndex bounds what is read of InRelease, SHA256SUMS and Packages
	// (default 256 MiB).
	MaxIndex int64
	Now      func() time.Time
	Log      func(format string, a ...any)
	// Auth holds the mirrors' credentials (HTTP basic authentication).
	Auth aptauth.Set
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
	}}
}

func (f *Fetcher) logf(format string, a ...any) {
	if f.Log != nil {
		f.Log(format, a...)
	}
}

func (f *Fetcher) maxIndex() int64 {
	if f.MaxIndex > 0 {
		return f.MaxIndex
	}
	return 256 << 20
}

// Fetch gets debian-installer's files for suite and arch from mirror into
// destDir and verifies them against keyring (a file; "" = DefaultKeyring).
// Files already in destDir with the right sums are kept. A file appears
// under its name only once verified.
func Fetch(ctx context.Context, mirror, suite, arch, destDir, keyring string) (Files, error) {
	return (&Fetcher{}).Fetch(ctx, mirror, suite, arch, destDir, keyring)
}

// Fetch is the package-level Fetch with f's client and limits.
//
// The files come from the mirror's installer images
// (dists/SUITE/main/installer-ARCH/current/images/cdrom/...), checked
// against SHA256SUMS, which is checked against the signed InRelease. When
// the mirror has no build there that matches its InRelease (a partial
// mirror or cache, or one caught between syncs), they come from the
// debian-installer-N-netboot-ARCH package instead, checked against
// Packages, which is checked against the same InRelease.
func (f *Fetcher) Fetch(ctx context.Context, mirror, suite, arch, destDir, keyring string) (Files, error) {
	mirror = strings.TrimRight(mirror, "/")
	rel, base, err := f.release(ctx, mirror, suite, keyring)
	if err != nil {
		return Files{}, err
	}
	out := Files{Dir: destDir, Suite: rel.Codename, Version: rel.Version, Arch: arch, Signer: rel.Signer}
	if err := os.MkdirAll(filepath.Join(destDir, "gtk"), 0o755); err != nil {
		return Files{}, err
	}
	imgErr := f.fromImages(ctx, rel, base, arch, &out)
	if imgErr == nil {
		return out, finish(&out)
	}
	if ctx.Err() != nil {
		return Files{}, ctx.Err()
	}
	f.logf("installer: no installer images on the mirror match its signed Release (%s); using the netboot package", firstLine(imgErr))
	if err := f.fromNetboot(ctx, rel, mirror, base, arch, &out); err != nil {
		if ctx.Err() != nil {
			return Files{}, ctx.Err()
		}
		return Files{}, fmt.Errorf("debian-installer for %s %s:\n  installer images: %v\n  netboot package: %w", suite, arch, imgErr, err)
	}
	return out, finish(&out)
}

// release fetches and verifies the suite's InRelease against keyring (a
// file; "" = DefaultKeyring); base is the suite's URL, ending in "/".
func (f *Fetcher) release(ctx context.Context, mirror, suite, keyring string) (rel *Release, base string, err error) {
	if keyring == "" {
		keyring = DefaultKeyring
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	kr, err := archive.LoadKeyring(keyring)
	if err != nil {
		return nil, "", err
	}
	base = mirror + "/dists/" + suite + "/"
	inRelease, err := f.get(ctx, base+"InRelease")
	if err != nil {
		return nil, "", err
	}
	rel, err = VerifyRelease(inRelease, kr, now())
	if err != nil {
		return nil, "", fmt.Errorf("%sInRelease: %w", base, err)
	}
	if err := rel.CheckSuite(suite); err != nil {
		return nil, "", err
	}
	return rel, base, nil
}

// firstLine shortens a joined error for a one-line log message.
func firstLine(err error) string {
	l := strings.Split(err.Error(), "\n")
	if len(l) > 1 {
		return fmt.Sprintf("%s; and %d more", l[0], len(l)-1)
	}
	return l[0]
}

// finish removes the empty gtk directory of an installer without one.
func finish(out *Files) error {
	if !out.Graphical {
		if err := os.Remove(filepath.Join(out.Dir, "gtk")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// fromImages takes the files from the first installer build of the
// mirror's images that matches the Release.
func (f *Fetcher) fromImages(ctx context.Context, rel *Release, base, arch string, out *Files) error {
	dirs := rel.InstallerDirs(arch)
	if len(dirs) == 0 {
		return fmt.Errorf("its Release lists no %s", SumsPath(arch, "current"))
	}
	var tried []error
	for _, d := range dirs {
		u := base + SumsPath(arch, d)
		sums, err := f.get(ctx, u)
		if err == nil {
			err = rel.CheckSums(arch, d, sums)
		}
		var list map[string]string
		if err == nil {
			list, err = ParseSums(sums)
		}
		if err == nil {
			err = f.imageFiles(ctx, strings.TrimSuffix(u, "SHA256SUMS"), arch, list, out)
		}
		if err == nil {
			out.Source = "images/" + d
			if d != "current" {
				f.logf("installer: using build %s (current: %v)", d, tried[0])
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tried = append(tried, fmt.Errorf("build %s: %w", d, err))
	}
	return errors.Join(tried...)
}

// imageFiles downloads and checks the files of one build against list.
func (f *Fetcher) imageFiles(ctx context.Context, imagesURL, arch string, list map[string]string, out *Files) error {
	out.Graphical = true
	for _, im := range images(arch) {
		if _, ok := list[im.archive]; !ok {
			if im.graphical {
				out.Graphical = false
				continue
			}
			return fmt.Errorf("SHA256SUMS does not list %s", im.archive)
		}
	}
	for _, im := range images(arch) {
		if im.graphical && !out.Graphical {
			continue
		}
		dst := filepath.Join(out.Dir, im.local)
		want := list[im.archive]
		if s, _, err := archive.HashFile(dst); err == nil && s == want {
			continue // verified by an earlier run
		}
		sum, err := f.download(ctx, imagesURL+im.archive, dst+".part")
		if err == nil {
			err = CheckFiles(list, map[string]Sum{im.archive: sum})
		}
		if err == nil {
			err = os.Rename(dst+".part", dst)
		}
		if err != nil {
			os.Remove(dst + ".part")
			return err
		}
		f.logf("installer: %s (%d bytes) verified", im.local, sum.Size)
	}
	return nil
}

// fromNetboot takes the files from the newest debian-installer netboot
// package of the suite.
func (f *Fetcher) fromNetboot(ctx context.Context, rel *Release, mirror, base, arch string, out *Files) error {
	idx := "main/binary-" + arch + "/Packages.gz"
	want, ok := rel.Files[idx]
	if !ok {
		return fmt.Errorf("its Release lists no %s", idx)
	}
	gz, err := f.get(ctx, base+idx)
	if err != nil {
		return err
	}
	if got := sha256Hex(gz); got != want.SHA256 || int64(len(gz)) != want.Size {
		return fmt.Errorf("%s does not match the signed Release", idx)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return fmt.Errorf("%s: %w", idx, err)
	}
	packages, err := io.ReadAll(io.LimitReader(zr, 4*f.maxIndex()))
	if err != nil {
		return fmt.Errorf("%s: %w", idx, err)
	}
	pkg, err := PickNetboot(packages, arch)
	if err != nil {
		return err
	}
	deb := filepath.Join(out.Dir, ".netboot.deb")
	defer os.Remove(deb + ".part")
	defer os.Remove(deb)
	f.logf("installer: fetching %s %s (%d MB)", pkg.Name, pkg.Version, pkg.Size>>20)
	sum, err := f.download(ctx, mirror+"/"+pkg.Filename, deb+".part")
	if err != nil {
		return err
	}
	if sum.SHA256 != pkg.SHA256 || sum.Size != pkg.Size {
		return fmt.Errorf("%s: SHA256 %s, %d bytes does not match Packages (%s, %d bytes)", pkg.Filename, sum.SHA256, sum.Size, pkg.SHA256, pkg.Size)
	}
	if err := os.Rename(deb+".part", deb); err != nil {
		return err
	}
	g, err := extractNetboot(ctx, deb, pkg.ImageDir(arch), arch, out.Dir)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(pkg.Filename), err)
	}
	out.Graphical, out.Netboot = g, true
	out.Source = pkg.Name + " " + pkg.Version
	f.logf("installer: kernels and initrds of %s %s verified", pkg.Name, pkg.Version)
	return nil
}

// extractNetboot copies the installer's kernels and initrds out of the
// package: dpkg-deb unpacks its data (xz, which Go's library lacks) to a
// tar stream, read here, so nothing but those files is written.
func extractNetboot(ctx context.Context, deb, imageDir, arch, dest string) (graphical bool, err error) {
	want := map[string]image{}
	for _, im := range images(arch) {
		want["./"+imageDir+"/"+im.netboot] = im
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("dpkg-deb (install dpkg): %w", err)
	}
	found := map[string]bool{}
	tr := tar.NewReader(pipe)
	var terr error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			terr = err
			break
		}
		im, ok := want[h.Name]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(dest, im.local)
		if err := writeFrom(tr, dst); err != nil {
			terr = err
			break
		}
		found[im.local] = true
	}
	io.Copy(io.Discard, pipe) // let dpkg-deb finish writing
	if err := cmd.Wait(); err != nil && terr == nil {
		terr = fmt.Errorf("dpkg-deb --fsys-tarfile: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if terr != nil {
		return false, terr
	}
	for _, im := range images(arch) {
		if !im.graphical && !found[im.local] {
			return false, fmt.Errorf("no %s/%s in the package", imageDir, im.netboot)
		}
	}
	return found["gtk/vmlinuz"] && found["gtk/initrd.gz"], nil
}

// writeFrom writes r to dst through a temporary name.
func writeFrom(r io.Reader, dst string) error {
	out, err := os.OpenFile(dst+".part", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(dst+".part", dst)
	}
	if err != nil {
		os.Remove(dst + ".part")
	}
	return err
}

var errNotFound = errors.New("not found on the mirror")

// open returns a reader for u: http(s), or file:// for a local mirror.
func (f *Fetcher) open(ctx context.Context, u string) (io.ReadCloser, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if pu.Scheme == "file" {
		r, err := os.Open(pu.Path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", u, errNotFound)
		}
		return r, err
	}
	if pu.Scheme != "http" && pu.Scheme != "https" {
		return nil, fmt.Errorf("%s: only http, https and file mirrors are supported", u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if e := f.Auth.Lookup(u); e != nil {
		req.SetBasicAuth(e.Login, e.Password)
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%s: %w", u, errNotFound)
		}
		return nil, fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	return resp.Body, nil
}

// get reads an index file whole, refusing one larger than MaxIndex.
func (f *Fetcher) get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ctx, count, stop := f.watch(ctx)
	defer stop()
	r, err := f.open(ctx, u)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	max := f.maxIndex()
	b, err := io.ReadAll(io.LimitReader(&progressReader{r: r, touch: count}, max+1))
	if err != nil {
		if c := context.Cause(ctx); c != nil {
			err = c
		}
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes; not an index file", u, max)
	}
	return b, nil
}

// watch returns a context that is cancelled when fewer than MinSpeed
// bytes a second (at least one byte) are counted over a window of Stall,
// the function that counts, and the one that stops watching.
func (f *Fetcher) watch(ctx context.Context) (context.Context, func(int), func()) {
	stall, minSpeed := f.Stall, f.MinSpeed
	if stall == 0 {
		stall = 60 * time.Second
	}
	if minSpeed == 0 {
		minSpeed = archive.DefaultMinSpeed
	}
	need := max(1, minSpeed*int64(stall)/int64(time.Second))
	ctx, cancel := context.WithCancelCause(ctx)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(stall)
		defer t.Stop()
		last := int64(0)
		for {
			select {
			case <-done:
				return
			case <-t.C:
				now := got.Load()
				if now-last < need {
					if now == last {
						cancel(fmt.Errorf("no data for %s", stall))
					} else {
						cancel(fmt.Errorf("%d bytes in %s, slower than %d bytes/s: the mirror trickles", now-last, stall, minSpeed))
					}
					return
				}
				last = now
			}
		}
	}()
	return ctx, func(n int) { got.Add(int64(n)) }, func() { close(done); cancel(nil) }
}

// download writes u to part, hashing as it goes. A download that gets
// less than MinSpeed over Stall is cancelled, however long the whole one
// takes.
func (f *Fetcher) download(ctx context.Context, u, part string) (Sum, error) {
	ctx, count, stop := f.watch(ctx)
	defer stop()
	r, err := f.open(ctx, u)
	if err != nil {
		return Sum{}, err
	}
	defer r.Close()
	out, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Sum{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), &progressReader{r: r, touch: count})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(part)
		if c := context.Cause(ctx); c != nil {
			err = c
		}
		return Sum{}, fmt.Errorf("fetching %s: %w", u, err)
	}
	return Sum{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

type progressReader struct {
	r     io.Reader
	touch func(int)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.touch(n)
	}
	return n, err
}
