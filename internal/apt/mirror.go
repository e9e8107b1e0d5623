// Package apt reads the host's apt sources, writes the image's, and asks a
// mirror what it holds.
package apt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"pault.ag/go/debian/control"
)

// Source is one apt source entry (one URI, one suite).
type Source struct {
	URI        string
	Suite      string
	Components []string
	File       string // where it was read from
}

// HostMirrors is what the host's apt configuration says about Debian
// mirrors: the main archive and the security archive.
type HostMirrors struct {
	Mirror   string // e.g. http://<host>/debian
	Security string // e.g. http://<host>/debian-security ("" when none)
}

// DetectHostMirrors reads the host's apt sources under root ("/" normally):
// sources.list.d/*.sources (deb822) and sources.list plus
// sources.list.d/*.list (one-line). The first Debian entry wins.
func DetectHostMirrors(root string) (HostMirrors, error) {
	srcs, err := ReadHostSources(root)
	if err != nil {
		return HostMirrors{}, err
	}
	var h HostMirrors
	for _, s := range srcs {
		base, kind := splitSuite(s.Suite)
		if _, ok := LookupSuite(base); !ok {
			continue // not Debian (a vendor's repository)
		}
		switch kind {
		case "security":
			if h.Security == "" {
				h.Security = strings.TrimRight(s.URI, "/")
			}
		case "":
			if h.Mirror == "" {
				h.Mirror = strings.TrimRight(s.URI, "/")
			}
		}
	}
	if h.Mirror == "" {
		return h, fmt.Errorf("no Debian mirror found in the host's apt sources (%s); set `mirror:` in the config",
			filepath.Join(root, "etc/apt/sources.list{,.d/}"))
	}
	return h, nil
}

// splitSuite splits "bookworm-security" into ("bookworm", "security"),
// "buster/updates" into ("buster", "security").
func splitSuite(s string) (string, string) {
	if i := strings.Index(s, "/updates"); i > 0 {
		return s[:i], "security"
	}
	for _, k := range []string{"security", "updates", "backports", "proposed-updates", "backports-sloppy"} {
		if b, ok := strings.CutSuffix(s, "-"+k); ok {
			return b, k
		}
	}
	return s, ""
}

// ReadHostSources lists the deb (not deb-src) entries of the apt
// configuration under root.
func ReadHostSources(root string) ([]Source, error) {
	var out []Source
	dir := filepath.Join(root, "etc/apt/sources.list.d")
	files := []string{filepath.Join(root, "etc/apt/sources.list")}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, filepath.Join(dir, n))
	}
	for _, f := range files {
		var parse func(io.Reader, string) ([]Source, error)
		switch {
		case strings.HasSuffix(f, ".sources"):
			parse = ParseDeb822
		case strings.HasSuffix(f, ".list"):
			parse = ParseOneLine
		default:
			continue
		}
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s, err := parse(bytes.NewReader(data), f)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// ParseOneLine reads the one-line sources.list format.
func ParseOneLine(r io.Reader, file string) ([]Source, error) {
	var out []Source
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] != "deb" && f[0] != "deb-src" {
			return nil, fmt.Errorf("%s:%d: expected a line starting with deb or deb-src", file, n)
		}
		typ := f[0]
		f = f[1:]
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			// options: [arch=amd64 signed-by=...], possibly with spaces
			for len(f) > 0 {
				done := strings.HasSuffix(f[0], "]")
				f = f[1:]
				if done {
					break
				}
			}
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: expected URI and suite", file, n)
		}
		if typ == "deb" {
			out = append(out, Source{URI: f[0], Suite: f[1], Components: f[2:], File: file})
		}
	}
	return out, sc.Err()
}

// ParseDeb822 reads the deb822 .sources format.
func ParseDeb822(r io.Reader, file string) ([]Source, error) {
	var out []Source
	pr, err := control.NewParagraphReader(r, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if strings.EqualFold(strings.TrimSpace(p.Values["Enabled"]), "no") {
			continue
		}
		if !contains(strings.Fields(p.Values["Types"]), "deb") {
			continue
		}
		uris, suites := strings.Fields(p.Values["URIs"]), strings.Fields(p.Values["Suites"])
		if len(uris) == 0 || len(suites) == 0 {
			return nil, fmt.Errorf("%s: a stanza without URIs or Suites", file)
		}
		for _, u := range uris {
			for _, s := range suites {
				out = append(out, Source{URI: u, Suite: s, Components: strings.Fields(p.Values["Components"]), File: file})
			}
		}
	}
	return out, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
