package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/imgroot"
)

// Native is vmdeb's own bootstrapper: it verifies the archive and fetches
// packages itself (into a cache every build shares), unpacks the required
// packages in Go, then has the target's own dpkg install them in the
// order debootstrap uses. It needs nothing from the host but the kernel.
type Native struct {
	// CacheDir is the shared package cache ("" = archive.DefaultCacheDir).
	CacheDir string
	// Insecure accepts an archive whose InRelease is not signed by the
	// keyring (a loud warning is printed).
	Insecure bool
	// Jobs is the number of parallel downloads (0 = 8).
	Jobs int
	// Client fetches from the mirror (nil = archive.NewClient()).
	Client *archive.Client

	mu       sync.Mutex
	archive  *archive.Archive
	cache    *archive.Cache
	shared   *archive.Staging
	sharedAt *imgroot.Mount // the package cache's bind mount in the chroot
	// fastDpkg undoes what ShareCache did to make the chroot's dpkg fast.
	fastDpkg func() error
	log      *buildlog.Log
}

// NewNative returns the native backend with its defaults.
func NewNative() *Native { return &Native{} }

func (n *Native) Name() string { return "native" }

// Tools is empty: the target's own programs do the work.
func (n *Native) Tools() map[string]string { return map[string]string{} }

// CachePath is the package cache directory in use.
func (n *Native) CachePath() string {
	if n.CacheDir != "" {
		return n.CacheDir
	}
	return archive.DefaultCacheDir
}

// chrootPath is PATH for programs run inside the target.
const chrootPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// debDir is where the packages are, seen from inside the target: the
// build's staging directory of the cache is mounted there.
const debDir = "/var/cache/apt/archives"

// Bootstrap fills r.Target (an empty directory) with the base system of
// r.Variant: verified index, resolved package set, packages fetched into
// the cache (or found there), essential ones unpacked in Go, then
// installed and configured by the target's dpkg.
// Attach opens the archive and the package cache for a root file system
// that this build did not bootstrap (one restored from the stage cache),
// so that ShareCache can serve apt from the package cache.
func (n *Native) Attach(ctx context.Context, log *buildlog.Log, r Request) error {
	_, _, err := n.open(ctx, log, r)
	return err
}

// open verifies the suite's InRelease, reads its Packages indices and
// opens the package cache.
func (n *Native) open(ctx context.Context, log *buildlog.Log, r Request) (*archive.Archive, *archive.Cache, error) {
	cache, err := archive.OpenCache(n.CachePath(), log.Printf)
	if err != nil {
		return nil, nil, err
	}
	cl := n.Client
	if cl == nil {
		cl = archive.NewClient()
	}
	src := archive.Source{Mirror: strings.TrimRight(r.Mirror, "/"), Suite: r.Suite, Components: r.Components,
		Arch: r.Arch, Keyring: r.Keyring, Insecure: n.Insecure}
	arc, err := archive.Open(ctx, src, cl, cache, log)
	if err != nil {
		return nil, nil, err
	}
	if arc.Signer != "" {
		log.Printf("%s %s: InRelease signed by %s", r.Suite, r.Arch, arc.Signer)
	}
	n.mu.Lock()
	n.archive, n.cache, n.log = arc, cache, log
	n.mu.Unlock()
	return arc, cache, nil
}

