package shell

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"github.com/moby/sys/mountinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	vrun "vmdeb/internal/run"

	"golang.org/x/sys/unix"

	"vmdeb/internal/arch"
	"vmdeb/internal/chroot"
	"vmdeb/internal/imgroot"
)

// Options are what a shell runs and how.
type Options struct {
	Writable bool     // change the image itself (Target.CheckWritable)
	Command  []string // nil: a login shell
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	// Log says what is done, a line each (nil: nothing).
	Log func(format string, a ...any)
}

// session is one open image: everything it mounted or started, undone
// in reverse order.
type session struct {
	o     Options
	t     Target
	stage string // a tmpfs holding the mount points
	root  string // the image's root as the shell sees it
	undo  []undo
}

type undo struct {
	what string
	fn   func() error
}

func (s *session) push(what string, fn func() error) { s.undo = append(s.undo, undo{what, fn}) }

func (s *session) logf(format string, a ...any) {
	if s.o.Log != nil {
		s.o.Log(format, a...)
	}
}

// close kills what still runs in the image, then undoes every step,
// going on after a failure and joining the errors.
func (s *session) close() error {
	var err error
	if s.root != "" {
		err = chroot.KillProcesses(s.root, nil)
	}
	for i := len(s.undo) - 1; i >= 0; i-- {
		if e := s.undo[i].fn(); e != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", s.undo[i].what, e))
		}
	}
	s.undo = nil
	return err
}

// Run opens t and runs o.Command (or a login shell) in it, and returns
// the command's exit status (128+N for a signal). It must run in a
// private mount namespace (ns.Prepare done): whatever ends this process,
// the kernel then removes the mounts, and with them the loop devices,
// which are set up to clear themselves.
func Run(ctx context.Context, t Target, o Options) (code int, err error) {
	s := &session{o: o, t: t}
	defer func() { err = errors.Join(err, s.close()) }()
	if o.Writable {
		if err := t.CheckWritable(); err != nil {
			return 1, err
		}
	}
	if err := s.mountStage(); err != nil {
		return 1, err
	}
	lower := filepath.Join(s.stage, "image")
	if err := os.Mkdir(lower, 0o755); err != nil {
		return 1, err
	}
	if err := s.mountImage(ctx, lower); err != nil {
		return 1, err
	}
	root := lower
	if !o.Writable {
		if root, err = s.overlay(lower); err != nil {
			return 1, err
		}
	}
	img, err := imgroot.Open(root)
	if err != nil {
		return 1, err
	}
	s.push("close "+root, img.Close)
	s.root = root
	if err := s.kernelFS(img); err != nil {
		return 1, err
	}
	if err := s.emulation(img); err != nil {
		return 1, err
	}
	shell := "/bin/sh"
	if fi, err := img.Stat("bin/bash"); err == nil && fi.Mode().IsRegular() {
		shell = "/bin/bash"
	}
	argv := CommandLine(root, o.Command, shell)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = Environ(os.Getenv("TERM"), shell)
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return vrun.ExitStatus(cmd.Run())
}

// CommandLine is the host command that runs command (nil: a login shell)
// with root as its root directory.
func CommandLine(root string, command []string, shell string) []string {
	if len(command) == 0 {
		command = []string{shell, "-l"}
	}
	return append([]string{"chroot", root}, command...)
}

// Environ is the environment inside: root's, as a login gives it, not
// the host's (whose paths and locale may not exist in the image).
func Environ(term, shell string) []string {
	env := []string{"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=" + shell,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	if term != "" {
		env = append(env, "TERM="+term)
	}
	return env
}

// mountStage makes a tmpfs for the session's mount points, so nothing
// of it is written to the host's disk.
func (s *session) mountStage() error {
	d, err := os.MkdirTemp("", "vmdeb-shell-")
	if err != nil {
		return err
	}
	s.push("remove "+d, func() error { return os.Remove(d) })
	if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", d, err)
	}
	s.push("unmount "+d, func() error { return unmount(d) })
	s.stage = d
	return nil
}

// unmount detaches target, lazily if something still holds it.
func unmount(target string) error {
	err := unix.Unmount(target, 0)
	if err == nil || errors.Is(err, unix.EINVAL) {
		return nil
	}
	if err2 := unix.Unmount(target, unix.MNT_DETACH); err2 != nil {
		return fmt.Errorf("unmount %s: %v; lazy unmount: %w", target, err, err2)
	}
	return nil
}

