package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"vmdeb/internal/config"

	"golang.org/x/sys/unix"

	"vmdeb/internal/apt"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/report"
	"vmdeb/internal/stagecache"
)

// Stage is one step of the pipeline. A build is a list of stages; a live
// build and a tarball build differ only in which stages the list holds.
// What a stage needs from the runner it declares through the optional
// interfaces below (chrootUser, afterChroot, cached).
type Stage interface {
	Name() string
	Run(ctx context.Context, st *State) error
}

// chrootUser is a stage that runs programs in the chroot (or needs its
// mounts in place). The chroot is up from the first such stage through
// the last, the stages between included; a cache save in that span takes
// it down and the next stage's start sets it up again.
type chrootUser interface{ NeedsChroot() bool }

// inChroot, embedded in a stage, makes it a chrootUser.
type inChroot struct{}

func (inChroot) NeedsChroot() bool { return true }

// outputStage, embedded in a stage, marks it as one that writes an
// output from the finished tree (a squashfs and ISO, a disk, a tarball):
// the end of a build, where the images of a set take turns
// (RunOptions.Turn).
type outputStage struct{}

func (outputStage) writesOutput() {}

func writesOutput(s Stage) bool {
	_, ok := s.(interface{ writesOutput() })
	return ok
}

func needsChroot(s Stage) bool {
	c, ok := s.(chrootUser)
	return ok && c.NeedsChroot()
}

// afterChroot is a chroot user with work to do once the chroot is down
// (finalise: the image's own sources and resolv.conf are back only
// then). The runner takes the chroot down after Run, then calls
// AfterChroot, within the stage's step.
type afterChroot interface {
	AfterChroot(ctx context.Context, st *State) error
}

// host is what a build does that needs root: the private work
// directory's ownership checks and the chroot's mounts. Tests give a
// fake one.
type host interface {
	PrivateDir(parent string) (string, error)
	// SetupChroot mounts the chroot's file systems on st.Rootfs, points
	// its apt at the build's mirror and sets st.Chroot.
	SetupChroot(ctx context.Context, st *State) (io.Closer, error)
}

type rootHost struct{}

func (rootHost) PrivateDir(parent string) (string, error) { return PrivateDir(parent) }

func (rootHost) SetupChroot(ctx context.Context, st *State) (io.Closer, error) {
	c, err := chroot.Setup(st.Rootfs, st.Log)
	if err != nil {
		return nil, err
	}
	p := st.Plan
	if p.SourceDateEpoch > 0 {
		// initramfs-tools, shadow and others then write fixed dates.
		c.Env = append(c.Env, fmt.Sprintf("SOURCE_DATE_EPOCH=%d", p.SourceDateEpoch))
	}
	// The image's own sources are moved aside until the teardown.
	if err := c.UseSources(apt.BuildSources(p.Mirror, p.Spec.Suite, p.Spec.Components)); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	st.Chroot = c
	return c, nil
}

