package buildervm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOutcome(t *testing.T) {
	j := &Job{Scratch: 100 << 20, BootTimeout: time.Minute}
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := &watcher{ready: make(chan struct{})}
	w.line("last console line")
	// No status: the guest's own error, qemu's error and its stderr.
	write("error", "mount vmdeb0 failed\n")
	_, err := j.outcome(Result{}, w, dir, time.Now(), errors.New("exit status 1"), "qemu-system-x86_64: boom\n")
	for _, want := range []string{"the builder VM failed: mount vmdeb0 failed (qemu: exit status 1)", "qemu said:\n    qemu-system-x86_64: boom", "last console lines:\n"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no status: error lacks %q: %v", want, err)
		}
	}
	// The guest's status and the scratch disk's peak, 99% full.
	write("status", "3\n")
	write("scratch-peak-kib", "101376\n")
	res, err := j.outcome(Result{}, w, dir, time.Now(), nil, "")
	if err != nil || res.Status != 3 || res.ScratchPeak != 99<<20 || !res.ScratchFull {
		t.Errorf("outcome = %+v, %v", res, err)
	}
}
