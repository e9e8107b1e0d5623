package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentBuilds: two builds of the same config at once, sharing the
// native bootstrapper's package cache and an empty stage cache: both
// succeed, both outputs hold the same packages, and neither build's hook
// sees the other's mounts.
func TestConcurrentBuilds(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, debs, stages := t.TempDir(), t.TempDir(), t.TempDir()
	cfg := writeConfig(t, dir, `name: twin
suite: trixie
architecture: amd64
kernel: none
bootstrap: native
cache: `+debs+`
packages: [less]
customise: hook.sh
outputs:
  - {type: tarball, path: twin.tar.gz}
`, map[string]string{"hook.sh": "#!/bin/sh\nset -e\ncat /proc/self/mountinfo > \"$1/etc/mounts-seen\"\n" +
		// A mistake: files written into the build's own /run and /dev are lost.
		"echo lost > \"$1/run/vmdeb-lost\"\necho lost > \"$1/dev/vmdeb-lost\"\n"})
	outs := []string{t.TempDir(), t.TempDir()}
	works := []string{t.TempDir(), t.TempDir()}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = run(t, ctx, "build", "--stage-cache", stages, "--outdir", outs[i], "--workdir", works[i], cfg)
		}(i)
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("build %d failed: %s", i, r.stderr)
		}
		assertClean(t, works[i])
	}
	m0, _ := os.ReadFile(filepath.Join(outs[0], "twin.packages"))
	m1, _ := os.ReadFile(filepath.Join(outs[1], "twin.packages"))
	if len(m0) == 0 || string(m0) != string(m1) {
		t.Errorf("the two builds installed different packages:\n%s", diffLines(string(m0), string(m1)))
	}
	for i, r := range results {
		if !strings.Contains(r.stdout, "the hook wrote into the build's own mounts") || !strings.Contains(r.stdout, "/run/vmdeb-lost") || !strings.Contains(r.stdout, "/dev/vmdeb-lost") {
			t.Errorf("build %d does not report the hook's writes into /run and /dev:\n%s", i, r.stdout)
		}
		list, _ := exec.Command("tar", "-tzf", filepath.Join(outs[i], "twin.tar.gz")).Output()
		if strings.Contains(string(list), "vmdeb-lost") {
			t.Errorf("the image holds a file the hook wrote into a build mount")
		}
	}
	for i := range outs {
		seen, err := exec.Command("tar", "-xOzf", filepath.Join(outs[i], "twin.tar.gz"), "./etc/mounts-seen").Output()
		if err != nil {
			t.Fatalf("reading the hook's view of the mounts: %v", err)
		}
		if !strings.Contains(string(seen), works[i]) {
			t.Errorf("build %d's hook does not see its own mounts:\n%s", i, seen)
		}
		if other := works[1-i]; strings.Contains(string(seen), other) {
			t.Errorf("build %d's hook sees the other build's mounts (%s):\n%s", i, other, seen)
		}
	}
	// Both saved the same stages: one entry each, none half-written.
	l := run(t, ctx, "cache", "list", "--stage-cache", stages)
	if !strings.Contains(l.stdout, "2 entries") {
		t.Errorf("stage cache after two identical builds:\n%s", l.stdout)
	}
	if tmps, _ := filepath.Glob(filepath.Join(stages, ".tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary cache entries left: %v", tmps)
	}
}
