package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testUser is an ordinary account without any privilege, made by the
// tests, with a subordinate id range (what useradd gives by default).
const testUser = "vmdeb-test"

var userOnce sync.Once

// unprivileged returns the test user's uid and gid, and a copy of the
// binary under test that the user may run. It creates the user (and its
// /etc/subuid and /etc/subgid ranges) when missing.
func unprivileged(t *testing.T) (uid, gid int, bin string) {
	t.Helper()
	needRoot(t)
	var err error
	userOnce.Do(func() {
		if _, lerr := user.Lookup(testUser); lerr != nil {
			if out, e := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", testUser).CombinedOutput(); e != nil {
				err = &exec.ExitError{Stderr: out}
				return
			}
		}
		for _, f := range []struct{ file, opt string }{{"/etc/subuid", "--add-subuids"}, {"/etc/subgid", "--add-subgids"}} {
			data, _ := os.ReadFile(f.file)
			if strings.Contains(string(data), testUser+":") {
				continue
			}
			start := freeSubIDs(string(data))
			if out, e := exec.Command("usermod", f.opt, strconv.Itoa(start)+"-"+strconv.Itoa(start+65535), testUser).CombinedOutput(); e != nil {
				err = &exec.ExitError{Stderr: out}
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("creating the test user %s: %s", testUser, err.(*exec.ExitError).Stderr)
	}
	u, lerr := user.Lookup(testUser)
	if lerr != nil {
		t.Fatal(lerr)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	d := userDir(t, uid, gid)
	bin = filepath.Join(d, "vmdeb")
	if out, err := exec.Command("cp", vmdeb, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	os.Chmod(bin, 0o755)
	return uid, gid, bin
}

func freeSubIDs(data string) int {
	next := 100000
	for _, l := range strings.Split(data, "\n") {
		f := strings.Split(l, ":")
		if len(f) != 3 {
			continue
		}
		s, e1 := strconv.Atoi(f[1])
		n, e2 := strconv.Atoi(f[2])
		if e1 == nil && e2 == nil && s+n > next {
			next = s + n
		}
	}
	return next
}

// userDir is a new directory owned by uid, on a path every user can walk.
func userDir(t *testing.T, uid, gid int) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "vmdeb-user-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	os.Chown(d, uid, gid)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// userCmd builds the command running bin as the test user: no
// supplementary groups, a clean environment with its own HOME.
func userCmd(ctx context.Context, uid, gid int, bin string, args ...string) *exec.Cmd {
	u, _ := user.LookupId(strconv.Itoa(uid))
	cmd := exec.CommandContext(ctx, "setpriv", append([]string{"--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups", "--", bin}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + u.HomeDir, "USER=" + u.Username, "LANG=C.UTF-8"}
	for _, k := range []string{"SOURCE_DATE_EPOCH", "VMDEB_STAGE_CACHE"} {
		if v := os.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Dir = filepath.Dir(bin)
	return cmd
}

// started is a command running as the test user whose output is watched.
type started struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan string
}

// startAs starts bin as the test user.
func startAs(t *testing.T, ctx context.Context, uid, gid int, bin string, args ...string) *started {
	t.Helper()
	return startCmd(t, userCmd(ctx, uid, gid, bin, args...))
}

// startCmd starts cmd and watches its output.
func startCmd(t *testing.T, cmd *exec.Cmd) *started {
	t.Helper()
	s := &started{cmd: cmd, seen: make(chan string, 1024)}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
			select {
			case s.seen <- sc.Text():
			default:
			}
		}
		close(s.seen)
	}()
	return s
}

// waitFor waits until a line containing text is printed.
func (s *started) waitFor(text string, d time.Duration) bool {
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-s.seen:
			if !ok {
				return false
			}
			if strings.Contains(l, text) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

func (s *started) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// runAs runs bin with args as the test user (no supplementary groups, a
// clean environment with its own HOME) and returns what it did.
func runAs(t *testing.T, ctx context.Context, uid, gid int, bin string, args ...string) result {
	t.Helper()
	return runCmd(t, userCmd(ctx, uid, gid, bin, args...), "(as "+testUser+") vmdeb "+strings.Join(args, " "))
}
