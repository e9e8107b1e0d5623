package apt

import "sort"

// DebianRelease is one Debian release as far as sources are concerned.
type DebianRelease struct {
	Codename string
	Version  int // 0 for the rolling ones (sid)
	// Archived releases live on the archive of old releases, not the mirrors.
	Archived bool
}

// releases lists the codenames vmdeb accepts, wheezy onwards.
var releases = []DebianRelease{
	{"wheezy", 7, true}, {"jessie", 8, true}, {"stretch", 9, true}, {"buster", 10, true},
	{"bullseye", 11, false}, {"bookworm", 12, false}, {"trixie", 13, false},
	{"forky", 14, false}, {"duke", 15, false}, {"sid", 0, false},
}

// aliases are the archive's suite names that point at a codename; the
// mirror's Release file says which.
var aliases = map[string]bool{"stable": true, "oldstable": true, "oldoldstable": true, "testing": true, "unstable": true}

// LookupSuite returns the release for a codename or alias. ok is false for
// names vmdeb does not know.
func LookupSuite(name string) (DebianRelease, bool) {
	if name == "unstable" {
		return DebianRelease{Codename: "sid"}, true
	}
	if aliases[name] {
		return DebianRelease{Codename: name}, true
	}
	for _, r := range releases {
		if r.Codename == name {
			return r, true
		}
	}
	return DebianRelease{}, false
}

// SuiteNames lists the accepted suite names, for error messages.
func SuiteNames() []string {
	var n []string
	for _, r := range releases {
		n = append(n, r.Codename)
	}
	for a := range aliases {
		n = append(n, a)
	}
	sort.Strings(n[len(releases):])
	return n
}

// SecuritySuite is the security archive's suite name for a codename:
// "<codename>-security" from bullseye on, "<codename>/updates" before.
func SecuritySuite(r DebianRelease) string {
	if r.Version > 0 && r.Version < 11 {
		return r.Codename + "/updates"
	}
	return r.Codename + "-security"
}

// UsesDeb822 reports whether the image's apt sources are written in deb822
// form (/etc/apt/sources.list.d/debian.sources), as Debian's installer does
// from trixie on; older releases get a one-line sources.list.
func UsesDeb822(r DebianRelease) bool {
	return r.Version == 0 || r.Version >= 13
}
