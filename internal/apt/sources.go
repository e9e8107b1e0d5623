package apt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"vmdeb/internal/aptauth"

	"vmdeb/internal/archive"
)

// ImageSources is what the finished image's apt points at.
type ImageSources struct {
	Release    DebianRelease
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
		entries = append(entries, entry{s.Security, SecuritySuite(DebianRelease{Codename: s.Suite, Version: s.Release.Version})})
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

// MirrorRelease is a suite's Release file as the mirror serves it, not
// verified (the bootstrapper verifies the signed InRelease).
type MirrorRelease struct {
	*archive.Release
	// Digest is the SHA256 of the whole file: it changes whenever the
	// suite's date or any index's hash does.
	Digest string
}

// Stable reports whether the suite gets security and -updates sources.
func (r MirrorRelease) Stable() bool {
	switch r.Suite {
	case "stable", "oldstable", "oldoldstable":
		return true
	}
	return false
}

// AnswerTimeout bounds the one request that asks a mirror for a suite's
// Release before a build (a variable so that tests can shorten it).
var AnswerTimeout = 30 * time.Second

// NoAnswerError says that the mirror did not answer in time, or trickled.
type NoAnswerError struct {
	URL     string
	Timeout time.Duration
	Err     error
}

func (e *NoAnswerError) Error() string {
	return fmt.Sprintf("the mirror did not answer within %s (%s)", e.Timeout.Round(time.Millisecond), e.URL)
}
func (e *NoAnswerError) Unwrap() error { return e.Err }

// FetchRelease reads dists/<suite>/Release from a mirror (http, https or
// file). It does not verify the signature: the bootstrapper does that.
// A mirror that does not answer within AnswerTimeout (or trickles) gives
// a *NoAnswerError; one that has no such suite, an error for which
// archive.NotFound is true. auth holds the mirrors' credentials.
func FetchRelease(ctx context.Context, mirror, suite string, auth aptauth.Set) (MirrorRelease, error) {
	u := strings.TrimRight(mirror, "/") + "/dists/" + suite + "/Release"
	cl := archive.NewClient()
	cl.Timeout, cl.Retries, cl.Auth = AnswerTimeout, 0, auth
	cl.Stall = min(cl.Stall, AnswerTimeout/2)
	data, err := cl.Get(ctx, u, 64<<20)
	if err != nil {
		var se *archive.StallError
		if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &se) || isTimeout(err)) {
			return MirrorRelease{}, &NoAnswerError{URL: u, Timeout: AnswerTimeout, Err: err}
		}
		return MirrorRelease{}, err
	}
	return ParseRelease(data, u)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// ParseRelease reads a Release file (internal/archive's parser) and
// notes its digest.
func ParseRelease(data []byte, name string) (MirrorRelease, error) {
	r, err := archive.ParseRelease(data, name)
	if err != nil {
		return MirrorRelease{}, err
	}
	sum := sha256.Sum256(data)
	return MirrorRelease{Release: r, Digest: hex.EncodeToString(sum[:])}, nil
}
