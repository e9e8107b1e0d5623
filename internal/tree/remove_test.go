package tree

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// victimDir makes a directory of n files that no removal may touch and
// returns it with a check that every file is still there, unchanged.
func victimDir(t *testing.T, n int) (string, func() []string) {
	t.Helper()
	d := filepath.Join(t.TempDir(), "victim")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	body := func(i int) []byte { return []byte(fmt.Sprintf("victim file %d\n", i)) }
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), body(i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d, func() []string {
		var lost []string
		for i := 0; i < n; i++ {
			p := filepath.Join(d, fmt.Sprintf("f%03d", i))
			if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, body(i)) {
				lost = append(lost, p)
			}
		}
		return lost
	}
}

// TestHostileRemoveAllLinksInside: links inside the tree, to a directory
// and to a file elsewhere, are removed as links; what they point to stays.
func TestHostileRemoveAllLinksInside(t *testing.T) {
	victim, check := victimDir(t, 10)
	work := filepath.Join(t.TempDir(), "work")
	os.MkdirAll(filepath.Join(work, "a/b"), 0o755)
	os.Symlink(victim, filepath.Join(work, "a/dirlink"))
	os.Symlink(filepath.Join(victim, "f000"), filepath.Join(work, "a/b/filelink"))
	os.Symlink(victim, filepath.Join(work, "a/b/c"))
	if err := RemoveAll(work); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(work); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there: %v", work, err)
	}
	if lost := check(); len(lost) > 0 {
		t.Errorf("RemoveAll deleted or changed files a link inside the tree pointed to: %v", lost)
	}
	// The directory itself a link: the link goes, the victim stays.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(victim, link)
	if err := RemoveAll(link); err != nil {
		t.Fatal(err)
	}
	if lost := check(); len(lost) > 0 {
		t.Errorf("RemoveAll of a link deleted what it points to: %v", lost)
	}
}

// TestHostileRemoveAllSwappedForLinks plays the neighbour who owns a
// directory that root removes (a planted vmdeb-* work directory): while
// the removal runs, each subdirectory, holding files named as the
// victim's are, is swapped again and again with a link to the victim
// directory (renameat2 RENAME_EXCHANGE, atomic). A walk that lists a
// path and then removes path/name follows the link and deletes the
// victim's files; the victim must keep every file.
func TestHostileRemoveAllSwappedForLinks(t *testing.T) {
	victim, check := victimDir(t, 300)
	base := t.TempDir()
	const pairs = 8
	deadline := time.Now().Add(4 * time.Second)
	rounds := 0
	for ; rounds < 50 && time.Now().Before(deadline); rounds++ {
		work := filepath.Join(base, fmt.Sprintf("vmdeb-planted-%d", rounds))
		for i := 0; i < pairs; i++ {
			sub := filepath.Join(work, fmt.Sprintf("d%02d", i))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			for j := 0; j < 300; j++ {
				os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", j)), nil, 0o644)
			}
			if err := os.Symlink(victim, filepath.Join(work, fmt.Sprintf("l%02d", i))); err != nil {
				t.Fatal(err)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for i := 0; i < pairs; i++ {
					select {
					case <-stop:
						return
					default:
					}
					unix.Renameat2(unix.AT_FDCWD, filepath.Join(work, fmt.Sprintf("d%02d", i)),
						unix.AT_FDCWD, filepath.Join(work, fmt.Sprintf("l%02d", i)), unix.RENAME_EXCHANGE)
				}
			}
		}()
		// The walk may fail while the tree changes under it (a directory
		// turned into a link as it was about to be removed); it must not
		// follow a link.
		RemoveAll(work)
		close(stop)
		wg.Wait()
		if lost := check(); len(lost) > 0 {
			t.Fatalf("round %d: RemoveAll followed a swapped-in link and deleted %d of the victim's 300 files (e.g. %s)", rounds, len(lost), lost[0])
		}
		// Once nobody interferes, the same call finishes the job.
		if err := RemoveAll(work); err != nil {
			t.Fatalf("round %d: removing what was left: %v", rounds, err)
		}
		if _, err := os.Lstat(work); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("round %d: %s is still there", rounds, work)
		}
	}
	t.Logf("%d rounds, victim intact", rounds)
}
