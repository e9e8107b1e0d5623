package buildlog

import "os"

// Missing is a tool or file a build needs that the host lacks.
type Missing struct {
	What    string // binary name or file path
	Package string // Debian package that provides it
}

func (m Missing) String() string { return m.What + " (install " + m.Package + ")" }

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
