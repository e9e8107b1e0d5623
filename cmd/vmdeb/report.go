package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"vmdeb/internal/build"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
	"vmdeb/internal/report"
)

// exitCode is vmdeb's exit status for err (see exitFailed, exitUsage).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ce config.Errors
	var pe *build.PreflightError
	var single *config.Error
	if errors.As(err, &ce) || errors.As(err, &pe) || errors.As(err, &single) || isUsage(err) {
		return exitUsage
	}
	return exitFailed
}

// errorReport describes err for a report.
func errorReport(err error) *report.Error {
	if err == nil {
		return nil
	}
	kind := "failed"
	var pe *build.PreflightError
	var se *build.StageError
	switch code := exitCode(err); {
	case code >= 128 || errors.Is(err, context.Canceled):
		kind = "interrupted"
	case isUsage(err):
		kind = "usage"
	case errors.As(err, &pe):
		kind = "preflight"
	case errors.As(err, &se):
		kind = "stage"
	case code == exitUsage:
		kind = "preflight"
	}
	return report.ErrorOf(err, kind)
}

// planReport is the part of a plan a report shows.
func planReport(p *build.Plan, isolation string) *report.Plan {
	if p == nil {
		return nil
	}
	r := &report.Plan{
		Isolation:       isolation,
		Suite:           p.Spec.Suite,
		Architecture:    p.Arch.Name,
		Mirror:          buildlog.Redact(p.Mirror),
		AptMirror:       buildlog.Redact(p.AptMirror),
		SecurityMirror:  buildlog.Redact(p.Security),
		Updates:         p.Updates,
		Packages:        p.Packages,
		SourceDateEpoch: p.SourceDateEpoch,
		Notes:           []string{},
	}
	if p.Bootstrap != nil {
		r.Bootstrap = p.Bootstrap.Name()
	}
	if r.Packages == nil {
		r.Packages = []string{}
	}
	for _, n := range p.Notes {
		r.Notes = append(r.Notes, buildlog.Redact(n))
	}
	return r
}

// reportWritten is the --report file as build.Writes lists it (nothing
// when there is none).
func reportWritten(path string) []build.Written {
	if path == "" {
		return nil
	}
	return []build.Written{{What: "the build report (--report)", Path: path, Kind: "report"}}
}

// plannedFiles lists what a build of s would write, each path once.
func plannedFiles(s *config.Spec, logPath string, extra ...build.Written) []report.File {
	writes, _ := build.Writes(s, logPath, extra...)
	seen := map[string]bool{}
	out := []report.File{}
	for _, w := range writes {
		if seen[w.Path] {
			continue
		}
		seen[w.Path] = true
		out = append(out, report.File{Type: w.Kind, Path: w.Path})
	}
	return out
}

// builtFiles lists the outputs a finished build wrote, with their sizes
// and the digests SHA256SUMS holds.
func builtFiles(st *build.State) []report.File {
	out := []report.File{}
	if st == nil {
		return out
	}
	for _, r := range st.Results {
		f := report.File{Type: r.Type, Path: r.Path, SHA256: st.Sums[r.Path]}
		switch r.Type {
		case "directory":
		case "squashfs":
			f.Files = []report.File{}
			for _, n := range []string{"filesystem.squashfs", "vmlinuz", "initrd.img", "filesystem.packages"} {
				p := filepath.Join(r.Path, n)
				sub := report.File{Type: "file", Path: p, SHA256: st.Sums[p]}
				if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
					size := fi.Size()
					sub.Size = &size
				}
				f.Files = append(f.Files, sub)
			}
		default:
			size := r.Size
			f.Size = &size
		}
		out = append(out, f)
	}
	return out
}

// buildReporter gathers a build's report as the build goes, and writes
// it when the build ends: to the --report file, and with --json to
// stdout.
type buildReporter struct {
	file      string // --report FILE ("" = none)
	stdout    io.Writer
	rep       report.Build
	start     time.Time
	spec      *config.Spec
	plan      *build.Plan
	isolation string
	st        *build.State
	log       *buildlog.Log
	// cache: the stage cache is in use, in cacheDir.
	cache    bool
	cacheDir string
	// launched: the build's own process started (and reports itself).
	launched bool
}

func newBuildReporter(configFile, file string, stdout io.Writer) *buildReporter {
	abs, err := filepath.Abs(configFile)
	if err != nil {
		abs = configFile
	}
	return &buildReporter{file: file, stdout: stdout, start: time.Now(), rep: report.Build{
		SchemaVersion: report.SchemaVersion, Kind: report.KindBuild, VmdebVersion: Version, ConfigFile: abs,
	}}
}

// document is the report of the build as it ended with err.
func (b *buildReporter) document(err error, end time.Time) report.Build {
	r := b.rep
	r.OK, r.ExitStatus, r.Error = err == nil, exitCode(err), errorReport(err)
	r.Config = report.ConfigJSON(b.spec)
	r.Plan = planReport(b.plan, b.isolation)
	if r.Started == nil && !b.start.IsZero() {
		t := b.start.UTC()
		r.Started = &t
	}
	r.Duration = report.Seconds(end.Sub(b.start))
	r.Stages = []report.Stage{}
	if b.log != nil {
		for _, s := range b.log.Steps {
			r.Stages = append(r.Stages, report.Stage{Name: s.Name, Started: s.Start.UTC(), Duration: report.Seconds(s.Duration)})
		}
		r.Log = b.log.Path()
	}
	r.Cache.Enabled, r.Cache.Dir = b.cache, b.cacheDir
	r.Cache.Stages = []report.CacheResult{}
	if b.st != nil {
		r.Cache.Stages = append(r.Cache.Stages, b.st.Cache...)
		r.Cache.Remote = b.st.Remote
		r.Cache.Packages = b.st.PackageCache
		for _, bl := range b.st.Blocks {
			r.Cache.Squashfs = append(r.Cache.Squashfs, report.SquashfsBlocks{Image: bl.Image, Used: bl.Used, Reason: bl.Why,
				Blocks: bl.Blocks, Reused: bl.Reused, Compressed: bl.Compressed, Damaged: bl.Damaged})
		}
	}
	r.Outputs = []report.File{}
	if err == nil {
		r.Outputs = builtFiles(b.st)
	}
	return r
}

// finish writes the report of a build that ended with err, and returns
// err joined with any failure to write it.
func (b *buildReporter) finish(err error) error {
	if b == nil {
		return err
	}
	data, merr := report.Marshal(b.document(err, time.Now()))
	if merr != nil {
		return errors.Join(err, fmt.Errorf("build report: %w", merr))
	}
	if b.stdout != nil {
		if _, werr := b.stdout.Write(data); werr != nil {
			err = errors.Join(err, fmt.Errorf("build report: %w", werr))
		}
	}
	if b.file != "" {
		if werr := writeReportFile(b.file, data); werr != nil {
			werr = fmt.Errorf("build report %s: %w", b.file, werr)
			if err == nil {
				return &exitError{exitFailed, werr}
			}
			err = errors.Join(err, werr)
		}
	}
	return err
}

// writeReportFile writes the report as the build writes its other files:
// made in a directory of vmdeb's own and renamed into place, never
// through a link standing at path.
func writeReportFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return build.WriteReplacing(path, data)
}
