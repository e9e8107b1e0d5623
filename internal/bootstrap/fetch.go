package bootstrap

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
)

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
