package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"vmdeb/internal/archive"
	"vmdeb/internal/chroot"
	"vmdeb/internal/imgroot"
)

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
