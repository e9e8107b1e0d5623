// Package build turns a validated config into an image: a plan made
// before anything is touched, then a list of stages run in order.
package build

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"vmdeb/internal/aptauth"

	"vmdeb/internal/apt"
	"vmdeb/internal/arch"
	"vmdeb/internal/archive"
	"vmdeb/internal/bootstrap"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
	"vmdeb/internal/disk"
	"vmdeb/internal/live"
)

// Plan is everything the build will do, resolved from the config and the
// host before anything is created. It is data: a build keeps what it opens
// and mounts in its State, Bootstrap included (Bootstrapper.ForBuild).
type Plan struct {
	Spec      *config.Spec
	Arch      arch.Arch
	Release   apt.DebianRelease
	Mirror    string // used while building
	AptMirror string // written into the image
	Security  string // security archive for the image ("" = none)
	Updates   bool   // add <suite>-updates to the image's sources
	Packages  []string
	// Bootstrap is the backend with the config's settings.
	Bootstrap bootstrap.Bootstrapper
	// PackageCache is the package cache shared by the machine's builds:
	// the native bootstrapper's, and where the packages stage fetches
	// what apt will install, whatever the backend (prefetch).
	PackageCache string
	// Interpreter is a qemu-user binary on the host that must be inside
	// the root file system at InterpreterAt while the build runs (a
	// foreign architecture whose handler is not registered with flag F,
	// or the config's binfmt-handler). Empty: nothing to copy.
	Interpreter, InterpreterAt string
	// SourceDateEpoch (from the environment, 0 = unset) fixes the dates
	// in the outputs and is passed to the tools that honour it.
	SourceDateEpoch int64
	// TargetGrub: take the GRUB EFI modules from the target's archive
	// (the host has none for this architecture).
	TargetGrub bool
	// ReleaseDigest is the SHA256 of the suite's Release file as the
	// mirror serves it now ("" offline): part of the stage cache's keys.
	ReleaseDigest string
	// Rootless: the build runs in a user namespace (isolation: userns).
	Rootless bool
	// Notes are decisions the plan made that the build log should say.
	Notes []string
}

// PreflightError is a problem found before the build starts: bad config,
// a missing tool, a mirror without the suite. Exit status 2.
type PreflightError struct{ Err error }

func (e *PreflightError) Error() string { return e.Err.Error() }
func (e *PreflightError) Unwrap() error { return e.Err }

// Options change how a plan is made.
type Options struct {
	HostRoot string // where to read the host's apt sources ("/")
	Offline  bool   // skip asking the mirror
	// BinfmtDir is where binfmt_misc handlers are read ("" = the kernel's).
	BinfmtDir string
	// Rootless: plan for a build in a user namespace.
	Rootless bool
}

// NewPlan resolves defaults from the host, checks tools and asks the
// mirror whether it has the suite, architecture and components.
func NewPlan(ctx context.Context, s *config.Spec, o Options) (*Plan, error) {
	if o.HostRoot == "" {
		o.HostRoot = "/"
	}
	a, err := arch.Lookup(s.Architecture)
	if err != nil {
		return nil, &PreflightError{s.Errorf("architecture", "%v", err)}
	}
	rel, _ := apt.LookupSuite(s.Suite)
	p := &Plan{Spec: s, Arch: a, Release: rel, Mirror: s.Mirror, AptMirror: s.AptMirror, Security: s.SecurityMirror, Rootless: o.Rootless}
	host, err := p.mirrors(o.HostRoot)
	if err != nil {
		return nil, err
	}
	backend := s.Bootstrap
	if o.Rootless {
		if err := rootlessOutputs(s); err != nil {
			return nil, &PreflightError{err}
		}
		if backend == config.Debootstrap {
			// debootstrap makes device nodes and mounts sysfs, which a user
			// namespace forbids; the native bootstrapper installs the same
			// package set without either.
			backend = config.Native
			p.Notes = append(p.Notes, "rootless: the base system is made by the native bootstrapper (debootstrap needs real root)")
		}
	}
	p.PackageCache = packageCacheDir(s, o.Rootless)
	if p.Bootstrap, err = newBackend(s, backend, o.Rootless); err != nil {
		return nil, &PreflightError{s.Errorf("bootstrap", "%v", err)}
	}
	p.Packages = packageList(s)
	if n := initNote(s, p.Packages); n != "" {
		p.Notes = append(p.Notes, n)
	}
	if n := ociKernelNote(s); n != "" {
		p.Notes = append(p.Notes, n)
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, &PreflightError{fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970 (e.g. $(git log -1 --format=%%ct))", v)}
		}
		p.SourceDateEpoch = n
	}
	if err := p.emulation(o.BinfmtDir); err != nil {
		return nil, &PreflightError{err}
	}
	if needsGrubEFI(s, a) {
		_, hostHas := live.HostGrubDir(a)
		p.TargetGrub = !hostHas
	}

	if err := buildlog.MissingError(p.MissingTools()); err != nil {
		return nil, &PreflightError{err}
	}
	if o.Offline {
		return p, nil
	}
	if err := p.checkMirror(ctx, host.Security); err != nil {
		return nil, err
	}
	return p, nil
}

