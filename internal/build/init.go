package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"vmdeb/internal/config"
	"vmdeb/internal/imgroot"
)

// initPackages provide /sbin/init in Debian; the first is the default.
var initPackages = []string{"systemd-sysv", "sysvinit-core", "runit-init", "init"}

// NeedsInit says whether the config's outputs boot the root file system
// (live ISO, disk image, or the squashfs a live medium is made from), so
// it must have an init. A tarball or directory may be a container's root,
// run with a command of its own instead of an init.
func NeedsInit(s *config.Spec) bool {
	return s.HasOutput(config.LiveISO) || s.HasOutput(config.Disk) || s.HasOutput(config.Squashfs)
}

// defaultInit is what the kernel (and the initramfs's run-init) starts
// when the command line names no init=.
const defaultInit = "/sbin/init"

// InitPaths are the programs the booted outputs start as PID 1: the last
// init= of each output's kernel command line (the live medium's
// live.kernel-params, a disk's own kernel-params), or /sbin/init.
func InitPaths(s *config.Spec) []string {
	var paths []string
	add := func(params []string) {
		p := defaultInit
		for _, kp := range params {
			if v, ok := strings.CutPrefix(kp, "init="); ok && v != "" {
				p = v
			}
		}
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	if s.HasOutput(config.LiveISO) || s.HasOutput(config.Squashfs) {
		add(s.Live.KernelParams)
	}
	for _, o := range s.Outputs {
		if o.Type == config.Disk {
			add(o.KernelParams)
		}
	}
	return paths
}

// initNote is the check-time warning for a bootable image whose package
// list names no init on a variant that has none: the build would stop
// after the packages unless a dependency or the hook brings one.
func initNote(s *config.Spec, pkgs []string) string {
	if !NeedsInit(s) || (s.Variant != config.Minbase && s.Variant != config.Buildd) ||
		!slices.Contains(InitPaths(s), defaultInit) {
		return ""
	}
	for _, p := range pkgs {
		name, _, _ := strings.Cut(strings.SplitN(p, "=", 2)[0], "/")
		if slices.Contains(initPackages, name) {
			return ""
		}
	}
	return fmt.Sprintf("no init in the package list (variant %s has none): the build fails before its outputs unless a package or the hook installs one; add %s to packages",
		s.Variant, initPackages[0])
}

// initStage refuses a bootable image without its init (/sbin/init, or the
// init= its kernel command line names): its kernel would end in the
// initramfs shell ("run-init: can't execute '/sbin/init'"), which nobody
// sees until the image is booted. It runs once the packages (and the
// hook, which may install one) are in, before any output.
type initStage struct{}

func (initStage) Name() string { return "init" }

func (initStage) Run(_ context.Context, st *State) error {
	for _, p := range InitPaths(st.Plan.Spec) {
		if err := CheckInit(st.Rootfs, p); err != nil {
			return err
		}
	}
	return nil
}

// CheckInit checks that rootfs has an executable init at path (absolute,
// inside the image), following symbolic links inside rootfs as the
// booted system would.
func CheckInit(rootfs, path string) error {
	r, err := imgroot.Open(rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	fi, err := r.Stat(path)
	if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return nil
	}
	why := "it has no " + path
	if err == nil {
		why = "its " + path + " is not an executable file"
	} else if !errors.Is(err, fs.ErrNotExist) {
		why = fmt.Sprintf("its %s cannot be read (%v)", path, err)
	}
	if path != defaultInit {
		return fmt.Errorf("the image would not boot: %s, which kernel-params names as init=; install it from the hook or a package, or remove init= to boot %s",
			why, defaultInit)
	}
	return fmt.Errorf("the image would not boot: %s; add an init system to packages: %s (Debian's default) or %s",
		why, initPackages[0], initPackages[1])
}
