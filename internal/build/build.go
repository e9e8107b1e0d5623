package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/config"
	"vmdeb/internal/report"
	"vmdeb/internal/stagecache"
)

// Stage is one step of the pipeline. A build is a list of stages; a live
// build and a tarball build differ only in which stages the list holds.
type Stage interface {
	Name() string
	Run(ctx context.Context, st *State) error
}

// State is what the stages share while a build runs.
type State struct {
	Plan    *Plan
	Log     *buildlog.Log
	WorkDir string
	Rootfs  string
	Chroot  *chroot.Chroot // set while the chroot is prepared
	// Manifest is "package version" per line, read after the last apt run.
	Manifest string
	// Results lists the outputs written, in order.
	Results []Result
	// GrubDir holds the target's GRUB EFI modules when the host has none.
	GrubDir string
	// SignedDir holds Debian's signed loaders, unpacked, for outputs that
	// boot with Secure Boot ("" = none asks).
	SignedDir string
	// temps are the outputs' temporary directories, removed when the
	// build ends (their outputs renamed out of them by then, if it
	// succeeded).
	temps []*tempDir
	// pending are finished outputs waiting for their final names.
	pending []pendingOutput
	// Sums are the SHA256 digests of the files written into SHA256SUMS
	// files, by path.
	Sums map[string]string
	// Cache is what the stage cache did for each cached stage (nothing
	// when the cache is off).
	Cache []report.CacheResult
	// bootstrapped: this build made the base system (it was not restored
	// from the stage cache); attached: the native bootstrapper was opened
	// for a restored one.
	bootstrapped, attached bool
}

// Result is one written output.
type Result struct {
	Type, Path string
	Size       int64
}

// Run options.
type RunOptions struct {
	WorkDir  string // parent for the work directory ("" = /var/tmp)
	KeepWork bool   // keep the work directory for debugging
	// Cache keeps and reuses stage results (nil: every stage runs).
	Cache *stagecache.Cache
	// Isolation asked on the command line ("" = the config's or the default).
	Isolation string
}

// Stages is the pipeline for a plan: the common system stages, then one
// stage per output, then the report.
func Stages(p *Plan) []Stage {
	s := []Stage{bootstrapStage{}, chrootStage{}, packagesStage{}}
	if p.TargetGrub {
		s = append(s, targetGrubStage{})
	}
	if NeedsSecureBoot(p.Spec) {
		s = append(s, secureBootStage{})
	}
	needInit := NeedsInit(p.Spec)
	if needInit && p.Spec.Customise == "" {
		s = append(s, initStage{})
	}
	s = append(s, systemStage{})
	if p.Spec.Customise != "" {
		s = append(s, hookStage{})
		if needInit {
			// The hook may install the init itself.
			s = append(s, initStage{})
		}
	}
	s = append(s, finaliseStage{})
	if wantsInstaller(p) {
		s = append(s, installerStage{})
	}
	for _, o := range p.Spec.Outputs {
		switch o.Type {
		case config.LiveISO:
			s = append(s, liveISOStage{out: p.Spec.Path(o.Path)})
		case config.Tarball:
			s = append(s, tarballStage{out: p.Spec.Path(o.Path)})
		case config.Directory:
			s = append(s, directoryStage{out: p.Spec.Path(o.Path)})
		case config.Squashfs:
			s = append(s, squashfsStage{out: p.Spec.Path(o.Path)})
		case config.Disk:
			s = append(s, diskStage{out: o})
		}
	}
	return append(s, reportStage{})
}

// Run executes the plan. Whatever happens, the chroot is torn down, the
// temporary files are removed and (unless asked otherwise) the work
// directory is deleted; teardown errors are joined to the result.
func Run(ctx context.Context, p *Plan, log *buildlog.Log, o RunOptions) (st *State, err error) {
	parent := o.WorkDir
	if parent == "" {
		parent = "/var/tmp"
	}
	private, err := PrivateDir(parent)
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
	st = &State{Plan: p, Log: log, WorkDir: work, Rootfs: filepath.Join(work, "rootfs")}
	log.Logf("work directory %s", work)
	for _, n := range p.Notes {
		log.Printf("%s", n)
	}
	defer func() {
		if cerr := st.Chroot.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
		}
		st.Chroot = nil
		for _, t := range st.temps {
			t.Remove()
		}
		if o.KeepWork {
			log.Printf("work directory kept: %s", work)
		} else if rerr := chroot.RemoveAll(work); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing work directory: %w", rerr))
		} else {
			unix.Rmdir(private) // only if no other build uses it
		}
	}()
	if err := os.Mkdir(st.Rootfs, 0o755); err != nil {
		return st, err
	}
	for _, o := range p.Spec.Outputs {
		if err := os.MkdirAll(filepath.Dir(p.Spec.Path(o.Path)), 0o755); err != nil {
			return st, fmt.Errorf("output directory: %w", err)
		}
	}
	stages := Stages(p)
	start := 0
	var points []cachePoint
	if o.Cache != nil {
		points = p.cachePoints()
		if start, err = restoreFromCache(ctx, st, o.Cache, stages, points); err != nil {
			log.Done()
			return st, &StageError{Stage: "restore", Err: err}
		}
		if start > 1 {
			// Restored past the chroot's setup: set it up again.
			stages = append([]Stage{chrootStage{}}, stages[start:]...)
		} else {
			stages = stages[start:]
		}
	}
	for _, stage := range stages {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("interrupted before %s: %w", stage.Name(), err)
		}
		log.Step(stage.Name())
		if err := stage.Run(ctx, st); err != nil {
			log.Done()
			return st, &StageError{Stage: stage.Name(), Err: err}
		}
		for _, pt := range points {
			if pt.stage == stage.Name() {
				if err := saveToCache(ctx, st, o.Cache, pt); err != nil {
					log.Done()
					return st, &StageError{Stage: stage.Name(), Err: err}
				}
			}
		}
	}
	log.Done()
	return st, nil
}