// run runs a host tool, its output in the error when it fails.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// mountImage mounts the image's root file system on dir.
func (s *session) mountImage(ctx context.Context, dir string) error {
	t := s.t
	ro := !s.o.Writable
	switch t.Kind {
	case Directory:
		flags := uintptr(unix.MS_BIND | unix.MS_REC)
		if err := unix.Mount(t.Path, dir, "", flags, ""); err != nil {
			return fmt.Errorf("bind %s: %w", t.Path, err)
		}
		s.push("unmount "+dir, func() error { return unmount(dir) })
		if ro {
			if err := unix.Mount("", dir, "", flags|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("making %s read-only: %w", dir, err)
			}
		}
		return nil
	case Tarball:
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
		}
		s.push("unmount "+dir, func() error { return unmount(dir) })
		s.logf("unpacking %s", t.Path)
		_, err := run(ctx, "tar", "-xpf", t.Path, "-C", dir, "--numeric-owner", "--xattrs", "--xattrs-include=*")
		return err
	case Squashfs:
		return s.mountLoop(ctx, t.Path, dir, "squashfs", "ro")
	case ISO:
		off, size, err := isoFile(ctx, t.Path, "/live/filesystem.squashfs")
		if err != nil {
			return err
		}
		return s.mountLoop(ctx, t.Path, dir, "squashfs", fmt.Sprintf("ro,offset=%d,sizelimit=%d", off, size))
	case Raw:
		return s.mountRoot(ctx, t.Path, dir)
	case Qcow2:
		raw, err := s.exportQcow2(ctx)
		if err != nil {
			return err
		}
		return s.mountRoot(ctx, raw, dir)
	}
	return fmt.Errorf("%s: cannot open a %s", t.Path, t.Kind)
}

// mountRoot mounts the root partition of the raw disk image at file.
func (s *session) mountRoot(ctx context.Context, file, dir string) error {
	out, err := run(ctx, "sfdisk", "--json", file)
	if err != nil {
		return err
	}
	p, err := RootPartition(out)
	if err != nil {
		return fmt.Errorf("%s: %w", s.t.Path, err)
	}
	opts := fmt.Sprintf("offset=%d,sizelimit=%d", p.Offset, p.Size)
	if s.o.Writable {
		return s.mountLoop(ctx, file, dir, "", opts)
	}
	err = s.mountLoop(ctx, file, dir, "", "ro,"+opts)
	if err != nil {
		// A journal left to replay (a writable shell killed) cannot be
		// replayed read-only: ext4 then mounts without it (noload).
		if err2 := s.mountLoop(ctx, file, dir, "", "ro,noload,"+opts); err2 == nil {
			s.logf("mounted without replaying its journal: the root file system was not cleanly unmounted")
			return nil
		}
	}
	return err
}

// mountLoop mounts file (opts: ro, offset=, sizelimit= and the file
// system's own) through a loop device that clears itself when the mount
// goes (LO_FLAGS_AUTOCLEAR), so no device outlives this process's mount
// namespace; on the way out the session waits for it to go.
func (s *session) mountLoop(ctx context.Context, file, dir, fstype, opts string) error {
	var off, size int64
	ro := false
	var rest []string
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "offset":
			off, _ = strconv.ParseInt(v, 10, 64)
		case "sizelimit":
			size, _ = strconv.ParseInt(v, 10, 64)
		case "ro":
			ro = true
			rest = append(rest, o)
		default:
			rest = append(rest, o)
		}
	}
	dev, fd, err := attachLoop(file, off, size, ro)
	if err != nil {
		return err
	}
	// The mount holds the device from here; this descriptor's close then
	// leaves the mount as the device's last user.
	defer unix.Close(fd)
	args := []string{}
	if len(rest) > 0 {
		args = append(args, "-o", strings.Join(rest, ","))
	}
	if fstype != "" {
		args = append(args, "-t", fstype)
	}
	if _, err := run(ctx, "mount", append(args, dev, dir)...); err != nil {
		return err
	}
	s.push("unmount "+dir, func() error {
		if err := unmount(dir); err != nil {
			return err
		}
		return waitLoopGone(dev)
	})
	s.logf("mounted %s (%s) on %s", file, dev, dir)
	return nil
}

// attachLoop attaches file (from byte off, size bytes; 0: to its end) to
// a free loop device. The file is opened here, by the kernel's own path
// walk: /proc/PID/root/… names a file in another mount namespace, which
// losetup's canonical path would not.
func attachLoop(file string, off, size int64, ro bool) (string, int, error) {
	mode := unix.O_RDWR
	flags := uint32(unix.LO_FLAGS_AUTOCLEAR)
	if ro {
		mode, flags = unix.O_RDONLY, flags|unix.LO_FLAGS_READ_ONLY
	}
	ff, err := unix.Open(file, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, &os.PathError{Op: "open", Path: file, Err: err}
	}
	defer unix.Close(ff)
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("loop devices: %w", err)
	}
	defer unix.Close(ctl)
	for try := 0; try < 20; try++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", -1, fmt.Errorf("a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		fd, err := unix.Open(dev, mode|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", -1, &os.PathError{Op: "open", Path: dev, Err: err}
		}
		cfg := unix.LoopConfig{Fd: uint32(ff)}
		cfg.Info.Offset, cfg.Info.Sizelimit, cfg.Info.Flags = uint64(off), uint64(size), flags
		err = unix.IoctlLoopConfigure(fd, &cfg)
		if err == nil {
			return dev, fd, nil
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EBUSY) {
			return "", -1, fmt.Errorf("%s on %s: %w", file, dev, err)
		}
		// Another program took the device between the two calls.
	}
	return "", -1, errors.New("no free loop device")
}

