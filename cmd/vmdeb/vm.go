package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vmdeb/internal/build"
	"vmdeb/internal/buildervm"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/config"
)

// buildInVM builds path inside a builder VM (isolation: vm): the builder
// image of the chosen release (made and cached on first use), booted in
// qemu with the config, the caches and the output directories shared,
// runs this same vmdeb as root; its exit status is the build's.
func buildInVM(ctx context.Context, path string, s *config.Spec, o build.RunOptions, logPath, outDir, reportPath, jobRef string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	a, err := buildervm.HostArch()
	if err != nil {
		return &build.PreflightError{Err: err}
	}
	if o.KeepWork {
		fmt.Println("vmdeb: --keep-work: the work directory is on the builder VM's scratch disk, which goes with the VM; nothing is kept")
	}
	self, err := os.Executable()
	if err != nil {
		return &exitError{exitFailed, err}
	}
	host := buildervm.ThisHost()
	job, err := buildervm.PlanJob(buildervm.Request{Spec: s, Config: path, Binary: self, WorkDir: o.WorkDir,
		Log: logPath, Report: reportPath, OutDir: outDir, JobRef: jobRef, Host: host})
	var se *buildervm.ShareError
	if errors.As(err, &se) {
		return &build.PreflightError{Err: err}
	}
	if err != nil {
		return err
	}
	logf := func(format string, x ...any) { fmt.Printf(format+"\n", x...) }
	im := buildervm.Image{Suite: s.Builder.Resolved(s.Suite, host.NumCPU).Suite, Arch: a}
	img, err := builderImage(ctx, im, self, buildervm.BinaryMaker(self, host.Euid, o.WorkDir, os.Stdout), logf)
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
		return &exitError{130, errors.Join(fmt.Errorf("interrupted; the builder VM was stopped"), buildervm.RemoveTemps(s))}
	}
	if err != nil {
		return &exitError{exitFailed, errors.Join(err, buildervm.RemoveTemps(s))}
	}
	fmt.Printf("vmdeb: builder VM (%s): up in %s, finished in %s, scratch disk peak %s of %s\n",
		res.Accel, res.Boot.Round(time.Second), res.Elapsed.Round(time.Second), bytesize.Format(res.ScratchPeak), bytesize.Format(job.Scratch))
	if res.Status == 0 {
		return nil
	}
	if res.OutOfScratch(s) {
		return &exitError{res.Status, fmt.Errorf("building %s failed: the builder VM's scratch disk (%s) is full: raise builder.scratch-size in the config",
			path, bytesize.Format(job.Scratch))}
	}
	return &exitError{res.Status, fmt.Errorf("building %s in the builder VM failed (status %d)", path, res.Status)}
}

// builderImage is the builder image im: VMDEB_BUILDER_IMAGE when set (one
// made by another vmdeb, for debugging the VM side), else the cached one
// for this vmdeb binary (self).
func builderImage(ctx context.Context, im buildervm.Image, self string, mk buildervm.Maker, logf func(string, ...any)) (string, error) {
	if img := os.Getenv("VMDEB_BUILDER_IMAGE"); img != "" {
		return img, nil
	}
	cache := buildervm.Cache{Dir: buildervm.CacheDir(os.Geteuid())}
	return cache.EnsureFor(ctx, im, self, Version, mk, logf)
}

// builderCacheCmd is `vmdeb cache builders`: the cached builder images.
func builderCacheCmd() *cobra.Command {
	var removeAll bool
	c := &cobra.Command{
		Use:   "builders",
		Short: "List the builder VM images (isolation: vm), most recently used first; --remove-all removes them",
		Args:  args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache := buildervm.Cache{Dir: buildervm.CacheDir(os.Geteuid())}
			l, err := cache.List()
			if err != nil {
				return err
			}
			var total int64
			fmt.Printf("%-34s %-10s %-7s %10s  %-16s  %s\n", "KEY", "SUITE", "ARCH", "SIZE", "LAST USED", "VMDEB")
			for _, e := range l {
				fmt.Printf("%-34s %-10s %-7s %10s  %-16s  %s\n", e.Key, e.Suite, e.Arch, bytesize.Format(e.Size),
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
			fmt.Printf("%d builder images, %s %s %s\n", len(l), bytesize.Format(total), verb, cache.Dir)
			return nil
		},
	}
	c.Flags().BoolVar(&removeAll, "remove-all", false, "remove every builder image (the next VM build makes its own again)")
	return c
}