// mirrors sets the build's and the image's mirror: the config's, else
// the host's, with the host's credentials for it. It returns the host's
// mirrors (their credentials taken out of the URLs).
func (p *Plan) mirrors(hostRoot string) (apt.HostMirrors, error) {
	s := p.Spec
	host, hostErr := apt.DetectHostMirrors(hostRoot)
	if u, e := aptauth.Split(host.Security); e != nil {
		host.Security = u
		s.Auth = append(s.Auth, *e)
	}
	if p.Mirror == "" {
		if hostErr != nil {
			return host, &PreflightError{s.Errorf("mirror", "not set, and %v", hostErr)}
		}
		p.Mirror = host.Mirror
		// The host's credentials for its mirror: in the URL (which no
		// log or image may show) or in its auth.conf files.
		if u, e := aptauth.Split(p.Mirror); e != nil {
			p.Mirror = u
			s.Auth = append(s.Auth, *e)
		}
		set, err := hostAuth(hostRoot)
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("the host's apt credentials are not used: %v", err))
		}
		s.Auth = append(s.Auth, set...)
	}
	p.Mirror = strings.TrimRight(p.Mirror, "/")
	if p.AptMirror == "" {
		p.AptMirror = p.Mirror
	}
	return host, nil
}

// checkMirror asks the mirror whether it has the suite, architecture and
// components, and sets the Release digest and the image's updates and
// security sources from its answer.
func (p *Plan) checkMirror(ctx context.Context, hostSecurity string) error {
	s, a := p.Spec, p.Arch
	ri, err := apt.FetchRelease(ctx, p.Mirror, s.Suite, s.Auth)
	var noAnswer *apt.NoAnswerError
	switch {
	case errors.As(err, &noAnswer):
		return &PreflightError{s.Errorf("mirror", "%v", err)}
	case archive.NotFound(err):
		return &PreflightError{s.Errorf("suite", "the mirror %s does not offer %s: %v", p.Mirror, s.Suite, err)}
	case err != nil:
		return &PreflightError{s.Errorf("mirror", "cannot read %s from the mirror %s: %v", s.Suite, p.Mirror, err)}
	}
	p.ReleaseDigest = ri.Digest
	if !ri.HasArch(a.Name) {
		return &PreflightError{s.Errorf("architecture", "the mirror's %s has no %s packages (it has: %s)", s.Suite, a.Name, strings.Join(ri.Architectures, ", "))}
	}
	for i, c := range s.Components {
		if !ri.HasComponent(c) {
			return &PreflightError{s.Errorf(fmt.Sprintf("components[%d]", i), "the mirror's %s has no component %q (it has: %s)", s.Suite, c, strings.Join(ri.Components, ", "))}
		}
	}
	if ri.Stable() {
		p.Updates = true
		if p.Security == "" {
			p.Security = securityFor(p.AptMirror, hostSecurity)
		}
	} else if s.SecurityMirror == "" {
		p.Security = ""
	}
	return nil
}

// newBackend is the bootstrap backend by its config name, with the
// config's settings: the native one's package cache, credentials and
// whether it accepts an unsigned archive.
func newBackend(s *config.Spec, name config.Backend, rootless bool) (bootstrap.Bootstrapper, error) {
	if name != config.Native {
		return bootstrap.New(string(name))
	}
	n := bootstrap.NewNative()
	n.CacheDir, n.Insecure = packageCacheDir(s, rootless), s.Insecure
	if len(s.Auth) > 0 {
		n.Client = archive.NewClient()
		n.Client.Auth = s.Auth
	}
	return n, nil
}