// mountSource is the device mounted on dir (the last mount on it wins),
// from /proc/self/mountinfo.
func mountSource(dir string) string {
	ms, _ := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) { return m.Mountpoint != dir, false })
	if len(ms) == 0 {
		return ""
	}
	return ms[len(ms)-1].Source
}

// waitLoopGone waits until the loop device dev has cleared itself.
func waitLoopGone(dev string) error {
	if !strings.HasPrefix(dev, "/dev/loop") {
		return nil
	}
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(backing); err != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s still attached after its mount went", dev)
}

// overlay puts a tmpfs over the read-only image at lower, so the shell can
// write (/tmp, /root, apt's lists) and nothing reaches the image.
func (s *session) overlay(lower string) (string, error) {
	upper, work, root := filepath.Join(s.stage, "upper"), filepath.Join(s.stage, "work"), filepath.Join(s.stage, "root")
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount overlay on %s: %w", root, err)
	}
	s.push("unmount "+root, func() error { return unmount(root) })
	return root, nil
}

// kernelFS mounts /proc, a read-only /sys, a private /dev, a tmpfs /run
// and the host's resolv.conf in the image, as a build's chroot has them;
// none of them writes to the image, --writable or not.
func (s *session) kernelFS(img *imgroot.Root) error {
	mountM := func(rel, src, fstype string, flags uintptr, data string) (*imgroot.Mount, error) {
		if _, err := img.Stat(rel); err != nil {
			if s.o.Writable {
				return nil, fmt.Errorf("the image has no /%s to mount %s on", rel, fstype)
			}
			if err := img.MkdirAll(rel, 0o755); err != nil {
				return nil, err
			}
		}
		m, err := img.MountOn(rel, func(at string) error { return unix.Mount(src, at, fstype, flags, data) })
		if err != nil {
			return nil, fmt.Errorf("mount %s on /%s: %w", fstype, rel, err)
		}
		s.push("unmount "+m.Host, m.Unmount)
		return m, nil
	}
	mount := func(rel, src, fstype string, flags uintptr, data string) error {
		_, err := mountM(rel, src, fstype, flags, data)
		return err
	}
	if err := mount("proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := mount("sys", "sysfs", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); errors.Is(err, unix.EPERM) {
		// A user namespace without a network namespace of its own may not
		// mount sysfs: the host's, bound read-only.
		m, err := mountM("sys", "/sys", "", unix.MS_BIND|unix.MS_REC, "")
		if err != nil {
			return err
		}
		if err := unix.Mount("", m.At(), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("making /sys read-only: %w", err)
		}
	} else if err != nil {
		return err
	}
	if err := mount("dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64m"); err != nil {
		return err
	}
	if err := s.devNodes(img); err != nil {
		return err
	}
	if err := mount("dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	if err := s.console(img); err != nil {
		return err
	}
	if err := mount("run", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return err
	}
	return s.resolvConf(img)
}

// console binds the terminal the shell runs on (a pseudo-terminal of the
// host's devpts, which the image's own devpts does not hold) on
// /dev/console, where ttyname(3) finds it: tty, ssh-agent and sudo then
// know their terminal.
func (s *session) console(img *imgroot.Root) error {
	in, ok := s.o.Stdin.(*os.File)
	if !ok {
		return nil
	}
	tty, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", in.Fd()))
	if err != nil || !strings.HasPrefix(tty, "/dev/pts/") {
		return nil
	}
	if err := img.WriteFile("dev/console", nil, 0o600); err != nil {
		return err
	}
	m, err := img.MountOn("dev/console", func(at string) error { return unix.Mount(tty, at, "", unix.MS_BIND, "") })
	if err != nil {
		return fmt.Errorf("bind %s on /dev/console: %w", tty, err)
	}
	s.push("unmount "+m.Host, m.Unmount)
	return nil
}

