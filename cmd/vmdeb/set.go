package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/buildset"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/config"
	"vmdeb/internal/ns"
)

// setTurn is one image's place in an overlapping set (internal/buildset):
// its turn, and where its output goes (each line under the image's name).
type setTurn struct {
	buildset.Turn
	std ns.Stdio
}

// interrupted: the build was stopped by a signal (Ctrl-C, SIGTERM).
func interrupted(err error) bool {
	var ee *exitError
	return errors.As(err, &ee) && ee.code >= 128
}

// overlaps tells whether the images of a set may overlap: not when asked
// to build one after the other, nor when any builds in a builder VM
// (whose build process is on the other side of the VM).
func overlaps(configs []string, f buildFlags) bool {
	if f.sequential {
		return false
	}
	for _, c := range configs {
		s, err := loadForBuild(c, f.outDir)
		if err != nil {
			continue // its build says why
		}
		if where, err := isolationFor(s, f.isolation); err == nil && where == config.VM {
			return false
		}
	}
	return true
}

// buildSet builds several images, overlapping unless told otherwise (see
// internal/buildset); a failure does not stop the others. The table at
// the end says how each went.
func buildSet(ctx context.Context, configs []string, f buildFlags) error {
	overlap := overlaps(configs, f)
	var dir buildset.Dir
	if overlap {
		var err error
		if dir, err = buildset.NewDir(); err != nil {
			return &exitError{exitFailed, err}
		}
		defer dir.Remove()
		fmt.Fprintf(prose, "vmdeb: building %d images, two at a time, taking turns at writing their outputs (--sequential: one after the other)\n", len(configs))
	}
	if f.report.path != "" {
		if err := os.MkdirAll(f.report.path, 0o755); err != nil {
			return &exitError{exitFailed, fmt.Errorf("--report: %w", err)}
		}
	}
	var mu sync.Mutex // whole lines on the terminal
	took := make([]time.Duration, len(configs))
	one := func(i int, ready func()) error {
		c, name := configs[i], setName(configs[i])
		g := f
		if f.report.path != "" {
			g.report.path = filepath.Join(f.report.path, name+".json")
		}
		start := time.Now()
		defer func() { took[i] = time.Since(start) }()
		if !overlap {
			fmt.Printf("\n### %s\n", c)
			err := buildOne(ctx, c, g, nil)
			if err != nil {
				fmt.Fprintln(os.Stderr, "vmdeb:", buildlog.Redact(err.Error()))
			}
			return err
		}
		out := buildset.Prefixed(&mu, os.Stdout, name+" | ")
		errOut := buildset.Prefixed(&mu, os.Stderr, name+" | ")
		defer out.Flush()
		defer errOut.Flush()
		g.turn = setTurn{Turn: dir.Turn(i), std: ns.Stdio{Out: out, Err: errOut}}
		done := make(chan struct{})
		defer close(done)
		go buildset.WatchReady(g.turn.Ready, ready, done)
		fmt.Fprintf(out, "starting %s\n", c)
		err := buildOne(ctx, c, g, nil)
		if err != nil {
			fmt.Fprintln(errOut, "vmdeb:", buildlog.Redact(err.Error()))
		}
		return err
	}
	errs, started := buildset.Schedule(ctx, len(configs), overlap, one, interrupted)
	type row struct {
		config, result, size string
		took                 time.Duration
	}
	var rows []row
	built, stopped := 0, 0
	for i, c := range configs[:started] {
		err := errs[i]
		r := row{config: c, result: "ok", took: took[i]}
		switch {
		case interrupted(err):
			r.result = "STOPPED"
			stopped++
		case err != nil:
			r.result = "FAILED"
		default:
			built++
			r.size = outputsSize(c, f.outDir)
		}
		rows = append(rows, r)
	}
	fmt.Printf("\n%-50s %-7s %10s %8s\n", "CONFIG", "RESULT", "SIZE", "TIME")
	for _, r := range rows {
		fmt.Printf("%-50s %-7s %10s %8s\n", r.config, r.result, r.size, r.took.Round(time.Second))
	}
	if built == len(configs) {
		return nil
	}
	err := fmt.Errorf("%d of %d images were not built", len(configs)-built, len(configs))
	if stopped > 0 {
		// As one interrupted build: a script can tell a stop from a failure.
		return &exitError{130, fmt.Errorf("interrupted: %w", err)}
	}
	return &exitError{exitFailed, err}
}

// setReports checks --report DIR for a set (each image's report is
// DIR/NAME.json, NAME its config file's name without .yaml): DIR is made
// absolute (buildSet creates it), a file there and two configs of one
// name are refused.
func setReports(dir string, configs []string) (string, error) {
	if dir == "" {
		return "", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", &usageError{fmt.Errorf("--report %q: %v", dir, err)}
	}
	seen := map[string]string{}
	for _, c := range configs {
		n := setName(c)
		if other, ok := seen[n]; ok {
			return "", &usageError{fmt.Errorf("--report %s: %s and %s would both write %s.json there; build them in separate runs", dir, other, c, n)}
		}
		seen[n] = c
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return "", &usageError{fmt.Errorf("--report %s: with several configs --report names a directory (each image's report is NAME.json in it), and this is a file", dir)}
	}
	return abs, nil
}

// setName is how a set names an image: its config file's name without
// its extension.
func setName(config string) string {
	return strings.TrimSuffix(filepath.Base(config), filepath.Ext(config))
}

// outputsSize is the total size of a config's outputs, as text.
func outputsSize(c, outDir string) string {
	s, err := loadForBuild(c, outDir)
	if err != nil {
		return ""
	}
	var total int64
	for _, out := range s.Outputs {
		if fi, err := os.Stat(s.Path(out.Path)); err == nil {
			total += fi.Size()
		}
	}
	return bytesize.Format(total)
}