func (n *Native) Bootstrap(ctx context.Context, log *buildlog.Log, r Request) (err error) {
	start := time.Now()
	if r.Target == "" || r.Mirror == "" || r.Suite == "" || r.Arch == "" {
		return errors.New("native bootstrap: target, mirror, suite and architecture are required")
	}
	if ents, err := os.ReadDir(r.Target); err != nil {
		return err
	} else if len(ents) > 0 {
		return fmt.Errorf("native bootstrap: %s is not empty", r.Target)
	}
	arc, cache, err := n.open(ctx, log, r)
	if err != nil {
		return err
	}

	u, _ := url.Parse(arc.Source.Mirror)
	set, err := archive.ResolveBase(arc.Index, r.Variant, arc.Release.Codename, u != nil && u.Scheme == "https", r.Include)
	if err != nil {
		return fmt.Errorf("resolving the %s package set of %s: %w", variantName(r.Variant), r.Suite, err)
	}
	all := set.All()
	var size int64
	missing := 0
	for _, p := range all {
		size += p.Size
		if _, err := os.Stat(cache.Path(p.SHA256)); err != nil {
			missing++
		}
	}
	log.Printf("%d packages (%d required, %d base), %.1f MB; %d to download into %s",
		len(all), len(set.Required), len(set.Base), float64(size)/1e6, missing, cache.Dir)
	log.Logf("required: %s", strings.Join(archive.Names(set.Required), " "))
	log.Logf("base: %s", strings.Join(archive.Names(set.Base), " "))
	staging, err := cache.NewStaging()
	if err != nil {
		return err
	}
	defer func() {
		if rerr := staging.Remove(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	t := time.Now()
	debs, err := n.prepare(ctx, log, r.Target, arc, cache, set)
	if err != nil {
		return err
	}
	for _, p := range all {
		if err := staging.Link(debs[p.Name], p.DebName()); err != nil {
			return fmt.Errorf("package cache: %w", err)
		}
	}
	if err := mergeUsr(r.Target, arc.Release.Codename, r.Variant); err != nil {
		return err
	}
	log.Printf("unpacked %d essential packages in %.1fs", len(set.Essential), time.Since(t).Seconds())
	byName := map[string]*archive.Package{}
	for _, p := range all {
		byName[p.Name] = p
	}
	if err := scaffold(r.Target, byName["dpkg"]); err != nil {
		return err
	}
	if r.Interpreter != "" {
		if err := CopyInterpreter(r.Interpreter, filepath.Join(r.Target, r.InterpreterAt)); err != nil {
			return err
		}
	}
	if err := n.install(ctx, log, r, set, byName, staging.Dir); err != nil {
		return err
	}
	if err := finish(r, arc, set); err != nil {
		return err
	}
	log.Printf("base system of %d packages installed in %.1fs", len(all), time.Since(start).Seconds())
	return nil
}

func variantName(v archive.Variant) string {
	if v == "" || v == archive.Important {
		return "default (important)"
	}
	return string(v)
}

// prepare fetches every package into the cache and gets each one ready for
// dpkg: a copy with its data uncompressed (made once, then kept in the
// cache), and, for the essential packages, its files unpacked into the
// target. Downloads run jobs at a time; unpacking, which is CPU work,
// one per CPU, each package as soon as it is downloaded. It returns the
// file dpkg is to install, by package name.
func (n *Native) prepare(ctx context.Context, log *buildlog.Log, targetDir string, arc *archive.Archive, cache *archive.Cache, set archive.BaseSet) (map[string]string, error) {
	root, err := os.OpenRoot(targetDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	essential := map[string]bool{}
	for _, p := range set.Essential {
		essential[p.Name] = true
	}
	all := set.All()
	jobs := n.Jobs
	if jobs <= 0 {
		jobs = 8
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dl := make(chan struct{}, jobs)
	cpu := make(chan struct{}, runtime.GOMAXPROCS(0))
	var (
		mu      sync.Mutex
		out     = map[string]string{}
		first   error
		fetched int
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
			cancel()
		}
	}
	acquire := func(c chan struct{}) bool {
		select {
		case c <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Largest first: the long ones must not start last.
	order := append([]*archive.Package{}, all...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Size > order[j].Size })
	for _, p := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !acquire(dl) {
				return
			}
			orig, err := arc.Fetch(ctx, p)
			<-dl
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			fetched++
			log.Progress("packages fetched and verified", fetched, len(all))
			mu.Unlock()
			if !acquire(cpu) {
				return
			}
			defer func() { <-cpu }()
			var into *os.Root
			if essential[p.Name] {
				into = root
			}
			plain := cache.Derived(p.SHA256)
			if plain == "" {
				var built bool
				plain, built, err = cache.MakeDerived(ctx, p.SHA256, func(f *os.File) error { return archive.Unpack(orig, into, f) })
				if err == nil && built {
					into = nil // unpacked while making the copy
				}
			}
			if err == nil && into != nil {
				err = archive.Extract(plain, into)
			}
			if err != nil {
				fail(fmt.Errorf("unpacking %s: %w", p.Filename, err))
				return
			}
			mu.Lock()
			out[p.Name] = plain
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, ctx.Err()
}

// mergeUsr turns /bin, /sbin, /lib… into symlinks to their /usr
// counterparts, as debootstrap's merge_usr does, unless the system must
// stay unmerged (before buster, or a buildd chroot up to bookworm).
func mergeUsr(target, codename string, variant archive.Variant) error {
	switch codename {
	case "etch", "lenny", "squeeze", "wheezy", "jessie", "stretch":
		return nil
	case "buster", "bullseye", "bookworm":
		if variant == archive.Buildd {
			if codename == "bookworm" {
				return os.WriteFile(filepath.Join(target, "etc/unsupported-skip-usrmerge-conversion"),
					[]byte("this system will not be supported in the future\n"), 0o644)
			}
			return nil
		}
	}
	for _, d := range []string{"bin", "lib", "lib32", "lib64", "libo32", "libx32", "sbin"} {
		p := filepath.Join(target, d)
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		if err := mergeEntry(target, d); err != nil {
			return err
		}
		if err := os.Symlink("usr/"+d, p); err != nil {
			return err
		}
	}
	return nil
}

// mergeEntry moves target/rel to target/usr/rel, merging directories.
func mergeEntry(target, rel string) error {
	src, dst := filepath.Join(target, rel), filepath.Join(target, "usr", rel)
	dfi, err := os.Lstat(dst)
	if errors.Is(err, os.ErrNotExist) {
		return os.Rename(src, dst)
	}
	if err != nil {
		return err
	}
	sfi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if dfi.Mode()&os.ModeSymlink != 0 || !dfi.IsDir() || !sfi.IsDir() {
		return fmt.Errorf("merging /usr: cannot move /%s, /usr/%s exists", rel, rel)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := mergeEntry(target, filepath.Join(rel, e.Name())); err != nil {
			return err
		}
	}
	return os.Remove(src)
}

// scaffold makes what dpkg needs before its first run, as debootstrap's
// first stage does: an empty database that already lists dpkg itself,
// an fstab and the basic device nodes.
func scaffold(target string, dpkg *archive.Package) error {
	if dpkg == nil {
		return errors.New("dpkg is not in the package set")
	}
	lib := filepath.Join(target, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		if err := os.MkdirAll(filepath.Join(lib, d), 0o755); err != nil {
			return err
		}
	}
	status := fmt.Sprintf("Package: dpkg\nVersion: %s\nMaintainer: unknown\nStatus: install ok installed\n\n", dpkg.Version)
	files := []struct {
		path string
		data string
	}{
		{"var/lib/dpkg/status", status},
		{"var/lib/dpkg/available", ""},
		{"var/lib/dpkg/info/dpkg.list", ""},
		{"var/lib/dpkg/cmethopt", "apt apt\n"},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(target, f.path), []byte(f.data), 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Lstat(filepath.Join(target, "etc/fstab")); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(filepath.Join(target, "etc/fstab"), []byte("# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"), 0o644); err != nil {
			return err
		}
	}
	for _, f := range []string{"resolv.conf", "hostname"} {
		if err := copyIfMissing("/etc/"+f, filepath.Join(target, "etc", f)); err != nil {
			return err
		}
	}
	return makeDevices(filepath.Join(target, "dev"))
}

// copyIfMissing is debootstrap's conditional_cp: the host's file, followed
// if a symlink, unless the target has one.
func copyIfMissing(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil // the host has none: nothing to copy
	}
	return os.WriteFile(dst, data, 0o644)
}

// makeDevices creates the nodes debootstrap's setup_devices_simple makes,
// so the finished tree has them even though builds mount their own /dev.
func makeDevices(dev string) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	nodes := []struct {
		name         string
		major, minor uint32
		mode         uint32
	}{{"null", 1, 3, 0o666}, {"zero", 1, 5, 0o666}, {"full", 1, 7, 0o666}, {"random", 1, 8, 0o666},
		{"urandom", 1, 9, 0o666}, {"tty", 5, 0, 0o666}, {"console", 5, 1, 0o600}, {"ptmx", 5, 2, 0o666}}
	for _, n := range nodes {
		p := filepath.Join(dev, n.name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := unix.Mknod(p, unix.S_IFCHR|n.mode, int(unix.Mkdev(n.major, n.minor))); err != nil {
			if errors.Is(err, unix.EPERM) {
				// A user namespace makes no device nodes; the booted
				// system's devtmpfs has them all.
				continue
			}
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := os.Chmod(p, os.FileMode(n.mode)); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.MkdirAll(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	links := map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
	for name, to := range links {
		if _, err := os.Lstat(filepath.Join(dev, name)); err == nil {
			continue
		}
		if err := os.Symlink(to, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

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
	in := &target{ctx: ctx, log: log, root: c.Root}
	deb := func(names ...string) []string {
		var out []string
		for _, nm := range names {
			if f, ok := byName[nm]; ok {
				out = append(out, debDir+"/"+f.DebName())
			}
		}
		return out
	}
	// --force-unsafe-io: dpkg skips its fsync per file; a bootstrap that
	// dies is thrown away whole, so durability buys nothing here.
	dpkg := func(args ...string) error {
		return in.run("/usr/bin/dpkg", append([]string{"--force-unsafe-io"}, args...)...)
	}
	if err := in.run("/sbin/ldconfig"); err != nil {
		return err
	}
	log.Printf("installing the core packages")
	awk := filepath.Join(r.Target, "usr/bin/awk")
	if _, err := os.Lstat(awk); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink("mawk", awk); err != nil {
			return err
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
		if files := deb(names...); len(files) > 0 {
			return dpkg(append([]string{"--force-depends", "--install"}, files...)...)
		}
		return nil
	}
	for _, nm := range core {
		if err := coreInstall(nm); err != nil {
			return err
		}
		if nm == "dpkg" {
			if _, err := os.Lstat(filepath.Join(r.Target, "etc/localtime")); errors.Is(err, os.ErrNotExist) {
				if err := os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(r.Target, "etc/localtime")); err != nil {
					return err
				}
			}
		}
	}
	if fi, err := os.Lstat(awk); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(awk)
	}
	if err := coreInstall("mawk"); err != nil {
		return err
	}
	if r.Variant == "" || r.Variant == archive.Important {
		if err := coreInstall("debconf"); err != nil {
			return err
		}
	}

	var rest []string
	for _, p := range set.Required {
		if !installed[p.Name] {
			rest = append(rest, p.Name)
		}
	}
	log.Printf("unpacking and configuring %d required packages", len(rest))
	if err := dpkg(append([]string{"--force-depends", "--unpack"}, deb(rest...)...)...); err != nil {
		return err
	}
	in.progress = buildlog.NewPackageProgress(log, len(set.Required)-len(installed))
	if err := dpkg("--configure", "--pending", "--force-configure-any", "--force-depends"); err != nil {
		return err
	}
	in.progress = nil
	if len(set.Base) == 0 {
		return nil
	}
	log.Printf("unpacking and configuring %d base packages", len(set.Base))
	base := map[string]bool{}
	for _, p := range set.Base {
		base[p.Name] = true
	}
	// Packages that others pre-depend on go in first, each with its own
	// dependencies (dpkg --unpack does not honour Pre-Depends by itself).
	for _, p := range set.Base {
		for _, pd := range p.PreDependsOn() {
			if !base[pd] {
				continue
			}
			closure := baseClosure(pd, base, byName)
			if len(closure) == 0 {
				continue
			}
			if err := dpkg(append([]string{"--force-overwrite", "--force-confold", "--skip-same-version", "--install"}, deb(closure...)...)...); err != nil {
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
	if len(names) > 0 {
		if err := dpkg(append([]string{"--force-overwrite", "--force-confold", "--skip-same-version", "--unpack"}, deb(names...)...)...); err != nil {
			return err
		}
		in.progress = buildlog.NewPackageProgress(log, len(names))
		if err := dpkg("--force-confold", "--skip-same-version", "--configure", "-a"); err != nil {
			return err
		}
	}
	return nil
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

// finish writes what debootstrap leaves for the next steps: apt's sources
// and, when the base set lacks the archive keyring package, the keyring
// that verified the archive.
func finish(r Request, arc *archive.Archive, set archive.BaseSet) error {
	src := fmt.Sprintf("deb %s %s %s\n", strings.TrimRight(r.Mirror, "/"), r.Suite, strings.Join(arc.Source.Components, " "))
	if err := os.MkdirAll(filepath.Join(r.Target, "etc/apt"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.Target, "etc/apt/sources.list"), []byte(src), 0o644); err != nil {
		return err
	}
	for _, p := range set.All() {
		if p.Name == "debian-archive-keyring" {
			return nil
		}
	}
	if arc.Signer == "" {
		return nil
	}
	data, err := os.ReadFile(arc.KeyringPath)
	if err != nil {
		return nil // a keyring directory: apt in the image is configured by the user
	}
	dst := filepath.Join(r.Target, "etc/apt/trusted.gpg.d", filepath.Base(arc.KeyringPath))
	if !strings.HasSuffix(dst, ".gpg") && !strings.HasSuffix(dst, ".asc") {
		dst += ".gpg"
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// dbOnTmpfs moves target's /var/lib/dpkg onto a tmpfs. The function it
// returns copies the database back to the disk (when keep is set) and
// unmounts the tmpfs. Every file is reached through imgroot: by then a
// package's script may have made a link of any directory on the way.
func dbOnTmpfs(target string) (func(keep bool) error, error) {
	img, err := imgroot.Open(target)
	if err != nil {
		return nil, err
	}
	const db, disk = "var/lib/dpkg", "var/lib/dpkg.vmdeb-disk"
	dbPath := filepath.Join(target, db)
	fail := func(err error) (func(bool) error, error) { return nil, errors.Join(err, img.Close()) }
	if err := img.Rename(db, disk); err != nil {
		return fail(err)
	}
	if err := img.Mkdir(db, 0o755); err != nil {
		return fail(err)
	}
	m, err := img.MountOn(db, func(at string) error {
		return unix.Mount("tmpfs", at, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
	})
	if err != nil {
		return fail(fmt.Errorf("mounting a tmpfs on %s: %w", dbPath, err))
	}
	if err := copyTree(img, disk, db); err != nil {
		return fail(errors.Join(err, m.Unmount()))
	}
	return func(keep bool) error {
		defer img.Close()
		var err error
		if keep {
			if err = img.RemoveAll(disk); err == nil {
				err = copyTree(img, db, disk)
			}
		}
		if uerr := m.Unmount(); uerr != nil {
			return errors.Join(err, uerr)
		}
		return errors.Join(err, img.Remove(db), img.Rename(disk, db))
	}, nil
}

// copyTree copies the directory tree src of img to dst, both relative to
// its root: directories, regular files and symlinks, keeping owners, modes
// and times. It enters no link.
func copyTree(img *imgroot.Root, src, dst string) error {
	return img.Walk(src, func(p string, e imgroot.Entry) error {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, strings.TrimPrefix(src, "/")), "/")
		to := path.Join(dst, rel)
		fi := e.Info()
		st := fi.Sys().(*unix.Stat_t)
		switch {
		case fi.IsDir():
			if err := img.Mkdir(to, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := img.Readlink(p)
			if err != nil {
				return err
			}
			if err := img.Symlink(l, to); err != nil {
				return err
			}
			return img.Lchown(to, int(st.Uid), int(st.Gid))
		case fi.Mode().IsRegular():
			data, err := img.ReadFile(p)
			if err != nil {
				return err
			}
			if err := img.WriteFile(to, data, 0o600); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: not a file, directory or symlink", filepath.Join(img.Path(), p))
		}
		if err := img.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := img.Chmod(to, fi.Mode()); err != nil {
			return err
		}
		return img.Lutimes(to, fi.ModTime(), fi.ModTime())
	})
}

// bindMount mounts dir on rel inside the chroot until its teardown.
func bindMount(c *chroot.Chroot, dir, rel string) error {
	img, err := imgroot.Open(c.Root)
	if err != nil {
		return err
	}
	defer img.Close()
	if err := img.MkdirAll(rel, 0o755); err != nil {
		return err
	}
	m, err := img.MountOn(rel, func(at string) error { return unix.Mount(dir, at, "", unix.MS_BIND, "") })
	if err != nil {
		return fmt.Errorf("mounting the package cache on %s: %w", filepath.Join(c.Root, rel), err)
	}
	c.Defer("unmount "+m.Host, m.Unmount)
	return nil
}

// target runs the target's own programs inside it. The child process
// does the chroot(2) itself (see run.Cmd.Root): no chroot binary on the
// host, and the Go process keeps its own root.
type target struct {
	ctx      context.Context
	log      *buildlog.Log
	root     string
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

// ShareCache lets the chroot's apt use the package cache: a staging
// directory with a link to every cached package of the suite's index
// (each checked against its SHA256 first) is mounted as the chroot's
// /var/cache/apt/archives. apt then takes those packages from it instead
// of downloading them, and what it downloads lands there too. Nothing done
// inside (apt-get clean included) can reach the shared files: only links
// are mounted. Until then the chroot's dpkg also runs as in the
// bootstrap, without syncs (see fastDpkg). Call UnshareCache before
// `apt-get clean` to keep apt's downloads for the next build and put
// dpkg back as the image must have it; the chroot's teardown does it
// otherwise. It needs a bootstrap done by this Native in this process.
func (n *Native) ShareCache(ctx context.Context, c *chroot.Chroot) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.archive == nil || n.cache == nil {
		return errors.New("native bootstrap: no archive to share the cache of (run Bootstrap first)")
	}
	if n.shared != nil {
		return nil
	}
	st, err := n.cache.NewStaging()
	if err != nil {
		return err
	}
	linked, err := linkCached(ctx, n.cache, n.archive.Index, st)
	if err != nil {
		return errors.Join(err, st.Remove())
	}
	mp := filepath.Join(c.Root, debDir)
	img, err := imgroot.Open(c.Root)
	if err != nil {
		return errors.Join(err, st.Remove())
	}
	defer img.Close()
	if err := img.MkdirAll(debDir, 0o755); err != nil {
		return errors.Join(err, st.Remove())
	}
	seeded, err := seedLists(c.Root, n.archive, n.cache)
	if err != nil {
		return errors.Join(err, st.Remove())
	}
	undo, err := fastDpkg(c.Root)
	if err != nil {
		return errors.Join(err, st.Remove())
	}
	m, err := img.MountOn(debDir, func(at string) error { return unix.Mount(st.Dir, at, "", unix.MS_BIND, "") })
	if err != nil {
		return errors.Join(fmt.Errorf("mounting the package cache on %s: %w", mp, err), undo(), st.Remove())
	}
	n.shared, n.sharedAt, n.fastDpkg = st, m, undo
	c.Defer("unshare the package cache", n.UnshareCache)
	n.log.Logf("package cache %s mounted on %s (%d packages); dpkg's database on a tmpfs, without fsync, until finalise", n.cache.Dir, debDir, linked)
	if seeded > 0 {
		n.log.Logf("apt's lists seeded with the verified InRelease and %d Packages indices", seeded)
	}
	return nil
}

// seedLists gives the chroot's apt the index the bootstrap verified: the
// InRelease and each component's uncompressed Packages, under the names
// apt gives them, so that `apt-get update` finds them current and fetches
// only the InRelease again (apt checks it as usual, and fetches the
// indices anew if the suite changed meanwhile). It returns how many
// Packages files it wrote (0: nothing to seed, apt fetches everything).
func seedLists(root string, arc *archive.Archive, cache *archive.Cache) (int, error) {
	u, err := url.Parse(arc.Source.Mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || arc.Signer == "" {
		return 0, nil // file: mirrors are read in place; unsigned ones are apt's to judge
	}
	type file struct{ name, from string }
	var files []file
	for _, comp := range arc.Source.Components {
		rel := comp + "/binary-" + arc.Source.Arch + "/Packages"
		fi, ok := arc.Release.Files[rel]
		if !ok {
			return 0, nil
		}
		p := cache.Path(fi.SHA256)
		if !cache.Has(p, "dists/"+arc.Source.Suite+"/"+rel, fi) {
			return 0, nil
		}
		files = append(files, file{aptListName(u, "dists/"+arc.Source.Suite+"/"+rel), p})
	}
	img, err := imgroot.Open(root)
	if err != nil {
		return 0, err
	}
	defer img.Close()
	const dir = "var/lib/apt/lists/"
	if err := img.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f.from)
		if err != nil {
			return 0, err
		}
		if err := img.WriteFile(dir+f.name, data, 0o644); err != nil {
			return 0, err
		}
	}
	// Last, so that apt never sees an InRelease without its indices.
	if err := img.WriteFile(dir+aptListName(u, "dists/"+arc.Source.Suite+"/InRelease"), arc.InRelease, 0o644); err != nil {
		return 0, err
	}
	return len(files), nil
}

// aptListName is the name apt gives, in /var/lib/apt/lists, to the file
// rel of the mirror u (apt's URItoFileName): the URI without its scheme
// and credentials, a few characters %-escaped, '/' turned into '_'.
func aptListName(u *url.URL, rel string) string {
	s := u.Host + strings.TrimRight(u.Path, "/") + "/" + rel
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("\\|{}[]<>\"^~_=!@#$%^&*", c) >= 0 {
			fmt.Fprintf(&b, "%%%02x", c)
			continue
		}
		if c == '/' {
			c = '_'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// unsafeIOConf is the dpkg configuration file that ShareCache adds for
// the time of the build.
const unsafeIOConf = "etc/dpkg/dpkg.cfg.d/vmdeb-build-unsafe-io"

// fastDpkg makes the target's dpkg skip the syncs that cost most of its
// time on a busy disk, as the bootstrap itself does: no fsync per
// unpacked file (force-unsafe-io) and the database on a tmpfs, where its
// many journal syncs are free. A build that dies is thrown away whole, so
// the syncs buy nothing until it ends. The function returned puts the
// database back on disk and removes the option: the image has neither.
func fastDpkg(root string) (func() error, error) {
	img, err := imgroot.Open(root)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if _, err := img.Stat("var/lib/dpkg/status"); err != nil {
		return nil, fmt.Errorf("no dpkg database in %s: %w", root, err)
	}
	if err := img.MkdirAll(path.Dir(unsafeIOConf), 0o755); err != nil {
		return nil, err
	}
	if err := img.WriteFile(unsafeIOConf, []byte("# vmdeb: for the build only (removed before the image is made)\nforce-unsafe-io\n"), 0o644); err != nil {
		return nil, err
	}
	keepDB, err := dbOnTmpfs(root)
	if err != nil {
		return nil, errors.Join(err, img.Remove(unsafeIOConf))
	}
	return func() error {
		err := keepDB(true)
		img, ierr := imgroot.Open(root)
		if ierr != nil {
			return errors.Join(err, ierr)
		}
		defer img.Close()
		if rerr := img.Remove(unsafeIOConf); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return err
	}, nil
}

// UnshareCache unmounts the cache from the chroot, keeps what apt
// downloaded into it, removes the staging directory and puts dpkg's
// database back on disk, with syncs on again. Calling it again,
// or without ShareCache, does nothing.
func (n *Native) UnshareCache() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.shared == nil {
		return nil
	}
	st, mp, undo := n.shared, n.sharedAt, n.fastDpkg
	n.shared, n.sharedAt, n.fastDpkg = nil, nil, nil
	var err error
	if uerr := mp.Unmount(); uerr != nil {
		err = uerr
	}
	if undo != nil {
		if derr := undo(); derr != nil {
			err = errors.Join(err, fmt.Errorf("putting dpkg's database back on disk: %w", derr))
		}
	}
	if _, ierr := st.Ingest(); ierr != nil {
		err = errors.Join(err, fmt.Errorf("keeping apt's downloads in the package cache: %w", ierr))
	}
	return errors.Join(err, st.Remove())
}

// linkCached links into st every package of idx whose file the cache
// holds, after checking its hash (several at once).
func linkCached(ctx context.Context, cache *archive.Cache, idx *archive.Index, st *archive.Staging) (int, error) {
	have := map[string]bool{}
	dirs, _ := filepath.Glob(filepath.Join(cache.Dir, "sha256", "??"))
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			have[e.Name()] = true
		}
	}
	var todo []*archive.Package
	for _, p := range idx.All() {
		if have[p.SHA256] {
			todo = append(todo, p)
		}
	}
	var (
		mu    sync.Mutex
		errs  []error
		count int
		wg    sync.WaitGroup
	)
	work := make(chan *archive.Package)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				path := cache.Path(p.SHA256)
				if !cache.Has(path, p.DebName(), archive.FileInfo{Size: p.Size, SHA256: p.SHA256}) {
					continue // corrupt: removed; apt downloads it
				}
				err := st.Link(path, p.DebName())
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					count++
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range todo {
		if ctx.Err() != nil {
			break
		}
		work <- p
	}
	close(work)
	wg.Wait()
	return count, errors.Join(append(errs, ctx.Err())...)
}
