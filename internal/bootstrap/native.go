package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
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
	logSet(log, set, cache)
	all := set.All()
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

// logSet tells what the bootstrap installs and how much of it must be
// downloaded.
func logSet(log *buildlog.Log, set archive.BaseSet, cache *archive.Cache) {
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
}

func variantName(v archive.Variant) string {
	if v == "" || v == archive.Important {
		return "default (important)"
	}
	return string(v)
}
