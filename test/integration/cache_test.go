package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStageCache: a build killed while it writes a cache entry leaves none
// that a later build uses; a full build keeps its bootstrap and package
// stages; after a hook-only change the rebuild reuses both, runs the new
// hook, and its image holds the same files as a full build of that config.
func TestStageCache(t *testing.T) {
	needRoot(t)
	t.Parallel() // four builds of the live example: overlap them with the others
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir, out, work, cache := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	copyExamples(t, dir)
	cfg := filepath.Join(dir, "live-minimal.yaml")
	hook := filepath.Join(dir, "hooks/minimal.sh")
	orig, _ := os.ReadFile(hook)
	setHook := func(mark string) {
		data := string(orig) + "echo " + mark + " > \"$rootfs/etc/vmdeb-cache-test\"\n"
		if err := os.WriteFile(hook, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	reportFile := filepath.Join(t.TempDir(), "report.json")
	build := func(args ...string) result {
		a := append([]string{"build", "--stage-cache", cache, "--outdir", out, "--workdir", work, "--report", reportFile}, args...)
		return run(t, ctx, append(a, cfg)...)
	}
	iso := filepath.Join(out, "debian-live-minimal-amd64.iso")

	// 1. Killed while saving the bootstrap stage.
	setHook("one")
	cmd := exec.CommandContext(ctx, vmdeb, "build", "--stage-cache", cache, "--outdir", out, "--workdir", work, cfg)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sawTemp := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "stage cache: saving bootstrap") {
			// Kill as soon as the entry's temporary directory appears.
			for i := 0; i < 200 && !sawTemp; i++ {
				tmps, _ := filepath.Glob(filepath.Join(cache, ".tmp-*"))
				sawTemp = len(tmps) > 0
				if !sawTemp {
					time.Sleep(5 * time.Millisecond)
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	cmd.Wait()
	if !sawTemp {
		t.Fatal("never saw the bootstrap stage being saved")
	}
	if complete, _ := filepath.Glob(filepath.Join(cache, "*", "entry.json")); len(complete) > 0 {
		t.Logf("the save finished before the kill landed: %v", complete)
	}

	// 2. Full build (nothing usable in the cache), hook "one".
	r := build()
	if r.code != 0 {
		t.Fatalf("full build failed: %s", r.stderr)
	}
	assertClean(t, work)
	if !strings.Contains(r.stdout, "stage cache: bootstrap saved") || !strings.Contains(r.stdout, "stage cache: packages saved") {
		t.Errorf("the full build did not save its stages:\n%s", r.stdout)
	}
	if tmps, _ := filepath.Glob(filepath.Join(cache, ".tmp-*")); len(tmps) > 0 {
		t.Errorf("the killed build's half-written entry is still there: %v", tmps)
	}
	if got := imageFile(t, iso, "etc/vmdeb-cache-test"); got != "one\n" {
		t.Errorf("hook one's mark: %q", got)
	}
	full := imageListing(t, iso)
	cold := squashfsBlocks(t, reportFile)
	if cold.Reused != 0 || cold.Compressed < 1000 || cold.Blocks < cold.Compressed {
		t.Errorf("the full build's squashfs blocks (the block cache empty): %+v", cold)
	}

	// 3. Hook changed: bootstrap and packages reused, the new hook ran.
	setHook("two")
	r = build()
	if r.code != 0 {
		t.Fatalf("rebuild failed: %s", r.stderr)
	}
	assertClean(t, work)
	for _, want := range []string{"stage cache: bootstrap reused", "stage cache: packages  reused"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rebuild output lacks %q:\n%s", want, r.stdout)
		}
	}
	if log, _ := os.ReadFile(filepath.Join(out, "debian-live-minimal.build.log")); strings.Contains(string(log), "Setting up ") {
		t.Error("the rebuild installed packages again")
	}
	if got := imageFile(t, iso, "etc/vmdeb-cache-test"); got != "two\n" {
		t.Errorf("the changed hook's mark: %q", got)
	}
	// Only the blocks the hook changed are compressed: its mark's
	// fragment, and what a changed file shifts in the fragments after it.
	if b := squashfsBlocks(t, reportFile); b.Compressed < 1 || b.Compressed > 10 || b.Reused < cold.Compressed-10 {
		t.Errorf("the hook-only rebuild's squashfs blocks: %+v (the full build's: %+v)", b, cold)
	}

	// 4. Back to hook "one", from the cache: the same files as the full build.
	setHook("one")
	r = build()
	if r.code != 0 {
		t.Fatalf("rebuild failed: %s", r.stderr)
	}
	if !strings.Contains(r.stdout, "packages  reused") {
		t.Errorf("the rebuild did not reuse the packages stage:\n%s", r.stdout)
	}
	if inc := imageListing(t, iso); inc != full {
		t.Errorf("the incremental image's files differ from the full build's:\n%s", diffLines(full, inc))
	}
	if b := squashfsBlocks(t, reportFile); b.Compressed > 10 || b.Reused < cold.Compressed-10 {
		t.Errorf("hook one's image is in the block cache (but for what a build writes afresh), yet: %+v (the full build's: %+v)", b, cold)
	}

	// 5. The cache as a user sees it, and pruning it.
	l := run(t, ctx, "cache", "list", "--stage-cache", cache)
	if l.code != 0 || !strings.Contains(l.stdout, "debian-live-minimal") || !strings.Contains(l.stdout, "2 entries") {
		t.Errorf("cache list:\n%s%s", l.stdout, l.stderr)
	}
	p := run(t, ctx, "cache", "prune", "--all", "--stage-cache", cache)
	if p.code != 0 || !strings.Contains(p.stdout, "2 entries removed") {
		t.Errorf("cache prune --all:\n%s%s", p.stdout, p.stderr)
	}
}

// blocks is a build report's record of its squashfs's blocks.
type blocks struct {
	Used                                bool
	Reason                              string
	Blocks, Reused, Compressed, Damaged int
}

// squashfsBlocks reads what the block cache did for a build's one
// squashfs from its --report.
func squashfsBlocks(t *testing.T, report string) blocks {
	t.Helper()
	var rep struct {
		Cache struct {
			Squashfs []blocks `json:"squashfs_blocks"`
		}
	}
	data, err := os.ReadFile(report)
	if err == nil {
		err = json.Unmarshal(data, &rep)
	}
	if err != nil || len(rep.Cache.Squashfs) != 1 || !rep.Cache.Squashfs[0].Used {
		t.Fatalf("build report: want one squashfs made through the block cache; %v\n%s", err, data)
	}
	return rep.Cache.Squashfs[0]
}

// imageSquashfs extracts the live ISO's squashfs into a temp dir.
func imageSquashfs(t *testing.T, iso string) string {
	t.Helper()
	sq := filepath.Join(t.TempDir(), "filesystem.squashfs")
	if o, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/live/filesystem.squashfs", sq).CombinedOutput(); err != nil {
		t.Fatalf("extracting the squashfs: %v\n%s", err, o)
	}
	return sq
}

// imageFile reads one file of the live image.
func imageFile(t *testing.T, iso, path string) string {
	t.Helper()
	sq := imageSquashfs(t, iso)
	d := filepath.Join(t.TempDir(), "x")
	if o, err := exec.Command("unsquashfs", "-no-progress", "-d", d, sq, path).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs %s: %v\n%s", path, err, o)
	}
	b, _ := os.ReadFile(filepath.Join(d, path))
	return string(b)
}

// imageListing is the image's files with their type, permissions and
// owners (sizes and dates left out: salted password hashes and the
// initramfs's compression may differ between builds).
func imageListing(t *testing.T, iso string) string {
	t.Helper()
	o, err := exec.Command("unsquashfs", "-lln", imageSquashfs(t, iso)).Output()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v", err)
	}
	var b strings.Builder
	for _, l := range strings.Split(string(o), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasPrefix(f[5], "squashfs-root") {
			continue
		}
		b.WriteString(f[0] + " " + f[1] + " " + strings.Join(f[5:], " ") + "\n")
	}
	return b.String()
}

// diffLines shows the lines only one of a and b has.
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var d []string
	for l := range ma {
		if !mb[l] {
			d = append(d, "- "+l)
		}
	}
	for l := range mb {
		if !ma[l] {
			d = append(d, "+ "+l)
		}
	}
	if len(d) > 40 {
		d = append(d[:40], "...")
	}
	return strings.Join(d, "\n")
}