// Run executes stages (Stages(p) for the build p describes) in a new
// work directory. Stages restored from the stage cache (o.Cache) are
// skipped. Whatever happens, the chroot is torn down, the temporary files
// are removed and (unless asked otherwise) the work directory is deleted;
// teardown errors are joined to the result. Outputs take their final
// names only when a stage publishes them (the report, last).
func Run(ctx context.Context, p *Plan, stages []Stage, log *buildlog.Log, o RunOptions) (st *State, err error) {
	h := o.host
	if h == nil {
		h = rootHost{}
	}
	parent := o.WorkDir
	if parent == "" {
		parent = config.DefaultWorkDir
	}
	private, err := h.PrivateDir(parent)
	if err != nil {
		return nil, err
	}
	sweepStale(private, log)
	work, err := os.MkdirTemp(private, "vmdeb-"+p.Spec.Name+"-")
	if err != nil {
		return nil, err
	}
	// The lock says "in use" for as long as this process lives, even if
	// it is killed: a later build removes work directories nobody holds.
	lock, err := lockWork(work)
	if err != nil {
		os.Remove(work)
		return nil, err
	}
	defer lock.Close()
	st = &State{Plan: p, Log: log, WorkDir: work, Rootfs: filepath.Join(work, "rootfs"), Backend: p.Bootstrap.ForBuild()}
	if o.Cache != nil {
		st.BlockCache = BlockCacheDir(o.Cache.Dir)
	}
	r := &runner{st: st, stages: stages, host: h, cache: o.Cache, turn: o.Turn, baseReady: o.BaseReady}
	if o.Remote != nil {
		r.remote = newRemoteUse(st, o.Remote)
		defer r.remote.wait()
	}
	log.Logf("work directory %s", work)
	for _, n := range p.Notes {
		log.Printf("%s", n)
	}
	defer func() { err = errors.Join(err, r.cleanup(o.KeepWork, private)) }()
	if err := os.Mkdir(st.Rootfs, 0o755); err != nil {
		return st, err
	}
	for _, o := range p.Spec.Outputs {
		if err := os.MkdirAll(filepath.Dir(p.Spec.Path(o.Path)), 0o755); err != nil {
			return st, fmt.Errorf("output directory: %w", err)
		}
	}
	return st, r.run(ctx)
}

// runner runs one build's stages and owns what they share: the chroot
// and the backend's hold on it.
type runner struct {
	st     *State
	stages []Stage
	host   host
	cache  *stagecache.Cache
	remote *remoteUse // nil: no remote cache
	// turn is RunOptions.Turn, called before the first output stage.
	turn func(context.Context, *buildlog.Log) error
	// baseReady is RunOptions.BaseReady, called once (then nil) after
	// stage base (baseStage).
	baseReady func()
	base      int
	chroot    io.Closer // the chroot, while it is up
	// first and last are the indices of the first and the last stage
	// that need the chroot (-1: none does).
	first, last int
	// setUp: the chroot was set up once (its step is logged once);
	// attach: the base system was restored, and the backend must be
	// attached to it before it serves the chroot.
	setUp, attach bool
}

func (r *runner) run(ctx context.Context) error {
	log := r.st.Log
	start := 0
	var points []cachePoint
	if r.cache != nil {
		points = cachePoints(r.st.Plan, r.stages)
		if r.remote != nil {
			r.remote.pull(ctx, r.cache, points)
		}
		var err error
		if start, err = restoreFromCache(ctx, r.st, r.cache, points); err != nil {
			log.Done()
			return &StageError{Stage: "restore", Err: err}
		}
	}
	r.base = baseStage(points)
	if start > r.base {
		r.based()
	}
	r.attach = start > 0
	r.first, r.last = -1, -1
	for i, s := range r.stages {
		if needsChroot(s) {
			if r.first < 0 {
				r.first = i
			}
			r.last = i
		}
	}
	for i := start; i < len(r.stages); i++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted before %s: %w", r.stages[i].Name(), err)
		}
		if r.turn != nil && writesOutput(r.stages[i]) {
			err := r.turn(ctx, log)
			r.turn = nil
			if err != nil {
				log.Done()
				return &StageError{Stage: "wait", Err: err}
			}
		}
		if err := r.runStage(ctx, i, points); err != nil {
			log.Done()
			return err
		}
	}
	trimBlockCache(r.st, AutoPruneSize)
	log.Done()
	return nil
}

