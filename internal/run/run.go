// Package run runs one external command the way every command of a build
// runs: in a process group of its own that is killed as a whole when the
// context ends or vmdeb dies, optionally inside a root file system, with
// its output handed over line by line.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vmdeb/internal/imgroot"
)

// WaitDelay is how long Run waits, once the process group is killed, for
// the command's output to close (a grandchild in another group may hold it).
const WaitDelay = 10 * time.Second

// Cmd is one command to run.
type Cmd struct {
	Name string
	Args []string
	// Env is the command's whole environment; nil gives it none.
	Env []string
	// Dir is the working directory, inside Root when Root is set ("" =
	// the current one, or "/" inside Root).
	Dir string
	// Root, when set, is the directory the command runs chrooted into.
	// The child does the chroot(2) itself: the Go process keeps its root.
	// A Name without a slash is looked up on Env's PATH inside Root.
	Root  string
	Stdin io.Reader
	// Stdout, when set, receives the standard output instead of Line.
	Stdout io.Writer
	// Line is called with each line of output (standard error, and
	// standard output unless Stdout is set), without its newline, one
	// call at a time; a last line without a newline is passed too.
	Line func(string)
}

// Run runs c under ctx and waits for it. The command gets its own process
// group; when ctx ends, the whole group (apt's dpkg, a hook's children) is
// killed with SIGKILL, and so is the command if vmdeb itself dies. The
// error is an *exec.ExitError for a failed command or, when ctx ended,
// ctx's error with the command's in its text. The process state is returned whenever the
// command ran.
func Run(ctx context.Context, c Cmd) (*os.ProcessState, error) {
	name := c.Name
	if c.Root != "" && !strings.Contains(name, "/") {
		p, err := LookPathIn(c.Root, name, pathOf(c.Env))
		if err != nil {
			return nil, err
		}
		name = p
	}
	cmd := exec.CommandContext(ctx, name, c.Args...)
	cmd.Args[0] = c.Name
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = c.Dir
	cmd.Stdin = c.Stdin
	lw := &LineWriter{Line: c.Line}
	if c.Line == nil {
		lw.Line = func(string) {}
	}
	cmd.Stdout, cmd.Stderr = lw, lw
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c.Root != "" {
		cmd.SysProcAttr.Chroot = c.Root
		if cmd.Dir == "" {
			cmd.Dir = "/"
		}
	}
	cmd.Cancel = func() error { return KillGroup(cmd.Process.Pid) }
	cmd.WaitDelay = WaitDelay
	err := cmd.Run()
	lw.Flush()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return cmd.ProcessState, err
}

// KillGroup sends SIGKILL to the process group pgid. A group already gone
// is no error.
func KillGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// pathOf is the last PATH of env (the one a program sees), or a default.
func pathOf(env []string) string {
	p := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			p = v
		}
	}
	return p
}

// LookPathIn finds the program name on search (a PATH value) inside root
// and returns its path as seen from inside. Links are resolved as they
// are inside root, so an absolute link (/usr/bin/awk to
// /etc/alternatives/awk) never reaches the host's files.
func LookPathIn(root, name, search string) (string, error) {
	img, err := imgroot.Open(root)
	if err != nil {
		return "", err
	}
	defer img.Close()
	for _, dir := range filepath.SplitList(search) {
		if !path.IsAbs(dir) {
			continue // a relative PATH entry means nothing before the chdir
		}
		p := path.Join(dir, name)
		if fi, err := img.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: fmt.Errorf("%w in %s", exec.ErrNotFound, root)}
}

// LineWriter splits what is written to it into lines for Line. It is not
// safe for concurrent use.
type LineWriter struct {
	Line func(string)
	buf  []byte
}

func (w *LineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.Line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// Flush passes on a last line that has no newline.
func (w *LineWriter) Flush() {
	if len(w.buf) > 0 {
		l := string(w.buf)
		w.buf = w.buf[:0]
		w.Line(l)
	}
}

// ExitStatus is a finished command's exit status as a shell gives it: its
// own, or 128+N when signal N ended it; err is set only when the command
// could not be run or waited for.
func ExitStatus(err error) (int, error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}
