// Package deb writes small Debian binary packages (.deb) without dpkg-deb,
// debhelper or equivs: an ar archive of debian-binary, control.tar.gz and
// data.tar.gz, laid out as dpkg-deb lays them out, so that dpkg installs
// the result and lintian finds nothing wrong with its structure. Its
// first use is metapackages: a name, a version and the dependencies of
// an image type, with only the documentation Debian policy asks for.
package deb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"pault.ag/go/debian/dependency"
)

// Package describes one binary package.
type Package struct {
	Name         string
	Version      string
	Architecture string // "" = all
	Maintainer   string // "Name <address>"
	Section      string // "" = metapackages
	Priority     string // "" = optional
	Homepage     string
	Depends      []string // each a Debian relation: "a", "a (>= 1)", "a | b"
	Recommends   []string
	Suggests     []string
	// Description is the synopsis (first line) and, after it, the long
	// description as plain text; paragraphs are separated by empty lines.
	Description string
	// Changelog is the one entry of changelog.Debian ("" = a line saying
	// vmdeb generated the package).
	Changelog string
	// Copyright is /usr/share/doc/NAME/copyright ("" = a short statement
	// that the package holds no work but its metadata).
	Copyright string
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// versionRE: an optional epoch, then upstream[-revision], starting
	// with a digit as policy asks.
	versionRE = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)
	archRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	// maintRE is "Full Name <user@host>"; dpkg needs the angle brackets.
	maintRE = regexp.MustCompile(`^[^<>,\n]+ <[^<>@\s]+@[^<>@\s]+\.[^<>@\s]+>$`)
)

// Validate checks what dpkg and lintian would reject, naming the field.
func (p *Package) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if !nameRE.MatchString(p.Name) {
		bad("name", "%q is not a Debian package name (lower case letters, digits, + - . ; at least two characters, starting with a letter or digit)", p.Name)
	}
	if !versionRE.MatchString(p.Version) || strings.HasSuffix(p.Version, "-") {
		bad("version", "%q is not a Debian version (e.g. 1.0, 2:1.0-1; it starts with a digit)", p.Version)
	}
	if a := p.arch(); !archRE.MatchString(a) {
		bad("architecture", "%q is not a Debian architecture (all, amd64, ...)", a)
	}
	if !maintRE.MatchString(p.Maintainer) {
		bad("maintainer", "%q: expected \"Full Name <address@example.org>\"", p.Maintainer)
	} else if strings.Contains(p.Maintainer, "@localhost") {
		bad("maintainer", "%q: a local address is nobody's; give one people can write to", p.Maintainer)
	}
	for field, rels := range map[string][]string{"depends": p.Depends, "recommends": p.Recommends, "suggests": p.Suggests} {
		for _, r := range rels {
			if err := checkRelation(r); err != nil {
				bad(field, "%v", err)
			}
		}
	}
	syn, _ := p.splitDescription()
	switch {
	case syn == "":
		bad("description", "missing (its first line is the synopsis, e.g. \"Debian live system: Xfce desktop\")")
	case len(syn) > 80:
		bad("description", "the synopsis (first line) has %d characters; keep it under 80", len(syn))
	}
	for field, v := range map[string]string{"section": p.Section, "priority": p.Priority, "homepage": p.Homepage} {
		if strings.ContainsAny(v, "\n\r") {
			bad(field, "must be one line")
		}
	}
	return errors.Join(errs...)
}

// checkRelation checks one relation (alternatives allowed) with the same
// parser apt's Go readers use.
func checkRelation(r string) error {
	if strings.TrimSpace(r) == "" || strings.ContainsAny(r, ",\n") {
		return fmt.Errorf("%q: one relation per item, e.g. \"foo\", \"foo (>= 1.0)\" or \"foo | bar\"", r)
	}
	d, err := dependency.Parse(r)
	if err != nil || len(d.Relations) != 1 {
		return fmt.Errorf("%q is not a package relation (e.g. \"foo\", \"foo (>= 1.0)\", \"foo | bar\")", r)
	}
	for _, p := range d.Relations[0].Possibilities {
		if !nameRE.MatchString(p.Name) {
			return fmt.Errorf("%q: %q is not a package name", r, p.Name)
		}
	}
	return nil
}

func (p *Package) arch() string {
	if p.Architecture == "" {
		return "all"
	}
	return p.Architecture
}

