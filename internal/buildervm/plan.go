package buildervm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/apt"
	"vmdeb/internal/arch"
	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
	"vmdeb/internal/qemu"
	"vmdeb/internal/tempname"
)

// GuestWorkDir is the work directory in the guest (on the scratch disk).
const GuestWorkDir = "/scratch/work"

// passedEnv are the variables of the host's environment the guest's vmdeb
// gets: reproducible dates and proxies.
var passedEnv = []string{"SOURCE_DATE_EPOCH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}

// Host is what of the host a job's plan depends on.
type Host struct {
	Euid   int
	NumCPU int
	// Root is where /etc/apt is read from ("" = /).
	Root string
	// Env is the environment (KEY=VALUE): VMDEB_ACCEL and passedEnv.
	Env []string
}

// ThisHost is the host vmdeb runs on.
func ThisHost() Host {
	return Host{Euid: os.Geteuid(), NumCPU: runtime.NumCPU(), Root: "/", Env: os.Environ()}
}

func (h Host) lookup(key string) (string, bool) {
	for _, kv := range h.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Request is a build to run in a builder VM as vmdeb build's options
// describe it.
type Request struct {
	Spec   *config.Spec // loaded, its outputs moved to OutDir already
	Config string       // the config file, as named
	Binary string       // the vmdeb the guest runs (this one)
	// WorkDir is where the scratch disk's file lives on the host (--workdir).
	WorkDir string
	Log     string // --log ("" = beside the first output)
	Report  string // --report, an absolute path ("" = none)
	OutDir  string // --outdir ("" = none)
	JobRef  string // the plan job, for the report (BuildArgs.JobRef)
	Host    Host
}

// ShareError is a directory the builder VM would share that cannot be
// made: the build cannot start.
type ShareError struct {
	Dir string
	Err error
}

func (e *ShareError) Error() string { return fmt.Sprintf("the builder VM shares %s: %v", e.Dir, e.Err) }
func (e *ShareError) Unwrap() error { return e.Err }

// PlanJob is what the builder VM gets for r: its size (config.Builder's
// defaults filled in), the shares and the arguments of the vmdeb it runs.
// Every host path is shared at the same path in the guest, so the
// config's relative and absolute paths mean what they mean on the host.
// The writable shares' directories are made. Image, Arch and the console
// are left to the caller.
func PlanJob(r Request) (Job, error) {
	s := r.Spec
	b := s.Builder.Resolved(s.Suite, r.Host.NumCPU)
	accel, _ := r.Host.lookup("VMDEB_ACCEL")
	j := Job{Binary: r.Binary, Accel: accel, Memory: b.Memory.Bytes, CPUs: b.CPUs, Scratch: b.Scratch.Bytes, TempDir: r.WorkDir}
	cfgPath, err := filepath.Abs(r.Config)
	if err != nil {
		return j, err
	}
	args := BuildArgs{Isolation: config.Host, WorkDir: GuestWorkDir, Report: r.Report, Config: cfgPath, JobRef: r.JobRef}
	if r.Log != "" {
		if args.Log, err = filepath.Abs(r.Log); err != nil {
			return j, err
		}
	}
	if r.OutDir != "" {
		if args.OutDir, err = filepath.Abs(r.OutDir); err != nil {
			return j, err
		}
	}
	j.Args = args.Argv()
	if j.Shares, err = shares(s, cfgPath, args, r.Host); err != nil {
		return j, err
	}
	j.Apt = hostApt(r.Host.Root)
	for _, k := range passedEnv {
		if v, ok := r.Host.lookup(k); ok {
			j.Env = append(j.Env, k+"="+v)
		}
	}
	return j, nil
}

// shares are the directories the guest's build reads and writes, in the
// order PlanShares gives them.
func shares(s *config.Spec, cfgPath string, args BuildArgs, h Host) ([]Share, error) {
	var l []Share
	ro := func(p string) { l = append(l, Share{Host: p, Guest: p, ReadOnly: true}) }
	rw := func(dir string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return &ShareError{dir, err}
		}
		l = append(l, Share{Host: dir, Guest: dir})
		return nil
	}
	// Read-only: the config's directory, those of the files it includes
	// and every file it names.
	ro(filepath.Dir(cfgPath))
	for _, f := range s.Includes {
		ro(filepath.Dir(f))
	}
	files := append([]string{s.Customise, s.Keyring, s.Live.Splash, s.BinfmtHandler}, s.CustomPackages...)
	for _, o := range s.Outputs {
		files = append(files, o.ImageHook)
	}
	for _, f := range files {
		if f != "" {
			ro(filepath.Dir(s.Path(f)))
		}
	}
	for _, m := range []string{s.Mirror, s.AptMirror} {
		if d, ok := strings.CutPrefix(m, "file://"); ok {
			ro(d)
		}
	}
	// Writable: where the outputs, the log and the report go.
	for _, out := range s.Outputs {
		if err := rw(filepath.Dir(s.Path(out.Path))); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{args.Log, args.Report} {
		if f == "" {
			continue
		}
		if err := rw(filepath.Dir(f)); err != nil {
			return nil, err
		}
	}
	// The package cache is shared read-only, under the guest's throwaway
	// layer: its locks (flock) do not cross 9p, so a build on the host
	// would take the guest's staging directory for a dead build's and
	// delete it. What the guest downloads goes with the VM. The stage
	// cache is off in the VM (BuildArgs.StageCache) for the same reason.
	pkgCache, guestPkgCache := archive.DefaultCacheDir, archive.DefaultCacheDir
	if s.Cache != "" {
		pkgCache, guestPkgCache = s.Path(s.Cache), s.Path(s.Cache)
	} else if h.Euid != 0 {
		pkgCache = config.UserCacheDir("debs")
	}
	if err := os.MkdirAll(pkgCache, 0o755); err != nil {
		return nil, &ShareError{pkgCache, err}
	}
	l = append(l, Share{Host: pkgCache, Guest: guestPkgCache, ReadOnly: true})
	// A file:// mirror among the host's apt sources (hostApt).
	if srcs, err := apt.ReadHostSources(hostRoot(h.Root)); err == nil {
		for _, src := range srcs {
			if d, ok := strings.CutPrefix(src.URI, "file://"); ok {
				ro(d)
			}
		}
	}
	return PlanShares(l), nil
}

func hostRoot(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// hostApt is the host's apt sources, for the guest's /etc/apt (path
// relative to it -> content): the guest's vmdeb finds the same mirror.
func hostApt(root string) map[string][]byte {
	etc := filepath.Join(hostRoot(root), "etc/apt")
	files, _ := filepath.Glob(filepath.Join(etc, "sources.list.d/*"))
	m := map[string][]byte{}
	for _, f := range append([]string{filepath.Join(etc, "sources.list")}, files...) {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			m[strings.TrimPrefix(f, etc+"/")] = data
		}
	}
	return m
}

// CacheDir is the builder image cache of the user euid: DefaultCacheDir
// for root, ~/.cache/vmdeb/builders for anybody else.
func CacheDir(euid int) string {
	if euid == 0 {
		return DefaultCacheDir
	}
	return config.UserCacheDir("builders")
}

// EnsureFor returns the builder image im for the vmdeb binary of
// version, made with mk and cached on first use: a new binary gets an
// image of its own (Image.Key).
func (c Cache) EnsureFor(ctx context.Context, im Image, binary, version string, mk Maker, log func(string, ...any)) (string, error) {
	sum, _, err := archive.HashFile(binary)
	if err != nil {
		return "", err
	}
	return c.Ensure(ctx, im, im.Key(version, sum), version, mk, log)
}

// HostArch is the builder's architecture (the host's), once the host is
// found to have what booting it takes.
func HostArch() (arch.Arch, error) {
	a, err := arch.Lookup(arch.HostName())
	if err != nil {
		return a, fmt.Errorf("the builder VM runs this host's architecture: %v", err)
	}
	if err := buildlog.MissingError(qemu.Tools(a, UEFI(a))); err != nil {
		return a, fmt.Errorf("the builder VM: %w", err)
	}
	return a, nil
}

// MakerArgs is the command line of the vmdeb build that makes a builder
// image from cfg into outDir: as root on the host, or rootless for
// anybody else; workDir is --workdir ("" = the default).
func MakerArgs(euid int, workDir, cfg, outDir string) []string {
	isolation := config.Host
	if euid != 0 {
		isolation = config.Userns
	}
	return BuildArgs{Isolation: isolation, WorkDir: workDir, OutDir: outDir, Config: cfg}.Argv()
}

// BinaryMaker makes builder images with the vmdeb binary (MakerArgs),
// its output going to out.
func BinaryMaker(binary string, euid int, workDir string, out io.Writer) Maker {
	return func(ctx context.Context, cfg, outDir string) error {
		args := MakerArgs(euid, workDir, cfg, outDir)
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Stdout, cmd.Stderr = out, out
		// Stopped like a user's Ctrl-C: the build removes what it made.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = time.Minute
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("vmdeb %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}
}

// OutOfScratch reports whether a failed build of s ran out of the
// scratch disk: the guest said so (ScratchFull), or it ran out of space
// somewhere while every output directory's file system has a GiB free.
func (r Result) OutOfScratch(s *config.Spec) bool {
	return r.ScratchFull || r.NoSpace && outputsHaveRoom(s)
}

// outputsHaveRoom reports whether every output directory's file system
// has a GiB free: a "no space left" in the VM was then its scratch disk's.
func outputsHaveRoom(s *config.Spec) bool {
	for _, out := range s.Outputs {
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(s.Path(out.Path)), &st); err != nil || int64(st.Bavail)*st.Bsize < 1<<30 {
			return false
		}
	}
	return true
}

// RemoveTemps removes what a killed guest left of the outputs: their
// temporary files beside them (tempname).
func RemoveTemps(s *config.Spec) error {
	var errs []error
	for _, out := range s.Outputs {
		for _, l := range tempname.Leftovers(s.Path(out.Path)) {
			if err := os.RemoveAll(l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
