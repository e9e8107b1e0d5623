// Package remotecache keeps the stage cache's entries and the package
// cache's .deb files in an OCI registry, so that a build on one machine
// starts from what a build on another machine already made.
//
// Every artifact is addressed by its content key: a stage entry by its
// stage cache key (tag stage-KEY), a package by the SHA256 the archive's
// Packages index gives it (tag deb-SHA256). What is pulled is verified
// twice before it is used: the registry's digests (the manifest's, the
// blobs') and the entry's own record (the archive's SHA256 in entry.json,
// the index's SHA256 for a .deb). It is then written into the local
// cache the way the local cache writes its own files (temporary name,
// checked, renamed), and the local code uses it as it always does. A
// registry that cannot be reached, is slow or refuses is a warning: the
// build goes on locally.
package remotecache

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Option is the name of the command-line option users set the remote
// cache with, used in error messages.
const Option = "--remote-cache"

// EnvVar is the environment variable that sets the remote cache when the
// option is not given.
const EnvVar = "VMDEB_REMOTE_CACHE"

// EnvInsecure, set to 1, allows plain HTTP to a registry that is not on
// the local host (--remote-cache-insecure).
const EnvInsecure = "VMDEB_REMOTE_CACHE_INSECURE"

// Ref is a parsed oci://HOST[:PORT]/REPO.
type Ref struct {
	Host string // HOST or HOST:PORT
	Repo string // the repository path, e.g. vmdeb/cache
	// PlainHTTP: the registry is spoken to over HTTP, not HTTPS. Only for
	// the local host, or when asked for explicitly.
	PlainHTTP bool
}

// String is the reference as the user writes it.
func (r Ref) String() string { return "oci://" + r.Host + "/" + r.Repo }

// Reference is the repository as oras names it (HOST/REPO).
func (r Ref) Reference() string { return r.Host + "/" + r.Repo }

// repoPath is the OCI distribution specification's repository name.
var repoPath = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// hostName is a DNS name or an IPv4 address.
var hostName = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// Parse reads the value of --remote-cache. "" and "off" mean no remote
// cache (nil, nil). insecure allows plain HTTP to a registry that is not
// on the local host. Errors name the option and say what is valid.
func Parse(s string, insecure bool) (*Ref, error) {
	if s == "" || s == "off" {
		return nil, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%s %q: %s (expected oci://HOST[:PORT]/REPOSITORY, e.g. oci://127.0.0.1:5000/vmdeb/cache, or off)", Option, s, why)
	}
	rest, ok := strings.CutPrefix(s, "oci://")
	if !ok {
		if i := strings.Index(s, "://"); i > 0 {
			return nil, bad("the scheme must be oci://, not " + s[:i+3])
		}
		return nil, bad("the scheme oci:// is missing")
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, bad("a query or fragment has no meaning here")
	}
	host, repo, ok := strings.Cut(rest, "/")
	if strings.Contains(host, "@") {
		return nil, bad("credentials do not belong in the URL: log in with docker login, podman login or oras login, or set REGISTRY_AUTH_FILE")
	}
	if host == "" {
		return nil, bad("the registry host is missing")
	}
	if !ok || repo == "" {
		return nil, bad("the repository is missing after the host")
	}
	repo = strings.TrimSuffix(repo, "/")
	if strings.ContainsAny(repo, ":@") {
		return nil, bad("the repository names where entries go; a tag or digest is not allowed (vmdeb tags each entry by its key)")
	}
	if !repoPath.MatchString(repo) {
		return nil, bad("the repository " + strconv.Quote(repo) + " is not a valid OCI repository name (lower-case letters, digits, and . _ - / between them)")
	}
	name, _, err := splitHostPort(host)
	if err != nil {
		return nil, bad(err.Error())
	}
	r := &Ref{Host: host, Repo: repo}
	switch {
	case isLocal(name):
		r.PlainHTTP = true
	case insecure:
		r.PlainHTTP = true
	}
	return r, nil
}

// splitHostPort checks HOST, HOST:PORT, [IPv6] or [IPv6]:PORT.
func splitHostPort(host string) (name, port string, err error) {
	name = host
	if strings.HasPrefix(host, "[") {
		end := strings.Index(host, "]")
		if end < 0 {
			return "", "", fmt.Errorf("the host %q lacks its closing ]", host)
		}
		name = host[1:end]
		if net.ParseIP(name) == nil {
			return "", "", fmt.Errorf("%q is not an IPv6 address", name)
		}
		rest := host[end+1:]
		if rest == "" {
			return name, "", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", fmt.Errorf("unexpected %q after the address", rest)
		}
		port = rest[1:]
	} else if i := strings.LastIndex(host, ":"); i >= 0 {
		name, port = host[:i], host[i+1:]
		if !hostName.MatchString(name) {
			return "", "", fmt.Errorf("the host %q is not a host name or address", name)
		}
	} else if !hostName.MatchString(name) {
		return "", "", fmt.Errorf("the host %q is not a host name or address", name)
	}
	if port != "" || strings.HasSuffix(host, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("the port %q is not a number from 1 to 65535", port)
		}
	}
	return name, port, nil
}

// isLocal: the registry is on this machine, where plain HTTP crosses no
// network.
func isLocal(name string) bool {
	if strings.EqualFold(name, "localhost") {
		return true
	}
	ip := net.ParseIP(name)
	return ip != nil && ip.IsLoopback()
}

// StageTag is the tag of the stage cache entry with this key.
func StageTag(key string) string { return "stage-" + key }

// DebTag is the tag of the package whose file has this SHA256 (as the
// archive's Packages index gives it).
func DebTag(sha256 string) string { return "deb-" + sha256 }