// FileName is the .deb's name as dpkg-name would give it: the version
// without its epoch.
func (p *Package) FileName() string {
	v := p.Version
	if i := strings.Index(v, ":"); i >= 0 {
		v = v[i+1:]
	}
	return fmt.Sprintf("%s_%s_%s.deb", p.Name, v, p.arch())
}

// splitDescription is the synopsis and the long description's lines.
func (p *Package) splitDescription() (string, []string) {
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(p.Description, "\r", "")), "\n")
	syn := strings.TrimSpace(lines[0])
	var long []string
	for _, l := range lines[1:] {
		long = append(long, wrap(strings.TrimRight(l, " \t"), 79)...)
	}
	// Leading and trailing empty lines would become stray " ." lines.
	for len(long) > 0 && long[0] == "" {
		long = long[1:]
	}
	for len(long) > 0 && long[len(long)-1] == "" {
		long = long[:len(long)-1]
	}
	if len(long) == 0 {
		// lintian warns about a missing long description.
		long = []string{"This package was generated by vmdeb. It installs nothing itself;",
			"it depends on the packages that make up " + p.Name + "."}
	}
	return syn, long
}

// wrap breaks a paragraph line at spaces into lines of at most width
// characters (lintian warns past 80). A line starting with a space is
// verbatim text in a description, kept as it is.
func wrap(l string, width int) []string {
	if len(l) <= width || strings.HasPrefix(l, " ") {
		return []string{l}
	}
	var out []string
	cur := ""
	for _, w := range strings.Fields(l) {
		if cur != "" && len(cur)+1+len(w) > width {
			out = append(out, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	return append(out, cur)
}

// Control is the package's control file; installedKiB goes into
// Installed-Size.
func (p *Package) Control(installedKiB int64) string {
	var b strings.Builder
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	field("Package", p.Name)
	field("Version", p.Version)
	field("Architecture", p.arch())
	field("Maintainer", p.Maintainer)
	field("Installed-Size", strconv.FormatInt(installedKiB, 10))
	field("Depends", strings.Join(p.Depends, ", "))
	field("Recommends", strings.Join(p.Recommends, ", "))
	field("Suggests", strings.Join(p.Suggests, ", "))
	field("Section", orDefault(p.Section, "metapackages"))
	field("Priority", orDefault(p.Priority, "optional"))
	field("Homepage", p.Homepage)
	syn, long := p.splitDescription()
	field("Description", syn)
	for _, l := range long {
		if strings.TrimSpace(l) == "" {
			b.WriteString(" .\n") // an empty line in the long description
		} else {
			b.WriteString(" " + l + "\n")
		}
	}
	return b.String()
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// file is one member of a tar archive; a directory when data is nil.
type file struct {
	path string // "./usr/share/doc/x/copyright"
	mode int64
	data []byte
}

// dataFiles is what the package installs: its documentation directory
// (copyright and changelog, which policy asks of every package) and the
// directories above it.
func (p *Package) dataFiles(mtime time.Time) ([]file, error) {
	doc := "./usr/share/doc/" + p.Name + "/"
	cl, err := gzipBytes([]byte(p.changelog(mtime)))
	if err != nil {
		return nil, err
	}
	return []file{
		{path: "./", mode: 0o755},
		{path: "./usr/", mode: 0o755},
		{path: "./usr/share/", mode: 0o755},
		{path: "./usr/share/doc/", mode: 0o755},
		{path: doc, mode: 0o755},
		{path: doc + p.changelogName(), mode: 0o644, data: cl},
		{path: doc + "copyright", mode: 0o644, data: []byte(p.copyright(mtime))},
	}, nil
}

// changelogName follows policy 12.7: a package with a Debian revision
// ships changelog.Debian.gz, a native one changelog.gz.
func (p *Package) changelogName() string {
	if strings.Contains(p.Version, "-") {
		return "changelog.Debian.gz"
	}
	return "changelog.gz"
}

// changelog is the Debian changelog: one entry in the format dpkg-parsechangelog
// reads, dated mtime, so the bytes depend only on the inputs.
func (p *Package) changelog(mtime time.Time) string {
	text := p.Changelog
	if text == "" {
		text = "Generated by vmdeb."
	}
	var items []string
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			items = append(items, "  * "+strings.TrimPrefix(l, "* "))
		}
	}
	return fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n%s\n\n -- %s  %s\n",
		p.Name, p.Version, strings.Join(items, "\n"), p.Maintainer, mtime.UTC().Format(time.RFC1123Z))
}

func (p *Package) copyright(mtime time.Time) string {
	if p.Copyright != "" {
		return strings.TrimRight(p.Copyright, "\n") + "\n"
	}
	return fmt.Sprintf(`Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: %s
Comment: A metapackage generated by vmdeb. It holds no work but its own
 metadata: a list of other packages and this documentation.

Files: *
Copyright: %d %s
License: public-domain
 The package metadata is not copyrightable; it may be used, copied and
 changed without restriction.
`, p.Name, mtime.UTC().Year(), p.Maintainer)
}

// gzipBytes compresses at the highest level with no name or time in the
// header: lintian asks for both, and the bytes stay reproducible.
func gzipBytes(data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// tarGz archives files (sorted by path, owned by root, dated mtime) and
// compresses the archive.
func tarGz(files []file, mtime time.Time) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		h := &tar.Header{
			Name: f.path, Mode: f.mode, ModTime: mtime, Uname: "root", Gname: "root",
			Typeflag: tar.TypeReg, Size: int64(len(f.data)), Format: tar.FormatGNU,
		}
		if f.data == nil {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return gzipBytes(raw.Bytes())
}

// installedKiB adds up what dpkg would count for Installed-Size: each
// file rounded up to a KiB, each directory one KiB.
func installedKiB(files []file) int64 {
	var n int64
	for _, f := range files {
		if f.data == nil {
			n++
		} else {
			n += (int64(len(f.data)) + 1023) / 1024
		}
	}
	return n
}

// Build returns the .deb's bytes. Every date in it is mtime, so the same
// package and mtime always give the same bytes.
func Build(p *Package, mtime time.Time) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	mtime = mtime.Truncate(time.Second)
	data, err := p.dataFiles(mtime)
	if err != nil {
		return nil, err
	}
	var sums strings.Builder
	for _, f := range data {
		if f.data != nil {
			h := md5.Sum(f.data)
			fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h[:]), strings.TrimPrefix(f.path, "./"))
		}
	}
	control := []file{
		{path: "./", mode: 0o755},
		{path: "./control", mode: 0o644, data: []byte(p.Control(installedKiB(data)))},
		{path: "./md5sums", mode: 0o644, data: []byte(sums.String())},
	}
	controlTar, err := tarGz(control, mtime)
	if err != nil {
		return nil, err
	}
	dataTar, err := tarGz(data, mtime)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	aw := newArWriter(&out)
	for _, m := range []struct {
		name string
		data []byte
	}{
		// dpkg requires this order.
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", controlTar},
		{"data.tar.gz", dataTar},
	} {
		if err := aw.add(m.name, m.data, mtime); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// WriteFile writes the package into dir under FileName and returns its
// path. The file appears under that name only once it is complete.
func WriteFile(dir string, p *Package, mtime time.Time) (string, error) {
	data, err := Build(p, mtime)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, p.FileName())
	tmp, err := os.CreateTemp(dir, "."+p.FileName()+".tmp-")
	if err != nil {
		return "", err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return out, nil
}

// arWriter writes the common ar format that dpkg-deb reads: member names
// padded with spaces (no GNU "/" terminator), owner 0, mode 100644.
type arWriter struct {
	w       io.Writer
	started bool
}

func newArWriter(w io.Writer) *arWriter { return &arWriter{w: w} }

func (a *arWriter) add(name string, data []byte, mtime time.Time) error {
	if len(name) > 16 {
		return fmt.Errorf("ar member name %q is longer than 16 bytes", name)
	}
	if !a.started {
		if _, err := io.WriteString(a.w, "!<arch>\n"); err != nil {
			return err
		}
		a.started = true
	}
	hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, mtime.Unix(), 0, 0, "100644", len(data))
	if _, err := io.WriteString(a.w, hdr); err != nil {
		return err
	}
	if _, err := a.w.Write(data); err != nil {
		return err
	}
	if len(data)%2 == 1 {
		// Members start on even offsets.
		_, err := io.WriteString(a.w, "\n")
		return err
	}
	return nil
}

// Epoch is the time every date in a package takes: SOURCE_DATE_EPOCH when
// set (reproducible builds), else now.
func Epoch() (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Now().UTC(), nil
}
