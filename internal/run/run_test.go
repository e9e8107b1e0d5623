package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

func sh(script string) Cmd {
	return Cmd{Name: "/bin/sh", Args: []string{"-c", script}, Env: env}
}

func TestExitStatus(t *testing.T) {
	ps, err := Run(context.Background(), sh("exit 0"))
	if err != nil || ps == nil || ps.ExitCode() != 0 {
		t.Fatalf("exit 0: %v, %v", ps, err)
	}
	ps, err = Run(context.Background(), sh("exit 7"))
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != 7 || ps.ExitCode() != 7 {
		t.Fatalf("exit 7: %v, %v", ps, err)
	}
	_, err = Run(context.Background(), Cmd{Name: "vmdeb-no-such-program", Env: env})
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("missing program: %v", err)
	}
}

func TestLines(t *testing.T) {
	var lines []string
	var out bytes.Buffer
	c := sh(`printf 'one\ntwo\n'; printf 'err\n' >&2; printf 'last'`)
	c.Line = func(l string) { lines = append(lines, l) }
	if _, err := Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lines, "|"); got != "one|two|err|last" {
		t.Errorf("lines: %q", got)
	}

	// Stdout set: it gets the standard output, Line only standard error.
	lines = nil
	c = sh(`printf 'data\n'; printf 'warning\n' >&2`)
	c.Line = func(l string) { lines = append(lines, l) }
	c.Stdout = &out
	if _, err := Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if out.String() != "data\n" || strings.Join(lines, "|") != "warning" {
		t.Errorf("stdout %q, lines %q", out.String(), lines)
	}
}

func TestEnvAndDir(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	c := sh(`echo "$A $B $HOME"; pwd`)
	c.Env = append(env, "A=1", "B=two")
	c.Dir = dir
	c.Line = func(l string) { lines = append(lines, l) }
	if _, err := Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	// Only what Env holds: no HOME from the test's own environment.
	real, _ := filepath.EvalSymlinks(dir)
	if len(lines) != 2 || lines[0] != "1 two " || (lines[1] != dir && lines[1] != real) {
		t.Errorf("got %q", lines)
	}
}

func TestStdin(t *testing.T) {
	var lines []string
	c := Cmd{Name: "cat", Env: env, Stdin: strings.NewReader("secret\n"), Line: func(l string) { lines = append(lines, l) }}
	if _, err := Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "|") != "secret" {
		t.Errorf("got %q", lines)
	}
}

// alive reports whether pid still runs (a zombie counts as gone).
func alive(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || st[i+2] != 'Z'
}

// TestCancelKillsTheGroup: when the context ends, the command, its child
// and its grandchild are all killed, even one that ignores SIGTERM and
// holds no output open, and Run returns promptly with the context's error.
func TestCancelKillsTheGroup(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	script := `trap '' TERM
sh -c 'trap "" TERM; sleep 1000 </dev/null >/dev/null 2>&1 & echo $! >>` + pids + `; sleep 1000' </dev/null >/dev/null 2>&1 &
echo $! >>` + pids + `
echo started
sleep 1000`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := sh(script)
	c.Line = func(l string) {
		if l == "started" {
			// Give the grandchild time to write its pid.
			go func() {
				for i := 0; i < 100; i++ {
					if b, _ := os.ReadFile(pids); strings.Count(string(b), "\n") >= 2 {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
			}()
		}
	}
	start := time.Now()
	ps, err := Run(ctx, c)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if time.Since(start) > WaitDelay/2 {
		t.Errorf("Run took %v after cancellation", time.Since(start))
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("command not killed by SIGKILL: %v", ps)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("pids: %q", b)
	}
	for _, s := range f {
		pid, _ := strconv.Atoi(s)
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %d of the command's group survived the cancellation", pid)
		}
	}
}

func TestDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, sh("sleep 1000"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want DeadlineExceeded", err)
	}
}

func TestLookPathIn(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "etc/alternatives", "bin"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "usr/bin/mawk"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/data"), []byte("x"), 0o644)
	// Absolute links, resolved inside root.
	os.Symlink("/usr/bin/mawk", filepath.Join(root, "etc/alternatives/awk"))
	os.Symlink("/etc/alternatives/awk", filepath.Join(root, "usr/bin/awk"))
	// A link to a host program that root lacks must not be found.
	os.Symlink("/bin/sh", filepath.Join(root, "bin/hostsh"))

	if p, err := LookPathIn(root, "awk", "/bin:/usr/bin"); err != nil || p != "/usr/bin/awk" {
		t.Errorf("awk: %q, %v", p, err)
	}
	for _, name := range []string{"data", "hostsh", "none"} {
		if p, err := LookPathIn(root, name, "/bin:/usr/bin"); !errors.Is(err, exec.ErrNotFound) {
			t.Errorf("%s: found %q (%v)", name, p, err)
		}
	}
}
