package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"vmdeb/internal/apt"
	"vmdeb/internal/arch"
	"vmdeb/internal/archive"
	"vmdeb/internal/build"
	"vmdeb/internal/buildervm"
	"vmdeb/internal/config"
	"vmdeb/internal/qemu"
)

// Builder VM defaults (builder: in the config overrides them).
const (
	defaultBuilderMemory  = 2 << 30
	defaultBuilderScratch = 20 << 30
	maxDefaultBuilderCPUs = 4
)

// The work directory in the guest (on the scratch disk).
const guestWorkDir = "/scratch/work"

// buildInVM builds path inside a builder VM (isolation: vm): the builder
// image of the chosen release (made and cached on first use), booted in
// qemu with the config, the caches and the output directories shared,
// runs this same vmdeb as root; its exit status is the build's.
func buildInVM(ctx context.Context, path string, s *config.Spec, o build.RunOptions, cf cacheFlags, logPath, outDir, reportPath string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	a, err := arch.Lookup(arch.HostName())
	if err != nil {
		return &build.PreflightError{Err: fmt.Errorf("the builder VM runs this host's architecture: %v", err)}
	}
	if m := qemu.Tools(a, buildervm.UEFI(a)); len(m) > 0 {
		return &build.PreflightError{Err: fmt.Errorf("the builder VM needs %s (install %s)", m[0].What, m[0].Package)}
	}
	if o.KeepWork {
		fmt.Println("vmdeb: --keep-work: the work directory is on the builder VM's scratch disk, which goes with the VM; nothing is kept")
	}
	self, err := os.Executable()
	if err != nil {
		return &exitError{exitFailed, err}
	}
	job, err := vmJob(s, o, self, logPath, outDir, reportPath, path)
	if err != nil {
		return err
	}
	sum, _, err := archive.HashFile(self)
	if err != nil {
		return &exitError{exitFailed, err}
	}
	im := buildervm.Image{Suite: builderSuite(s), Arch: a}
	cache := buildervm.Cache{Dir: builderCacheDir()}
	logf := func(format string, x ...any) { fmt.Printf(format+"\n", x...) }
	// VMDEB_BUILDER_IMAGE names a builder image to use instead (one made
	// by another vmdeb, for debugging the VM side).
	img := os.Getenv("VMDEB_BUILDER_IMAGE")
	if img == "" {
		img, err = cache.Ensure(ctx, im, im.Key(Version, sum), Version, builderMaker(self, o), logf)
	}
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{130, fmt.Errorf("interrupted while making the builder image: %v", err)}
		}
		return &exitError{exitFailed, err}
	}
	job.Image, job.Arch = img, a
	job.Console, job.Log, job.TTY = os.Stdout, logf, isTerminal(os.Stdout)
	fmt.Printf("vmdeb: building %s in a %s builder VM (%s)\n", path, im.Suite, filepath.Base(img))
	res, err := buildervm.Run(ctx, job)
	if ctx.Err() != nil {
		return &exitError{130, errors.Join(fmt.Errorf("interrupted; the builder VM was stopped"), sweepTemps(s))}
	}
	if err != nil {
		return &exitError{exitFailed, errors.Join(err, sweepTemps(s))}
	}
	fmt.Printf("vmdeb: builder VM (%s): up in %s, finished in %s, scratch disk peak %s of %s\n",
		res.Accel, res.Boot.Round(time.Second), res.Elapsed.Round(time.Second), build.HumanSize(res.ScratchPeak), build.HumanSize(job.Scratch))
	if res.Status == 0 {
		return nil
	}
	if res.ScratchFull || (res.NoSpace && outputsHaveRoom(s)) {
		return &exitError{res.Status, fmt.Errorf("building %s failed: the builder VM's scratch disk (%s) is full: raise builder.scratch-size in the config",
			path, build.HumanSize(job.Scratch))}
	}
	return &exitError{res.Status, fmt.Errorf("building %s in the builder VM failed (status %d)", path, res.Status)}
}

