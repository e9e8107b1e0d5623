// Command vmdeb builds bootable Debian images from one config file and
// boots them in qemu to prove they work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"vmdeb/internal/arch"
	"vmdeb/internal/build"
	"vmdeb/internal/buildervm"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/buildset"
	"vmdeb/internal/config"
	"vmdeb/internal/jobplan"
	"vmdeb/internal/ns"
	"vmdeb/internal/qemu"
	"vmdeb/internal/report"
	"vmdeb/internal/stagecache"
)

// Exit statuses: 1 a build or boot failed, 2 bad input or a host that
// cannot run the build (nothing was created).
const (
	exitFailed = 1
	exitUsage  = 2
)

// Version is set at link time.
var Version = "dev"

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ns.FinishUserns()
	os.Exit(run())
}

func run() int {
	root := newRoot()
	// Called as vmdebootstrap (a symlink): be vmdebootstrap.
	if filepath.Base(os.Args[0]) == "vmdebootstrap" && !ns.Inside() {
		root.SetArgs(append([]string{"vmdebootstrap"}, os.Args[1:]...))
	}
	err := root.Execute()
	if err == nil {
		return 0
	}
	// A URL's credentials never reach the terminal, whatever error
	// carried them.
	fmt.Fprintln(os.Stderr, "vmdeb:", buildlog.Redact(err.Error()))
	return exitCode(err)
}

// newRoot is the command tree: what runs, what --help says, and what
// the man pages and shell completions are generated from (gendocs.go).
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "vmdeb",
		Short: "Build bootable Debian images from one config file, and boot them in qemu",
		Long: `vmdeb builds bootable Debian images (live ISOs, VM disk images, root
file system tarballs, directories and squashfs file systems) for any
Debian architecture from one YAML config file, described in
vmdeb.yaml(5), and boots what it built in qemu to prove that it works.

  vmdeb check CONFIG    validate the config, the host's tools and the mirror
  vmdeb build CONFIG    build the config's outputs
  vmdeb boot IMAGE      boot an image in qemu, up to its login prompt

Exit status: 0 success; 1 a build or boot failed; 2 bad input or a host
that cannot run the build (nothing was created).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%v (see vmdeb %s --help)", err, c.Name())}
	})
	build.Version = Version
	root.AddCommand(buildCmd(), checkCmd(), bootCmd(), cacheCmd(), vmdebootstrapCmd(), metapackageCmd(), shellCmd(), publishCmd(), genDocsCmd())
	root.AddCommand(planCmd())
	return root
}

// isUsage recognises cobra's own argument and flag errors.
func isUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

type usageError struct{ error }

func args(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) != n {
			return &usageError{fmt.Errorf("%s takes %d argument(s), got %d (see vmdeb %s --help)", cmd.Name(), n, len(a), cmd.Name())}
		}
		return nil
	}
}

// checkFlags are vmdeb check's options.
type checkFlags struct {
	offline, json                          bool
	isolation, outDir, logPath, reportPath string
}

func checkCmd() *cobra.Command {
	var f checkFlags
	c := &cobra.Command{
		Use:   "check CONFIG",
		Short: "Validate a config file and the host (tools, mirror) without building",
		Long: `Validate a config file and the host (tools, mirror) without building.

