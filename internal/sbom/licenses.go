package sbom

import (
	"regexp"
	"sort"
	"strings"
)

// spdxIDs maps the short names of Debian's copyright-format 1.0 (and the
// spellings common in the archive) to SPDX licence identifiers. A name
// not here becomes a LicenseRef- of its own.
var spdxIDs = map[string]string{
	"apache-2.0": "Apache-2.0", "artistic": "Artistic-1.0-Perl", "artistic-1.0": "Artistic-1.0",
	"artistic-2.0": "Artistic-2.0", "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause",
	"bsd-4-clause": "BSD-4-Clause", "isc": "ISC", "expat": "MIT", "mit": "MIT", "zlib": "Zlib",
	"cc0-1.0": "CC0-1.0", "cc-by-3.0": "CC-BY-3.0", "cc-by-4.0": "CC-BY-4.0", "cc-by-sa-3.0": "CC-BY-SA-3.0",
	"cc-by-sa-4.0": "CC-BY-SA-4.0", "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0", "epl-1.0": "EPL-1.0",
	"epl-2.0": "EPL-2.0", "python-2.0": "Python-2.0", "psf-2": "PSF-2.0", "openssl": "OpenSSL",
	"ofl-1.1": "OFL-1.1", "unicode-dfs-2016": "Unicode-DFS-2016", "curl": "curl", "x11": "X11",
	"boost-1.0": "BSL-1.0", "bsl-1.0": "BSL-1.0", "wtfpl": "WTFPL", "unlicense": "Unlicense",
	"0bsd": "0BSD", "bzip2-1.0.6": "bzip2-1.0.6", "ftl": "FTL", "libpng": "Libpng", "ijg": "IJG",
	"gfdl-1.2": "GFDL-1.2-only", "gfdl-1.2+": "GFDL-1.2-or-later", "gfdl-1.3": "GFDL-1.3-only",
	"gfdl-1.3+": "GFDL-1.3-or-later", "sleepycat": "Sleepycat", "tcl": "TCL", "vim": "Vim",
}

// gnuFamily are the licences whose Debian short names take the SPDX
// -only/-or-later suffixes: GPL-2 is GPL-2.0-only, GPL-2+ GPL-2.0-or-later.
var gnuFamily = regexp.MustCompile(`^(?i)(a?gpl|lgpl)-?([0-9](?:\.[0-9])?)(\+?)$`)

// SPDXExpression turns the licence names of a copyright file into one
// SPDX licence expression (the names joined by AND: the package holds
// files under each). Each name may itself be an expression of Debian's
// form ("GPL-2+ or Artistic"). NOASSERTION when there are none.
func SPDXExpression(names []string) (expr string, refs []string) {
	var parts []string
	for _, n := range names {
		e, r := nameExpression(n)
		refs = append(refs, r...)
		if len(names) > 1 && strings.Contains(e, " ") {
			e = "(" + e + ")"
		}
		parts = append(parts, e)
	}
	if len(parts) == 0 {
		return "NOASSERTION", nil
	}
	sort.Strings(refs)
	return strings.Join(parts, " AND "), uniq(refs)
}

var opSplit = regexp.MustCompile(`(?i)\s+(or|and)\s+`)

// nameExpression converts one copyright-format licence field.
func nameExpression(name string) (string, []string) {
	name = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(name, "("), ")"))
	ops := opSplit.FindAllStringSubmatch(name, -1)
	terms := opSplit.Split(name, -1)
	var b strings.Builder
	var refs []string
	for i, t := range terms {
		if i > 0 {
			b.WriteString(" " + strings.ToUpper(ops[i-1][1]) + " ")
		}
		id, ok := SPDXID(t)
		if !ok {
			refs = append(refs, id)
		}
		b.WriteString(id)
	}
	return b.String(), refs
}

// SPDXID is the SPDX identifier of one Debian licence short name; ok is
// false when there is none and the result is a LicenseRef- made from it.
func SPDXID(name string) (id string, ok bool) {
	n := strings.TrimSpace(name)
	low := strings.ToLower(n)
	if id, ok := spdxIDs[low]; ok {
		return id, true
	}
	if m := gnuFamily.FindStringSubmatch(n); m != nil {
		fam := strings.ToUpper(m[1])
		ver := m[2]
		if !strings.Contains(ver, ".") {
			ver += ".0"
		}
		if fam == "LGPL" && ver == "2.0" {
			fam = "LGPL" // LGPL-2.0 is the Library GPL: SPDX keeps the name
		}
		if m[3] == "+" {
			return fam + "-" + ver + "-or-later", true
		}
		return fam + "-" + ver + "-only", true
	}
	return "LicenseRef-" + refName(n), false
}

var notIDChar = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func refName(n string) string {
	r := strings.Trim(notIDChar.ReplaceAllString(n, "-"), "-")
	if r == "" {
		return "unknown"
	}
	return r
}

func uniq(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
