package bootstrap

import (
	"context"

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

// ForBuild returns d: debootstrap keeps no state.
func (d Debootstrap) ForBuild() Bootstrapper { return d }

// Attach does nothing: debootstrap serves no chroot.
func (Debootstrap) Attach(context.Context, *buildlog.Log, Request) error { return nil }

// ShareCache does nothing: debootstrap has no package cache of its own.
func (Debootstrap) ShareCache(context.Context, *chroot.Chroot) error { return nil }

// UnshareCache does nothing (see ShareCache).
func (Debootstrap) UnshareCache() error { return nil }

// HostFiles is empty: the native backend uses no host program.
func (n *Native) HostFiles() []HostFile { return nil }

// ForBuild returns a Native with n's settings and nothing opened yet.
func (n *Native) ForBuild() Bootstrapper {
	return &Native{CacheDir: n.CacheDir, Insecure: n.Insecure, Jobs: n.Jobs, Client: n.Client}
}
