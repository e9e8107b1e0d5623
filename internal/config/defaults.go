package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultWorkDir is where a build's work directory (and a builder VM's
// scratch disk) is made unless --workdir names another parent.
const DefaultWorkDir = "/var/tmp"

// Builder VM defaults (builder: in the config overrides them).
const (
	DefaultBuilderMemory  = 2 << 30
	DefaultBuilderScratch = 20 << 30
	MaxDefaultBuilderCPUs = 4
)

// Resolved is b with its defaults filled in: the image's suite, 2 GiB of
// memory, the host's CPUs (numCPU) up to 4 and a 20 GiB scratch disk.
func (b Builder) Resolved(imageSuite string, numCPU int) Builder {
	if b.Suite == "" {
		b.Suite = imageSuite
	}
	if b.Memory.Bytes == 0 {
		b.Memory.Bytes = DefaultBuilderMemory
	}
	if b.CPUs == 0 {
		b.CPUs = max(1, min(numCPU, MaxDefaultBuilderCPUs))
	}
	if b.Scratch.Bytes == 0 {
		b.Scratch.Bytes = DefaultBuilderScratch
	}
	return b
}

// ParseIsolation checks an isolation named on the command line ("" is
// none).
func ParseIsolation(s string) (Isolation, error) {
	if s == "" || oneOf(Isolation(s), Isolations) {
		return Isolation(s), nil
	}
	return "", fmt.Errorf("--isolation %q: valid are %s", s, Join(Isolations))
}

// ErrHostNeedsRoot: isolation host was chosen by somebody who is not root.
var ErrHostNeedsRoot = errors.New("isolation host builds as root on this machine, and you are not root; " +
	"build with --isolation userns (a user namespace) or --vm (a builder VM), or run as root")

// ChooseIsolation decides where a build runs: the command line's choice
// (asked), else the config's isolation: (configured), else host for root
// and a user namespace for anybody else.
func ChooseIsolation(asked, configured Isolation, root bool) (Isolation, error) {
	where := asked
	if where == "" {
		where = configured
	}
	switch {
	case where == "" && root:
		return Host, nil
	case where == "":
		return Userns, nil
	case where == Host && !root:
		return "", ErrHostNeedsRoot
	}
	return where, nil
}

// UserCacheDir is where an ordinary user's builds keep what
// /var/cache/vmdeb holds for root: $XDG_CACHE_HOME/vmdeb/SUB, else
// ~/.cache/vmdeb/SUB.
func UserCacheDir(sub string) string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = filepath.Join(os.TempDir(), fmt.Sprintf("vmdeb-cache-%d", os.Getuid()))
		return filepath.Join(d, sub)
	}
	return filepath.Join(d, "vmdeb", sub)
}
