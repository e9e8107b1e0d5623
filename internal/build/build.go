package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/bootstrap"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/chroot"
	"vmdeb/internal/config"
	"vmdeb/internal/live"
	"vmdeb/internal/remotecache"
	"vmdeb/internal/report"
	"vmdeb/internal/sbom"
	"vmdeb/internal/stagecache"
	"vmdeb/internal/tempname"
)

// State is what the stages share while a build runs.
type State struct {
	Plan    *Plan
	Log     *buildlog.Log
	WorkDir string
	Rootfs  string
	// Backend is this build's own bootstrap backend (the plan's, with its
	// settings: Bootstrapper.ForBuild).
	Backend bootstrap.Bootstrapper
	Chroot  *chroot.Chroot // set while the chroot is up
	// Manifest is "package version" per line, read after the last apt run.
	Manifest string
	// Packages are the installed packages and their licences, read with
	// the manifest, for the SBOMs.
	Packages []sbom.Package
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
	// Remote is what the remote cache did (nil when there is none).
	Remote *report.RemoteCache
	// BlockCache is the directory of compressed squashfs blocks kept
	// between builds, inside the stage cache's ("" when the stage cache is
	// off: then one in the work directory serves this build alone).
	BlockCache string
	// Blocks is what the block cache did for each squashfs made.
	Blocks []*live.BlockReport
	// PackageCache is what the package cache did for the packages the
	// packages stage fetched ahead of apt (nil when it fetched none).
	PackageCache *report.PackageCache
}

// blockCacheName is the block cache's directory in the stage cache's.
const blockCacheName = "squashfs-blocks"

// BlockCacheDir is the squashfs block cache of the stage cache in dir.
func BlockCacheDir(stageCache string) string { return filepath.Join(stageCache, blockCacheName) }

// squashfsOptions are the options of the image's squashfs, its use of
// the block cache recorded in st.Blocks.
func (st *State) squashfsOptions() live.SquashfsOptions {
	o := live.SquashfsOptions{Compression: st.Plan.Spec.Live.Compression, SourceDateEpoch: st.Plan.SourceDateEpoch, BlockCache: st.BlockCache}
	if o.BlockCache == "" {
		// The same path without a stage cache, through a cache that goes
		// with the work directory: the image's bytes do not depend on
		// whether a cache was kept.
		o.BlockCache = filepath.Join(st.WorkDir, blockCacheName)
	}
	o.Blocks = &live.BlockReport{}
	st.Blocks = append(st.Blocks, o.Blocks)
	return o
}

// Result is one written output.
type Result struct {
	Type, Path string
	Size       int64
}

// Run options.
type RunOptions struct {
	WorkDir  string // parent for the work directory ("" = config.DefaultWorkDir)
	KeepWork bool   // keep the work directory for debugging
	// Cache keeps and reuses stage results (nil: every stage runs).
	Cache *stagecache.Cache
	// Remote is a remote cache of stages and packages (nil: none): see
	// remote.go.
	Remote *remotecache.Client
	// Turn, when set, is called once, before the first stage that writes
	// an output (after the stages in the chroot, whose cache entries are
	// saved by then): the images of a set take turns there, so that one
	// prepares its tree while another compresses (vmdeb build DIR). It
	// returns once this build may go on, or with ctx's error.
	Turn func(ctx context.Context, log *buildlog.Log) error
	// BaseReady, when set, is called once what images share is in
	// place: the base system, and common-packages if the config has them,
	// restored from the stage cache or built and saved there (the base
	// system built, without a cache). A set then starts its next image,
	// which finds those stages in the cache.
	BaseReady func()
	// host does what needs root (nil: the real one); tests replace it.
	host host
}

const lockName = ".vmdeb-lock"

// newLockName is the lock file while it is being made: it takes lockName
// only once locked, so that a sweep never sees a work directory's lock
// free in the moment between its creation and its flock (a concurrent
// build's sweep removed a fresh work directory so).
const newLockName = lockName + ".new"

// newLockAge is how old a work directory with only a newLockName (its
// build killed while locking it) must be before a sweep removes it.
const newLockAge = 10 * time.Minute

func lockWork(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, newLockName), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Rename(filepath.Join(dir, newLockName), filepath.Join(dir, lockName)); err != nil {
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
			// Not a work directory, or one being made: its lock still
			// has its new name, left so only by a build killed then.
			var st unix.Stat_t
			if unix.Fstatat(dfd, e.Name()+"/"+newLockName, &st, unix.AT_SYMLINK_NOFOLLOW) != nil ||
				time.Since(time.Unix(st.Mtim.Unix())) < newLockAge {
				continue
			}
			if fd, err = unix.Openat(dfd, e.Name()+"/"+newLockName, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
				continue
			}
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
func (st *State) temp(out string) (string, error) {
	removeStale(out)
	t, err := newTempDir(filepath.Dir(out), tempname.Prefix(out))
	if err != nil {
		return "", fmt.Errorf("a temporary directory for %s: %w", out, err)
	}
	st.temps = append(st.temps, t)
	return t.Path(filepath.Base(out)), nil
}

// removeStale removes the temporary siblings of out (tempname.Leftovers)
// that this user owns (what a killed build left), never following a
// link. Callers hold out's lock.
func removeStale(out string) {
	fd, err := unix.Open(filepath.Dir(out), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for _, o := range tempname.Leftovers(out) {
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
	if st.Log != nil && len(st.Log.Steps) > 0 {
		w := len("stage")
		for _, s := range st.Log.Steps {
			w = max(w, len(s.Name))
		}
		fmt.Fprintf(&b, "  %-*s %8s\n", w, "stage", "time")
		for _, s := range st.Log.Steps {
			fmt.Fprintf(&b, "  %-*s %8s\n", w, s.Name, buildlog.Duration(s.Duration))
		}
	}
	for _, r := range st.Results {
		fmt.Fprintf(&b, "  %-10s %s (%s)\n", r.Type, r.Path, bytesize.Format(r.Size))
	}
	fmt.Fprintf(&b, "  built in %s", total.Round(time.Second))
	return b.String()
}
