package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"vmdeb/internal/config"
	"vmdeb/internal/disk"
)

// initPackages provide /sbin/init in Debian; the first is the default.
var initPackages = []string{"systemd-sysv", "sysvinit-core", "runit-init", "init"}

// NeedsInit says whether the config's outputs boot the root file system
// (live ISO, disk image, or the squashfs a live medium is made from), so
// it must have an init. A tarball or directory may be a container's root,
// run with a command of its own instead of an init.
func NeedsInit(s *config.Spec) bool {
	return s.HasOutput("live-iso") || s.HasOutput("disk") || s.HasOutput("squashfs")
}

// initNote is the check-time warning for a bootable image whose package
// list names no init on a variant that has none: the build would stop
// after the packages unless a dependency or the hook brings one.
func initNote(s *config.Spec, pkgs []string) string {
	if !NeedsInit(s) || (s.Variant != "minbase" && s.Variant != "buildd") {
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

// initStage refuses a bootable image without /sbin/init: its kernel would
// end in the initramfs shell ("run-init: can't execute '/sbin/init'"),
// which nobody sees until the image is booted. It runs once the packages
// (and the hook, which may install one) are in, before any output.
type initStage struct{}

func (initStage) Name() string { return "init" }

func (initStage) Run(_ context.Context, st *State) error { return CheckInit(st.Rootfs) }

// CheckInit checks that rootfs has an executable /sbin/init, following
// symbolic links inside rootfs as the booted system would.
func CheckInit(rootfs string) error {
	p, err := disk.ResolveInRoot(rootfs, "/sbin/init")
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(p)
	}
	if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return nil
	}
	why := "it has no /sbin/init"
	if err == nil {
		why = "its /sbin/init is not an executable file"
	} else if !errors.Is(err, fs.ErrNotExist) {
		why = fmt.Sprintf("its /sbin/init cannot be read (%v)", err)
	}
	return fmt.Errorf("the image would not boot: %s; add an init system to packages: %s (Debian's default) or %s",
		why, initPackages[0], initPackages[1])
}
