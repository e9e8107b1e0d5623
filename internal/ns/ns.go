// Package ns runs the build in its own mount and PID namespaces, so that
// whatever kills it — an error, Ctrl-C, SIGKILL — the kernel removes every
// mount it made and every process it started.
package ns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"vmdeb/internal/run"
)

const marker = "VMDEB_IN_NAMESPACE"

// The parent hands the build an open descriptor of its own mount
// namespace at this fd (one higher in a user namespace, where fd 3 is the
// id-map pipe): proof that the build runs in namespaces made for it.
const (
	proofFD       = 3
	proofFDUserns = 4
)

var (
	insideOnce sync.Once
	inside     bool
)

// Inside reports whether this process is the namespaced build process.
// The environment's marker alone is not enough (a caller may have set it):
// the process must be PID 1 of its PID namespace and hold its parent's
// mount namespace, which must differ from its own.
func Inside() bool {
	insideOnce.Do(func() {
		if os.Getenv(marker) != "1" {
			return
		}
		fd := proofFD
		if os.Getenv(usernsEnv) == "1" {
			fd = proofFDUserns
		}
		inside = Proven(fd)
		if inside {
			unix.Close(fd) // the build's own programs must not inherit it
		}
	})
	return inside
}

// Proven reports whether fd is the mount namespace of the process that
// started this one, and this process runs in a mount namespace of its own
// as PID 1 of a PID namespace of its own.
func Proven(fd int) bool {
	if os.Getpid() != 1 {
		return false
	}
	var fs unix.Statfs_t
	if unix.Fstatfs(fd, &fs) != nil || fs.Type != unix.NSFS_MAGIC {
		return false
	}
	var parent, mine unix.Stat_t
	if unix.Fstat(fd, &parent) != nil || unix.Stat("/proc/self/ns/mnt", &mine) != nil {
		return false
	}
	if kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || kind != unix.CLONE_NEWNS {
		return false
	}
	return parent.Dev == mine.Dev && parent.Ino != mine.Ino
}

// Rootless reports whether the namespaced build runs in a user namespace
// (isolation: userns) rather than as the host's root.
func Rootless() bool { return Inside() && os.Getenv(usernsEnv) == "1" && InUserns() }

// Stdio is where the namespaced process's output goes: nil fields are
// this process's own stdout and stderr.
type Stdio struct{ Out, Err io.Writer }

// Reexec runs this program again with args in new mount and
// PID namespaces and returns its exit status. The child dies with us
// (SIGKILL on parent death); Ctrl-C and SIGTERM are passed on to it so it
// can tear down in order.
func Reexec(args []string, std Stdio) (int, error) {
	cmd, err := command(args, "1", std)
	if err != nil {
		return 1, err
	}
	mnt, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		return 1, err
	}
	defer mnt.Close()
	cmd.ExtraFiles = []*os.File{mnt} // proofFD
	wait, err := start(cmd)
	if err != nil {
		return 1, fmt.Errorf("cannot start the build in its own namespaces (vmdeb build needs root): %w", err)
	}
	return wait()
}

// command is vmdeb run again with args, marked as the namespaced build.
func command(args []string, mark string, std Stdio) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	// The caller's own markers, if any, are dropped: only this parent sets them.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, marker+"=") && !strings.HasPrefix(e, usernsEnv+"=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, marker+"="+mark)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if std.Out != nil {
		cmd.Stdout = std.Out
	}
	if std.Err != nil {
		cmd.Stderr = std.Err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd, nil
}

// start starts cmd and returns the function that waits for it, passing
// on signals meanwhile, and gives its exit status (128+N for a signal).
func start(cmd *exec.Cmd) (func() (int, error), error) {
	// Pdeathsig fires when the forking thread ends: keep it alive.
	runtime.LockOSThread()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		signal.Stop(sigs)
		runtime.UnlockOSThread()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				// A terminal's Ctrl-C reaches the child too (same process
				// group); a kill of this process alone must be passed on.
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	return func() (int, error) {
		defer runtime.UnlockOSThread()
		defer signal.Stop(sigs)
		err := cmd.Wait()
		close(done)
		return run.ExitStatus(err)
	}, nil
}

// Prepare makes the new mount namespace private, so no mount of the build
// propagates back to the host. Call it first thing inside.
func Prepare() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if InUserns() {
		_ = unix.Setgroups(nil) // the host's groups would show as nogroup
		return prepareUserns()
	}
	_, binfmtErr := os.Stat("/proc/sys/fs/binfmt_misc/status")
	// A /proc of our own PID namespace: process ids read there are the
	// ones kill(2) takes here.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc for the build: %w", err)
	}
	// The new /proc hides the host's binfmt_misc mount; the handlers are
	// the kernel's, so show them again (read-only use: nothing registered).
	if binfmtErr == nil {
		if err := unix.Mount("binfmt_misc", "/proc/sys/fs/binfmt_misc", "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mounting binfmt_misc for the build: %w", err)
		}
	}
	return nil
}

// prepareUserns mounts the PID namespace's /proc in a user namespace. A
// binfmt_misc mounted there would be a new, empty instance that hides the
// host's qemu-user handlers from this namespace's programs (Linux 6.7+),
// so the host's mount is moved over the new /proc instead.
func prepareUserns() error {
	const bm = "/proc/sys/fs/binfmt_misc"
	var held string
	if _, err := os.Stat(bm + "/status"); err == nil {
		d, err := os.MkdirTemp("", "vmdeb-binfmt-")
		if err != nil {
			return err
		}
		defer os.Remove(d)
		if err := unix.Mount(bm, d, "", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			held = d
		}
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		if held != "" {
			unix.Unmount(held, unix.MNT_DETACH)
		}
		return fmt.Errorf("mounting /proc for the build in its user namespace: %w", err)
	}
	if held != "" {
		if err := unix.Mount(held, bm, "", unix.MS_MOVE, ""); err != nil {
			unix.Unmount(held, unix.MNT_DETACH)
			return fmt.Errorf("showing the host's binfmt_misc handlers to the build: %w", err)
		}
	}
	return nil
}

// KillOthers kills every other process of this PID namespace (a daemon a
// hook left running on the host side) and waits for them to go.
func KillOthers() error {
	self, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return err
	}
	left, err := run.KillAll(func(pid int) bool {
		l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns/pid"))
		return err == nil && l == self
	}, nil)
	if err == nil && len(left) > 0 {
		err = errors.New("processes of the build still running after SIGKILL")
	}
	return err
}
