package bootstrap

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
)

// prepare fetches every package into the cache and gets each one ready for
// dpkg: a copy with its data uncompressed (made once, then kept in the
// cache), and, for the essential packages, its files unpacked into the
// target. Downloads run jobs at a time; unpacking, which is CPU work,
// one per CPU, each package as soon as it is downloaded. It returns the
// file dpkg is to install, by package name. The first failure stops the
// rest.
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
	// Buffered for all: a download never waits for the unpacking.
	ready := make(chan fetchedDeb, len(all))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(ready)
		return n.fetchAll(gctx, log, arc, all, ready)
	})
	var mu sync.Mutex
	out := map[string]string{}
	for range runtime.GOMAXPROCS(0) {
		g.Go(func() error {
			for f := range ready {
				if err := gctx.Err(); err != nil {
					return err
				}
				var into *os.Root
				if essential[f.p.Name] {
					into = root
				}
				plain, err := makePlain(gctx, cache, f.p, f.orig, into)
				if err != nil {
					return fmt.Errorf("unpacking %s: %w", f.p.Filename, err)
				}
				mu.Lock()
				out[f.p.Name] = plain
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, ctx.Err()
}

// fetchedDeb is a package downloaded (or found) into the cache, at orig.
type fetchedDeb struct {
	p    *archive.Package
	orig string
}

// fetchAll gets every package of all into the cache, n.Jobs at a time and
// the largest first (the long ones must not start last), and passes each
// on to ready as soon as it is there.
func (n *Native) fetchAll(ctx context.Context, log *buildlog.Log, arc *archive.Archive, all []*archive.Package, ready chan<- fetchedDeb) error {
	jobs := n.Jobs
	if jobs <= 0 {
		jobs = 8
	}
	dl, dctx := errgroup.WithContext(ctx)
	dl.SetLimit(jobs)
	var mu sync.Mutex
	done := 0
	order := append([]*archive.Package{}, all...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Size > order[j].Size })
	for _, p := range order {
		if dctx.Err() != nil {
			break
		}
		dl.Go(func() error {
			orig, err := arc.Fetch(dctx, p)
			if err != nil {
				return err
			}
			mu.Lock()
			done++
			log.Progress("packages fetched and verified", done, len(all))
			mu.Unlock()
			ready <- fetchedDeb{p, orig}
			return nil
		})
	}
	if err := dl.Wait(); err != nil {
		return err
	}
	return ctx.Err() // stopped early: not every package is there
}

// makePlain returns the cached copy of p (downloaded as orig) with its
// data uncompressed, making it if the cache has none, and unpacks p's
// files into into unless into is nil.
func makePlain(ctx context.Context, cache *archive.Cache, p *archive.Package, orig string, into *os.Root) (string, error) {
	plain := cache.Derived(p.SHA256)
	if plain == "" {
		var built bool
		var err error
		plain, built, err = cache.MakeDerived(ctx, p.SHA256, func(f *os.File) error { return archive.Unpack(orig, into, f) })
		if err != nil {
			return "", err
		}
		if built {
			return plain, nil // unpacked while making the copy
		}
	}
	if into != nil {
		if err := archive.Extract(plain, into); err != nil {
			return "", err
		}
	}
	return plain, nil
}
