package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/remotecache"
	"vmdeb/internal/report"
	"vmdeb/internal/stagecache"
)

// pushTimeout bounds one push: a registry that accepts the connection
// and then stalls must not hold the build's end for long.
var pushTimeout = 10 * time.Minute

// remoteUse is one build's use of a remote cache (RunOptions.Remote):
// stage entries pulled into the local stage cache before the runner
// looks there, entries pushed in the background after they are saved,
// package files pulled and pushed for the native bootstrapper. Every
// failure of the registry is a warning (the first one logged; the
// client then stops trying); the build goes on locally.
type remoteUse struct {
	c     *remotecache.Client
	log   *buildlog.Log
	queue remotecache.Queue

	mu     sync.Mutex
	rep    *report.RemoteCache
	warned bool
}

// newRemoteUse starts the build's use of c; st.Remote is its report.
func newRemoteUse(st *State, c *remotecache.Client) *remoteUse {
	u := &remoteUse{c: c, log: st.Log, rep: &report.RemoteCache{URL: c.Ref.String(), Stages: []report.RemoteStage{}}}
	st.Remote = u.rep
	archive.SharedRemote = debRemote{u}
	u.log.Printf("remote cache: %s", c.Ref)
	return u
}

// record adds a stage's record to the report.
func (u *remoteUse) record(r report.RemoteStage) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rep.Stages = append(u.rep.Stages, r)
}

// warn logs a registry failure once: the first failure marks the
// registry down and nothing more is tried.
func (u *remoteUse) warn(what string, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.warned {
		return
	}
	u.warned = true
	u.rep.Warning = fmt.Sprintf("%s: %v", what, err)
	u.log.Printf("WARNING: remote cache %s: %s failed: %v; going on with the local cache only", u.c.Ref, what, err)
}

// pull looks the cached stages up in the registry, deepest first, down to
// the deepest one the local cache has: the first the registry has is
// pulled into the local cache, where restoreFromCache then finds it.
// A refused pull (corrupt, wrong key) is logged and the next shallower
// stage is tried. The stages before the one pulled that the local cache
// lacks are pulled too, in the background while the build goes on: a
// later build that changes only the packages starts from the bootstrap.
func (u *remoteUse) pull(ctx context.Context, c *stagecache.Cache, points []cachePoint) {
	for j := len(points) - 1; j >= 0; j-- {
		pt := points[j]
		if _, ok := c.Lookup(pt.key); ok {
			return
		}
		if ctx.Err() != nil {
			return
		}
		if u.pullOne(ctx, c, pt) {
			for _, before := range points[:j] {
				if _, ok := c.Lookup(before.key); !ok {
					u.queue.Go(func() { u.pullOne(ctx, c, before) })
				}
			}
			return
		}
	}
}

// pullOne pulls one stage's entry into the local cache and records what
// happened; it reports whether the entry is now there.
func (u *remoteUse) pullOne(ctx context.Context, c *stagecache.Cache, pt cachePoint) bool {
	t := time.Now()
	dg, err := u.c.PullStage(ctx, pt.key, pt.stage, c)
	rec := report.RemoteStage{Stage: pt.stage, Key: pt.key, Digest: dg}
	switch {
	case err == nil:
		rec.Action = report.RemotePulled
		size := ""
		if e, ok := c.Lookup(pt.key); ok {
			size = ", " + bytesize.Format(e.Size)
		}
		u.log.Printf("remote cache: %s pulled (key %s, %s%s, %.1fs)", pt.stage, pt.key[:12], dg, size, time.Since(t).Seconds())
	case errors.Is(err, remotecache.ErrMiss):
		rec.Action = report.RemoteMiss
		u.log.Printf("remote cache: %s not there (key %s)", pt.stage, pt.key[:12])
	case errors.Is(err, remotecache.ErrRefused):
		rec.Action, rec.Reason = report.RemotePullFailed, err.Error()
		u.log.Printf("WARNING: remote cache: %s not used, it will be built: %v", pt.stage, err)
	default:
		rec.Action, rec.Reason = report.RemotePullFailed, err.Error()
		u.warn("pulling "+pt.stage, err)
	}
	u.record(rec)
	return err == nil
}

// push queues the upload of a stage the build has just saved; the build
// does not wait for it until it ends (wait).
func (u *remoteUse) push(ctx context.Context, c *stagecache.Cache, pt cachePoint) {
	e, ok := c.Lookup(pt.key)
	if !ok {
		return
	}
	u.queue.Go(func() {
		rec := report.RemoteStage{Stage: pt.stage, Key: pt.key}
		t := time.Now()
		pctx, cancel := context.WithTimeout(ctx, pushTimeout)
		defer cancel()
		ex, path, done, err := c.Export(pctx, e)
		if err == nil {
			var present bool
			rec.Digest, present, err = u.c.PushStage(pctx, ex, path)
			done()
			if err == nil && present {
				rec.Action = report.RemotePresent
				u.log.Printf("remote cache: %s already there (key %s, %s)", pt.stage, pt.key[:12], rec.Digest)
			} else if err == nil {
				rec.Action = report.RemotePushed
				u.log.Printf("remote cache: %s pushed (key %s, %s, %s, %.1fs)", pt.stage, pt.key[:12], rec.Digest, bytesize.Format(ex.Size), time.Since(t).Seconds())
			}
		}
		if err != nil {
			rec.Action, rec.Reason = report.RemotePushFailed, err.Error()
			u.warn("pushing "+pt.stage, err)
		}
		u.record(rec)
	})
}

// wait waits for the queued pushes (each bounded by pushTimeout) and
// logs what became of the packages.
func (u *remoteUse) wait() {
	t := time.Now()
	u.queue.Wait()
	if d := time.Since(t); d > time.Second {
		u.log.Printf("remote cache: waited %.1fs for the transfers to finish", d.Seconds())
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if d := u.rep.Debs; d != (report.RemoteDebs{}) {
		u.log.Printf("remote cache: packages: %d pulled, %d pushed, %d not pulled, %d not pushed", d.Pulled, d.Pushed, d.PullFailed, d.PushFailed)
	}
	if archive.SharedRemote == (debRemote{u}) {
		archive.SharedRemote = nil
	}
}

// debRemote is the remote cache as the package cache sees it.
type debRemote struct{ u *remoteUse }

func (d debRemote) FetchDeb(ctx context.Context, name string, want archive.FileInfo, w io.Writer) error {
	err := d.u.c.PullDeb(ctx, want.SHA256, want.Size, w)
	d.u.mu.Lock()
	switch {
	case err == nil:
		d.u.rep.Debs.Pulled++
	case errors.Is(err, remotecache.ErrMiss):
	default:
		d.u.rep.Debs.PullFailed++
	}
	d.u.mu.Unlock()
	switch {
	case err == nil, errors.Is(err, remotecache.ErrMiss):
	case errors.Is(err, remotecache.ErrRefused):
		d.u.log.Printf("WARNING: remote cache: %s refused: %v", name, err)
	default:
		d.u.warn("pulling "+name, err)
	}
	return err
}

func (d debRemote) StoreDeb(name string, want archive.FileInfo, path string) {
	d.u.queue.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
		defer cancel()
		pushed, err := d.u.c.PushDeb(ctx, name, want.SHA256, want.Size, path)
		d.u.mu.Lock()
		switch {
		case err != nil:
			d.u.rep.Debs.PushFailed++
		case pushed:
			d.u.rep.Debs.Pushed++
		}
		d.u.mu.Unlock()
		if err != nil {
			d.u.warn("pushing "+name, err)
		}
	})
}
