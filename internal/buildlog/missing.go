package buildlog

import (
	"os"
	"slices"
	"strings"
)

// Missing is a tool or file a build or a boot needs that the host lacks.
type Missing struct {
	What    string // program name or file path
	Package string // Debian package that provides it
}

func (m Missing) String() string { return m.What + " (package " + m.Package + ")" }

// MissingError is the one message for what a host lacks: each item on a
// line of its own, then the apt-get command that installs them all.
func MissingError(miss []Missing) error {
	if len(miss) == 0 {
		return nil
	}
	return missingError(slices.Clone(miss))
}

type missingError []Missing

func (e missingError) Error() string {
	var b strings.Builder
	b.WriteString("missing on this host:")
	for _, m := range e {
		b.WriteString("\n  " + m.String())
	}
	b.WriteString("\ninstall with: apt-get install " + strings.Join(Packages(e), " "))
	return b.String()
}

// Packages is the sorted set of packages that provide miss.
func Packages(miss []Missing) []string {
	var l []string
	for _, m := range miss {
		l = append(l, m.Package)
	}
	slices.Sort(l)
	return slices.Compact(l)
}

// Needs collects what a host lacks, each with its Debian package.
type Needs struct{ Missing []Missing }

// Bin notes name when it is not on the build's PATH (see LookPath).
func (n *Needs) Bin(name, pkg string) {
	if _, err := LookPath(name); err != nil {
		n.Missing = append(n.Missing, Missing{name, pkg})
	}
}

// File notes path when it does not exist.
func (n *Needs) File(path, pkg string) {
	if _, err := os.Stat(path); err != nil {
		n.Missing = append(n.Missing, Missing{path, pkg})
	}
}
