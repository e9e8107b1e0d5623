// Package chroot prepares a root file system for running its own programs:
// the kernel file systems, a private /dev, no daemons, the build's DNS. Every
// change is on one teardown stack, undone in reverse order whatever happens.
package chroot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/imgroot"
	"vmdeb/internal/run"
	"vmdeb/internal/tree"
)

// Chroot is a prepared root file system.
type Chroot struct {
	Root   string
	img    *imgroot.Root // every file vmdeb changes inside is reached through it
	log    *buildlog.Log
	undo   []undo
	Env    []string // extra environment for every command run inside
	closed bool
}

type undo struct {
	what string
	fn   func() error
}

// policyRC forbids every daemon start during the build (invoke-rc.d's
// policy interface, exit 101 = action forbidden).
const policyRC = "#!/bin/sh\n# vmdeb: no daemons in a build chroot\nexit 101\n"

// Setup mounts /proc, /sys, /dev, /dev/pts and /run inside root, installs
// policy-rc.d and the host's resolv.conf. On error, what was done is undone.
func Setup(root string, log *buildlog.Log) (c *Chroot, err error) {
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	img, err := imgroot.Open(root)
	if err != nil {
		return nil, err
	}
	c = &Chroot{Root: root, img: img, log: log}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
			c = nil
		}
	}()
	if err := c.mount("proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return c, err
	}
	if err := c.mountSys(); err != nil {
		return c, err
	}
	if err := c.setupDev(); err != nil {
		return c, err
	}
	if err := c.mount("tmpfs", "run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return c, err
	}
	if err := c.replaceFile("usr/sbin/policy-rc.d", []byte(policyRC), 0o755); err != nil {
		return c, err
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = nil // no DNS on the host: a file:// mirror still works
	}
	if err := c.replaceFile("etc/resolv.conf", resolv, 0o644); err != nil {
		return c, err
	}
	return c, nil
}

// setupDev gives the chroot a fresh tmpfs /dev with the few nodes programs
// need, and its own devpts instance: nothing of the host's /dev is bound in,
// so nothing done inside can touch it.
func (c *Chroot) setupDev() error {
	if err := c.mount("tmpfs", "dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64m"); err != nil {
		return err
	}
	for _, n := range DevNodes() {
		p := "dev/" + n.Name
		err := c.img.Mknod(p, unix.S_IFCHR|uint32(n.Mode), int(unix.Mkdev(n.Major, n.Minor)))
		if errors.Is(err, unix.EPERM) {
			// A user namespace may not make device nodes: bind the
			// host's node onto an empty file instead.
			err = c.bindNode("/dev/"+n.Name, p)
		} else if err == nil {
			err = c.img.Chmod(p, n.Mode)
		}
		if err != nil {
			return fmt.Errorf("mknod %s: %w", filepath.Join(c.Root, p), err)
		}
	}
	links := DevLinks()
	links["ptmx"] = "pts/ptmx" // the chroot's own devpts instance
	for name, target := range links {
		if err := c.img.Symlink(target, "dev/"+name); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := c.img.Mkdir("dev/"+d, 0o755); err != nil {
			return err
		}
	}
	if err := c.img.Chmod("dev/shm", 0o777|os.ModeSticky); err != nil {
		return err
	}
	return c.mount("devpts", "dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
}

// DevNode is a character device node of a minimal /dev.
type DevNode struct {
	Name         string
	Major, Minor uint32
	Mode         os.FileMode
}

// DevNodes are the device nodes programs expect in any /dev: the build's
// chroot gets them, and so does a bootstrapped tree, as debootstrap's
// setup_devices_simple makes them.
func DevNodes() []DevNode {
	return []DevNode{{"null", 1, 3, 0o666}, {"zero", 1, 5, 0o666}, {"full", 1, 7, 0o666}, {"random", 1, 8, 0o666},
		{"urandom", 1, 9, 0o666}, {"tty", 5, 0, 0o666}}
}

// DevLinks are /dev's links to a process's own file descriptors, by name.
func DevLinks() map[string]string {
	return map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
}

// mountSys mounts a read-only sysfs. In a user namespace, which may mount
// sysfs only with a network namespace of its own, the host's /sys is bound
// read-only instead.
func (c *Chroot) mountSys() error {
	err := c.mount("sysfs", "sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, "")
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	target := filepath.Join(c.Root, "sys")
	m, err := c.img.MountOn("sys", func(at string) error { return unix.Mount("/sys", at, "", unix.MS_BIND|unix.MS_REC, "") })
	if err != nil {
		return fmt.Errorf("bind /sys on %s: %w", target, err)
	}
	c.log.Logf("bound the host's /sys on %s (no sysfs mount in a user namespace)", target)
	c.undo = append(c.undo, undo{"unmount " + target, m.Unmount})
	if err := unix.Mount("", m.At(), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("making %s read-only: %w", target, err)
	}
	return nil
}

// bindNode makes rel (an empty file) show the host's device node src.
func (c *Chroot) bindNode(src, rel string) error {
	if err := c.img.WriteFile(rel, nil, 0o666); err != nil {
		return err
	}
	m, err := c.img.MountOn(rel, func(at string) error { return unix.Mount(src, at, "", unix.MS_BIND, "") })
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	c.undo = append(c.undo, undo{"unmount " + m.Host, m.Unmount})
	return nil
}

func (c *Chroot) mount(src, rel, fstype string, flags uintptr, data string) error {
	target := filepath.Join(c.Root, rel)
	if err := c.img.MkdirAll(rel, 0o755); err != nil {
		return err
	}
	if fi, err := c.img.Lstat(rel); err != nil || !fi.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", target)
	}
	m, err := c.img.MountOn(rel, func(at string) error { return unix.Mount(src, at, fstype, flags, data) })
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	c.log.Logf("mounted %s on %s", fstype, target)
	c.undo = append(c.undo, undo{"unmount " + target, m.Unmount})
	return nil
}

// replaceFile writes rel with data for the build and restores what was
// there (or removes it) at teardown. What was there, a link included, is
// moved aside itself, never followed.
func (c *Chroot) replaceFile(rel string, data []byte, mode os.FileMode) error {
	saved := rel + ".vmdeb-orig"
	had := false
	if _, err := c.img.Lstat(rel); err == nil {
		if err := c.img.Rename(rel, saved); err != nil {
			return err
		}
		had = true
	}
	restore := func() error {
		if err := c.img.RemoveAll(rel); err != nil {
			return err
		}
		if had {
			return c.img.Rename(saved, rel)
		}
		return nil
	}
	if err := c.img.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return errors.Join(err, restore())
	}
	if err := c.img.WriteFile(rel, data, mode); err != nil {
		return errors.Join(err, restore())
	}
	c.undo = append(c.undo, undo{"restore " + filepath.Join(c.Root, rel), restore})
	return nil
}

