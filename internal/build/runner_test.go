package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vmdeb/internal/bootstrap"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/config"
	"vmdeb/internal/report"
	"vmdeb/internal/stagecache"
)

// recorder is what a fake build did, in order; the fakes below (host,
// backend, stages) write into it.
type recorder struct {
	t        *testing.T
	events   []string
	up       bool  // the fake chroot is up
	downFail error // what taking the chroot down returns
}

func (r *recorder) add(event string) { r.events = append(r.events, event) }

// fakeHost keeps the private directory and "mounts" the chroot without
// root: it only records.
type fakeHost struct{ r *recorder }

func (h fakeHost) PrivateDir(parent string) (string, error) {
	d := filepath.Join(parent, "vmdeb-test")
	return d, os.MkdirAll(d, 0o700)
}

func (h fakeHost) SetupChroot(_ context.Context, st *State) (io.Closer, error) {
	if h.r.up {
		h.r.t.Error("chroot set up twice")
	}
	h.r.up = true
	h.r.add("up")
	return closer(func() error { h.r.up = false; h.r.add("down"); return h.r.downFail }), nil
}

type closer func() error

func (c closer) Close() error { return c() }

// fakeBackend records how the runner uses the Bootstrapper interface.
type fakeBackend struct{ r *recorder }

func (b *fakeBackend) Name() string                     { return "fake" }
func (b *fakeBackend) Tools() map[string]string         { return nil }
func (b *fakeBackend) HostFiles() []bootstrap.HostFile  { return nil }
func (b *fakeBackend) ForBuild() bootstrap.Bootstrapper { return b }
func (b *fakeBackend) ShareCache(context.Context, *chroot.Chroot) error {
	if !b.r.up {
		b.r.t.Error("cache shared with a chroot that is not up")
	}
	b.r.add("share")
	return nil
}
func (b *fakeBackend) UnshareCache() error { b.r.add("unshare"); return nil }
func (b *fakeBackend) Bootstrap(context.Context, *buildlog.Log, bootstrap.Request) error {
	b.r.add("bootstrap")
	return nil
}
func (b *fakeBackend) Attach(context.Context, *buildlog.Log, bootstrap.Request) error {
	b.r.add("attach")
	return nil
}

// fakeStage records its run, checks that the chroot is up when (and only
// when) it asked for it, writes files into the root file system and,
// given an output, writes it and commits it as stages do.
type fakeStage struct {
	r      *recorder
	name   string
	chroot bool
	fail   error
	files  map[string]string // written into the root file system
	out    string            // an output: the root's files, listed
}

func (s *fakeStage) Name() string      { return s.name }
func (s *fakeStage) NeedsChroot() bool { return s.chroot }