// builderCacheCmd is `vmdeb cache builders`: the cached builder images.
func builderCacheCmd() *cobra.Command {
	var removeAll bool
	c := &cobra.Command{
		Use:   "builders",
		Short: "List the builder VM images (isolation: vm), most recently used first; --remove-all removes them",
		Args:  args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache := buildervm.Cache{Dir: builderCacheDir()}
			l, err := cache.List()
			if err != nil {
				return err
			}
			var total int64
			fmt.Printf("%-34s %-10s %-7s %10s  %-16s  %s\n", "KEY", "SUITE", "ARCH", "SIZE", "LAST USED", "VMDEB")
			for _, e := range l {
				fmt.Printf("%-34s %-10s %-7s %10s  %-16s  %s\n", e.Key, e.Suite, e.Arch, build.HumanSize(e.Size),
					e.LastUsed.Local().Format("2006-01-02 15:04"), e.Version)
				total += e.Size
				if removeAll {
					if err := cache.Remove(e.Key); err != nil {
						return err
					}
				}
			}
			verb := "in"
			if removeAll {
				verb = "removed from"
			}
			fmt.Printf("%d builder images, %s %s %s\n", len(l), build.HumanSize(total), verb, cache.Dir)
			return nil
		},
	}
	c.Flags().BoolVar(&removeAll, "remove-all", false, "remove every builder image (the next VM build makes its own again)")
	return c
}

// builderSuite is the builder's release: builder.suite, else the image's.
func builderSuite(s *config.Spec) string {
	if s.Builder.Suite != "" {
		return s.Builder.Suite
	}
	return s.Suite
}

func builderCacheDir() string {
	if os.Geteuid() == 0 {
		return buildervm.DefaultCacheDir
	}
	return build.UserCacheDir("builders")
}

// builderMaker builds the builder image with this vmdeb: as root on the
// host, or rootless for anybody else.
func builderMaker(self string, o build.RunOptions) buildervm.Maker {
	return func(ctx context.Context, cfg, outDir string) error {
		iso := config.Host
		if os.Geteuid() != 0 {
			iso = config.Userns
		}
		args := []string{"build", "--isolation", string(iso), "--no-cache", "--outdir", outDir}
		if o.WorkDir != "" {
			args = append(args, "--workdir", o.WorkDir)
		}
		cmd := exec.CommandContext(ctx, self, append(args, cfg)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// Stopped like a user's Ctrl-C: the build removes what it made.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = time.Minute
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("vmdeb %s: %w", strings.Join(append(args, cfg), " "), err)
		}
		return nil
	}
}

