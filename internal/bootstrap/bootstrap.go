// Package bootstrap makes the base system of an image. debootstrap is the
// first backend; the interface leaves room for others.
package bootstrap

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"vmdeb/internal/archive"

	"vmdeb/internal/aptauth"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
)

// Request is what a backend needs to know.
type Request struct {
	Suite      string
	Arch       string
	Mirror     string
	Components []string
	Variant    archive.Variant // minbase, buildd, important ("": important)
	Keyring    string          // "" = the backend's default
	Include    []string
	Target     string // empty directory to fill
	// Interpreter (a host path) is copied to InterpreterAt inside Target
	// before any target program runs: a foreign architecture without a
	// binfmt handler registered with flag F.
	Interpreter, InterpreterAt string
	// Auth is the mirrors' credentials; the mirror URL has none.
	Auth aptauth.Set
}

// Bootstrapper fills Target with a base system, and may then serve the
// build's chroot (the native backend shares its package cache with apt).
// A plan holds one with its settings only; each build runs its own copy
// (ForBuild), which keeps what it opens for that build.
type Bootstrapper interface {
	Name() string
	// Tools lists host programs the backend needs: program -> Debian package.
	Tools() map[string]string
	// HostFiles are host files whose content decides what the backend
	// makes, in a fixed order: part of the stage cache's key.
	HostFiles() []HostFile
	// ForBuild returns a backend with this one's settings and none of
	// its state, for one build.
	ForBuild() Bootstrapper
	// Bootstrap fills r.Target (an empty directory) with a base system.
	Bootstrap(ctx context.Context, log *buildlog.Log, r Request) error
	// Attach opens what the backend needs to serve a root file system it
	// did not make in this process (one restored from the stage cache),
	// as Bootstrap would have left it.
	Attach(ctx context.Context, log *buildlog.Log, r Request) error
	// ShareCache is called once the chroot on the root file system is set
	// up. UnshareCache undoes it; calling it again does nothing. The
	// build calls it when it takes the chroot down (the chroot's
	// processes killed first), and before it cleans apt's cache in the
	// image.
	ShareCache(ctx context.Context, c *chroot.Chroot) error
	UnshareCache() error
}

// HostFile is a named host file (see Bootstrapper.HostFiles).
type HostFile struct{ Name, Path string }

// New returns the backend by its config name.
func New(name string) (Bootstrapper, error) {
	switch name {
	case "debootstrap", "":
		return Debootstrap{}, nil
	case "native":
		return NewNative(), nil
	}
	return nil, fmt.Errorf("unknown bootstrap backend %q", name)
}

// Debootstrap runs Debian's debootstrap.
type Debootstrap struct{}

func (Debootstrap) Name() string { return "debootstrap" }

func (Debootstrap) Tools() map[string]string { return map[string]string{"debootstrap": "debootstrap"} }

// Args is debootstrap's command line for r.
func (Debootstrap) Args(r Request) []string {
	args := []string{"--arch=" + r.Arch, "--components=" + strings.Join(r.Components, ",")}
	if r.Variant != "" && r.Variant != archive.Important {
		args = append(args, "--variant="+string(r.Variant))
	}
	if r.Keyring != "" {
		args = append(args, "--keyring="+r.Keyring)
	}
	if len(r.Include) > 0 {
		args = append(args, "--include="+strings.Join(r.Include, ","))
	}
	return append(args, r.Suite, r.Target, r.Mirror)
}

func (d Debootstrap) Bootstrap(ctx context.Context, log *buildlog.Log, r Request) error {
	env, cleanup, err := netrcHome(r)
	if err != nil {
		return err
	}
	defer cleanup()
	if r.Interpreter == "" {
		return log.Run(ctx, buildlog.Cmd{Name: "debootstrap", Args: d.Args(r), Env: env})
	}
	// Two stages: unpack, put the emulator in, then configure inside.
	if err := log.Run(ctx, buildlog.Cmd{Name: "debootstrap", Args: append([]string{"--foreign"}, d.Args(r)...), Env: env}); err != nil {
		return err
	}
	if err := CopyInterpreter(r.Interpreter, filepath.Join(r.Target, r.InterpreterAt)); err != nil {
		return err
	}
	return log.Run(ctx, buildlog.Cmd{Name: "/debootstrap/debootstrap", Args: []string{"--second-stage"}, Root: r.Target})
}

// netrcHome gives debootstrap's wget the mirrors' credentials without a
// command line or the image seeing them: a private HOME (beside the
// target, in the build's own work directory) with a 0600 .netrc, whose
// entries name hosts only, as netrc does.
func netrcHome(r Request) ([]string, func(), error) {
	if len(r.Auth) == 0 {
		return nil, func() {}, nil
	}
	home, err := os.MkdirTemp(filepath.Dir(r.Target), "netrc-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(home) }
	var b strings.Builder
	for _, e := range r.Auth {
		m := e.Machine
		if _, after, ok := strings.Cut(m, "://"); ok {
			m = after
		}
		host, _, _ := strings.Cut(m, "/")
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		fmt.Fprintf(&b, "machine %s login %s password %s\n", host, e.Login, e.Password)
	}
	if err := os.WriteFile(filepath.Join(home, ".netrc"), []byte(b.String()), 0o600); err != nil {
		cleanup()
		return nil, nil, err
	}
	return []string{"HOME=" + home}, cleanup, nil
}

// CopyInterpreter puts a qemu-user binary into a root file system.
func CopyInterpreter(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("binfmt handler: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}
