// Package tempname names the temporary siblings of the files a build
// writes: an output or a log is made under such a name beside its final
// one and renamed into place when complete, and what a killed build left
// under such names is found by them.
package tempname

import "path/filepath"

// Prefix is how the names of path's temporary siblings begin (in path's
// directory): a dot, path's file name and ".vmdeb-tmp".
func Prefix(path string) string {
	return "." + filepath.Base(path) + ".vmdeb-tmp"
}

// Leftovers are the entries beside path whose names begin with Prefix:
// what builds of path left that did not finish.
func Leftovers(path string) []string {
	pattern := filepath.Join(filepath.Dir(path), escape(Prefix(path))+"*")
	m, _ := filepath.Glob(pattern) // the only error is a bad pattern, escaped away
	return m
}

// escape quotes the characters filepath.Match treats specially.
func escape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
