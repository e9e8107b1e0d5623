package installer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// Fetcher downloads through an archive.Client (deadlines, stall and
// low-speed cut-off, retries); the zero value is usable.
type Fetcher struct {
	// Client downloads; nil = archive.NewClient() with Auth.
	Client *archive.Client
	// MaxIndex bounds what is read of InRelease, SHA256SUMS and Packages
	// (default 256 MiB).
	MaxIndex int64
	Now      func() time.Time
	Log      func(format string, a ...any)
	// Auth holds the mirrors' credentials (HTTP basic authentication),
	// for the client made when Client is nil.
	Auth aptauth.Set

	once sync.Once
	cl   *archive.Client
}

func (f *Fetcher) client() *archive.Client {
	f.once.Do(func() {
		f.cl = f.Client
		if f.cl == nil {
			f.cl = archive.NewClient()
			f.cl.Auth = f.Auth
		}
	})
	return f.cl
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
	rel, signer, base, err := f.release(ctx, mirror, suite, keyring)
	if err != nil {
		return Files{}, err
	}
	out := Files{Dir: destDir, Suite: rel.Codename, Version: rel.Version, Arch: arch, Signer: signer}
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

// release fetches the suite's InRelease from mirror and verifies it
// against keyring (a file; "" = DefaultKeyring); signer is who signed it,
// base the suite's URL, ending in "/".
func (f *Fetcher) release(ctx context.Context, mirror, suite, keyring string) (rel *archive.Release, signer, base string, err error) {
	if keyring == "" {
		keyring = DefaultKeyring
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	kr, err := archive.LoadKeyring(keyring)
	if err != nil {
		return nil, "", "", err
	}
	base = mirror + "/dists/" + suite + "/"
	inRelease, err := f.get(ctx, base+"InRelease")
	if err != nil {
		return nil, "", "", err
	}
	rel, signer, err = archive.VerifyRelease(inRelease, kr, base+"InRelease", now())
	if err != nil {
		return nil, "", "", err
	}
	if err := CheckSuite(rel, suite); err != nil {
		return nil, "", "", err
	}
	return rel, signer, base, nil
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
func (f *Fetcher) fromImages(ctx context.Context, rel *archive.Release, base, arch string, out *Files) error {
	dirs := InstallerDirs(rel, arch)
	if len(dirs) == 0 {
		return fmt.Errorf("its Release lists no %s", SumsPath(arch, "current"))
	}
	var tried []error
	for _, d := range dirs {
		u := base + SumsPath(arch, d)
		sums, err := f.get(ctx, u)
		if err == nil {
			err = CheckSums(rel, arch, d, sums)
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
		// SHA256SUMS gives no sizes: Size -1.
		if err := f.client().Download(ctx, imagesURL+im.archive, dst, im.archive, archive.FileInfo{SHA256: want, Size: -1}); err != nil {
			var he *archive.HashError
			if errors.As(err, &he) {
				return fmt.Errorf("%s: SHA256 %s does not match SHA256SUMS (%s)", im.archive, he.Got, he.Want)
			}
			return err
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return err
		}
		f.logf("installer: %s (%d bytes) verified", im.local, fi.Size())
	}
	return nil
}

// fromNetboot takes the files from the newest debian-installer netboot
// package of the suite.
func (f *Fetcher) fromNetboot(ctx context.Context, rel *archive.Release, mirror, base, arch string, out *Files) error {
	idx := "main/binary-" + arch + "/Packages.gz"
	want, ok := rel.Files[idx]
	if !ok {
		return fmt.Errorf("its Release lists no %s", idx)
	}
	gz, err := f.get(ctx, base+idx)
	if err != nil {
		return err
	}
	if got := archive.SHA256Hex(gz); got != want.SHA256 || int64(len(gz)) != want.Size {
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
	defer os.Remove(deb)
	f.logf("installer: fetching %s %s (%d MiB)", pkg.Name, pkg.Version, pkg.Size>>20)
	if err := f.client().Download(ctx, mirror+"/"+pkg.Filename, deb, pkg.Filename, archive.FileInfo{SHA256: pkg.SHA256, Size: pkg.Size}); err != nil {
		var he *archive.HashError
		if errors.As(err, &he) {
			return fmt.Errorf("%s: SHA256 %s, %d bytes does not match Packages (%s, %d bytes)", pkg.Filename, he.Got, he.GotSize, he.Want, he.WantSize)
		}
		return err
	}
	g, err := extractNetboot(deb, pkg.ImageDir(arch), arch, out.Dir)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(pkg.Filename), err)
	}
	out.Graphical, out.Netboot = g, true
	out.Source = pkg.Name + " " + pkg.Version
	f.logf("installer: kernels and initrds of %s %s verified", pkg.Name, pkg.Version)
	return nil
}

// extractNetboot copies the installer's kernels and initrds out of the
// package's data archive, so nothing but those files is written.
func extractNetboot(deb, imageDir, arch, dest string) (graphical bool, err error) {
	want := map[string]image{}
	for _, im := range images(arch) {
		want["./"+imageDir+"/"+im.netboot] = im
	}
	found := map[string]bool{}
	err = archive.WalkData(deb, func(h *tar.Header, r io.Reader) error {
		im, ok := want[h.Name]
		if !ok || h.Typeflag != tar.TypeReg {
			return nil
		}
		if err := writeFrom(r, filepath.Join(dest, im.local)); err != nil {
			return err
		}
		found[im.local] = true
		return nil
	})
	if err != nil {
		return false, err
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

// get reads an index file whole, refusing one larger than MaxIndex.
// The client's errors name the URL.
func (f *Fetcher) get(ctx context.Context, u string) ([]byte, error) {
	return f.client().Get(ctx, u, f.maxIndex())
}