// vmJob is what the builder VM gets: its size, the shares and the
// arguments of the vmdeb it runs. Every host path is shared at the same
// path in the guest, so the config's relative and absolute paths mean
// what they mean on the host.
func vmJob(s *config.Spec, o build.RunOptions, self, logPath, outDir, reportPath, path string) (buildervm.Job, error) {
	b := s.Builder
	j := buildervm.Job{Binary: self, Accel: os.Getenv("VMDEB_ACCEL"), Memory: b.Memory.Bytes, CPUs: b.CPUs, Scratch: b.Scratch.Bytes, TempDir: o.WorkDir}
	if j.Memory == 0 {
		j.Memory = defaultBuilderMemory
	}
	if j.CPUs == 0 {
		j.CPUs = min(runtime.NumCPU(), maxDefaultBuilderCPUs)
	}
	if j.Scratch == 0 {
		j.Scratch = defaultBuilderScratch
	}
	cfgPath, err := filepath.Abs(path)
	if err != nil {
		return j, err
	}
	ro := func(p string) { j.Shares = append(j.Shares, buildervm.Share{Host: p, Guest: p, ReadOnly: true}) }
	rw := func(host, guest string) error {
		if err := os.MkdirAll(host, 0o755); err != nil {
			return &build.PreflightError{Err: fmt.Errorf("the builder VM shares %s: %w", host, err)}
		}
		j.Shares = append(j.Shares, buildervm.Share{Host: host, Guest: guest})
		return nil
	}
	// Read-only: the config's directory, those of the files it includes
	// and every file it names.
	ro(filepath.Dir(cfgPath))
	for _, f := range s.Includes {
		ro(filepath.Dir(f))
	}
	named := append([]string{s.Customise, s.Keyring, s.Live.Splash, s.BinfmtHandler}, s.CustomPackages...)
	for _, f := range named {
		if f != "" {
			ro(filepath.Dir(s.Path(f)))
		}
	}
	for _, m := range []string{s.Mirror, s.AptMirror} {
		if d, ok := strings.CutPrefix(m, "file://"); ok {
			ro(d)
		}
	}
	// Writable: where the outputs and the log go, and the caches.
	args := []string{"build", "--isolation", string(config.Host), "--workdir", guestWorkDir}
	for _, out := range s.Outputs {
		if err := rw(filepath.Dir(s.Path(out.Path)), filepath.Dir(s.Path(out.Path))); err != nil {
			return j, err
		}
	}
	if logPath != "" {
		lp, err := filepath.Abs(logPath)
		if err != nil {
			return j, err
		}
		if err := rw(filepath.Dir(lp), filepath.Dir(lp)); err != nil {
			return j, err
		}
		args = append(args, "--log", lp)
	}
	if reportPath != "" {
		// absReport made it absolute.
		if err := rw(filepath.Dir(reportPath), filepath.Dir(reportPath)); err != nil {
			return j, err
		}
		args = append(args, "--report", reportPath)
	}
	if outDir != "" {
		// loadForBuild moved the outputs there already (s.Outputs above).
		od, err := filepath.Abs(outDir)
		if err != nil {
			return j, err
		}
		args = append(args, "--outdir", od)
	}
	// The package cache is shared read-only, under the guest's throwaway
	// layer: its locks (flock) do not cross 9p, so a build on the host
	// would take the guest's staging directory for a dead build's and
	// delete it. What the guest downloads goes with the VM. The stage
	// cache is off in the VM for the same reason.
	pkgCache, guestPkgCache := archive.DefaultCacheDir, archive.DefaultCacheDir
	if s.Cache != "" {
		pkgCache, guestPkgCache = s.Path(s.Cache), s.Path(s.Cache)
	} else if os.Geteuid() != 0 {
		pkgCache = build.UserCacheDir("debs")
	}
	if err := os.MkdirAll(pkgCache, 0o755); err != nil {
		return j, &build.PreflightError{Err: fmt.Errorf("the builder VM shares %s: %w", pkgCache, err)}
	}
	j.Shares = append(j.Shares, buildervm.Share{Host: pkgCache, Guest: guestPkgCache, ReadOnly: true})
	args = append(args, "--no-cache")
	j.Args = append(args, cfgPath)

	// The host's apt sources: the guest's vmdeb finds the same mirror
	// (and a file:// mirror among them is shared too).
	j.Apt = map[string][]byte{}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, f := range append([]string{"/etc/apt/sources.list"}, files...) {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			j.Apt[strings.TrimPrefix(f, "/etc/apt/")] = data
		}
	}
	if srcs, err := apt.ReadHostSources("/"); err == nil {
		for _, src := range srcs {
			if d, ok := strings.CutPrefix(src.URI, "file://"); ok {
				ro(d)
			}
		}
	}
	for _, k := range []string{"SOURCE_DATE_EPOCH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			j.Env = append(j.Env, k+"="+v)
		}
	}
	j.Shares = buildervm.PlanShares(j.Shares)
	return j, nil
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

// sweepTemps removes what a killed guest left of the outputs: their
// temporary files beside them (.NAME.vmdeb-tmp…).
func sweepTemps(s *config.Spec) error {
	var errs []error
	for _, out := range s.Outputs {
		p := s.Path(out.Path)
		left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".vmdeb-tmp*"))
		for _, l := range left {
			if err := os.RemoveAll(l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
