// Package installer fetches debian-installer's kernels and initrds for a
// suite and architecture from a Debian mirror, as debian-cd puts them on
// Debian's live images, and verifies them along the archive's own chain
// of trust: the suite's InRelease is signed with a key of the archive
// keyring (checked by internal/archive); it lists the SHA256 of the
// installer's SHA256SUMS; that file lists the SHA256 of every image file.
// A mirror without such images can still serve the installer's netboot
// package, checked the same way through Packages.gz.
package installer

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"vmdeb/internal/archive"
)

// ParseSums reads a SHA256SUMS file ("HASH  ./path" per line) into a map
// from the path, without "./", to its hash.
func ParseSums(data []byte) (map[string]string, error) {
	m := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !archive.IsSHA256(f[0]) {
			return nil, fmt.Errorf("SHA256SUMS line %d: %q is not \"HASH  PATH\"", i+1, line)
		}
		m[strings.TrimPrefix(strings.TrimPrefix(f[1], "*"), "./")] = strings.ToLower(f[0])
	}
	if len(m) == 0 {
		return nil, errors.New("SHA256SUMS lists no file")
	}
	return m, nil
}

// SumsPath is where a suite's Release lists the SHA256SUMS of the
// installer build dir ("current", or a dated one such as 20250803) for
// arch, relative to dists/SUITE/.
func SumsPath(arch, dir string) string {
	return "main/installer-" + arch + "/" + dir + "/images/SHA256SUMS"
}

// InstallerDirs lists the installer builds the Release has for arch:
// "current" first, then the others, newest first. A mirror caught
// between two syncs may serve a "current" that the Release does not
// describe; an older build it does describe is still verifiable.
func InstallerDirs(r *archive.Release, arch string) []string {
	prefix, suffix := "main/installer-"+arch+"/", "/images/SHA256SUMS"
	var dirs []string
	current := false
	for p := range r.Files {
		d, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		if d, ok = strings.CutSuffix(d, suffix); !ok || strings.Contains(d, "/") {
			continue
		}
		if d == "current" {
			current = true
			continue
		}
		dirs = append(dirs, d)
	}
	// Dated names (20250803, 20250803+deb13u2) sort by date, then update.
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	if current {
		dirs = append([]string{"current"}, dirs...)
	}
	return dirs
}

// Verify checks the chain for the installer files of suite and arch
// without any I/O: inRelease's signature against keyring (at time now),
// that it is suite's, the sums file of installer build dir ("current")
// against it, and each file's SHA256 (got, keyed by its path below
// images/, e.g. "cdrom/vmlinuz") against the sums file.
func Verify(inRelease []byte, keyring *archive.Keyring, now time.Time, suite, arch, dir string, sums []byte, got map[string]archive.FileInfo) error {
	rel, _, err := archive.VerifyRelease(inRelease, keyring, "InRelease", now)
	if err != nil {
		return err
	}
	if err := CheckSuite(rel, suite); err != nil {
		return err
	}
	if err := CheckSums(rel, arch, dir, sums); err != nil {
		return err
	}
	list, err := ParseSums(sums)
	if err != nil {
		return err
	}
	return CheckFiles(list, got)
}

// CheckSuite refuses a Release of another suite: a signed but foreign
// InRelease must not pass for the one asked for.
func CheckSuite(r *archive.Release, suite string) error {
	if suite != r.Suite && suite != r.Codename {
		return fmt.Errorf("the mirror's InRelease for %s is that of %s (%s)", suite, r.Codename, r.Suite)
	}
	return nil
}

// CheckSums checks the SHA256SUMS of arch's installer build dir against
// the Release's entry for it.
func CheckSums(r *archive.Release, arch, dir string, sums []byte) error {
	p := SumsPath(arch, dir)
	want, ok := r.Files[p]
	if !ok {
		return fmt.Errorf("%s has no debian-installer for %s (its Release does not list %s)", r.Codename, arch, p)
	}
	got := archive.SHA256Hex(sums)
	if got != want.SHA256 || int64(len(sums)) != want.Size {
		return fmt.Errorf("%s does not match the signed Release: SHA256 %s, %d bytes; want %s, %d bytes", p, got, len(sums), want.SHA256, want.Size)
	}
	return nil
}

// CheckFiles compares each file's SHA256 with the sums list.
func CheckFiles(list map[string]string, got map[string]archive.FileInfo) error {
	var errs []error
	for name, s := range got {
		want, ok := list[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s is not in SHA256SUMS", name))
		case want != s.SHA256:
			errs = append(errs, fmt.Errorf("%s: SHA256 %s does not match SHA256SUMS (%s)", name, s.SHA256, want))
		}
	}
	return errors.Join(errs...)
}

// NetbootPackage is a debian-installer-N-netboot-ARCH entry of Packages.
type NetbootPackage struct {
	Name, Version, Filename, SHA256 string
	Size                            int64
	Release                         int // N: the release the installer is for
}

// ImageDir is where the package keeps the images, without a leading "/".
func (p NetbootPackage) ImageDir(arch string) string {
	return fmt.Sprintf("usr/lib/debian-installer/images/%d/%s", p.Release, arch)
}

// PickNetboot finds the newest release's netboot package for arch in a
// Packages file (uncompressed).
func PickNetboot(packages []byte, arch string) (NetbootPackage, error) {
	pkgs, err := archive.ParsePackagesData(packages, "main")
	if err != nil {
		return NetbootPackage{}, fmt.Errorf("Packages: %w", err)
	}
	var best NetbootPackage
	for _, p := range pkgs {
		rest, ok := strings.CutPrefix(p.Name, "debian-installer-")
		if !ok {
			continue
		}
		n, ok := strings.CutSuffix(rest, "-netboot-"+arch)
		if !ok {
			continue
		}
		rn, err := strconv.Atoi(n)
		if err != nil || rn <= best.Release {
			continue
		}
		if p.Size <= 0 || !archive.IsSHA256(p.SHA256) || strings.Contains(p.Filename, "..") {
			return NetbootPackage{}, fmt.Errorf("Packages: the entry of %s lacks a valid Filename, Size or SHA256", p.Name)
		}
		best = NetbootPackage{Name: p.Name, Version: p.Version, Filename: p.Filename,
			SHA256: strings.ToLower(p.SHA256), Size: p.Size, Release: rn}
	}
	if best.Name == "" {
		return best, fmt.Errorf("no debian-installer-N-netboot-%s package in Packages", arch)
	}
	return best, nil
}
