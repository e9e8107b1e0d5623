// Package sbom says what is inside an image in the two standard forms of a
// software bill of materials: SPDX 2.3 and CycloneDX 1.5, both JSON. It
// reads the image's dpkg database (var/lib/dpkg/status) and each
// package's machine-readable copyright file; it writes nothing into the
// image.
package sbom

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"sort"
	"strings"

	"pault.ag/go/debian/control"
)

// Files reads a file of the image by its path relative to the image's
// root (imgroot.Root does, without following links out of the root).
type Files interface {
	ReadFile(name string) ([]byte, error)
}

// Package is one installed binary package.
type Package struct {
	Name, Version, Architecture string
	// Source and SourceVersion: the source package it was built from
	// (the binary's own name and version when the status says none).
	Source, SourceVersion string
	Maintainer            string
	Homepage              string
	Summary               string
	// Licenses are the licence names the package's machine-readable
	// copyright file declares, as written there (short names, e.g.
	// "GPL-2+"), in the order first seen; none when the file is absent
	// or not machine-readable.
	Licenses []string
}

// Image is what the SBOM describes.
type Image struct {
	Name     string // the config's name
	Suite    string // the Debian suite (its codename goes into the purls)
	Arch     string // the image's native architecture
	Packages []Package
}

// Read reads the installed packages of an image and their licences.
func Read(f Files) ([]Package, error) {
	status, err := f.ReadFile("var/lib/dpkg/status")
	if err != nil {
		return nil, fmt.Errorf("reading the image's dpkg status: %w", err)
	}
	pkgs, err := parseStatus(status)
	if err != nil {
		return nil, err
	}
	for i := range pkgs {
		p := &pkgs[i]
		c, err := f.ReadFile("usr/share/doc/" + p.Name + "/copyright")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading %s's copyright file: %w", p.Name, err)
		}
		p.Licenses = CopyrightLicenses(c)
	}
	return pkgs, nil
}

// parseStatus reads dpkg's status file: the installed packages, sorted by
// name and architecture.
func parseStatus(status []byte) ([]Package, error) {
	pr, err := control.NewParagraphReader(bufio.NewReader(bytes.NewReader(status)), nil)
	if err != nil {
		return nil, err
	}
	var out []Package
	for {
		para, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading dpkg status: %w", err)
		}
		v := para.Values
		if !strings.HasPrefix(v["Status"], "install ok installed") {
			continue
		}
		p := Package{
			Name: v["Package"], Version: v["Version"], Architecture: v["Architecture"],
			Maintainer: v["Maintainer"], Homepage: v["Homepage"],
			Summary: strings.SplitN(v["Description"], "\n", 2)[0],
		}
		p.Source, p.SourceVersion = splitSource(v["Source"], p.Name, p.Version)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Architecture < out[j].Architecture
	})
	return out, nil
}

// splitSource reads a status file's "Source: name (version)" field, which
// dpkg writes only where the source differs from the binary.
func splitSource(field, name, version string) (string, string) {
	field = strings.TrimSpace(field)
	if field == "" {
		return name, version
	}
	src, ver, ok := strings.Cut(field, " ")
	if !ok {
		return src, version
	}
	ver = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(ver), "("), ")")
	return src, ver
}

// CopyrightLicenses returns the licence names a machine-readable
// copyright file (Debian's copyright-format 1.0) declares in its Files
// paragraphs, each once, in order. A file in another form gives none.
func CopyrightLicenses(data []byte) []string {
	pr, err := control.NewParagraphReader(bufio.NewReader(bytes.NewReader(data)), nil)
	if err != nil {
		return nil
	}
	first, err := pr.Next()
	if err != nil || !strings.Contains(first.Values["Format"], "copyright-format/1.0") {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for {
		para, err := pr.Next()
		if err != nil {
			break
		}
		if _, ok := para.Values["Files"]; !ok {
			continue
		}
		// The first line names the licence; the rest is its text.
		name := strings.TrimSpace(strings.SplitN(para.Values["License"], "\n", 2)[0])
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	return out
}

// PURL is the package URL of a Debian binary package:
// pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=SUITE.
func PURL(p Package, suite string) string {
	q := url.Values{}
	q.Set("arch", p.Architecture)
	if suite != "" {
		q.Set("distro", suite)
	}
	// purl percent-encodes the version's ':' (an epoch) and '+'.
	v := strings.NewReplacer(":", "%3A", "+", "%2B").Replace(url.PathEscape(p.Version))
	return "pkg:deb/debian/" + p.Name + "@" + v + "?" + q.Encode()
}