// packageCacheDir is the config's package cache: its cache key, else
// the machine's (root's) or, for a rootless build, the user's.
func packageCacheDir(s *config.Spec, rootless bool) string {
	switch {
	case s.Cache != "":
		return s.Path(s.Cache)
	case rootless:
		return UserCacheDir("debs")
	}
	return archive.DefaultCacheDir
}

// emulation decides how the target's programs run on this host: natively,
// through a binfmt handler registered with flag F (nothing to copy), or
// with a qemu-user binary copied into the root file system for the build.
func (p *Plan) emulation(binfmtDir string) error {
	s := p.Spec
	explicit := s.Path(s.BinfmtHandler)
	if binfmtDir == "" {
		binfmtDir = arch.BinfmtDir
	}
	if p.Arch.Native() && explicit == "" {
		if p.Arch.Name == arch.HostName() {
			return nil
		}
		// i386 on amd64, armhf on arm64: the kernel's compat layer runs
		// them, or a qemu-user handler where it is off.
		h, herr := arch.ReadHandler(binfmtDir, p.Arch)
		if herr != nil {
			if err := arch.Runs(p.Arch); err != nil {
				return s.Errorf("architecture", "%s programs cannot run on this %s host: %v (its 32-bit compat layer is off or built out, e.g. ia32_emulation=0) and %v; "+
					"make deps registers a %s handler on such a host (see docs/architectures.md)", p.Arch.Name, arch.HostName(), err, herr, "qemu-"+p.Arch.QemuUser)
			}
			return nil
		}
		if !h.Fixed() {
			p.Interpreter, p.InterpreterAt = h.Interpreter, h.Interpreter
		}
		return nil
	}
	h, err := arch.ReadHandler(binfmtDir, p.Arch)
	if err != nil {
		return s.Errorf("architecture", "%s programs cannot run on this %s host: %v", p.Arch.Name, arch.HostName(), err)
	}
	switch {
	case explicit != "" && !h.Fixed():
		// The kernel looks for the registered path inside the chroot.
		p.Interpreter, p.InterpreterAt = explicit, h.Interpreter
	case explicit != "":
		p.Interpreter, p.InterpreterAt = explicit, explicit
	case !h.Fixed():
		p.Interpreter, p.InterpreterAt = h.Interpreter, h.Interpreter
	}
	return nil
}

// hostAuth reads the host's apt credentials (/etc/apt/auth.conf and
// auth.conf.d/*.conf, as apt does) for use with the host's mirror; files
// this user cannot read are skipped, as apt skips them.
func hostAuth(root string) (aptauth.Set, error) {
	if root == "" {
		root = "/"
	}
	files, _ := filepath.Glob(filepath.Join(root, "etc/apt/auth.conf.d/*.conf"))
	files = append([]string{filepath.Join(root, "etc/apt/auth.conf")}, files...)
	var set aptauth.Set
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s, err := aptauth.Parse(data, f)
		if err != nil {
			return set, err
		}
		set = append(set, s...)
	}
	return set, nil
}

// securityFor picks the image's security archive: the host's when the
// image uses the host's mirror, else the apt-mirror's sibling
// (…/debian → …/debian-security), the layout of Debian's mirrors.
func securityFor(aptMirror, hostSecurity string) string {
	if hostSecurity != "" {
		return hostSecurity
	}
	if b, ok := strings.CutSuffix(aptMirror, "/debian"); ok {
		return b + "/debian-security"
	}
	return ""
}

