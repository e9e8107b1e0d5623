// Package buildset runs the images of a set (vmdeb build DIR) so that
// they overlap, two at a time: the next image starts once the one before
// has its base system (and common-packages, if it has them) in the stage
// cache, so that it finds the stages they share there, and fewer than two
// run. Preparing an image (bootstrap,
// packages, hook: downloads, apt, scripts) keeps about one core busy, so
// two prepare side by side; writing the outputs (the squashfs's
// compression above all) takes every core, so the images take turns at
// that end, one at a time, the first ready first. The turn is a lock in a
// directory of the set's own: an image's build takes it before its first
// output stage (build.RunOptions.Turn) and holds it until its process
// ends. Until it holds the turn an image runs at a lower priority (nice
// 10), so that the one compressing is not slowed by the one preparing;
// taking the turn, a build as root goes back to the normal priority (a
// rootless one cannot, and both then share alike). A failed image lets
// the next start too; an interrupted one stops the set.
package buildset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/run"
)

// Dir is a set's own directory: its turn lock, its images' ready files,
// and the owner file every process of the set holds a shared lock on for
// as long as it lives (the set's vmdeb, and each image's build: Hold).
type Dir string

// ownerName is the set directory's owner file. A directory whose owner
// file nobody holds is left from a set whose vmdeb was killed (SIGKILL):
// the next set removes it (sweep).
const ownerName = "owner"

// ownerFile is the owner lock this process holds (NewDir or Hold), kept
// open, and so locked, until Remove or the process's end.
var ownerFile *os.File

// NewDir removes the directories of sets nobody holds any more, and
// makes this set's, holding its owner lock (Remove ends the set).
func NewDir() (Dir, error) {
	sweep(os.TempDir())
	d, err := os.MkdirTemp("", "vmdeb-set-")
	if err != nil {
		return "", err
	}
	fail := func(err error) (Dir, error) {
		os.RemoveAll(d)
		return "", err
	}
	if err := os.WriteFile(filepath.Join(d, "turn"), nil, 0o600); err != nil {
		return fail(err)
	}
	// Locked before it takes its name: a sweep never sees it unlocked.
	f, err := os.OpenFile(filepath.Join(d, ownerName+".new"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return fail(err)
	}
	if err := os.Rename(f.Name(), filepath.Join(d, ownerName)); err != nil {
		f.Close()
		return fail(err)
	}
	ownerFile = f
	return Dir(d), nil
}

// Remove ends the set: its directory goes, and this process's hold on it.
func (d Dir) Remove() error {
	if ownerFile != nil {
		ownerFile.Close()
		ownerFile = nil
	}
	return os.RemoveAll(string(d))
}

// Hold is called by an image's build with its turn: it holds the set
// directory's owner lock for as long as the build process lives, so that
// the directory outlives a killed set's vmdeb while its builds run.
func (t Turn) Hold() error {
	f, err := os.OpenFile(filepath.Join(filepath.Dir(t.Lock), ownerName), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("the set's directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return fmt.Errorf("the set's directory: %w", err)
	}
	ownerFile = f
	return nil
}

// sweep removes the set directories under tmp whose owner lock nobody
// holds. Others' directories it may not open or remove are left alone.
func sweep(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "vmdeb-set-*"))
	for _, d := range dirs {
		f, err := os.OpenFile(filepath.Join(d, ownerName), os.O_RDWR, 0)
		if err != nil {
			continue // not a set's (or one made before owner files)
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(d)
		}
		f.Close()
	}
}

// Turn is image i's turn in the set.
func (d Dir) Turn(i int) Turn {
	return Turn{Lock: filepath.Join(string(d), "turn"), Ready: filepath.Join(string(d), fmt.Sprintf("%d.ready", i))}
}

// Turn is one image's place in a set: the set's lock, and the file its
// build writes once its base system is in place (BaseReady).
type Turn struct{ Lock, Ready string }

// turnFile holds the set's lock for as long as this build process lives.
var turnFile *os.File

// Take is build.RunOptions.Turn for an image of a set: it waits for the
// lock (another image is writing its outputs), then gives the build back
// its normal priority where it may.
func (t Turn) Take(ctx context.Context, log *buildlog.Log) error {
	f, err := waitTurn(ctx, t.Lock, log)
	if err != nil {
		return err
	}
	turnFile = f // closed, and the lock released, when this process ends
	if err := setNice(0); err == nil {
		log.Logf("the set's turn taken: back to the normal priority")
	}
	return nil
}

// BaseReady is build.RunOptions.BaseReady for an image of a set: it
// writes the ready file, and the set may start the next image. (If it
// cannot, the next image starts when this one ends.)
func (t Turn) BaseReady() { os.WriteFile(t.Ready, nil, 0o600) }

// Yield lowers this build's priority until it takes its turn (nice 10:
// see the package comment). The build calls it as soon as its PID
// namespace's /proc is mounted (the threads are listed there); the
// programs it starts inherit it.
func Yield() error { return setNice(waitingNice) }

// waitingNice is the nice value of an image without the turn.
const waitingNice = 10

// setNice gives every thread of this process the nice value n (a
// process's nice value is its threads', and a program started later
// inherits its starting thread's). Lowering it needs CAP_SYS_NICE.
func setNice(n int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range tasks {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
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
		log.Printf("waiting for the image of the set that is writing its outputs")
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

// Schedule runs build(i) for each of n images, in order, and returns
// their errors and how many were started. Image i+1 starts when image i
// calls its ready function (with overlap) or ends, and, with overlap,
// once fewer than two images run. No image starts once ctx is done or an
// image's error is one that stops the set (stops).
func Schedule(ctx context.Context, n int, overlap bool, build func(i int, ready func()) error, stops func(error) bool) ([]error, int) {
	errs := make([]error, n)
	slots := make(chan struct{}, 2) // the images running
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	started := 0
	var prev chan struct{} // the ready of the image before
	for i := 0; i < n; i++ {
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		mu.Lock()
		halt := stopped
		mu.Unlock()
		if halt || ctx.Err() != nil {
			break
		}
		ready := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(ready) }) }
		prev = ready
		started++
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-slots }()
			defer release()
			r := func() {}
			if overlap {
				r = release
			}
			err := build(i, r)
			mu.Lock()
			errs[i] = err
			if stops(err) {
				stopped = true
			}
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	return errs, started
}

// WatchReady calls ready once the file at path exists, unless done
// closes first.
func WatchReady(path string, ready func(), done <-chan struct{}) {
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

// Prefixed is a writer of whole lines to w, each after prefix; the
// writers that share mu do not mix their lines. Flush it at the end.
func Prefixed(mu *sync.Mutex, w io.Writer, prefix string) *run.LineWriter {
	return &run.LineWriter{Line: func(l string) {
		// A progress bar redrawn in place: only its last state is a line.
		if j := strings.LastIndexByte(l, '\r'); j >= 0 {
			l = l[j+1:]
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s%s\n", prefix, l)
	}}
}