const lockName = ".vmdeb-lock"

func lockWork(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sweepStale removes the work directories of builds that were killed
// (SIGKILL leaves no chance to clean up): those whose lock nobody holds.
// It looks only in the builder's private directory: nobody else can put
// an entry there.
func sweepStale(private string, log *buildlog.Log) {
	dfd, err := unix.Open(private, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	dir := os.NewFile(uintptr(dfd), private)
	defer dir.Close()
	ents, _ := dir.ReadDir(-1)
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "vmdeb-") {
			continue
		}
		fd, err := unix.Openat(dfd, e.Name()+"/"+lockName, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // not a work directory, or one just being made
		}
		d := filepath.Join(private, e.Name())
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			log.Printf("removing the work directory of an interrupted build: %s", d)
			if err := chroot.RemoveAll(d); err != nil {
				log.Printf("could not remove %s: %v", d, err)
			}
		}
		unix.Close(fd)
	}
}

// StageError names the stage a build failed in.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("stage %s failed: %v", e.Stage, e.Err) }
func (e *StageError) Unwrap() error { return e.Err }

// StageName is the stage the build failed in.
func (e *StageError) StageName() string { return e.Stage }

// temp returns a temporary name for out: inside a new directory of
// vmdeb's own (mode 0700, a name nobody could have planted) beside out,
// reached through a descriptor (tempDir), removed when the build ends.
// The tools' own temporary files land in it too. Those left by a killed
// build of the same output are removed first (the build holds the
// output's lock), without following links.
func (st *State) temp(out string) string {
	dir, base := filepath.Dir(out), filepath.Base(out)
	prefix := "." + base + ".vmdeb-tmp"
	removeStale(dir, prefix)
	t, err := newTempDir(dir, prefix)
	if err != nil {
		// The stage's tool reports the unwritable directory.
		st.Log.Logf("temporary directory for %s: %v", out, err)
		return filepath.Join(dir, prefix+"-unwritable", base)
	}
	st.temps = append(st.temps, t)
	return t.Path(base)
}

// removeStale removes the entries of dir whose names start with prefix
// and that this user owns (what a killed build left), never following a
// link. Callers hold the lock of the path the names belong to.
func removeStale(dir, prefix string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	old, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
	for _, o := range old {
		var s unix.Stat_t
		if unix.Fstatat(fd, filepath.Base(o), &s, unix.AT_SYMLINK_NOFOLLOW) == nil && int(s.Uid) == os.Geteuid() {
			chroot.RemoveAt(fd, filepath.Base(o), o)
		}
	}
}

// commit records a finished output under its temporary name. Outputs
// take their final names together, when every stage has succeeded
// (publish): a build that fails or is stopped half way leaves none of
// them, not even those it had finished.
func (st *State) commit(tmp, out string, typ config.OutputType) error {
	if err := setOutputMode(st.Plan.Spec, tmp, out); err != nil {
		return err
	}
	var size int64
	if fi, err := os.Stat(tmp); err == nil {
		size = fi.Size()
	}
	for _, t := range st.temps {
		if base, ok := strings.CutPrefix(tmp, t.Path("")); ok {
			st.pending = append(st.pending, pendingOutput{t, base, out})
			st.Results = append(st.Results, Result{Type: string(typ), Path: out, Size: size})
			return nil
		}
	}
	return fmt.Errorf("%s: not in a temporary directory of this build", tmp)
}

// setOutputMode gives the output being committed its mode (the config's
// mode:, or its type's default: config.Output.OutputMode), the umask's
// stricter bits taken off. A squashfs output's file system is the file
// that holds the image; a directory output keeps the image's own modes.
func setOutputMode(s *config.Spec, tmp, out string) error {
	for _, o := range s.Outputs {
		if s.Path(o.Path) != out || o.Type == config.Directory {
			continue
		}
		target := tmp
		if o.Type == config.Squashfs {
			target = filepath.Join(tmp, "filesystem.squashfs")
		}
		return os.Chmod(target, o.OutputMode()&^umask())
	}
	return nil
}

// umask is the process's file mode creation mask (from /proc, which reads
// it without changing it; 022 when it cannot be read).
func umask() os.FileMode {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return os.FileMode(m)
				}
			}
		}
	}
	return 0o022
}

type pendingOutput struct {
	dir       *tempDir
	base, out string
}

// publish renames every finished output to its final name. A rename
// replaces a link standing at the final name; it never writes through it.
func (st *State) publish() error {
	for _, p := range st.pending {
		if err := p.dir.Publish(p.base, filepath.Base(p.out)); err != nil {
			return err
		}
		p.dir.Remove()
	}
	st.pending = nil
	return nil
}

// FormatSummary is the table printed at the end of a build.
func FormatSummary(st *State, total time.Duration) string {
	var b strings.Builder
	for _, r := range st.Results {
		fmt.Fprintf(&b, "  %-10s %s (%s)\n", r.Type, r.Path, HumanSize(r.Size))
	}
	fmt.Fprintf(&b, "  built in %s", total.Round(time.Second))
	return b.String()
}

// HumanSize writes a byte count for people: 1.5 GiB, 300.0 MiB.
func HumanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
