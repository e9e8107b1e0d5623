package bootstrap

import (
	"context"
	"fmt"
	"sync"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

// HostFiles are the host's debootstrap and its functions: they decide
// what the base system holds.
func (Debootstrap) HostFiles() []HostFile {
	var f []HostFile
	if prog, err := buildlog.LookPath("debootstrap"); err == nil {
		f = append(f, HostFile{"debootstrap", prog})
	}
	return append(f, HostFile{"debootstrap-functions", "/usr/share/debootstrap/functions"})
}

// ForBuild returns a debootstrap for one build: it keeps what it sets up
// in the build's chroot.
func (d Debootstrap) ForBuild() Bootstrapper { return &debootstrapRun{Debootstrap: d} }

// Attach does nothing: debootstrap serves no chroot.
func (Debootstrap) Attach(context.Context, *buildlog.Log, Request) error { return nil }

// ShareCache does nothing: debootstrap has no package cache of its own,
// and this Debootstrap is a plan's, not a build's (see ForBuild).
func (Debootstrap) ShareCache(context.Context, *chroot.Chroot) error { return nil }

// UnshareCache does nothing (see ShareCache).
func (Debootstrap) UnshareCache() error { return nil }

// debootstrapRun is a Debootstrap serving one build. Its chroot's dpkg
// runs without syncs, as debootstrap's own did and the native backend's
// does (see fastDpkg): while the build runs, a crash throws the whole
// root away, so the syncs only cost time.
type debootstrapRun struct {
	Debootstrap
	mu   sync.Mutex
	log  *buildlog.Log
	undo func() error
}

func (d *debootstrapRun) Bootstrap(ctx context.Context, log *buildlog.Log, r Request) error {
	d.setLog(log)
	return d.Debootstrap.Bootstrap(ctx, log, r)
}

func (d *debootstrapRun) Attach(_ context.Context, log *buildlog.Log, _ Request) error {
	d.setLog(log)
	return nil
}

// setLog keeps the build's log for ShareCache's message.
func (d *debootstrapRun) setLog(log *buildlog.Log) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = log
}

// ShareCache makes the chroot's dpkg run without syncs until
// UnshareCache, which the chroot's teardown calls too.
func (d *debootstrapRun) ShareCache(_ context.Context, c *chroot.Chroot) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.undo != nil {
		return nil
	}
	undo, err := fastDpkg(c.Root)
	if err != nil {
		return err
	}
	d.undo = undo
	c.Defer("put dpkg's database back on disk", d.UnshareCache)
	if d.log != nil {
		d.log.Logf("dpkg's database on a tmpfs, without fsync, until the chroot is taken down")
	}
	return nil
}

// UnshareCache puts dpkg's database back on disk, with syncs on again.
// Calling it again, or without ShareCache, does nothing.
func (d *debootstrapRun) UnshareCache() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.undo == nil {
		return nil
	}
	undo := d.undo
	d.undo = nil
	if err := undo(); err != nil {
		return fmt.Errorf("putting dpkg's database back on disk: %w", err)
	}
	return nil
}

// HostFiles is empty: the native backend uses no host program.
func (n *Native) HostFiles() []HostFile { return nil }

// ForBuild returns a Native with n's settings and nothing opened yet.
func (n *Native) ForBuild() Bootstrapper {
	return &Native{CacheDir: n.CacheDir, Insecure: n.Insecure, Jobs: n.Jobs, Client: n.Client}
}
