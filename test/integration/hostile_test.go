package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The smallest build: native bootstrapper, minbase, no kernel, a tarball.
const smallConfig = `name: hostile
suite: trixie
architecture: amd64
kernel: none
bootstrap: native
outputs:
  - {type: tarball, path: hostile.tar.gz}
`

// sharedDir is a directory like /var/tmp: root's, mode 1777, where any
// user may create entries.
func sharedDir(t *testing.T, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// victimDir is root's directory of files an attacker points links at.
func victimDir(t *testing.T) (string, map[string]string) {
	t.Helper()
	d := t.TempDir()
	want := map[string]string{}
	for _, n := range []string{"log", "manifest", "sums", "tar", "tartmp", "tarext", "logtmp"} {
		body := "victim file " + n + "\n"
		if err := os.WriteFile(filepath.Join(d, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		want[n] = body
	}
	return d, want
}

func assertVictims(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(want) {
		t.Errorf("victim directory holds %d entries, want %d", len(ents), len(want))
	}
	for n, body := range want {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || string(got) != body {
			t.Errorf("victim file %s changed: %q %v", n, got, err)
		}
	}
}

// attacker runs a shell script as the unprivileged test user.
func attacker(t *testing.T, ctx context.Context, uid, gid int, script string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups", "--", "sh", "-ec", script)
	if r := runCmd(t, cmd, "attacker: "+script); r.code != 0 {
		t.Fatalf("the attacker's script failed: %s", r.stderr)
	}
}

// TestHostileNeighbour: another user of the machine prepares the shared
// work and output directories — a vmdeb-* directory with a free lock,
// links at the builder's private directory, at every final and temporary
// output name — and a second build of the same output starts while the
// first runs. Root writes and deletes nothing of the attacker's or
// through the links; the second build fails at once naming the first.
func TestHostileNeighbour(t *testing.T) {
	uid, gid, _ := unprivileged(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cfg := writeConfig(t, t.TempDir(), smallConfig, nil)
	work, out := sharedDir(t, "hostile-work-"), sharedDir(t, "hostile-out-")
	victim, want := victimDir(t)
	private := filepath.Join(work, "vmdeb-0")
	attacker(t, ctx, uid, gid, fmt.Sprintf(`cd %s
mkdir -p vmdeb-planted-1/data
: > vmdeb-planted-1/.vmdeb-lock
for i in $(seq 50); do echo mine > vmdeb-planted-1/data/$i; done
ln -s %s vmdeb-planted-1/victim`, work, victim))

	// Links at the final names: refused by check and build, naming them.
	attacker(t, ctx, uid, gid, fmt.Sprintf("cd %s\nln -s %s/tar hostile.tar.gz\nln -s %s/log hostile.build.log", out, victim, victim))
	for _, args := range [][]string{{"check", "--offline", "--outdir", out, cfg}, {"build", "--workdir", work, "--outdir", out, cfg}} {
		r := run(t, ctx, args...)
		if r.code != 2 || !strings.Contains(r.stderr, filepath.Join(out, "hostile.tar.gz")+" is a symbolic link") ||
			!strings.Contains(r.stderr, filepath.Join(out, "hostile.build.log")+" is a symbolic link") {
			t.Errorf("vmdeb %s with links at the output and log names: want status 2 naming both, got %d: %s", args[0], r.code, r.stderr)
		}
	}
	assertVictims(t, victim, want)
	attacker(t, ctx, uid, gid, fmt.Sprintf("rm %s/hostile.tar.gz %s/hostile.build.log", out, out))

	// A link where the builder's private work directory goes.
	attacker(t, ctx, uid, gid, fmt.Sprintf("ln -s %s %s", victim, private))
	r := run(t, ctx, "build", "--workdir", work, "--outdir", out, cfg)
	if r.code == 0 || !strings.Contains(r.stderr, private+" is not a directory of vmdeb's") {
		t.Errorf("a link at the private work directory: want a refusal naming %s, got %d: %s", private, r.code, r.stderr)
	}
	assertVictims(t, victim, want)
	attacker(t, ctx, uid, gid, "rm "+private)

	// Links at every temporary name an earlier vmdeb used.
	attacker(t, ctx, uid, gid, fmt.Sprintf(`cd %[1]s
ln -s %[2]s/manifest .hostile.packages.vmdeb-tmp
ln -s %[2]s/sums .SHA256SUMS.vmdeb-tmp
ln -s %[2]s/tartmp .hostile.tar.gz.vmdeb-tmp
ln -s %[2]s/tarext .hostile.tar.gz.vmdeb-tmp.tar.gz
ln -s %[2]s/logtmp .hostile.build.log.vmdeb-tmp`, out, victim))
	first := startCmd(t, exec.CommandContext(ctx, vmdeb, "build", "--workdir", work, "--outdir", out, cfg))
	if !first.waitFor("==> bootstrap", 5*time.Minute) {
		first.cmd.Process.Kill()
		first.cmd.Wait()
		t.Fatalf("the first build never started:\n%s", first.output())
	}
	// The same output at once: refused before it touches anything.
	ctx2, cancel2 := context.WithTimeout(ctx, 3*time.Minute)
	start := time.Now()
	second := run(t, ctx2, "build", "--workdir", t.TempDir(), "--outdir", out, cfg)
	cancel2()
	if second.code == 0 || !strings.Contains(second.stderr, fmt.Sprintf("PID %d", first.cmd.Process.Pid)) || !strings.Contains(second.stderr, "hostile.tar.gz") {
		t.Errorf("a second build of the same output: want a failure naming the output and PID %d, got %d after %s: %s",
			first.cmd.Process.Pid, second.code, time.Since(start).Round(time.Second), second.stderr)
	}
	err := first.cmd.Wait()
	if err != nil {
		t.Fatalf("the first build failed (%v):\n%s", err, tail(first.output(), 40))
	}

	assertVictims(t, victim, want)
	if ents, _ := os.ReadDir(filepath.Join(work, "vmdeb-planted-1", "data")); len(ents) != 50 {
		t.Errorf("the sweep deleted the other user's directory: %d of 50 files left", len(ents))
	}
	for _, n := range []string{"hostile.tar.gz", "hostile.packages", "SHA256SUMS", "hostile.build.log"} {
		fi, err := os.Lstat(filepath.Join(out, n))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: want a regular file, got %v %v", n, fi, err)
		}
	}
	log, _ := os.ReadFile(filepath.Join(out, "hostile.build.log"))
	if bytes.IndexByte(log, 0) >= 0 || !strings.Contains(string(log), "==> bootstrap") || !strings.Contains(string(log), "==> report") {
		t.Errorf("the first build's log was truncated or overwritten by the second:\n%q", tail(string(log), 5))
	}
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if !strings.Contains(string(sums), "  hostile.tar.gz\n") {
		t.Errorf("SHA256SUMS does not list the tarball:\n%s", sums)
	}
	assertNoMountsOrProcesses(t, work)
	if _, err := os.Lstat(private); err == nil {
		t.Errorf("the private work directory %s is left behind", private)
	}
}

// TestNamespaceMarkerFromCaller: the variables vmdeb marks its namespaced
// build process with, set by the caller, must not make vmdeb skip its
// namespaces: a process outside the build survives, and the host's root
// mount keeps its propagation.
//
// On code that trusts the variable this test makes its own process kill
// every process it may signal: run it on such code only inside
// `unshare --pid --mount --fork --mount-proc --propagation slave`.
func TestNamespaceMarkerFromCaller(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cfg := writeConfig(t, t.TempDir(), smallConfig, nil)
	out, work := t.TempDir(), t.TempDir()
	bystander := exec.Command("sleep", "3600")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	go func() { bystander.Wait(); close(gone) }()
	defer bystander.Process.Kill()
	before := rootPropagation(t)
	for _, env := range [][]string{{"VMDEB_IN_NAMESPACE=1"}, {"VMDEB_IN_NAMESPACE=1", "VMDEB_USERNS=1"}} {
		cmd := exec.CommandContext(ctx, vmdeb, "build", "--workdir", work, "--outdir", out, cfg)
		cmd.Env = append(os.Environ(), env...)
		b := startCmd(t, cmd)
		if !b.waitFor("==> bootstrap", 5*time.Minute) {
			b.cmd.Process.Kill()
			b.cmd.Wait()
			t.Fatalf("%v: the build never started:\n%s", env, b.output())
		}
		b.cmd.Process.Signal(syscall.SIGTERM)
		b.cmd.Wait()
		t.Logf("%v:\n%s", env, tail(b.output(), 10))
		select {
		case <-gone:
			t.Fatalf("%v: a process outside the build was killed", env)
		default:
		}
		if after := rootPropagation(t); after != before {
			t.Errorf("%v: the root mount's propagation changed from %q to %q", env, before, after)
		}
		if !strings.Contains(b.output(), "interrupted") {
			t.Errorf("%v: the build does not say it was interrupted", env)
		}
		assertClean(t, work)
	}
}

// rootPropagation is the optional fields (shared:N, master:N) of the
// mount at / in this process's mount namespace.
func rootPropagation(t *testing.T) string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 6 && f[4] == "/" {
			var opt []string
			for _, x := range f[6:] {
				if x == "-" {
					break
				}
				opt = append(opt, x)
			}
			return "[" + strings.Join(opt, " ") + "]"
		}
	}
	t.Fatal("no / in mountinfo")
	return ""
}

// TestCheckOutputCollisions: vmdeb check refuses outputs that are one
// file once `..` and linked directories are resolved, and a tarball whose
// package manifest is another output.
func TestCheckOutputCollisions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (skipped with -short)")
	}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "real"), 0o755)
	os.Symlink("real", filepath.Join(dir, "linked"))
	cfg := writeConfig(t, dir, `name: clash
suite: trixie
architecture: amd64
kernel: none
bootstrap: native
outputs:
  - {type: tarball, path: real/x.tar}
  - {type: tarball, path: linked/x.tar}
  - {type: directory, path: real/x.packages}
`, nil)
	r := run(t, context.Background(), "check", "--offline", cfg)
	for _, w := range []string{"outputs[0] (tarball) (" + filepath.Join(dir, "real/x.tar") + ") and outputs[1] (tarball) (" + filepath.Join(dir, "linked/x.tar") + ") are the same file",
		"outputs[2] (directory)", "outputs[0] (tarball)'s package manifest"} {
		if r.code != 2 || !strings.Contains(r.stderr, w) {
			t.Errorf("check: want status 2 and %q, got %d: %s", w, r.code, r.stderr)
		}
	}
}
