package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }

func TestPrivateDir(t *testing.T) {
	parent := t.TempDir()
	d, err := PrivateDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(d); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v", d, fi, err)
	}
	if d2, err := PrivateDir(parent); err != nil || d2 != d {
		t.Errorf("second call: %s %v", d2, err)
	}

	// Planted by someone else: a link, or a directory open to others.
	victim := t.TempDir()
	p2 := t.TempDir()
	os.Symlink(victim, filepath.Join(p2, filepath.Base(d)))
	if _, err := PrivateDir(p2); err == nil || !strings.Contains(err.Error(), "not a directory of vmdeb's") {
		t.Errorf("a link at the private directory: %v", err)
	}
	p3 := t.TempDir()
	os.Mkdir(filepath.Join(p3, filepath.Base(d)), 0o777)
	os.Chmod(filepath.Join(p3, filepath.Base(d)), 0o777)
	if _, err := PrivateDir(p3); err == nil || !strings.Contains(err.Error(), "mode 777") {
		t.Errorf("a world-writable private directory: %v", err)
	}

	// A parent that others may write to without the sticky bit.
	p4 := filepath.Join(t.TempDir(), "shared")
	os.Mkdir(p4, 0o777)
	os.Chmod(p4, 0o777)
	if _, err := PrivateDir(filepath.Join(p4, "work")); err == nil || !strings.Contains(err.Error(), "can be changed by another user") {
		t.Errorf("an unsafe ancestor: %v", err)
	}
	unix.Chmod(p4, 0o1777)
	if _, err := PrivateDir(p4); err != nil {
		t.Errorf("a sticky shared parent (like /var/tmp): %v", err)
	}
}

// TestSweepLooksOnlyInThePrivateDir: a vmdeb-* directory planted beside
// it, with a free lock, is not the builder's and is left alone.
func TestSweepLooksOnlyInThePrivateDir(t *testing.T) {
	parent := t.TempDir()
	planted := filepath.Join(parent, "vmdeb-planted-1")
	os.MkdirAll(filepath.Join(planted, "data"), 0o755)
	os.WriteFile(filepath.Join(planted, lockName), nil, 0o644)
	os.WriteFile(filepath.Join(planted, "data", "f"), []byte("x"), 0o644)
	private, err := PrivateDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(private, "vmdeb-stale-1")
	os.MkdirAll(filepath.Join(stale, "rootfs"), 0o755)
	os.WriteFile(filepath.Join(stale, lockName), nil, 0o600)
	sweepStale(private, buildlog.Discard())
	if _, err := os.Stat(filepath.Join(planted, "data", "f")); err != nil {
		t.Errorf("the sweep removed a directory outside the private one: %v", err)
	}
	if _, err := os.Lstat(stale); err == nil {
		t.Errorf("the sweep left a stale work directory of its own")
	}
}

// TestRemoveAllRacingSwapper: while the work directory is removed, an
// attacker swaps its subdirectories for links to a victim directory over
// and over. Not one victim file may go.
func TestRemoveAllRacingSwapper(t *testing.T) {
	victim := t.TempDir()
	for i := 0; i < 100; i++ {
		os.WriteFile(filepath.Join(victim, fmt.Sprint(i)), []byte("v"), 0o644)
	}
	for round := 0; round < 5; round++ {
		work := filepath.Join(t.TempDir(), "w")
		for d := 0; d < 20; d++ {
			sub := filepath.Join(work, fmt.Sprint("d", d))
			os.MkdirAll(sub, 0o755)
			for i := 0; i < 20; i++ {
				os.WriteFile(filepath.Join(sub, fmt.Sprint(i)), nil, 0o644)
			}
		}
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			for n := 0; !stop.Load(); n++ {
				sub := filepath.Join(work, fmt.Sprint("d", n%20))
				tmp := sub + ".x"
				if os.Rename(sub, tmp) == nil {
					os.Symlink(victim, sub)
				}
			}
		}()
		err := chroot.RemoveAll(work)
		stop.Store(true)
		<-done
		_ = err // the swapper may make entries reappear; what matters is below
		ents, _ := os.ReadDir(victim)
		if len(ents) != 100 {
			t.Fatalf("round %d: %d of 100 victim files left", round, len(ents))
		}
	}
}

func TestCheckPrivateDirMakesNothing(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "not", "yet")
	if err := CheckPrivateDir(parent); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(parent)); err == nil {
		t.Errorf("CheckPrivateDir made %s", filepath.Dir(parent))
	}
	p := t.TempDir()
	os.Symlink(t.TempDir(), filepath.Join(p, fmt.Sprintf("vmdeb-%d", os.Geteuid())))
	if err := CheckPrivateDir(p); err == nil || !strings.Contains(err.Error(), "not a directory of vmdeb's") {
		t.Errorf("a link at the private directory: %v", err)
	}
}

// TestSweepSparesWorkBeingLocked: a build's sweep never removes the work
// directory another build is making, in the moment between its lock's
// creation and its flock (the lock takes its name only once held).
func TestSweepSparesWorkBeingLocked(t *testing.T) {
	private := t.TempDir()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				sweepStale(private, buildlog.Discard())
			}
		}
	}()
	var held []*os.File
	for i := 0; i < 300; i++ {
		work, err := os.MkdirTemp(private, "vmdeb-race-")
		if err != nil {
			t.Fatal(err)
		}
		f, err := lockWork(work)
		if err != nil {
			t.Fatalf("lock %d: %v", i, err)
		}
		held = append(held, f)
		if err := os.Mkdir(filepath.Join(work, "rootfs"), 0o755); err != nil {
			t.Fatalf("a concurrent sweep removed a locked work directory (%d): %v", i, err)
		}
	}
	close(stop)
	<-done
	for _, f := range held {
		f.Close()
	}
	// Unlocked now: the next sweep removes them all.
	sweepStale(private, buildlog.Discard())
	if ents, _ := os.ReadDir(private); len(ents) != 0 {
		t.Errorf("%d work directories left after their builds ended", len(ents))
	}
}

// TestSweepNewLock: a work directory whose build was killed while locking
// it (its lock still under the new name) is removed once old, not before.
func TestSweepNewLock(t *testing.T) {
	private := t.TempDir()
	work := filepath.Join(private, "vmdeb-killed-1")
	os.MkdirAll(filepath.Join(work, "rootfs"), 0o755)
	lock := filepath.Join(work, newLockName)
	os.WriteFile(lock, nil, 0o600)
	sweepStale(private, buildlog.Discard())
	if _, err := os.Stat(work); err != nil {
		t.Fatalf("a fresh work directory being locked was removed: %v", err)
	}
	old := time.Now().Add(-newLockAge - time.Minute)
	os.Chtimes(lock, old, old)
	sweepStale(private, buildlog.Discard())
	if _, err := os.Lstat(work); err == nil {
		t.Error("an old work directory whose build died while locking it was left")
	}
}
