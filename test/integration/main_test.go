// Package integration runs vmdeb as a user does: real debootstrap against
// the host's mirror, real mksquashfs and xorriso, real qemu boots. It needs
// root and the Debian archive; `go test -short` skips it.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var vmdeb string // the binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmdeb-bin-")
	if err != nil {
		panic(err)
	}
	vmdeb = filepath.Join(dir, "vmdeb")
	// Static (no cgo), as make builds it: the builder VM runs this binary
	// on its own release's C library.
	gb := exec.Command("go", "build", "-o", vmdeb, "../../cmd/vmdeb")
	gb.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := gb.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building vmdeb: %v\n%s", err, out)
		os.Exit(1)
	}
	// Every build starts from nothing unless a test names a stage cache.
	os.Setenv("VMDEB_STAGE_CACHE", "off")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needRoot skips a test that builds images when it cannot: not root, or
// -short.
func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (skipped with -short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root")
	}
}

// repo is the repository's top directory.
func repo(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "../.."))
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs vmdeb with args and returns its exit status and output.
func run(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	return runCmd(t, exec.CommandContext(ctx, vmdeb, args...), "vmdeb "+strings.Join(args, " "))
}

// runCmd runs cmd, logs what it printed under what, and returns its exit
// status and output.
func runCmd(t *testing.T, cmd *exec.Cmd, what string) result {
	t.Helper()
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", what, err)
	}
	t.Logf("%s -> %d\n%s%s", what, r.code, tail(r.stdout, 30), tail(r.stderr, 30))
	return r
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// writeConfig writes a config (and its hook, if any) into a temp dir.
func writeConfig(t *testing.T, dir, yaml string, hooks map[string]string) string {
	t.Helper()
	for name, body := range hooks {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "image.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertClean checks that nothing of a build is left: no mount under the
// work directory, no process mentioning it, no leftover work directory.
func assertClean(t *testing.T, workParent string) {
	t.Helper()
	assertNoMountsOrProcesses(t, workParent)
	ents, _ := os.ReadDir(workParent)
	for _, e := range ents {
		t.Errorf("work directory left behind: %s", filepath.Join(workParent, e.Name()))
	}
}

// assertNoMountsOrProcesses checks that no mount under the work directory
// and no process mentioning it remains.
func assertNoMountsOrProcesses(t *testing.T, workParent string) {
	t.Helper()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, workParent) {
			t.Errorf("mount left behind: %s", l)
		}
	}
	out, _ := exec.Command("findmnt", "-rn", "-o", "TARGET").Output()
	if strings.Contains(string(out), workParent) {
		t.Errorf("findmnt shows mounts under %s:\n%s", workParent, out)
	}
	// Processes: any whose command line or root mentions the work dir.
	waitNoProcess(t, "processes of the build left running", func(cmdline, root string) bool {
		return strings.Contains(cmdline, workParent) || strings.HasPrefix(root, workParent)
	})
}

// waitNoProcess waits up to 5 s until no process matches (by its command
// line, NUL-separated, and its root directory), and reports those left.
func waitNoProcess(t *testing.T, what string, match func(cmdline, root string) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil {
				continue
			}
			root, _ := os.Readlink(filepath.Join("/proc", e.Name(), "root"))
			if match(string(cl), root) {
				left = append(left, e.Name()+": "+strings.ReplaceAll(string(cl), "\x00", " "))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s:\n%s", what, strings.Join(left, "\n"))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// proof skips a test that proves more than CI has time for unless it runs
// from its make target (make proof-NAME sets VMDEB_PROOF=NAME).
func proof(t *testing.T, target string) {
	t.Helper()
	needRoot(t)
	if os.Getenv("VMDEB_PROOF") != target {
		t.Skipf("a proof, run by make %s", target)
	}
}
