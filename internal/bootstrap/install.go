package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

// install runs the target's dpkg inside it, in debootstrap's order
// (scripts/debian-common, second_stage_install): the core packages one by
// one, then the rest of the required set unpacked and configured, then
// the base set (pre-dependencies first).
func (n *Native) install(ctx context.Context, log *buildlog.Log, r Request, set archive.BaseSet, byName map[string]*archive.Package, staging string) (err error) {
	// dpkg syncs its database after every step of every package, which
	// costs more than the unpacking on a busy disk. During the bootstrap
	// the database lives on a tmpfs, copied to the target's disk after the
	// chroot's teardown (no process left to hold it); a bootstrap that
	// dies is thrown away anyway, so its syncs would buy nothing.
	keepDB, err := dbOnTmpfs(r.Target)
	if err != nil {
		return err
	}
	defer func() {
		if kerr := keepDB(err == nil); kerr != nil {
			err = errors.Join(err, kerr)
		}
	}()
	c, err := chroot.Setup(r.Target, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
		}
	}()
	if err := bindMount(c, staging, debDir); err != nil {
		return err
	}
	in := &target{ctx: ctx, log: log, root: c.Root, byName: byName}
	if err := in.run("/sbin/ldconfig"); err != nil {
		return err
	}
	log.Printf("installing the core packages")
	installed, err := in.installCore(r)
	if err != nil {
		return err
	}
	if err := in.installRequired(set, installed); err != nil {
		return err
	}
	return in.installBase(set)
}

// deb is the path inside the target of each named package's file.
func (t *target) deb(names ...string) []string {
	var out []string
	for _, nm := range names {
		if f, ok := t.byName[nm]; ok {
			out = append(out, debDir+"/"+f.DebName())
		}
	}
	return out
}

// dpkg runs the target's dpkg with --force-unsafe-io: it skips its fsync
// per file; a bootstrap that dies is thrown away whole, so durability
// buys nothing here.
func (t *target) dpkg(args ...string) error {
	return t.run("/usr/bin/dpkg", append([]string{"--force-unsafe-io"}, args...)...)
}

// installCore installs the core packages one by one, as debootstrap does
// before anything else, and returns the names it installed.
func (t *target) installCore(r Request) (map[string]bool, error) {
	awk := filepath.Join(r.Target, "usr/bin/awk")
	if _, err := os.Lstat(awk); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink("mawk", awk); err != nil {
			return nil, err
		}
	}
	libc := "libc6"
	switch r.Arch {
	case "alpha", "ia64":
		libc = "libc6.1"
	}
	core := []string{"base-passwd", "base-files", "dpkg", libc, "perl-base"}
	installed := map[string]bool{}
	coreInstall := func(names ...string) error {
		for _, nm := range names {
			installed[nm] = true
		}
		if files := t.deb(names...); len(files) > 0 {
			return t.dpkg(append([]string{"--force-depends", "--install"}, files...)...)
		}
		return nil
	}
	for _, nm := range core {
		if err := coreInstall(nm); err != nil {
			return nil, err
		}
		if nm == "dpkg" {
			if _, err := os.Lstat(filepath.Join(r.Target, "etc/localtime")); errors.Is(err, os.ErrNotExist) {
				if err := os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(r.Target, "etc/localtime")); err != nil {
					return nil, err
				}
			}
		}
	}
	if fi, err := os.Lstat(awk); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(awk)
	}
	if err := coreInstall("mawk"); err != nil {
		return nil, err
	}
	if r.Variant == "" || r.Variant == archive.Important {
		if err := coreInstall("debconf"); err != nil {
			return nil, err
		}
	}
	return installed, nil
}

// installRequired unpacks the required packages not installed yet, then
// configures them all.
func (t *target) installRequired(set archive.BaseSet, installed map[string]bool) error {
	var rest []string
	for _, p := range set.Required {
		if !installed[p.Name] {
			rest = append(rest, p.Name)
		}
	}
	t.log.Printf("unpacking and configuring %d required packages", len(rest))
	if err := t.dpkg(append([]string{"--force-depends", "--unpack"}, t.deb(rest...)...)...); err != nil {
		return err
	}
	t.progress = buildlog.NewPackageProgress(t.log, len(set.Required)-len(installed))
	defer func() { t.progress = nil }()
	return t.dpkg("--configure", "--pending", "--force-configure-any", "--force-depends")
}

// installBase installs the base set: the packages that others pre-depend
// on first, each with its own dependencies (dpkg --unpack does not honour
// Pre-Depends by itself), then the rest unpacked and configured.
func (t *target) installBase(set archive.BaseSet) error {
	if len(set.Base) == 0 {
		return nil
	}
	t.log.Printf("unpacking and configuring %d base packages", len(set.Base))
	base := map[string]bool{}
	for _, p := range set.Base {
		base[p.Name] = true
	}
	for _, p := range set.Base {
		for _, pd := range p.PreDependsOn() {
			if !base[pd] {
				continue
			}
			closure := baseClosure(pd, base, t.byName)
			if len(closure) == 0 {
				continue
			}
			if err := t.dpkg(append([]string{"--force-overwrite", "--force-confold", "--skip-same-version", "--install"}, t.deb(closure...)...)...); err != nil {
				return err
			}
			for _, nm := range closure {
				delete(base, nm)
			}
		}
	}
	var names []string
	for _, p := range set.Base {
		if base[p.Name] {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	if err := t.dpkg(append([]string{"--force-overwrite", "--force-confold", "--skip-same-version", "--unpack"}, t.deb(names...)...)...); err != nil {
		return err
	}
	t.progress = buildlog.NewPackageProgress(t.log, len(names))
	defer func() { t.progress = nil }()
	return t.dpkg("--force-confold", "--skip-same-version", "--configure", "-a")
}

// baseClosure is name and what it depends on among the base packages not
// yet installed.
func baseClosure(name string, base map[string]bool, byName map[string]*archive.Package) []string {
	seen := map[string]bool{}
	var out []string
	var walk func(string)
	walk = func(nm string) {
		if seen[nm] || !base[nm] {
			return
		}
		seen[nm] = true
		f, ok := byName[nm]
		if !ok {
			return
		}
		rels, _ := f.Relations()
		for _, r := range rels {
			for _, po := range r.Possibilities {
				walk(po.Name)
			}
		}
		out = append(out, nm)
	}
	walk(name)
	return out
}

// target runs the target's own programs inside it. The child process
// does the chroot(2) itself (see run.Cmd.Root): no chroot binary on the
// host, and the Go process keeps its own root.
type target struct {
	ctx      context.Context
	log      *buildlog.Log
	root     string
	byName   map[string]*archive.Package // the package set, by name
	progress *buildlog.PackageProgress
}

func (t *target) run(name string, args ...string) error {
	c := buildlog.Cmd{Name: name, Args: args, Root: t.root, Env: append([]string{chrootPath}, chroot.NonInteractiveEnv()...)}
	if t.progress != nil {
		c.Line = t.progress.Line
	}
	err := t.log.Run(t.ctx, c)
	if ce, ok := err.(*buildlog.CommandError); ok {
		// dpkg's command lines name hundreds of package files.
		ce.Cmd, ce.Args = filepath.Base(name)+" "+firstArgs(args), nil
	}
	return err
}

// firstArgs shortens a command line of many package files for messages.
func firstArgs(args []string) string {
	var opts []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			opts = append(opts, a)
		}
	}
	if n := len(args) - len(opts); n > 0 {
		opts = append(opts, fmt.Sprintf("(%d packages)", n))
	}
	return strings.Join(opts, " ")
}