With --json, stdout is one JSON document (docs/json.md): the resolved
config, the plan and its notes, the files a build would write, and on
failure the error (file, line and option for a config error); the exit
status is as without it.`,
		Args:              args(1),
		ValidArgsFunction: configArgs,
		RunE: func(cmd *cobra.Command, a []string) error {
			if !f.json {
				return runCheck(cmd.Context(), a[0], f, cmd.OutOrStdout(), nil)
			}
			abs, aerr := filepath.Abs(a[0])
			if aerr != nil {
				abs = a[0]
			}
			r := &report.Check{SchemaVersion: report.SchemaVersion, Kind: report.KindCheck, VmdebVersion: Version, ConfigFile: abs}
			err := runCheck(cmd.Context(), a[0], f, io.Discard, r)
			r.OK, r.ExitStatus, r.Error = err == nil, exitCode(err), errorReport(err)
			data, merr := report.Marshal(r)
			if merr != nil {
				return errors.Join(err, merr)
			}
			cmd.OutOrStdout().Write(data)
			return err
		},
	}
	c.Flags().BoolVar(&f.offline, "offline", false, "do not ask the mirror whether it has the suite")
	c.Flags().BoolVar(&f.json, "json", false, "print one JSON document (docs/json.md) instead of prose")
	c.Flags().StringVar(&f.isolation, "isolation", "", "check for a build with this isolation: "+config.Join(config.Isolations)+" (default: as vmdeb build would choose)")
	c.RegisterFlagCompletionFunc("isolation", isolationValues)
	c.Flags().StringVarP(&f.outDir, "outdir", "o", "", "check for a build with --outdir DIR")
	c.Flags().StringVar(&f.logPath, "log", "", "check for a build with --log FILE")
	c.Flags().StringVar(&f.reportPath, "report", "", "check for a build with --report FILE")
	return c
}

// runCheck checks config path for a build with f's options, saying so on
// out; r, when given, gets the resolved config, the plan and the files.
func runCheck(ctx context.Context, path string, f checkFlags, out io.Writer, r *report.Check) error {
	if r == nil {
		r = &report.Check{}
	}
	s, err := loadForBuild(path, f.outDir)
	if err != nil {
		return err
	}
	r.Config = report.ConfigJSON(s)
	reportPath, err := absReport(f.reportPath)
	if err != nil {
		return err
	}
	extra := reportWritten(reportPath)
	if err := build.CheckOutputs(s, f.logPath, extra...); err != nil {
		return err
	}
	r.Outputs = plannedFiles(s, f.logPath, extra...)
	if err := checkIsolationFlag(f.isolation); err != nil {
		return err
	}
	where, err := isolationFor(s, f.isolation)
	if err != nil {
		return err
	}
	if where == config.VM {
		// The builder VM has the tools; only the config is checked here.
		fmt.Fprintf(out, "%s: ok — %s %s, built in a builder VM\n", path, s.Suite, s.Architecture)
		return nil
	}
	if where == config.Userns {
		if _, err := ns.PlanUserns(); err != nil {
			return &build.PreflightError{Err: err}
		}
	}
	p, err := build.NewPlan(ctx, s, build.Options{Offline: f.offline, Rootless: where == config.Userns})
	if err != nil {
		return err
	}
	r.Plan = planReport(p, string(where))
	fmt.Fprintf(out, "%s: ok — %s %s, %d packages to install, mirror %s, image sources %s, isolation %s\n",
		path, s.Suite, p.Arch.Name, len(p.Packages), buildlog.Redact(p.Mirror), buildlog.Redact(p.AptMirror), where)
	for _, n := range p.Notes {
		fmt.Fprintf(out, "  %s\n", buildlog.Redact(n))
	}
	return nil
}

// absReport is --report's path made absolute ("" stays "").
func absReport(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if filepath.Base(p) == "." || filepath.Base(p) == "/" || p[len(p)-1] == '/' {
		return "", &usageError{fmt.Errorf("--report %q: a file name is needed (e.g. --report out/build.json)", p)}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", &usageError{fmt.Errorf("--report %q: %v", p, err)}
	}
	return abs, nil
}

// reportFlags are build's --report FILE and --json.
type reportFlags struct {
	path string
	json bool
}

// prose is where build's messages for people go: stdout, or stderr when
// stdout carries the JSON report (--json).
var prose io.Writer = os.Stdout

// buildFlags are vmdeb build's options.
type buildFlags struct {
	run             build.RunOptions
	logPath, outDir string
	cache           cacheFlags
	remote          remoteFlags
	isolation       string
	inVM            bool
	report          reportFlags
	// planFile and jobID: build one job of a plan (vmdeb plan); job is
	// that job once read, and jobRef what the report says of it.
	planFile, jobID string
	job             *jobplan.Job
	jobRef          string
	// sequential: a set builds one image at a time; turn: this image's
	// place in a set that overlaps (set.go).
	sequential bool
	turn       setTurn
}

func buildCmd() *cobra.Command { return newBuildCmd(&buildFlags{}) }

// newBuildCmd is vmdeb build, its flags parsed into f.
func newBuildCmd(f *buildFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "build CONFIG|DIR...",
		Short: "Build the outputs config files describe; a directory means every *.yaml in it",
		Long: `Build the outputs config files describe; a directory means every *.yaml in it.

