package bootstrap

import (
	"context"
	"strings"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
)

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