// devNodes fills the /dev tmpfs with the nodes programs need.
func (s *session) devNodes(img *imgroot.Root) error {
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	for _, n := range nodes {
		p := "dev/" + n.name
		err := img.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor)))
		if errors.Is(err, unix.EPERM) {
			// A user namespace may not make device nodes: the host's node
			// bound on an empty file.
			if err = img.WriteFile(p, nil, 0o666); err == nil {
				var m *imgroot.Mount
				m, err = img.MountOn(p, func(at string) error { return unix.Mount("/dev/"+n.name, at, "", unix.MS_BIND, "") })
				if err == nil {
					s.push("unmount "+m.Host, m.Unmount)
				}
			}
		} else if err == nil {
			err = img.Chmod(p, 0o666)
		}
		if err != nil {
			return fmt.Errorf("/dev/%s: %w", n.name, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"} {
		if err := img.Symlink(target, "dev/"+name); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := img.Mkdir("dev/"+d, 0o755); err != nil {
			return err
		}
	}
	return img.Chmod("dev/shm", 0o777|os.ModeSticky)
}

// resolvConf binds the host's resolv.conf on the image's, wherever its
// link leads inside the image (/run/systemd/resolve/stub-resolv.conf is
// on the fresh /run), so the image's file is never changed.
func (s *session) resolvConf(img *imgroot.Root) error {
	if _, err := os.Stat("/etc/resolv.conf"); err != nil {
		return nil // no DNS on the host
	}
	target := "etc/resolv.conf"
	if fi, err := img.Lstat(target); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if r, err := img.Resolve(target); err == nil {
			target = r
		}
	}
	if _, err := img.Stat(target); err != nil {
		onRun := strings.HasPrefix(strings.TrimPrefix(target, "/"), "run/")
		if s.o.Writable && !onRun {
			s.logf("the image has no /%s: no DNS inside", target)
			return nil
		}
		if err := img.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := img.WriteFile(target, nil, 0o644); err != nil {
			return err
		}
	}
	m, err := img.MountOn(target, func(at string) error { return unix.Mount("/etc/resolv.conf", at, "", unix.MS_BIND, "") })
	if err != nil {
		return fmt.Errorf("bind the host's resolv.conf on /%s: %w", target, err)
	}
	s.push("unmount "+m.Host, m.Unmount)
	if err := unix.Mount("", m.At(), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("making /%s read-only: %w", target, err)
	}
	return nil
}

// emulation makes a foreign image's programs run: through the host's
// qemu-user binfmt handler, whose interpreter is bound into the image
// where the handler lacks flag F.
func (s *session) emulation(img *imgroot.Root) error {
	a, err := imageArch(img)
	if err != nil {
		return err
	}
	if a.Native() {
		return nil
	}
	h, err := arch.ReadHandler(arch.BinfmtDir, a)
	if err != nil {
		return fmt.Errorf("the image's %s programs cannot run on this %s host: %w", a.Name, arch.HostName(), err)
	}
	if h.Fixed() {
		return nil
	}
	rel := strings.TrimPrefix(h.Interpreter, "/")
	if _, err := img.Stat(rel); err != nil {
		if s.o.Writable {
			return fmt.Errorf("the binfmt handler %s lacks flag F, so the kernel looks for %s inside the image, which --writable must not add: register it with F (update-binfmts, qemu-user-static does)", h.Name, h.Interpreter)
		}
		if err := img.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
			return err
		}
		if err := img.WriteFile(rel, nil, 0o755); err != nil {
			return err
		}
	}
	m, err := img.MountOn(rel, func(at string) error { return unix.Mount(h.Interpreter, at, "", unix.MS_BIND, "") })
	if err != nil {
		return fmt.Errorf("bind %s into the image: %w", h.Interpreter, err)
	}
	s.push("unmount "+m.Host, m.Unmount)
	s.logf("running the image's %s programs through %s", a.Name, h.Interpreter)
	return nil
}

// imageArch is the architecture of the image's /bin/sh.
func imageArch(img *imgroot.Root) (arch.Arch, error) {
	f, err := img.OpenFile("bin/sh")
	if err != nil {
		return arch.Arch{}, fmt.Errorf("the image has no /bin/sh: %w", err)
	}
	defer f.Close()
	e, err := elf.NewFile(f)
	if err != nil {
		return arch.Arch{}, fmt.Errorf("the image's /bin/sh: %w", err)
	}
	return archOf(e.Machine, e.Class)
}

// archOf is the Debian architecture of ELF binaries for machine m of class c.
func archOf(m elf.Machine, c elf.Class) (arch.Arch, error) {
	for _, n := range arch.Names() {
		a, err := arch.Lookup(n)
		if err == nil && a.ELFMachine == m.String() {
			return a, nil
		}
	}
	return arch.Arch{}, fmt.Errorf("the image's /bin/sh is for %s (%s), an architecture vmdeb does not know", m, c)
}
