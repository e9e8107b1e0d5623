package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestSetOverlaps: vmdeb build DIR builds its images as a set. The second
// image starts while the first writes its outputs, reuses the bootstrap
// the first saved, and writes its own outputs only once the first has
// finished (they take turns at that end). Read from the build logs' step
// times.
func TestSetOverlaps(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, stages, out, work := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	base := "suite: trixie\narchitecture: amd64\nkernel: none\nbootstrap: native\n"
	// The first image's outputs take a while: a second tarball besides its
	// tarball.
	cfgs := map[string]string{
		"a.yaml": "name: set-a\n" + base + "packages: [less]\noutputs:\n  - {type: tarball, path: a.tar.gz}\n  - {type: tarball, path: a-copy.tgz}\n",
		"b.yaml": "name: set-b\n" + base + "packages: [less, file]\noutputs:\n  - {type: tarball, path: b.tar.gz}\n",
	}
	for name, c := range cfgs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, ctx, "build", "--stage-cache", stages, "--outdir", out, "--workdir", work, dir)
	if r.code != 0 {
		t.Fatalf("the set failed (%d): %s\n%s", r.code, r.stderr, tail(r.stdout, 40))
	}
	assertClean(t, work)
	a, _ := steps(t, filepath.Join(out, "set-a.build.log"))
	b, bStart := steps(t, filepath.Join(out, "set-b.build.log"))
	logB, _ := os.ReadFile(filepath.Join(out, "set-b.build.log"))
	if !regexp.MustCompile(`stage cache: bootstrap +reused`).Match(logB) {
		t.Errorf("the second image did not reuse the first's bootstrap:\n%s", tail(string(logB), 40))
	}
	aOutputs, aEnd := a["tarball"], a["report"]
	bOutputs := b["tarball"]
	if aOutputs.IsZero() || aEnd.IsZero() || bStart.IsZero() || bOutputs.IsZero() {
		t.Fatalf("steps missing from the logs: a %v, b %v", a, b)
	}
	// Step times are to the second.
	if bStart.Before(aOutputs) {
		t.Errorf("the second image started (%s) before the first reached its outputs (%s)", bStart, aOutputs)
	}
	if !bStart.Before(aEnd) {
		t.Errorf("the second image started (%s) only once the first had ended (%s): no overlap", bStart, aEnd)
	}
	if bOutputs.Before(aEnd) {
		t.Errorf("the second image wrote its outputs (%s) while the first did (until %s)", bOutputs, aEnd)
	}
}

// steps are the start times of a build log's steps (a step run twice,
// its first), and that of its first step.
func steps(t *testing.T, log string) (map[string]time.Time, time.Time) {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	m, first := map[string]time.Time{}, time.Time{}
	for _, l := range regexp.MustCompile(`(?m)^==> (\S+) \[([^\]]+)\]$`).FindAllStringSubmatch(string(data), -1) {
		at, err := time.Parse(time.RFC3339, l[2])
		if err != nil {
			t.Fatalf("%s: %v", log, err)
		}
		if first.IsZero() {
			first = at
		}
		if _, ok := m[l[1]]; !ok {
			m[l[1]] = at
		}
	}
	return m, first
}