func (s *fakeStage) Run(ctx context.Context, st *State) error {
	s.r.add("run " + s.name)
	if s.chroot && !s.r.up {
		s.r.t.Errorf("%s ran without its chroot", s.name)
	}
	for name, data := range s.files {
		if err := os.WriteFile(filepath.Join(st.Rootfs, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	if s.out != "" {
		tmp, err := st.temp(s.out)
		if err != nil {
			return err
		}
		ents, _ := os.ReadDir(st.Rootfs)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if err := os.WriteFile(tmp, []byte(strings.Join(names, " ")), 0o644); err != nil {
			return err
		}
		if s.fail != nil {
			return s.fail // with its temporary file written
		}
		if err := st.commit(tmp, s.out, config.Tarball); err != nil {
			return err
		}
	}
	return s.fail
}

// cachedStage is a fake stage whose result the stage cache keeps.
type cachedStage struct {
	*fakeStage
	input string
}

func (c cachedStage) CacheInputs(*Plan) stagecache.Inputs {
	var in stagecache.Inputs
	in.Add(c.name, c.input)
	return in
}

// outStage is a fake stage that writes an output (RunOptions.Turn comes
// before the first).
type outStage struct {
	*fakeStage
	outputStage
}

// afterStage is a fake chroot user with work after the chroot is down.
type afterStage struct{ *fakeStage }

func (a afterStage) AfterChroot(context.Context, *State) error {
	a.r.add("after " + a.name)
	if a.r.up {
		a.r.t.Errorf("%s: AfterChroot with the chroot up", a.name)
	}
	return nil
}

// fakeBuild is a plan with two tarball outputs in their own directory,
// and a fake host and backend.
type fakeBuild struct {
	r       *recorder
	p       *Plan
	outDir  string
	outs    []string
	term    bytes.Buffer
	work    string
	opts    RunOptions
	backend *fakeBackend
}

func newFakeBuild(t *testing.T) *fakeBuild {
	r := &recorder{t: t}
	dir := t.TempDir()
	s := &config.Spec{Name: "t", Dir: dir, Outputs: []config.Output{
		{Type: config.Tarball, Path: "out/a.tar"}, {Type: config.Tarball, Path: "out/b.tar"}}}
	b := &fakeBuild{r: r, outDir: filepath.Join(dir, "out"), backend: &fakeBackend{r}}
	b.outs = []string{s.Path("out/a.tar"), s.Path("out/b.tar")}
	b.p = &Plan{Spec: s, Bootstrap: b.backend}
	b.work = t.TempDir()
	b.opts = RunOptions{WorkDir: b.work, host: fakeHost{r}}
	return b
}

func (b *fakeBuild) stage(name string, chroot bool) *fakeStage {
	return &fakeStage{r: b.r, name: name, chroot: chroot}
}

// pipeline is shaped like the default one: a cached bootstrap, cached
// packages in the chroot, a stage without it, chroot stages, finalise
// (work after the chroot), two outputs and the report that publishes.
func (b *fakeBuild) pipeline(pkgsInput string) []Stage {
	boot := b.stage("bootstrap", false)
	boot.files = map[string]string{"base": "1"}
	pkgs := b.stage("packages", true)
	pkgs.files = map[string]string{"pkgs": pkgsInput}
	a, c := b.stage("a", false), b.stage("b", false)
	a.out, c.out = b.outs[0], b.outs[1]
	return []Stage{cachedStage{boot, "1"}, cachedStage{pkgs, pkgsInput}, b.stage("init", false),
		b.stage("system", true), afterStage{b.stage("finalise", true)}, outStage{fakeStage: a}, outStage{fakeStage: c}, reportStage{}}
}

func (b *fakeBuild) run(ctx context.Context, stages []Stage) (*State, error) {
	b.r.events = nil
	b.term.Reset()
	log := buildlog.New(nil, "", &b.term)
	return Run(ctx, b.p, stages, log, b.opts)
}

// leftovers are the entries of the output directory and of the work
// directory's parent that are not the outputs and the files the report
// writes beside them (manifests, SBOMs, sums).
func (b *fakeBuild) leftovers(t *testing.T) []string {
	t.Helper()
	var l []string
	ents, _ := os.ReadDir(b.outDir)
	for _, e := range ents {
		stem, _, _ := strings.Cut(e.Name(), ".")
		if e.Name() != "SHA256SUMS" && stem != "a" && stem != "b" {
			l = append(l, "out/"+e.Name())
		}
	}
	ents, _ = os.ReadDir(b.work)
	for _, e := range ents {
		l = append(l, "work/"+e.Name())
	}
	return l
}

func (b *fakeBuild) published() []string {
	var l []string
	for _, o := range b.outs {
		if _, err := os.Lstat(o); err == nil {
			l = append(l, filepath.Base(o))
		}
	}
	return l
}

// The stages run in order; the chroot is set up once before the first
// stage that needs it (its step logged), stays up across a stage between
// that does not, comes down after the last one, before finalise's work
// outside it; the outputs are published together, and nothing of the
// build is left.
func TestRunOrder(t *testing.T) {
	b := newFakeBuild(t)
	st, err := b.run(context.Background(), b.pipeline("p1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"run bootstrap", "up", "share", "run packages", "run init", "run system", "run finalise",
		"down", "unshare", "after finalise", "run a", "run b"}
	if !slices.Equal(b.r.events, want) {
		t.Errorf("events\n%q\nwant\n%q", b.r.events, want)
	}
	var steps []string
	for _, l := range strings.Split(b.term.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "==> "); ok {
			steps = append(steps, s)
		}
	}
	wantSteps := []string{"bootstrap", "chroot", "packages", "init", "system", "finalise", "a", "b", "report"}
	if !slices.Equal(steps, wantSteps) {
		t.Errorf("steps %q, want %q", steps, wantSteps)
	}
	if got := b.published(); len(got) != 2 {
		t.Errorf("published %v, want both outputs", got)
	}
	if data, _ := os.ReadFile(b.outs[1]); string(data) != "base pkgs" {
		t.Errorf("output b holds %q, want the root's files", data)
	}
	var types []string
	for _, r := range st.Results {
		if r.Type == "tarball" || r.Type == "manifest" {
			types = append(types, r.Type+" "+filepath.Base(r.Path))
		}
	}
	if want := []string{"tarball a.tar", "tarball b.tar", "manifest a.packages", "manifest b.packages"}; !slices.Equal(types, want) {
		t.Errorf("results %v, want %v", types, want)
	}
	if l := b.leftovers(t); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// A stage failing anywhere stops the build there: no later stage runs,
// the chroot (if it was up) comes down, the error names the stage,
// no output takes its final name and no temporary file is left.
func TestRunFailureAtEveryPosition(t *testing.T) {
	b := newFakeBuild(t)
	all := b.pipeline("p1")
	for i := range all[:len(all)-1] { // the report publishes: a failure there is its own case
		name := all[i].Name()
		t.Run(name, func(t *testing.T) {
			b := newFakeBuild(t)
			stages := b.pipeline("p1")
			boom := errors.New("boom")
			fakeOf(stages[i]).fail = boom
			_, err := b.run(context.Background(), stages)
			var se *StageError
			if !errors.As(err, &se) || se.Stage != name || !errors.Is(err, boom) {
				t.Fatalf("error %v, want stage %s failed: boom", err, name)
			}
			ran := 0
			for _, e := range b.r.events {
				if s, ok := strings.CutPrefix(e, "run "); ok {
					if s != stages[ran].Name() {
						t.Errorf("ran %s, want %s", s, stages[ran].Name())
					}
					ran++
				}
			}
			if ran != i+1 {
				t.Errorf("%d stages ran, want %d: %q", ran, i+1, b.r.events)
			}
			if b.r.up {
				t.Error("the chroot is still up")
			}
			if slices.Contains(b.r.events, "up") && !slices.Contains(b.r.events, "unshare") {
				t.Errorf("the backend was not detached: %q", b.r.events)
			}
			if got := b.published(); len(got) > 0 {
				t.Errorf("published %v after a failure", got)
			}
			if l := b.leftovers(t); len(l) > 0 {
				t.Errorf("left behind: %v", l)
			}
		})
	}
}

func fakeOf(s Stage) *fakeStage {
	switch s := s.(type) {
	case *fakeStage:
		return s
	case cachedStage:
		return s.fakeStage
	case afterStage:
		return s.fakeStage
	case outStage:
		return s.fakeStage
	}
	panic(fmt.Sprintf("not a fake stage: %T", s))
}

// Outputs are published only by the report, after every other stage
// succeeded (a failure before it publishes nothing: see
// TestRunFailureAtEveryPosition). An output that cannot take its final
// name fails the report stage, and its temporary files go all the same.
func TestRunPublishFailure(t *testing.T) {
	b := newFakeBuild(t)
	// A directory at b's final name: the rename of a file over it fails.
	if err := os.MkdirAll(filepath.Join(b.outs[1], "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := b.run(context.Background(), b.pipeline("p1"))
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "report" {
		t.Fatalf("error %v, want the report stage to fail", err)
	}
	if l := b.leftovers(t); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// Cancelled between stages: the next stage does not start, and the build
// cleans up as after a failure.
func TestRunInterrupted(t *testing.T) {
	b := newFakeBuild(t)
	stages := b.pipeline("p1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stages[3] = &cancelStage{fakeOf(stages[3]), cancel}
	_, err := b.run(ctx, stages)
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted before finalise") {
		t.Fatalf("error %v", err)
	}
	if b.r.up || b.published() != nil || len(b.leftovers(t)) > 0 {
		t.Errorf("after an interruption: chroot up %v, published %v, left %v", b.r.up, b.published(), b.leftovers(t))
	}
}

type cancelStage struct {
	*fakeStage
	cancel func()
}

func (c *cancelStage) Run(ctx context.Context, st *State) error {
	err := c.fakeStage.Run(ctx, st)
	c.cancel()
	return err
}

// With the stage cache, a build saves each cached stage with the chroot
// down; the next one restores the deepest, skips every stage up to it,
// attaches the backend to the restored root before it serves the chroot,
// and runs the rest on the restored files. A changed input rebuilds from
// that stage on.
func TestRunRestoreAndResume(t *testing.T) {
	b := newFakeBuild(t)
	c, err := stagecache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b.opts.Cache = c
	st, err := b.run(context.Background(), b.pipeline("p1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"run bootstrap", "up", "share", "run packages", "down", "unshare", "up", "share",
		"run init", "run system", "run finalise", "down", "unshare", "after finalise", "run a", "run b"}
	if !slices.Equal(b.r.events, want) {
		t.Errorf("first build\n%q\nwant\n%q", b.r.events, want)
	}
	checkCache(t, st, report.CacheSaved, report.CacheSaved)

	st, err = b.run(context.Background(), b.pipeline("p1"))
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"up", "attach", "share", "run init", "run system", "run finalise", "down", "unshare",
		"after finalise", "run a", "run b"}
	if !slices.Equal(b.r.events, want) {
		t.Errorf("restored build\n%q\nwant\n%q", b.r.events, want)
	}
	if !strings.Contains(b.term.String(), "==> restore\n") || !strings.Contains(b.term.String(), "==> chroot\n") {
		t.Errorf("restored build's steps:\n%s", b.term.String())
	}
	if data, _ := os.ReadFile(b.outs[0]); string(data) != "base pkgs" {
		t.Errorf("output from the restored root holds %q", data)
	}
	checkCache(t, st, report.CacheRestored, report.CacheRestored)

	st, err = b.run(context.Background(), b.pipeline("p2"))
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"up", "attach", "share", "run packages", "down", "unshare", "up", "share", "run init"}
	if !slices.Equal(b.r.events[:len(want)], want) {
		t.Errorf("build with new packages\n%q\nwant it to start with\n%q", b.r.events, want)
	}
	checkCache(t, st, report.CacheRestored, report.CacheSaved)
	if r := st.Cache[1].Reason; r != "changed since the last cached build: packages" {
		t.Errorf("why packages were rebuilt: %q", r)
	}
	if l := b.leftovers(t); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

func checkCache(t *testing.T, st *State, actions ...string) {
	t.Helper()
	if len(st.Cache) != len(actions) {
		t.Fatalf("cache results %+v, want %v", st.Cache, actions)
	}
	for i, a := range actions {
		if st.Cache[i].Action != a || st.Cache[i].Stage != []string{"bootstrap", "packages"}[i] {
			t.Errorf("cache result %d: %+v, want %s", i, st.Cache[i], a)
		}
	}
}

// What the default pipeline's stages declare: the cached stages are the
// bootstrap and the packages, in that order; the chroot's span runs from
// the packages through finalise, which alone has work once it is down;
// the outputs and the report run without it.
func TestDefaultStagesDeclare(t *testing.T) {
	s := spec(t, "customise: "+os.Args[0]+"\n")
	s.Outputs = append(s.Outputs, config.Output{Type: config.Tarball, Path: "t.tar"})
	p := &Plan{Spec: s, Bootstrap: bootstrap.Debootstrap{}, TargetGrub: true}
	stages := Stages(p)
	var cachedNames, chrootNames, afterNames []string
	for _, st := range stages {
		if _, ok := st.(cached); ok {
			cachedNames = append(cachedNames, st.Name())
		}
		if needsChroot(st) {
			chrootNames = append(chrootNames, st.Name())
		}
		if _, ok := st.(afterChroot); ok {
			afterNames = append(afterNames, st.Name())
		}
	}
	if want := []string{"bootstrap", "packages"}; !slices.Equal(cachedNames, want) {
		t.Errorf("cached %v, want %v", cachedNames, want)
	}
	if want := []string{"packages", "target-grub", "secure-boot", "system", "customise", "finalise"}; !slices.Equal(chrootNames, want) {
		t.Errorf("in the chroot %v, want %v", chrootNames, want)
	}
	if want := []string{"finalise"}; !slices.Equal(afterNames, want) {
		t.Errorf("with work after the chroot %v, want %v", afterNames, want)
	}
	pts := cachePoints(p, stages)
	if len(pts) != 2 || pts[0].index != 0 || pts[1].index != 1 || pts[1].parent != pts[0].key || pts[0].parent != "" {
		t.Errorf("cache points %+v", pts)
	}
}

// A teardown that fails fails the build: after the last chroot stage, as
// that stage's error; after a failed stage, joined to its error. Either
// way nothing is published and nothing is left.
func TestRunTeardownFailure(t *testing.T) {
	busy := errors.New("target is busy")
	b := newFakeBuild(t)
	b.r.downFail = busy
	_, err := b.run(context.Background(), b.pipeline("p1"))
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "finalise" || !errors.Is(err, busy) || !strings.Contains(err.Error(), "teardown: ") {
		t.Errorf("error %v, want finalise's teardown", err)
	}
	if slices.Contains(b.r.events, "after finalise") || slices.Contains(b.r.events, "run a") {
		t.Errorf("the build went on after a failed teardown: %q", b.r.events)
	}

	b = newFakeBuild(t)
	b.r.downFail = busy
	stages := b.pipeline("p1")
	boom := errors.New("boom")
	fakeOf(stages[3]).fail = boom // system
	_, err = b.run(context.Background(), stages)
	if !errors.Is(err, boom) || !errors.Is(err, busy) {
		t.Errorf("error %v, want the stage's and the teardown's", err)
	}
	if b.published() != nil || len(b.leftovers(t)) > 0 {
		t.Errorf("published %v, left %v", b.published(), b.leftovers(t))
	}
}

// KeepWork keeps the work directory, root file system included, but the
// chroot comes down and the outputs' temporary files go all the same.
func TestRunKeepWork(t *testing.T) {
	b := newFakeBuild(t)
	b.opts.KeepWork = true
	stages := b.pipeline("p1")
	fakeOf(stages[5]).fail = errors.New("boom") // output a, its temporary file written
	st, err := b.run(context.Background(), stages)
	if err == nil {
		t.Fatal("no error")
	}
	if data, err := os.ReadFile(filepath.Join(st.Rootfs, "pkgs")); err != nil || string(data) != "p1" {
		t.Errorf("kept root file system: %q %v", data, err)
	}
	if b.r.up {
		t.Error("the chroot is still up")
	}
	ents, _ := os.ReadDir(b.outDir)
	if len(ents) > 0 {
		t.Errorf("output directory holds %v", ents)
	}
}

// An image of a set takes its turn (RunOptions.Turn) once, before its
// first output, with the chroot down and its cached stages saved: the
// next image, started then, finds them. A turn that fails (the build
// interrupted while it waits) fails the build as the step "wait", with
// no output written and nothing left.
func TestRunTurn(t *testing.T) {
	b := newFakeBuild(t)
	c, err := stagecache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b.opts.Cache = c
	b.opts.BaseReady = func() {
		b.r.add("based")
		if l, _ := c.List(); len(l) == 0 {
			t.Error("base ready with no stage cache entry, want the bootstrap saved")
		}
	}
	turns := 0
	b.opts.Turn = func(ctx context.Context, log *buildlog.Log) error {
		turns++
		b.r.add("turn")
		if b.r.up {
			t.Error("turn taken with the chroot up")
		}
		if l, _ := c.List(); len(l) != 2 {
			t.Errorf("turn taken with %d stage cache entries, want bootstrap and packages saved", len(l))
		}
		return nil
	}
	if _, err := b.run(context.Background(), b.pipeline("p1")); err != nil {
		t.Fatal(err)
	}
	// The packages stage's save takes the chroot down and up again.
	want := []string{"run bootstrap", "based", "up", "share", "run packages", "down", "unshare", "up", "share", "run init",
		"run system", "run finalise", "down", "unshare", "after finalise", "turn", "run a", "run b"}
	if !slices.Equal(b.r.events, want) || turns != 1 {
		t.Errorf("events\n%q\nwant\n%q", b.r.events, want)
	}
	// A second build restores both stages: its base is ready before any
	// stage runs.
	if _, err := b.run(context.Background(), b.pipeline("p1")); err != nil {
		t.Fatal(err)
	}
	if len(b.r.events) < 2 || b.r.events[0] != "based" || slices.Contains(b.r.events[1:], "based") {
		t.Errorf("restored build: events %q, want based once, first", b.r.events)
	}

	b = newFakeBuild(t)
	b.opts.Turn = func(ctx context.Context, log *buildlog.Log) error {
		log.Step("wait")
		return context.Canceled
	}
	_, err = b.run(context.Background(), b.pipeline("p1"))
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "wait" || !errors.Is(err, context.Canceled) {
		t.Errorf("a failed turn: %v, want the step wait's error", err)
	}
	if slices.Contains(b.r.events, "run a") {
		t.Errorf("an output stage ran after a failed turn: %q", b.r.events)
	}
	if l := b.leftovers(t); len(l) > 0 || len(b.published()) > 0 {
		t.Errorf("left %v, published %v", l, b.published())
	}
}