// runStage runs stage i, with the chroot up if the stage is in the
// chroot's span, takes the chroot down after the span's last stage, and
// saves the root file system if the stage is cached.
func (r *runner) runStage(ctx context.Context, i int, points []cachePoint) error {
	st, stage := r.st, r.stages[i]
	if r.first >= 0 && r.first <= i && i <= r.last && r.chroot == nil {
		if err := r.openChroot(ctx); err != nil {
			return &StageError{Stage: "chroot", Err: err}
		}
	}
	st.Log.Step(stage.Name())
	fail := func(err error) error { return &StageError{Stage: stage.Name(), Err: err} }
	if err := stage.Run(ctx, st); err != nil {
		return fail(err)
	}
	after, hasAfter := stage.(afterChroot)
	if r.chroot != nil && (hasAfter || i == r.last) {
		if err := r.closeChroot(); err != nil {
			return fail(fmt.Errorf("teardown: %w", err))
		}
	}
	if hasAfter {
		if err := after.AfterChroot(ctx, st); err != nil {
			return fail(err)
		}
	}
	for _, pt := range points {
		if pt.index == i {
			if err := r.save(ctx, pt); err != nil {
				return fail(err)
			}
		}
	}
	if i == r.base {
		r.based()
	}
	return nil
}

// shared is a stage whose cache entry other images of a set reuse: the
// base system, common-packages.
type shared interface{ sharedBetweenImages() }

// baseStage is the index of the stage after which a set may start its
// next image: the last cached stage that images share, else the first
// cached stage, else the first stage.
func baseStage(points []cachePoint) int {
	base := 0
	for i, pt := range points {
		if i == 0 || pt.shared {
			base = pt.index
		}
	}
	return base
}

// based calls baseReady, once.
func (r *runner) based() {
	if r.baseReady != nil {
		r.baseReady()
		r.baseReady = nil
	}
}

// openChroot sets the chroot up (logged as the step "chroot" the first
// time), attaches the backend to a restored base system, and lets the
// backend serve the chroot (the native one's package cache).
func (r *runner) openChroot(ctx context.Context) error {
	st := r.st
	if !r.setUp {
		st.Log.Step("chroot")
		r.setUp = true
	}
	c, err := r.host.SetupChroot(ctx, st)
	if err != nil {
		return err
	}
	r.chroot = c
	if r.attach {
		if err := st.Backend.Attach(ctx, st.Log, bootstrapRequest(st)); err != nil {
			return err
		}
		r.attach = false
	}
	return st.Backend.ShareCache(ctx, st.Chroot)
}

// closeChroot takes the chroot down (its processes killed first) and
// detaches the backend from it.
func (r *runner) closeChroot() error {
	if r.chroot == nil {
		return nil
	}
	err := r.chroot.Close()
	r.chroot, r.st.Chroot = nil, nil
	return errors.Join(err, r.st.Backend.UnshareCache())
}

// save stores the root file system after a cached stage unless the cache
// has it already, with the chroot down (set up again before the next
// stage that needs it).
func (r *runner) save(ctx context.Context, pt cachePoint) error {
	if _, ok := r.cache.Lookup(pt.key); ok {
		r.st.cacheAction(pt.stage, report.CacheSaved, "")
		return nil
	}
	if err := r.closeChroot(); err != nil {
		return fmt.Errorf("teardown before saving the stage: %w", err)
	}
	if err := saveToCache(ctx, r.st, r.cache, pt); err != nil {
		return err
	}
	if r.remote != nil {
		r.remote.push(ctx, r.cache, pt)
	}
	return nil
}

// cleanup ends the build: chroot down, temporary directories removed, the
// work directory removed (or kept, if asked).
func (r *runner) cleanup(keep bool, private string) error {
	var err error
	if cerr := r.closeChroot(); cerr != nil {
		err = fmt.Errorf("teardown: %w", cerr)
	}
	st := r.st
	for _, t := range st.temps {
		t.Remove()
	}
	if keep {
		st.Log.Printf("work directory kept: %s", st.WorkDir)
		return err
	}
	t := time.Now()
	if rerr := chroot.RemoveAll(st.WorkDir); rerr != nil {
		return errors.Join(err, fmt.Errorf("removing work directory: %w", rerr))
	}
	// In the log only: the time between the last step and the build's end.
	st.Log.Logf("work directory removed in %.1fs", time.Since(t).Seconds())
	unix.Rmdir(private) // only if no other build uses it
	return err
}
