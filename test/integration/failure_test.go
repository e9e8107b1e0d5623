package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// small is a quick build: no kernel, a tarball, so a failure test spends
// its time on the failure, not on the image.
const small = `name: small
suite: trixie
architecture: amd64
kernel: none
customise: hook.sh
outputs:
  - {type: tarball, path: small.tar.gz}
`

// TestHookFailureFailsBuild: a hook that exits 3 fails the build with its
// name and status, and leaves nothing behind.
func TestHookFailureFailsBuild(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir, work := t.TempDir(), t.TempDir()
	cfg := writeConfig(t, dir, small, map[string]string{"hook.sh": "#!/bin/sh\necho hook ran on \"$1\" for $VMDEB_ARCH\nexit 3\n"})
	r := run(t, ctx, "build", "--workdir", work, cfg)
	if r.code != 1 {
		t.Errorf("exit status %d, want 1", r.code)
	}
	for _, want := range []string{"stage customise failed", "hook.sh", "exit status 3", "hook ran on", "full log:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error output lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "small.tar.gz")); err == nil {
		t.Error("an output exists after a failed build")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*vmdeb-tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary outputs left: %v", leftovers)
	}
	assertClean(t, work)
}

// TestBadInput: bad configs and a missing tool are refused with exit
// status 2, a message naming file, line and key, and nothing created.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, strings.Replace(small, "suite: trixie", "suite: trixy", 1), map[string]string{"hook.sh": "#!/bin/sh\n"})
	r := run(t, context.Background(), "check", cfg)
	if r.code != 2 || !strings.Contains(r.stderr, cfg+":2: suite: unknown suite \"trixy\"") {
		t.Errorf("check: status %d, %s", r.code, r.stderr)
	}
	r = run(t, context.Background(), "build", cfg)
	if r.code != 2 {
		t.Errorf("build of a bad config: status %d", r.code)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("a refused build created files: %v", ents)
	}
	// The same for scripts: the option and its line in JSON, and no
	// report file for a build refused before it starts.
	for _, args := range [][]string{{"check", "--json", cfg}, {"build", "--json", "--report", filepath.Join(dir, "report.json"), cfg}} {
		r = run(t, context.Background(), args...)
		var doc struct {
			Kind  string
			OK    bool
			Error struct {
				Kind, File, Option string
				Line               int
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Errorf("%s: not JSON: %v", args[0], err)
		}
		if r.code != 2 || doc.Kind != args[0] || doc.OK || doc.Error.Kind != "config" || doc.Error.File != cfg || doc.Error.Line != 2 || doc.Error.Option != "suite" {
			t.Errorf("%s --json: status %d, %+v", args[0], r.code, doc)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("a refused build created files: %v", ents)
	}

	// A host without debootstrap: named with its package, before anything.
	// vmdeb looks in the sbin directories whatever the caller's PATH, so
	// the program is hidden in a private mount namespace.
	if os.Geteuid() != 0 {
		t.Log("a host without debootstrap: not tried (hiding it takes root)")
		return
	}
	cfg = writeConfig(t, dir, small, nil)
	c := exec.Command("unshare", "--mount", "sh", "-c",
		`for p in /usr/sbin /sbin /usr/bin /bin /usr/local/sbin /usr/local/bin; do [ -e $p/debootstrap ] && mount --bind /dev/null $p/debootstrap; done; exec "$@"`,
		"sh", vmdeb, "check", "--offline", cfg)
	o, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(o), "debootstrap (package debootstrap)") {
		t.Errorf("missing debootstrap: %v\n%s", err, o)
	}
}

// TestHookDaemonAndTimeout: a daemon a hook leaves running is killed at
// teardown, not left on the host; a hook that hangs is stopped at
// hook-timeout and fails the build.
func TestHookDaemonAndTimeout(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, work := t.TempDir(), t.TempDir()
	marker := "vmdeb-test-daemon-" + filepath.Base(dir)
	native := strings.Replace(small, "kernel: none\n", "kernel: none\nbootstrap: native\n", 1)
	cfg := writeConfig(t, dir, native, map[string]string{"hook.sh": "#!/bin/sh\n" +
		// One daemon on the host side, one inside the chroot.
		"(exec -a " + marker + " sleep 1000) </dev/null >/dev/null 2>&1 &\n" +
		"chroot \"$1\" sh -c '(exec -a " + marker + " sleep 1000) </dev/null >/dev/null 2>&1 &'\nexit 0\n"})
	r := run(t, ctx, "build", "--workdir", work, cfg)
	if r.code != 0 {
		t.Fatalf("build failed: %s", r.stderr)
	}
	time.Sleep(time.Second)
	if out, _ := exec.Command("pgrep", "-f", marker).Output(); len(out) > 0 {
		t.Errorf("the hook's daemons outlived the build: pids %s", out)
		exec.Command("pkill", "-f", marker).Run()
	}
	assertClean(t, work)

	dir2 := t.TempDir()
	cfg = writeConfig(t, dir2, native+"hook-timeout: 5s\n", map[string]string{"hook.sh": "#!/bin/sh\nsleep 600\n"})
	start := time.Now()
	r = run(t, ctx, "build", "--workdir", work, cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "did not finish within 5s") {
		t.Errorf("hanging hook: status %d: %s", r.code, r.stderr)
	}
	if time.Since(start) > 10*time.Minute {
		t.Error("the hook timeout did not stop the build")
	}
	assertClean(t, work)
}