// UseSources points apt at the build's sources until teardown: the
// image's sources.list and sources.list.d are moved aside and put back.
func (c *Chroot) UseSources(sourcesList string) error {
	d := "etc/apt/sources.list.d"
	saved := d + ".vmdeb-orig"
	if _, err := c.img.Lstat(d); err == nil {
		if err := c.img.Rename(d, saved); err != nil {
			return err
		}
		c.undo = append(c.undo, undo{"restore " + filepath.Join(c.Root, d), func() error {
			if err := c.img.RemoveAll(d); err != nil {
				return err
			}
			return c.img.Rename(saved, d)
		}})
	}
	if err := c.img.MkdirAll(d, 0o755); err != nil {
		return err
	}
	return c.replaceFile("etc/apt/sources.list", []byte(sourcesList), 0o644)
}

// Defer adds a step to the teardown stack (run before the ones already on it).
func (c *Chroot) Defer(what string, fn func() error) {
	c.undo = append(c.undo, undo{what, fn})
}

// Run runs a command inside the chroot with the build environment:
// non-interactive debconf, no daemons, C.UTF-8. The command's child does
// the chroot(2) itself (no chroot program on the host).
func (c *Chroot) Run(ctx context.Context, cmd buildlog.Cmd) error {
	cmd.Root = c.Root
	cmd.Env = append(append(NonInteractiveEnv(), c.Env...), cmd.Env...)
	err := c.log.Run(ctx, cmd)
	var ce *buildlog.CommandError
	if errors.As(err, &ce) {
		// Named as the report documents a command run inside the image
		// (docs/json.md): chroot, its arguments beginning with the root.
		ce.Cmd = "chroot"
		if !cmd.Secret {
			ce.Args = append([]string{c.Root, cmd.Name}, ce.Args...)
		}
	}
	return err
}

// NonInteractiveEnv is the environment of every apt and dpkg call.
func NonInteractiveEnv() []string {
	return []string{"DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true", "DEBCONF_NOWARNINGS=yes"}
}

// Close kills every process whose root is inside the chroot, then undoes
// every change in reverse order. It goes on after a failed step and joins
// the errors. Calling it twice is harmless.
func (c *Chroot) Close() error {
	if c == nil || c.closed {
		return nil
	}
	c.closed = true
	err := KillProcesses(c.Root, c.log)
	for i := len(c.undo) - 1; i >= 0; i-- {
		if e := c.undo[i].fn(); e != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", c.undo[i].what, e))
		}
	}
	c.undo = nil
	return errors.Join(err, c.img.Close())
}

// KillProcesses kills (SIGKILL) every process whose root directory is root
// or below it, and waits briefly for them to go: a daemon that a package or
// a hook started must not outlive the build or hold its mounts.
func KillProcesses(root string, log *buildlog.Log) error {
	left, err := run.KillAll(func(pid int) bool {
		r, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "root"))
		return err == nil && within(r, root)
	}, func(pid int) {
		if log != nil {
			comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
			log.Logf("killing process %d (%s) left in the chroot", pid, strings.TrimSpace(string(comm)))
		}
	})
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("processes still running in %s after SIGKILL: %v", root, left)
	}
	return nil
}

func within(p, root string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

// MountsUnder lists the mount points at or below dir in this process's
// mount namespace, deepest first (see tree.MountsUnder).
func MountsUnder(dir string) ([]string, error) { return tree.MountsUnder(dir) }

// RemoveAll deletes dir safely (see tree.RemoveAll).
func RemoveAll(dir string) error { return tree.RemoveAll(dir) }

// RemoveAt deletes the entry name of the open directory parent (see
// tree.RemoveAt).
func RemoveAt(parent int, name, path string) error { return tree.RemoveAt(parent, name, path) }

// ClampTimes sets every date under root newer than epoch to epoch (see
// tree.ClampTimes).
func ClampTimes(root string, epoch int64) (int, error) { return tree.ClampTimes(root, epoch) }