Where the build runs (isolation: in the config, or --isolation):
  host    as root on this machine (the default for root)
  userns  as an ordinary user, in a user namespace with the user's
          subordinate ids from /etc/subuid (the default for other users)
  vm      inside a builder VM of a chosen Debian release (--vm); needs only qemu

Machine-readable output (docs/json.md): --report FILE writes a JSON report
of the build (stages and their times, stage cache decisions, each output's
path, type, size and SHA256, the error on failure) beside the outputs, as
they are written; --json prints the same report on stdout, and the
messages that would go there go to stderr. A build refused before it
starts (exit status 2) writes no report file; --json prints the error.`,
		Args: func(cmd *cobra.Command, a []string) error {
			if f.jobID != "" || f.planFile != "" {
				if len(a) > 0 {
					return &usageError{fmt.Errorf("--job builds the config its plan names: no config argument with it (%s)", strings.Join(a, " "))}
				}
				return nil
			}
			if len(a) == 0 {
				return &usageError{fmt.Errorf("build needs a config file or a directory of them (see vmdeb build --help)")}
			}
			return nil
		},
		ValidArgsFunction: configArgs,
		RunE: func(cmd *cobra.Command, a []string) error {
			return runBuild(cmd.Context(), a, *f)
		},
	}
	c.Flags().StringVar(&f.run.WorkDir, "workdir", "", "parent directory for the work directory (default /var/tmp)")
	c.Flags().BoolVar(&f.run.KeepWork, "keep-work", false, "keep the work directory (the root file system) for debugging")
	c.Flags().StringVar(&f.logPath, "log", "", "build log file (default: NAME.build.log beside the first output)")
	c.Flags().StringVarP(&f.outDir, "outdir", "o", "", "write the outputs into this directory (keeping their file names)")
	c.Flags().BoolVar(&f.cache.off, "no-cache", false, "build every stage; neither reuse nor keep stage results")
	c.Flags().StringVar(&f.cache.path, "stage-cache", "", "stage cache directory (default $VMDEB_STAGE_CACHE or "+stagecache.DefaultDir+", for an ordinary user ~/.cache/vmdeb/stages; \"off\" disables it)")
	f.remote.register(c)
	c.Flags().StringVar(&f.isolation, "isolation", "", "where the build runs: "+config.Join(config.Isolations)+" (overrides the config's isolation:)")
	c.RegisterFlagCompletionFunc("isolation", isolationValues)
	c.Flags().BoolVar(&f.inVM, "vm", false, "build inside a builder VM (same as --isolation vm)")
	c.Flags().StringVar(&f.report.path, "report", "", "write a JSON report of the build (docs/json.md) to this file, on success and on failure; with several configs, a directory that gets each image's report as NAME.json (NAME: its config file's name without .yaml)")
	c.Flags().BoolVar(&f.report.json, "json", false, "print the JSON report on stdout; messages go to stderr")
	c.Flags().StringVar(&f.planFile, "plan", "", "the plan (vmdeb plan --format json) whose --job to build")
	c.Flags().StringVar(&f.jobID, "job", "", "build this job of --plan: its config, into its output directory, with its report (docs/plan.md)")
	c.Flags().StringVar(&f.jobRef, "job-ref", "", "")
	c.Flags().MarkHidden("job-ref")
	c.Flags().BoolVar(&f.sequential, "sequential", false, "with several configs, build one image after the other (by default two at a time: the next starts once the one before has its base system and common packages, and they take turns at writing outputs)")
	c.Flags().StringVar(&f.turn.Lock, "turn", "", "")
	c.Flags().StringVar(&f.turn.Ready, "turn-ready", "", "")
	c.Flags().MarkHidden("turn")
	c.Flags().MarkHidden("turn-ready")
	return c
}

// runBuild is vmdeb build: outside the build's namespaces (buildOuter),
// or inside them, in the process buildOne started (buildInside).
func runBuild(ctx context.Context, a []string, f buildFlags) error {
	if f.inVM {
		if f.isolation != "" && f.isolation != "vm" {
			return &usageError{fmt.Errorf("--vm and --isolation %s contradict each other", f.isolation)}
		}
		f.isolation = "vm"
	}
	if f.report.json {
		prose = os.Stderr
	}
	if !ns.Inside() && (f.jobID != "" || f.planFile != "") {
		var err error
		if a, err = f.fromPlan(); err != nil {
			return err
		}
	}
	if ns.Inside() {
		var rep *buildReporter
		if f.report.json || f.report.path != "" {
			rep = newBuildReporter(a[0], f.report.path, nil)
			if f.report.json {
				rep.stdout = os.Stdout
			}
			if err := rep.setJob(f.jobRef); err != nil {
				return rep.finish(&usageError{err})
			}
		}
		s, err := loadForBuild(a[0], f.outDir)
		if err != nil {
			return rep.finish(err)
		}
		if f.run.Cache, err = f.cache.open(); err != nil {
			return rep.finish(&exitError{exitFailed, err})
		}
		if f.run.Remote, err = f.remote.open(); err != nil {
			return rep.finish(err)
		}
		if f.turn.Lock != "" {
			// An image of a set: see internal/buildset (buildInside
			// lowers its priority, once its own /proc is mounted).
			if err := f.turn.Hold(); err != nil {
				return rep.finish(&exitError{exitFailed, err})
			}
			f.run.Turn, f.run.BaseReady = f.turn.Take, f.turn.BaseReady
		}
		return buildInside(s, f.run, f.logPath, rep)
	}
	var rep *buildReporter
	if f.report.json {
		// Errors before the build starts; the build's own
		// process reports the rest.
		rep = newBuildReporter(a[0], "", os.Stdout)
	}
	err := buildOuter(ctx, a, f, rep)
	if rep != nil && !rep.launched {
		return rep.finish(err)
	}
	return err
}

// buildOuter is vmdeb build outside the build's namespaces: the configs
// are checked and each built in a process of its own.
func buildOuter(ctx context.Context, a []string, f buildFlags, rep *buildReporter) error {
	if _, err := f.cache.dir(); err != nil {
		return err
	}
	if err := f.remote.export(); err != nil {
		return err
	}
	configs, err := expandConfigs(a)
	if err != nil {
		return &usageError{err}
	}
	if len(configs) > 1 && f.logPath != "" {
		return &usageError{errors.New("--log names one file; with several configs each build logs beside its outputs")}
	}
	if len(configs) > 1 && f.report.json {
		return &usageError{errors.New("--json prints one build's report; with several configs, --report DIR writes each image's report into DIR")}
	}
	if len(configs) > 1 {
		if f.report.path, err = setReports(f.report.path, configs); err != nil {
			return err
		}
	} else if f.report.path, err = absReport(f.report.path); err != nil {
		return err
	}
	if err := checkIsolationFlag(f.isolation); err != nil {
		return err
	}
	if len(configs) == 1 {
		return buildOne(ctx, configs[0], f, rep)
	}
	return buildSet(ctx, configs, f)
}

// expandConfigs turns the arguments into config files: a directory stands
// for the *.yaml files directly in it, in name order.
func expandConfigs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		m, _ := filepath.Glob(filepath.Join(a, "*.yaml"))
		if len(m) == 0 {
			return nil, fmt.Errorf("%s: no *.yaml config files in this directory", a)
		}
		out = append(out, m...)
	}
	return out, nil
}

func loadForBuild(path, outDir string) (*config.Spec, error) {
	s, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if outDir != "" {
		if err := s.SetOutputDir(outDir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// buildOne checks a config and the host, then runs the build in its own
// namespaces (a second vmdeb process) and returns its status.
// rep, when given, gets what is known before the build's own process
// starts (and is marked launched once it has).
func buildOne(ctx context.Context, path string, f buildFlags, rep *buildReporter) error {
	s, err := loadForBuild(path, f.outDir)
	if err != nil {
		return err
	}
	if rep != nil {
		rep.spec, rep.rep.ConfigFile = s, s.File
	}
	where, err := isolationFor(s, f.isolation)
	if err != nil {
		return err
	}
	extra := reportWritten(f.report.path)
	if err := build.CheckOutputs(s, f.logPath, extra...); err != nil {
		return err
	}
	// Held until the build ends (or this process dies): a second build of
	// the same outputs fails here.
	locks, err := build.LockOutputs(s, f.logPath, extra...)
	if err != nil {
		return &exitError{exitFailed, err}
	}
	defer locks.Release()
	if where == config.VM {
		if f.report.json {
			return &usageError{errors.New("--json: a build in a builder VM (isolation vm) cannot print its report on stdout (the VM's console is there); use --report FILE")}
		}
		return buildInVM(ctx, path, s, f.run, f.logPath, f.outDir, f.report.path, f.jobRef)
	}
	// Check everything before the namespaced process starts, so bad input
	// is reported once and nothing is created.
	p, err := build.NewPlan(ctx, s, build.Options{Rootless: where == config.Userns})
	if err != nil {
		return err
	}
	if rep != nil {
		rep.plan, rep.isolation = p, string(where)
	}
	if f.job != nil {
		if d := f.job.KeysDiffer(build.StageKeys(p)); len(d) > 0 {
			fmt.Fprintf(prose, "vmdeb: job %s: the stage keys of %s differ from the plan's (the mirror's Release, vmdeb or the host's tools changed since it was made): the build goes on with its own\n", f.job.ID, strings.Join(d, ", "))
		}
	}
	workParent := f.run.WorkDir
	if workParent == "" {
		workParent = config.DefaultWorkDir
	}
	if err := build.CheckPrivateDir(workParent); err != nil {
		return &build.PreflightError{Err: err}
	}
	return reexec(path, where, f.inner(path).Argv(), f.turn.std, rep)
}

// inner is the command line of the build of path in its namespaces: the
// options of f it needs, the stage cache's directory resolved.
func (f buildFlags) inner(path string) buildervm.BuildArgs {
	stageCache, _ := f.cache.dir()
	return buildervm.BuildArgs{WorkDir: f.run.WorkDir, KeepWork: f.run.KeepWork, Log: f.logPath, OutDir: f.outDir,
		Report: f.report.path, JSON: f.report.json, StageCache: stageCache, Config: path, JobRef: f.jobRef,
		Turn: f.turn.Lock, TurnReady: f.turn.Ready}
}

// reexec runs the build (argv) in a vmdeb process of its own, in the
// namespaces of isolation where, and returns its status.
func reexec(path string, where config.Isolation, argv []string, std ns.Stdio, rep *buildReporter) error {
	var code int
	var err error
	if where == config.Userns {
		up, uerr := ns.PlanUserns()
		if uerr != nil {
			return &build.PreflightError{Err: uerr}
		}
		if rep != nil {
			rep.launched = true
		}
		out := prose
		if std.Out != nil {
			out = std.Out
		}
		fmt.Fprintf(out, "vmdeb: building rootless, as %s in a user namespace (subordinate ids %d-%d)\n", up.User, up.SubUID.Start, up.SubUID.Start+ns.MinSubIDs-2)
		code, err = ns.ReexecUserns(up, argv, std)
	} else {
		if rep != nil {
			rep.launched = true
		}
		code, err = ns.Reexec(argv, std)
	}
	if err != nil {
		return &exitError{exitFailed, err}
	}
	if code != 0 {
		return &exitError{code, fmt.Errorf("building %s failed", path)}
	}
	return nil
}

// buildInside runs in the build's own mount and PID namespaces.
// rep, when given, writes the build's report when it ends.
func buildInside(s *config.Spec, o build.RunOptions, logPath string, rep *buildReporter) (err error) {
	if rep != nil {
		rep.spec = s
		if o.Cache != nil {
			rep.cache, rep.cacheDir = true, o.Cache.Dir
		}
		defer func() { err = rep.finish(err) }()
	}
	if err := ns.Prepare(); err != nil {
		return &exitError{exitFailed, err}
	}
	if o.Turn != nil {
		// An image of a set runs at a lower priority until its turn
		// (internal/buildset); its threads are listed in the /proc of
		// its PID namespace, mounted by Prepare.
		if err := buildset.Yield(); err != nil {
			fmt.Fprintln(os.Stderr, "vmdeb: lowering the priority of this image of the set:", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	p, err := build.NewPlan(ctx, s, build.Options{Rootless: ns.Rootless()})
	if err != nil {
		return err
	}
	if rep != nil {
		rep.plan, rep.isolation = p, "host"
		if ns.Rootless() {
			rep.isolation = "userns"
		}
	}
	var extra []build.Written
	if rep != nil {
		extra = reportWritten(rep.file)
	}
	if err := build.CheckOutputs(s, logPath, extra...); err != nil {
		return err
	}
	if logPath == "" {
		logPath = build.DefaultLog(s)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return &exitError{exitFailed, err}
	}
	// A new file renamed into place: never written through a planted link.
	lf, err := build.CreateReplacing(logPath)
	if err == nil {
		err = lf.Publish()
	}
	if err != nil {
		return &exitError{exitFailed, fmt.Errorf("build log: %w", err)}
	}
	defer lf.Close()
	term := os.Stdout
	if prose == os.Stderr {
		term = os.Stderr
	}
	log := buildlog.New(lf, logPath, term)
	log.TTY = isTerminal(term)
	if rep != nil {
		rep.log = log
	}
	fmt.Fprintf(term, "vmdeb %s: building %s (%s %s), log %s\n", Version, s.Name, s.Suite, p.Arch.Name, logPath)
	start := time.Now()
	st, err := build.Run(ctx, p, build.Stages(p), log, o)
	if rep != nil {
		rep.st = st
	}
	if kerr := ns.KillOthers(); kerr != nil {
		err = errors.Join(err, kerr)
	}
	if err != nil {
		log.Logf("FAILED: %v", err)
		if ctx.Err() != nil {
			return &exitError{130, fmt.Errorf("interrupted; everything the build made was removed (%w)", err)}
		}
		return &exitError{exitFailed, err}
	}
	fmt.Fprintf(term, "done:\n%s\n", build.FormatSummary(st, time.Since(start)))
	for _, t := range log.Steps {
		log.Logf("time %-10s %.1fs", t.Name, t.Duration.Seconds())
	}
	return nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// chooseBoot reads the image's boot loaders and picks the architecture
// and firmware (see qemu.Choose); a contradicting --arch is bad input.
func chooseBoot(image, archName string, uefiGiven, uefi bool) (qemu.Choice, error) {
	kind, err := qemu.DetectImage(image)
	if err != nil {
		return qemu.Choice{}, &usageError{err}
	}
	id, idErr := qemu.Identify(image, kind)
	var want *bool
	if uefiGiven {
		want = &uefi
	}
	c, err := qemu.Choose(id, idErr, archName, want)
	if err != nil {
		return c, &usageError{fmt.Errorf("%s: %w", image, err)}
	}
	return c, nil
}

func bootCmd() *cobra.Command {
	var o qemu.Options
	var archName string
	var verbose bool
	c := &cobra.Command{
		Use:   "boot IMAGE",
		Short: "Boot an image in qemu and wait for a login prompt on the serial console",
		Args:  args(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			return runBoot(a[0], archName, cmd.Flags().Changed("uefi"), verbose, o)
		},
	}
	f := c.Flags()
	f.StringVar(&archName, "arch", "", "the image's architecture (default: read from the image's boot loaders)")
	f.BoolVar(&o.UEFI, "uefi", false, "boot with UEFI firmware (OVMF/AAVMF); --uefi=false for BIOS (default: what the image and its architecture boot with)")
	f.BoolVar(&o.SecureBoot, "secure-boot", false, "boot with UEFI firmware that enforces Secure Boot with Microsoft's keys (OVMF/AAVMF *.ms.fd), as a PC sold today")
	f.BoolVar(&o.Writable, "writable", false, "keep what the guest writes to a disk image (by default its writes go to a temporary overlay)")
	f.StringVar(&o.Accel, "accel", "auto", "auto (KVM when it works, else TCG), kvm or tcg")
	f.IntVar(&o.Memory, "memory", 2048, "memory in MiB")
	f.IntVar(&o.CPUs, "cpus", 2, "virtual CPUs")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up after this long")
	f.StringVar(&o.Expect, "expect", "", "regular expression that means success (default: a login prompt)")
	f.StringVar(&o.Run, "run", "", "after the login prompt, log in and run this command; its status is the result")
	f.StringVar(&o.Login, "login", "root", "user for --run")
	f.StringVar(&o.Password, "password", "", "password for --run")
	f.StringVar(&o.Screenshot, "screenshot", "", "save a PNG of the screen when the expected text appears")
	f.DurationVar(&o.ScreenshotAfter, "screenshot-after", 0, "take the --screenshot this long after the expected text (a desktop draws minutes after the serial login prompt under TCG)")
	f.IntVar(&o.Entry, "entry", 0, "boot the menu entry this many places below the default (e.g. the installer's)")
	f.StringVar(&o.Append, "append", "", "add these parameters to the chosen entry's kernel command line (e.g. debian-installer's preseeding)")
	f.BoolVar(&o.NoNetwork, "no-network", false, "boot with no network device at all")
	f.StringVar(&o.Disk, "disk", "", "attach this raw image as a second, writable disk (e.g. for an installer)")
	f.BoolVarP(&verbose, "verbose", "v", false, "show the serial console")
	return c
}

// runBoot is vmdeb boot: image booted with o (--arch archName; --uefi
// given or not; -v), its result printed.
func runBoot(image, archName string, uefiGiven, verbose bool, o qemu.Options) error {
	if archName != "" {
		if _, err := arch.Lookup(archName); err != nil {
			return &usageError{fmt.Errorf("--arch: %v", err)}
		}
	}
	if _, err := os.Stat(image); err != nil {
		return &usageError{err}
	}
	if o.SecureBoot {
		if uefiGiven && !o.UEFI {
			return &usageError{fmt.Errorf("--secure-boot needs UEFI, and --uefi=false asks for BIOS")}
		}
		o.UEFI = true
	}
	choice, err := chooseBoot(image, archName, uefiGiven || o.SecureBoot, o.UEFI)
	if err != nil {
		return err
	}
	o.Image, o.Arch, o.UEFI = image, choice.Arch, choice.UEFI
	if o.ScreenshotAfter != 0 && o.Screenshot == "" {
		return &usageError{fmt.Errorf("--screenshot-after needs --screenshot FILE")}
	}
	if o.ScreenshotAfter < 0 {
		return &usageError{fmt.Errorf("--screenshot-after %s: not a delay", o.ScreenshotAfter)}
	}
	if verbose {
		o.Console = os.Stdout
	}
	o.Log = func(format string, x ...any) { fmt.Printf(format+"\n", x...) }
	o.Log("vmdeb boot: %s", choice.Why)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := qemu.Boot(ctx, o)
	if err != nil {
		return &exitError{exitFailed, err}
	}
	fmt.Printf("booted %s to %q in %s (%s)\n", image, res.Matched, res.Elapsed.Round(time.Second), res.Accel)
	if o.Run != "" {
		fmt.Print(res.RunOutput)
		if !strings.HasSuffix(res.RunOutput, "\n") {
			fmt.Println()
		}
		if res.RunStatus != 0 {
			return &exitError{exitFailed, fmt.Errorf("%q exited with status %d", o.Run, res.RunStatus)}
		}
	}
	return nil
}
