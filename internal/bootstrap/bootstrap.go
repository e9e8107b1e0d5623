// Package bootstrap makes the base system of an image. debootstrap is the
// first backend; the interface leaves room for others.
package bootstrap

import (
	"context"
	"fmt"
	"strings"

	"vmdeb/internal/buildlog"
)

// Request is what a backend needs to know.
type Request struct {
	Suite      string
	Arch       string
	Mirror     string
	Components []string
	Variant    string // minbase, buildd, important
	Keyring    string // "" = the backend's default
	Include    []string
	Target     string // empty directory to fill
}

// Bootstrapper fills Target with a base system.
type Bootstrapper interface {
	Name() string
	// Tools lists host programs the backend needs: program -> Debian package.
	Tools() map[string]string
	Bootstrap(ctx context.Context, log *buildlog.Log, r Request) error
}

// New returns the backend by its config name.
func New(name string) (Bootstrapper, error) {
	switch name {
	case "debootstrap", "":
		return Debootstrap{}, nil
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
	if r.Variant != "" && r.Variant != "important" {
		args = append(args, "--variant="+r.Variant)
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
	return log.Run(ctx, buildlog.Cmd{Name: "debootstrap", Args: d.Args(r)})
}
