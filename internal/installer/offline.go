package installer

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xi2/xz"

	"vmdeb/internal/archive"
)

// OfflineOptions say what FetchOffline fetches.
type OfflineOptions struct {
	Mirror, Suite, Arch string
	Keyring             string // "" = DefaultKeyring
	// Dir receives the kernels and initrds in Dir/install and the
	// medium's archive (pool/, dists/, .disk/) in Dir/medium.
	Dir string
	// Installed are the live system's packages: what it has, the pool
	// need not carry.
	Installed map[string]bool
	// Debs are the seeds of the pool's .debs (TargetPackages).
	Debs []string
}

// Offline is debian-installer as it goes onto a live medium to install
// with no network: its CD-ROM kernels and initrds (Files), and Medium, a
// tree to merge into the ISO's root with the udebs and .debs in /pool,
// their indices in /dists and the .disk files d-i reads.
type Offline struct {
	Files Files
	// Medium is "" when the mirror had no verifiable CD-ROM images and
	// Files are netboot's (Files.Netboot): that installer needs a network.
	Medium string
	Kernel string // the initrds' kernel
	// Udebs and Debs are the packages in the pool; Unresolved the
	// dependencies nothing satisfies (the build logs them).
	Udebs, Debs, Unresolved []string
	Bytes                   int64 // the pool's size
}

// FetchOffline fetches debian-installer's CD-ROM images (never the
// netboot ones: those load d-i's components from a mirror), the udebs
// they load and the .debs the installed system needs, each verified
// against the suite's signed Release, and writes the medium's indices.
func (f *Fetcher) FetchOffline(ctx context.Context, o OfflineOptions) (Offline, error) {
	mirror := strings.TrimRight(o.Mirror, "/")
	rel, signer, base, err := f.release(ctx, mirror, o.Suite, o.Keyring)
	if err != nil {
		return Offline{}, err
	}
	inst := filepath.Join(o.Dir, "install")
	files := Files{Dir: inst, Suite: rel.Codename, Version: rel.Version, Arch: o.Arch, Signer: signer}
	if err := os.MkdirAll(filepath.Join(inst, "gtk"), 0o755); err != nil {
		return Offline{}, err
	}
	if imgErr := f.fromImages(ctx, rel, base, o.Arch, &files); imgErr != nil {
		if ctx.Err() != nil {
			return Offline{}, ctx.Err()
		}
		// Without verified CD-ROM images the installer can only be the
		// netboot one, which loads its components from a mirror: the
		// medium then carries no pool, and the build says so.
		f.logf("installer: no CD-ROM images on the mirror match its signed Release (%s); using the netboot package: the installer will need a network", firstLine(imgErr))
		if err := f.fromNetboot(ctx, rel, mirror, base, o.Arch, &files); err != nil {
			if ctx.Err() != nil {
				return Offline{}, ctx.Err()
			}
			return Offline{}, fmt.Errorf("debian-installer for %s %s:\n  installer images: %v\n  netboot package: %w", o.Suite, o.Arch, imgErr, err)
		}
		return Offline{Files: files}, finish(&files)
	}
	if err := finish(&files); err != nil {
		return Offline{}, err
	}
	out := Offline{Files: files, Medium: filepath.Join(o.Dir, "medium")}

	// The medium must serve every initrd: only what all of them hold
	// can stay off it.
	initrds := []string{"initrd.gz"}
	if files.Graphical {
		initrds = append(initrds, "gtk/initrd.gz")
	}
	var have InitrdInfo
	for i, name := range initrds {
		info, err := ReadInitrd(filepath.Join(inst, name))
		if err != nil {
			return Offline{}, err
		}
		if i == 0 {
			have = info
			continue
		}
		if info.Kernel != have.Kernel {
			return Offline{}, fmt.Errorf("the installer's initrds are for two kernels, %s and %s", have.Kernel, info.Kernel)
		}
		for n := range have.Udebs {
			if !info.Udebs[n] {
				delete(have.Udebs, n)
			}
		}
		for n := range have.Provided {
			if !info.Provided[n] {
				delete(have.Provided, n)
			}
		}
	}
	out.Kernel = have.Kernel

	udebIndex, err := f.index(ctx, rel, base, "main/debian-installer/binary-"+o.Arch, "main")
	if err != nil {
		return Offline{}, err
	}
	udebs, missU, err := SelectUdebs(udebIndex, have)
	if err != nil {
		return Offline{}, err
	}
	if !slicesHas(udebs, "live-installer") {
		return Offline{}, fmt.Errorf("%s has no live-installer udeb for %s", rel.Codename, o.Arch)
	}
	debIndex, err := f.index(ctx, rel, base, "main/binary-"+o.Arch, "main")
	if err != nil {
		return Offline{}, err
	}
	debs, missD, err := SelectDebs(debIndex, o.Debs, o.Installed)
	if err != nil {
		return Offline{}, err
	}
	out.Unresolved = append(missU, missD...)
	if !slices.ContainsFunc(udebIndex, func(s Stanza) bool { return s.Kernel == have.Kernel }) {
		// The images are of another build than the index: d-i then
		// finds none of the modules it loads from the medium.
		out.Unresolved = append(out.Unresolved, "no kernel module udebs for the initrds' kernel "+have.Kernel+" in the debian-installer index")
	}
	all := append(append([]Stanza{}, udebs...), debs...)
	for i, s := range all {
		n, err := f.poolFile(ctx, mirror, out.Medium, s)
		if err != nil {
			return Offline{}, err
		}
		out.Bytes += n
		if (i+1)%50 == 0 || i == len(all)-1 {
			f.logf("installer: %d of %d packages for the medium verified", i+1, len(all))
		}
	}
	for _, s := range udebs {
		out.Udebs = append(out.Udebs, s.Name)
	}
	for _, s := range debs {
		out.Debs = append(out.Debs, s.Name)
	}
	o2 := IndexOptions{Origin: rel.Origin, Label: rel.Label, Suite: rel.Suite, Codename: rel.Codename, Version: rel.Version, Arch: o.Arch, Date: rel.Date}
	for p, data := range Indices(o2, debs, udebs) {
		if err := writeFile(filepath.Join(out.Medium, p), data); err != nil {
			return Offline{}, err
		}
	}
	for p, text := range DiskFiles() {
		if err := writeFile(filepath.Join(out.Medium, p), []byte(text)); err != nil {
			return Offline{}, err
		}
	}
	// d-i and apt may look the suite up by its name as well as its
	// codename, as on Debian's media.
	if rel.Suite != "" && rel.Suite != rel.Codename && !strings.Contains(rel.Suite, "/") {
		link := filepath.Join(out.Medium, "dists", rel.Suite)
		os.Remove(link)
		if err := os.Symlink(rel.Codename, link); err != nil {
			return Offline{}, err
		}
	}
	return out, nil
}