// packageList is what apt installs in the chroot: the kernel, what each
// output needs, sudo when a user gets it, and the config's packages.
func packageList(s *config.Spec) []string {
	var l []string
	if k := s.KernelPackage(); k != "" {
		l = append(l, k)
	}
	if s.HasOutput("live-iso") {
		l = append(l, "live-boot", "live-config", "systemd-sysv")
	}
	for _, u := range s.Users {
		if u.Sudo {
			l = append(l, "sudo")
			break
		}
	}
	for _, o := range s.Outputs {
		// networkd's DHCP gives no DNS without resolved, a package of its
		// own from bookworm on.
		if r, _ := apt.LookupSuite(s.Suite); o.Type == config.Disk && (o.Network == "" || o.Network == disk.Networkd) && (r.Version == 0 || r.Version >= 12) {
			l = append(l, "systemd-resolved")
		}
		if o.Type == config.Disk && o.Network == disk.Ifupdown {
			l = append(l, "ifupdown", "isc-dhcp-client")
		}
		if o.Type == config.Disk && o.GrowRoot {
			l = append(l, "cloud-guest-utils", "e2fsprogs") // growpart, resize2fs
		}
		// The root file system's own tools (fsck, resize, scrub).
		if o.Type == config.Disk && o.Filesystem == disk.Btrfs {
			l = append(l, "btrfs-progs")
		}
		if o.Type == config.Disk && o.Filesystem == disk.XFS {
			l = append(l, "xfsprogs")
		}
		l = append(l, diskPackages(s, o)...)
	}
	l = append(append(l, s.CommonPackages...), s.Packages...)
	seen := map[string]bool{}
	var out []string
	for _, p := range l {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// MissingTools lists host programs and files the build needs but cannot
// find on the PATH its commands run with, each with the Debian package
// that provides it.
func (p *Plan) MissingTools() []buildlog.Missing {
	need := map[string]string{"chroot": "coreutils"}
	if p.Spec.HasOutput("tarball") {
		need["tar"] = "tar"
	}
	if p.Spec.HasOutput("ext4") {
		need["mke2fs"], need["e2fsck"], need["debugfs"] = "e2fsprogs", "e2fsprogs", "e2fsprogs"
	}
	for k, v := range p.Bootstrap.Tools() {
		need[k] = v
	}
	if p.SourceDateEpoch > 0 && p.Spec.HasPlainPassword() {
		need["openssl"] = "openssl" // reproducible password hashes
	}
	var n buildlog.Needs
	for _, prog := range slices.Sorted(maps.Keys(need)) {
		n.Bin(prog, need[prog])
	}
	out := n.Missing
	if p.Spec.HasOutput("live-iso") {
		out = append(out, live.CheckTools(p.Arch, p.Spec.Live.Splash != "")...)
	}
	for _, o := range p.Spec.Outputs {
		if o.Type == config.Disk {
			for _, m := range disk.CheckTools(diskOptions(p, o, "")) {
				if p.TargetGrub && m.Package == p.Arch.GrubEFIPackage {
					continue // taken from the target's archive
				}
				out = append(out, m)
			}
		}
	}
	slices.SortFunc(out, func(a, b buildlog.Missing) int { return strings.Compare(a.What, b.What) })
	return slices.CompactFunc(out, func(a, b buildlog.Missing) bool { return a == b })
}

// needsGrubEFI tells whether an output of s boots through GRUB for UEFI
// on a: a live ISO, or a disk with grub-uefi or grub-hybrid (a board
// image has no boot loader of vmdeb's).
func needsGrubEFI(s *config.Spec, a arch.Arch) bool {
	if !a.HasFirmware(arch.UEFI) {
		return false
	}
	for _, o := range s.Outputs {
		switch o.Type {
		case config.LiveISO:
			return true
		case config.Disk:
			if b := o.DiskBootloader(a); b == disk.GrubUEFI || b == disk.GrubHybrid {
				return true
			}
		}
	}
	return false
}

// rootlessOutputs refuses what a user namespace cannot make.
func rootlessOutputs(s *config.Spec) error {
	for i, o := range s.Outputs {
		if o.Type == config.Disk && o.Bootloader == disk.Extlinux {
			return s.Errorf(fmt.Sprintf("outputs[%d].bootloader", i),
				"extlinux installs through a loop-mounted file system, which a rootless build cannot mount (valid rootless: grub-bios, grub-uefi, grub-hybrid, none; or build as root or with isolation: vm)")
		}
		if o.Type == config.Disk && o.ImageHook != "" {
			return s.Errorf(fmt.Sprintf("outputs[%d].image-hook", i),
				"the image hook is not supported in rootless builds yet (build as root or with isolation: vm)")
		}
	}
	return nil
}

// UserCacheDir is where an ordinary user's builds keep what
// /var/cache/vmdeb holds for root (config.UserCacheDir).
func UserCacheDir(sub string) string { return config.UserCacheDir(sub) }

// RequireRoot says why a build needs root when it does not have it.
func RequireRoot() error {
	if os.Geteuid() != 0 {
		return &PreflightError{fmt.Errorf("vmdeb build needs root (the bootstrap makes device nodes and the build mounts /proc, /sys and /dev in the chroot); run it with sudo")}
	}
	return nil
}

// Sources is the image's final apt sources.
func (p *Plan) Sources() apt.ImageSources {
	return apt.ImageSources{Release: p.Release, Suite: p.Spec.Suite, Mirror: p.AptMirror, Security: p.Security,
		Components: p.Spec.Components, Updates: p.Updates}
}
