package apt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"pault.ag/go/debian/control"
)

// ImageSources is what the finished image's apt points at.
type ImageSources struct {
	Release    Release
	Suite      string // as configured (a codename or an alias)
	Mirror     string
	Security   string // "" = no security source
	Components []string
	Updates    bool // add <suite>-updates
}

// Render returns the file (relative to the image root) and content of the
// image's apt sources.
func (s ImageSources) Render() (path, content string) {
	type entry struct{ uri, suites string }
	suites := s.Suite
	if s.Updates {
		suites += " " + s.Suite + "-updates"
	}
	entries := []entry{{s.Mirror, suites}}
	if s.Security != "" {
		entries = append(entries, entry{s.Security, SecuritySuite(Release{Codename: s.Suite, Version: s.Release.Version})})
	}
	comps := strings.Join(s.Components, " ")
	var b strings.Builder
	if UsesDeb822(s.Release) {
		for i, e := range entries {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\n", e.uri, e.suites, comps)
		}
		return "etc/apt/sources.list.d/debian.sources", b.String()
	}
	for _, e := range entries {
		for _, su := range strings.Fields(e.suites) {
			fmt.Fprintf(&b, "deb %s %s %s\n", e.uri, su, comps)
		}
	}
	return "etc/apt/sources.list", b.String()
}

// BuildSources is the one-line sources.list used while building: only the
// build mirror, understood by every release's apt.
func BuildSources(mirror, suite string, components []string) string {
	return fmt.Sprintf("deb %s %s %s\n", mirror, suite, strings.Join(components, " "))
}

// ReleaseInfo is what a mirror's Release file says about a suite.
type ReleaseInfo struct {
	Suite         string // e.g. stable, testing, unstable
	Codename      string
	Date          string
	Architectures []string
	Components    []string
	// Digest is the SHA256 of the whole file: it changes whenever the
	// suite's date or any index's hash does.
	Digest string
}

// Stable reports whether the suite gets security and -updates sources.
func (r ReleaseInfo) Stable() bool {
	switch r.Suite {
	case "stable", "oldstable", "oldoldstable":
		return true
	}
	return false
}

// HasArch reports whether the suite has packages for arch.
func (r ReleaseInfo) HasArch(a string) bool { return contains(r.Architectures, a) }

// HasComponent reports whether the suite has component c. The archive
// lists some components with a prefix (updates/main), so compare the last
// path element.
func (r ReleaseInfo) HasComponent(c string) bool {
	for _, x := range r.Components {
		if x == c || strings.HasSuffix(x, "/"+c) {
			return true
		}
	}
	return false
}

// FetchRelease reads dists/<suite>/Release from a mirror (http, https or
// file). It does not verify the signature: the bootstrapper does that.
func FetchRelease(ctx context.Context, mirror, suite string) (ReleaseInfo, error) {
	u := strings.TrimRight(mirror, "/") + "/dists/" + suite + "/Release"
	data, err := fetch(ctx, u)
	if err != nil {
		return ReleaseInfo{}, err
	}
	return ParseRelease(data, u)
}

// ParseRelease reads the fields vmdeb needs from a Release file.
func ParseRelease(data []byte, name string) (ReleaseInfo, error) {
	pr, err := control.NewParagraphReader(bytes.NewReader(data), nil)
	if err != nil {
		return ReleaseInfo{}, fmt.Errorf("%s: %w", name, err)
	}
	p, err := pr.Next()
	if err != nil {
		return ReleaseInfo{}, fmt.Errorf("%s: not a Release file: %w", name, err)
	}
	ri := ReleaseInfo{
		Suite:         strings.TrimSpace(p.Values["Suite"]),
		Codename:      strings.TrimSpace(p.Values["Codename"]),
		Date:          strings.TrimSpace(p.Values["Date"]),
		Architectures: strings.Fields(p.Values["Architectures"]),
		Components:    strings.Fields(p.Values["Components"]),
	}
	sum := sha256.Sum256(data)
	ri.Digest = hex.EncodeToString(sum[:])
	if ri.Suite == "" && ri.Codename == "" {
		return ri, fmt.Errorf("%s: not a Release file (no Suite or Codename field)", name)
	}
	return ri, nil
}

func fetch(ctx context.Context, u string) ([]byte, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if pu.Scheme == "file" {
		return os.ReadFile(pu.Path)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}