func slicesHas(st []Stanza, name string) bool {
	for _, s := range st {
		if s.Name == name {
			return true
		}
	}
	return false
}

func writeFile(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// index fetches a Packages index of dir (below dists/SUITE/) in the first
// form the Release lists (xz, gz, plain), checks it against the Release
// and parses it.
func (f *Fetcher) index(ctx context.Context, rel *archive.Release, base, dir, component string) ([]Stanza, error) {
	var tried []string
	for _, name := range []string{"Packages.xz", "Packages.gz", "Packages"} {
		p := dir + "/" + name
		want, ok := rel.Files[p]
		if !ok {
			tried = append(tried, name)
			continue
		}
		data, err := f.get(ctx, base+p)
		if err != nil {
			return nil, err
		}
		if got := archive.SHA256Hex(data); got != want.SHA256 || int64(len(data)) != want.Size {
			return nil, fmt.Errorf("%s does not match the signed Release", p)
		}
		var r io.Reader = bytes.NewReader(data)
		switch path.Ext(name) {
		case ".xz":
			// The xz decoder vmdeb's archive reader uses for packages.
			if r, err = xz.NewReader(r, 0); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		case ".gz":
			if r, err = gzip.NewReader(r); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
		plain, err := io.ReadAll(io.LimitReader(r, 4*f.maxIndex()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		st, err := ParseIndex(plain, component)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("the Release of %s lists no %s/Packages (%s)", rel.Codename, dir, strings.Join(tried, ", "))
}

// poolFile puts the package's file at its archive path below medium,
// verified against its index entry (itself verified through the Release).
// A file there already with the right hash is kept.
func (f *Fetcher) poolFile(ctx context.Context, mirror, medium string, s Stanza) (int64, error) {
	fn := path.Clean(s.Filename)
	if !strings.HasPrefix(fn, "pool/") || strings.Contains(fn, "..") {
		return 0, fmt.Errorf("%s: Filename %q is not below pool/", s.ID(), s.Filename)
	}
	dst := filepath.Join(medium, filepath.FromSlash(fn))
	if sum, _, err := archive.HashFile(dst); err == nil && sum == s.SHA256 {
		return s.Size, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	if err := f.client().Download(ctx, mirror+"/"+fn, dst, fn, archive.FileInfo{SHA256: s.SHA256, Size: s.Size}); err != nil {
		var he *archive.HashError
		if errors.As(err, &he) {
			return 0, fmt.Errorf("%s: SHA256 %s, %d bytes does not match Packages (%s, %d bytes)", fn, he.Got, he.GotSize, he.Want, he.WantSize)
		}
		if archive.NotFound(err) {
			return 0, fmt.Errorf("%s: %w", s.ID(), err)
		}
		return 0, err
	}
	return s.Size, nil
}
