package buildset

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
)

// errStop is the error of an interrupted build, which stops the set.
var errStop = errors.New("interrupted")

func stops(err error) bool { return errors.Is(err, errStop) }

// events is what fake builds of a set did, in order.
type events struct {
	mu sync.Mutex
	l  []string
}

func (e *events) add(s string) { e.mu.Lock(); e.l = append(e.l, s); e.mu.Unlock() }
func (e *events) index(s string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Index(e.l, s)
}

// Overlapping, the next image starts once the one before is ready (its
// base system in the cache), before it ends; one after the other, only
// once it ended.
func TestScheduleOverlap(t *testing.T) {
	for _, overlap := range []bool{true, false} {
		var ev events
		second := make(chan struct{})
		build := func(i int, ready func()) error {
			ev.add("start " + string(rune('0'+i)))
			if i == 0 {
				ready()
				select {
				case <-second:
				case <-time.After(300 * time.Millisecond):
				}
			} else {
				close(second)
			}
			ev.add("end " + string(rune('0'+i)))
			return nil
		}
		errs, started := Schedule(context.Background(), 2, overlap, build, stops)
		if started != 2 || errs[0] != nil || errs[1] != nil {
			t.Fatalf("overlap %v: started %d, errors %v", overlap, started, errs)
		}
		if s1, e0 := ev.index("start 1"), ev.index("end 0"); (s1 < e0) != overlap {
			t.Errorf("overlap %v: events %q", overlap, ev.l)
		}
	}
}

// Two at most at once: image 2 waits for an image to end even when image
// 1 is ready at once.
func TestScheduleTwoAtMost(t *testing.T) {
	var ev events
	build := func(i int, ready func()) error {
		ev.add("start " + string(rune('0'+i)))
		ready()
		if i < 2 {
			time.Sleep(200 * time.Millisecond)
		}
		ev.add("end " + string(rune('0'+i)))
		return nil
	}
	if _, started := Schedule(context.Background(), 3, true, build, stops); started != 3 {
		t.Fatalf("started %d", started)
	}
	firstEnd := min(ev.index("end 0"), ev.index("end 1"))
	if s2 := ev.index("start 2"); s2 < firstEnd {
		t.Errorf("a third image started while two ran: %q", ev.l)
	}
	if s1, e0 := ev.index("start 1"), ev.index("end 0"); s1 > e0 {
		t.Errorf("the second image waited for the first's end: %q", ev.l)
	}
}

// A slot freed by image 1 lets image 2 start while image 0 still runs.
func TestScheduleFreeSlot(t *testing.T) {
	var ev events
	build := func(i int, ready func()) error {
		ev.add("start " + string(rune('0'+i)))
		ready()
		if i == 0 {
			time.Sleep(300 * time.Millisecond)
		}
		ev.add("end " + string(rune('0'+i)))
		return nil
	}
	Schedule(context.Background(), 3, true, build, stops)
	if s2, e0 := ev.index("start 2"), ev.index("end 0"); s2 > e0 {
		t.Errorf("image 2 waited for image 0 with image 1 done: %q", ev.l)
	}
}

