package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/config"
	"vmdeb/internal/ns"
)

// A set (vmdeb build DIR, or several configs) builds its images in
// config order, each in a process of its own. They overlap in one way:
// the next image starts (bootstrap, packages, hook: downloads, apt,
// scripts) while the one before writes its outputs (the squashfs's
// compression above all), and the images take turns at that end, so
// that at most one compresses at a time and at most two work directories
// exist. The turn is a lock in a directory of the set's own: an image
// takes it before its first output stage and holds it until its process
// ends; taking it, it writes its ready file, and the next image starts.
// By then the image's cached stages are saved, so the next one reuses
// the bootstrap they share (and the package cache, and the squashfs
// blocks compressed before it). A failed image starts the next one too;
// an interrupted one stops the set.

// setTurn is one image's place in an overlapping set: the set's lock,
// the file its build writes once it holds it, and where its output goes
// (each line under the image's name).
type setTurn struct {
	lock, ready string
	std         ns.Stdio
}

// turnFile holds the set's lock for as long as this build process lives.
var turnFile *os.File

// take is RunOptions.Turn for an image of a set: it waits for the lock
// (the image before it is writing its outputs), then writes the ready
// file.
func (t setTurn) take(ctx context.Context, log *buildlog.Log) error {
	f, err := waitTurn(ctx, t.lock, log)
	if err != nil {
		return err
	}
	turnFile = f // closed, and the lock released, when this process ends
	return os.WriteFile(t.ready, nil, 0o600)
}

// waitTurn returns the lock file at path open and locked, once no other
// open file holds it, or ctx's error. A wait is a step of the log.
func waitTurn(ctx context.Context, path string, log *buildlog.Log) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("the set's turn: %w", err)
	}
	try := func() (bool, error) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return err == nil, err
	}
	ok, err := try()
	if !ok && err == nil {
		log.Step("wait")
		log.Printf("waiting for the image before this one in the set to write its outputs")
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for !ok && err == nil {
			select {
			case <-ctx.Done():
				f.Close()
				return nil, ctx.Err()
			case <-tick.C:
			}
			ok, err = try()
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("the set's turn: %w", err)
	}
	return f, nil
}

// schedule runs build(i) for each of n images, in order, and returns
// their errors and how many were started. Image i+1 starts when image i
// ends or, with overlap, calls its ready function. No image starts once
// ctx is done or an image's error is one that stops the set (stops).
func schedule(ctx context.Context, n int, overlap bool, build func(i int, ready func()) error, stops func(error) bool) ([]error, int) {
	errs := make([]error, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	started := 0
	for i := 0; i < n; i++ {
		mu.Lock()
		halt := stopped
		mu.Unlock()
		if halt || ctx.Err() != nil {
			break
		}
		next := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(next) }) }
		started++
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer release()
			ready := func() {}
			if overlap {
				ready = release
			}
			err := build(i, ready)
			mu.Lock()
			errs[i] = err
			if stops(err) {
				stopped = true
			}
			mu.Unlock()
		}(i)
		select {
		case <-next:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	return errs, started
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

// buildSet builds several images (see the comment at the top); a failure
// does not stop the others. The table at the end says how each went.
func buildSet(ctx context.Context, configs []string, f buildFlags) error {
	overlap := overlaps(configs, f)
	var dir string
	if overlap {
		var err error
		if dir, err = os.MkdirTemp("", "vmdeb-set-"); err != nil {
			return &exitError{exitFailed, err}
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "turn"), nil, 0o600); err != nil {
			return &exitError{exitFailed, err}
		}
		fmt.Fprintf(prose, "vmdeb: building %d images; each starts while the one before writes its outputs (--sequential: one after the other)\n", len(configs))
	}
	var mu sync.Mutex // whole lines on the terminal
	took := make([]time.Duration, len(configs))
	one := func(i int, ready func()) error {
		c := configs[i]
		g := f
		start := time.Now()
		defer func() { took[i] = time.Since(start) }()
		if !overlap {
			fmt.Printf("\n### %s\n", c)
			return buildOne(ctx, c, g, nil)
		}
		name := strings.TrimSuffix(filepath.Base(c), filepath.Ext(c))
		out := &prefixWriter{mu: &mu, w: os.Stdout, prefix: name + " | "}
		errOut := &prefixWriter{mu: &mu, w: os.Stderr, prefix: name + " | "}
		defer out.Flush()
		defer errOut.Flush()
		g.turn = setTurn{lock: filepath.Join(dir, "turn"), ready: filepath.Join(dir, fmt.Sprintf("%d.ready", i)), std: ns.Stdio{Out: out, Err: errOut}}
		done := make(chan struct{})
		defer close(done)
		go watchReady(g.turn.ready, ready, done)
		fmt.Fprintf(out, "starting %s\n", c)
		err := buildOne(ctx, c, g, nil)
		if err != nil {
			fmt.Fprintln(errOut, "vmdeb:", buildlog.Redact(err.Error()))
		}
		return err
	}
	errs, started := schedule(ctx, len(configs), overlap, one, interrupted)
	type row struct {
		config, result, size string
		took                 time.Duration
	}
	var rows []row
	built := 0
	for i, c := range configs[:started] {
		err := errs[i]
		r := row{config: c, result: "ok", took: took[i]}
		switch {
		case interrupted(err):
			r.result = "STOPPED"
		case err != nil:
			r.result = "FAILED"
			if !overlap {
				fmt.Fprintln(os.Stderr, "vmdeb:", buildlog.Redact(err.Error()))
			}
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
	if built < len(configs) {
		return &exitError{exitFailed, fmt.Errorf("%d of %d images were not built", len(configs)-built, len(configs))}
	}
	return nil
}

// watchReady calls ready once the file at path exists, unless done
// closes first.
func watchReady(path string, ready func(), done <-chan struct{}) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if _, err := os.Stat(path); err == nil {
			ready()
			return
		}
	}
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

// prefixWriter writes whole lines to w, each after prefix; the writers
// that share mu do not mix their lines.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.line(p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) line(l []byte) {
	// A progress bar redrawn in place: only its last state is a line.
	if j := bytes.LastIndexByte(l, '\r'); j >= 0 {
		l = l[j+1:]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s%s\n", p.prefix, l)
}

// Flush writes what is left of an unfinished line.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.line(p.buf)
		p.buf = nil
	}
}