// A failed image starts the next; an interrupted one stops the set, and
// no image after it starts.
func TestScheduleFailureAndInterrupt(t *testing.T) {
	var ev events
	build := func(i int, ready func()) error {
		ev.add("start " + string(rune('0'+i)))
		switch i {
		case 0:
			return errors.New("failed")
		case 1:
			ready()
			time.Sleep(50 * time.Millisecond)
			return errStop
		case 2:
			// It waits for its turn while image 1 runs, and gets the
			// signal too.
			time.Sleep(200 * time.Millisecond)
			return errStop
		}
		return nil
	}
	errs, started := Schedule(context.Background(), 4, true, build, stops)
	// Image 2 starts while image 1 is still running (it was ready);
	// image 3 never does.
	if started != 3 || errs[0] == nil || !stops(errs[1]) {
		t.Fatalf("started %d, errors %v, events %q", started, errs, ev.l)
	}
	if ev.index("start 3") >= 0 {
		t.Errorf("an image started after the set was interrupted: %q", ev.l)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, started := Schedule(ctx, 3, true, build, stops); started != 0 {
		t.Errorf("a cancelled set started %d images", started)
	}
}

// The turn is one image's at a time: a second waits (its log says so)
// until the first's file is closed, and gives up when its context ends.
func TestWaitTurn(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "turn")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var term bytes.Buffer
	log := buildlog.New(nil, "", &term)
	first, err := waitTurn(context.Background(), lock, log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(term.String(), "wait") {
		t.Errorf("the first turn waited:\n%s", term.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := (Turn{Lock: lock}).Take(ctx, log); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a turn taken while another holds it: %v", err)
	}
	if !strings.Contains(term.String(), "==> wait") {
		t.Errorf("the wait is not a step of the log:\n%s", term.String())
	}
	got := make(chan error, 1)
	go func() {
		f, err := waitTurn(context.Background(), lock, log)
		if f != nil {
			f.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the turn was given while held: %v", err)
	case <-time.After(400 * time.Millisecond):
	}
	first.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the turn was not given once free")
	}
	if err := (Turn{Lock: lock}).Take(context.Background(), log); err != nil {
		t.Fatal(err)
	}
	turnFile.Close()
}

// Each whole line under the image's name; a line redrawn with \r keeps
// its last state; an unfinished line comes out on Flush; two writers do
// not mix their lines.
func TestPrefixWriter(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	a := Prefixed(&mu, &out, "a | ")
	b := Prefixed(&mu, &out, "b | ")
	a.Write([]byte("one\ntw"))
	b.Write([]byte("x\n"))
	a.Write([]byte("o\n10%\r50%\r100%\nend"))
	a.Flush()
	b.Flush()
	want := "a | one\nb | x\na | two\na | 100%\na | end\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// BaseReady writes the image's ready file, for the set to see.
func TestBaseReady(t *testing.T) {
	d, err := NewDir()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	a, b := d.Turn(0), d.Turn(1)
	if a.Lock != b.Lock || a.Ready == b.Ready {
		t.Fatalf("turns %+v, %+v: one lock, a ready file each", a, b)
	}
	if _, err := os.Stat(a.Lock); err != nil {
		t.Fatal(err)
	}
	a.BaseReady()
	if _, err := os.Stat(a.Ready); err != nil {
		t.Errorf("no ready file: %v", err)
	}
	if _, err := os.Stat(b.Ready); err == nil {
		t.Error("the other image's ready file written")
	}
}

// Yield lowers the priority of every thread; taking the turn brings it
// back when allowed (as root).
func TestYield(t *testing.T) {
	before, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if before != 20 { // the kernel's 20 - nice: nice 0
		t.Skip("the test process does not run at nice 0")
	}
	runtime.LockOSThread() // a thread that exists before Yield
	defer runtime.UnlockOSThread()
	if err := Yield(); err != nil {
		t.Fatal(err)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		if p, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-p != waitingNice {
			t.Errorf("thread %d at nice %d, want %d", tid, 20-p, waitingNice)
		}
	}
	err = setNice(0)
	if os.Geteuid() != 0 {
		if err == nil {
			t.Error("the priority raised without the right to")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := unix.Getpriority(unix.PRIO_PROCESS, 0); 20-p != 0 {
		t.Errorf("nice %d after the turn, want 0", 20-p)
	}
}

// A set's directory stays while any process of the set holds it (its
// vmdeb, an image's build) and goes with the next set once none does: its
// vmdeb was killed. Directories without an owner file are not a set's.
func TestSweep(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	other := filepath.Join(tmp, "vmdeb-set-other")
	os.Mkdir(other, 0o700)
	killed, err := NewDir()
	if err != nil {
		t.Fatal(err)
	}
	ownerFile.Close() // as if its vmdeb were killed
	ownerFile = nil
	held, err := NewDir() // sweeps killed
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(string(killed)); !os.IsNotExist(err) {
		t.Errorf("the killed set's directory is left: %v", err)
	}
	ownerFile.Close() // its vmdeb is killed, but an image's build holds it
	ownerFile = nil
	if err := held.Turn(0).Hold(); err != nil {
		t.Fatal(err)
	}
	build := ownerFile
	ownerFile = nil
	d, err := NewDir()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	for _, keep := range []string{string(held), other, string(d)} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s removed: %v", keep, err)
		}
	}
	build.Close() // the build ends too
	sweep(tmp)
	if _, err := os.Stat(string(held)); !os.IsNotExist(err) {
		t.Errorf("a set nobody holds is left: %v", err)
	}
	if _, err := os.Stat(string(d)); err != nil {
		t.Errorf("this set's directory removed while it holds it: %v", err)
	}
	if err := (Turn{Lock: filepath.Join(string(held), "turn")}).Hold(); err == nil {
		t.Error("Hold of a removed set's directory: no error")
	}
}
