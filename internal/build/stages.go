package build

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"pault.ag/go/debian/control"

	"vmdeb/internal/apt"
	"vmdeb/internal/arch"
	"vmdeb/internal/archive"
	"vmdeb/internal/bootstrap"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/config"
	"vmdeb/internal/imgroot"
	"vmdeb/internal/live"
	"vmdeb/internal/sbom"
)

// Stages is the default pipeline for a plan: the common system stages,
// then one stage per output, then the report. The chroot is no stage: the
// runner sets it up for the stages that need it.
func Stages(p *Plan) []Stage {
	s := []Stage{bootstrapStage{}}
	if len(p.Spec.CommonPackages) > 0 {
		s = append(s, commonPackagesStage{})
	}
	s = append(s, packagesStage{})
	if p.TargetGrub {
		s = append(s, targetGrubStage{})
	}
	if NeedsSecureBoot(p.Spec) {
		s = append(s, secureBootStage{})
	}
	needInit := NeedsInit(p.Spec)
	if needInit && p.Spec.Customise == "" {
		s = append(s, initStage{})
	}
	s = append(s, systemStage{})
	if p.Spec.Customise != "" {
		s = append(s, hookStage{})
		if needInit {
			// The hook may install the init itself.
			s = append(s, initStage{})
		}
	}
	s = append(s, finaliseStage{})
	if wantsInstaller(p) {
		s = append(s, installerStage{})
	}
	for _, o := range p.Spec.Outputs {
		switch o.Type {
		case config.LiveISO:
			s = append(s, liveISOStage{out: p.Spec.Path(o.Path)})
		case config.Tarball:
			s = append(s, tarballStage{out: p.Spec.Path(o.Path)})
		case config.Directory:
			s = append(s, directoryStage{out: p.Spec.Path(o.Path)})
		case config.Squashfs:
			s = append(s, squashfsStage{out: p.Spec.Path(o.Path)})
		case config.Disk:
			s = append(s, diskStage{out: o})
		case config.Ext4:
			s = append(s, ext4Stage{out: o})
		case config.OCI:
			s = append(s, ociStage{out: o})
		}
	}
	return append(s, reportStage{})
}

// bootstrapStage makes the base system (cached: see CacheInputs).
type bootstrapStage struct{}

func (bootstrapStage) Name() string { return "bootstrap" }

// sharedBetweenImages: a set starts its next image once the base system
// is in the stage cache.
func (bootstrapStage) sharedBetweenImages() {}

func (bootstrapStage) Run(ctx context.Context, st *State) error {
	return st.Backend.Bootstrap(ctx, st.Log, bootstrapRequest(st))
}

func bootstrapRequest(st *State) bootstrap.Request {
	s := st.Plan.Spec
	return bootstrap.Request{
		Suite: s.Suite, Arch: st.Plan.Arch.Name, Mirror: st.Plan.Mirror, Components: s.Components,
		Variant: s.Variant, Keyring: s.Path(s.Keyring), Target: st.Rootfs,
		Interpreter: st.Plan.Interpreter, InterpreterAt: st.Plan.InterpreterAt, Auth: s.Auth,
	}
}

// packagesStage installs the kernel, the live stack and the config's
// packages with apt, Recommends included, as the image will have them
// (cached: see CacheInputs).
type packagesStage struct{ inChroot }

func (packagesStage) Name() string { return "packages" }

// aptOptions keep apt quiet on the terminal and complete in the log.
// The Acquire options bound a mirror that stops answering (apt's Timeout
// is the time without any data; apt has no low-speed limit): given on
// the command line, they never reach the image's apt configuration.
var aptOptions = []string{"-y", "-q", "-o", "APT::Install-Recommends=true", "-o", "Dpkg::Use-Pty=0",
	"-o", "APT::Color=0", "-o", "Dpkg::Progress-Fancy=0", "-o", "Dpkg::Options::=--force-confdef",
	"-o", "Dpkg::Options::=--force-confold",
	"-o", "Acquire::http::Timeout=30", "-o", "Acquire::https::Timeout=30", "-o", "Acquire::Retries=3"}

// AptInstallArgs is the apt-get command line that installs pkgs, with
// extra options (aptAuth's) before the command.
func AptInstallArgs(pkgs []string, extra ...string) []string {
	return append(append(append(append([]string{}, aptOptions...), extra...), "install"), pkgs...)
}

// aptAuthFile is where apt in the chroot finds the mirrors' credentials:
// on the chroot's own tmpfs /run, which is not part of the image.
const aptAuthFile = "/run/vmdeb/auth.conf"

// aptAuth writes the mirrors' credentials (if the config has any) for apt
// in the chroot and returns the options that point apt at them.
func aptAuth(st *State) ([]string, error) {
	auth := st.Plan.Spec.Auth
	if len(auth) == 0 {
		return nil, nil
	}
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := r.MkdirAll("run/vmdeb", 0o700); err != nil {
		return nil, err
	}
	if err := r.WriteFile(aptAuthFile, auth.Format(), 0o600); err != nil {
		return nil, err
	}
	// Dir::Etc::netrc is apt's auth.conf; the parts directory is emptied
	// so that only these credentials are used.
	return []string{"-o", "Dir::Etc::netrc=" + aptAuthFile, "-o", "Dir::Etc::netrcparts=/run/vmdeb/auth.conf.d"}, nil
}

func (packagesStage) Run(ctx context.Context, st *State) error {
	common := len(st.Plan.Spec.CommonPackages) > 0
	// After common-packages, apt's lists are those of the same Release
	// (its digest is in the bootstrap's key) and the debconf answers are
	// given.
	opts, err := aptPrepare(ctx, st, !common)
	if err != nil {
		return err
	}
	if common {
		if err := takePutOffInitramfs(st); err != nil {
			return err
		}
	}
	if err := aptInstall(ctx, st, st.Plan.Packages, opts); err != nil {
		return err
	}
	// Local packages are installed whether or not the config lists any
	// from the archive.
	if err := installCustom(ctx, st, opts); err != nil {
		return err
	}
	if common {
		if err := runPendingTriggers(ctx, st); err != nil {
			return err
		}
	}
	return makeInitramfs(ctx, st)
}

// aptPrepare readies apt in the chroot for an install: the mirrors'
// credentials, apt-get update and the debconf answers (unless fresh is
// false: a stage before did both), the initramfs put off. It returns
// the options every apt-get install of the stage takes.
func aptPrepare(ctx context.Context, st *State, fresh bool) ([]string, error) {
	auth, err := aptAuth(st)
	if err != nil {
		return nil, err
	}
	if fresh {
		if err := st.Chroot.Run(ctx, buildlog.Cmd{Name: "apt-get", Args: append(append(append([]string{}, aptOptions...), auth...), "update")}); err != nil {
			return nil, err
		}
		if err := setDebconf(ctx, st); err != nil {
			return nil, err
		}
	}
	putOff, err := putOffInitramfs(st)
	if err != nil {
		return nil, err
	}
	return slices.Concat(auth, putOff), nil
}

// aptInstall fetches pkgs ahead and installs them with apt-get.
func aptInstall(ctx context.Context, st *State, pkgs, opts []string) error {
	if len(pkgs) == 0 {
		return nil
	}
	if err := prefetch(ctx, st, pkgs, opts); err != nil {
		return err
	}
	st.Log.Printf("installing %d packages and their dependencies: %s", len(pkgs), strings.Join(pkgs, " "))
	pw := buildlog.NewPackageProgress(st.Log, 0)
	return st.Chroot.Run(ctx, buildlog.Cmd{Name: "apt-get", Args: AptInstallArgs(pkgs, opts...), Line: pw.Line})
}

// commonPackagesStage installs common-packages: what a family of images
// has in common, in a stage whose cache entry each of them reuses
// (cached: see CacheInputs). Triggers and the initramfs are left to the
// packages stage, so that each runs once over everything installed.
type commonPackagesStage struct{ inChroot }

func (commonPackagesStage) Name() string { return "common-packages" }

// sharedBetweenImages: a set starts its next image once this stage is
// in the stage cache.
func (commonPackagesStage) sharedBetweenImages() {}

// deferTriggers leave the packages' triggers pending at the end of an
// apt run: apt configures every package itself (Configure=all, not
// leaving it to dpkg --configure --pending), with dpkg's --no-triggers,
// and skips its final dpkg --configure --pending. The next apt run, or
// runPendingTriggers, runs them.
var deferTriggers = []string{"-o", "PackageManager::Configure=all", "-o", "DPkg::NoTriggers=true", "-o", "DPkg::ConfigurePending=false"}

func (commonPackagesStage) Run(ctx context.Context, st *State) error {
	opts, err := aptPrepare(ctx, st, true)
	if err != nil {
		return err
	}
	if err := aptInstall(ctx, st, st.Plan.Spec.CommonPackages, append(opts, deferTriggers...)); err != nil {
		return err
	}
	return keepPutOffInitramfs(st)
}

// runPendingTriggers ends the packages stage of an image with
// common-packages: the triggers the common stage left pending run, once,
// with everything installed (apt ran them already if it ran dpkg at all;
// if the image's own packages were all installed before, it did not).
func runPendingTriggers(ctx context.Context, st *State) error {
	path := "PATH=" + initramfsDir + ":" + dpkgPath
	if err := st.Chroot.Run(ctx, buildlog.Cmd{Name: "dpkg", Args: []string{"--configure", "--pending"}, Env: []string{path}}); err != nil {
		return fmt.Errorf("running the triggers left pending: %w", err)
	}
	return nil
}

// setDebconf gives debconf the config's answers (debconf:) before any
// package is installed, as debconf-set-selections in the image.
func setDebconf(ctx context.Context, st *State) error {
	sel := st.Plan.Spec.Debconf
	if len(sel) == 0 {
		return nil
	}
	st.Log.Printf("debconf: %d answers from the config", len(sel))
	in := strings.Join(sel, "\n") + "\n"
	if err := st.Chroot.Run(ctx, buildlog.Cmd{Name: "debconf-set-selections", Stdin: strings.NewReader(in)}); err != nil {
		return fmt.Errorf("debconf: %w", err)
	}
	return nil
}

// targetGrubStage fetches the target's GRUB EFI modules when the host has
// none for its architecture.
type targetGrubStage struct{ inChroot }

func (targetGrubStage) Name() string { return "target-grub" }

func (targetGrubStage) Run(ctx context.Context, st *State) error { return fetchTargetGrub(ctx, st) }

// installCustom installs the config's local .deb files with apt, so their
// dependencies come from the mirror; opts are more apt options.
func installCustom(ctx context.Context, st *State, opts []string) error {
	s := st.Plan.Spec
	if len(s.CustomPackages) == 0 {
		return nil
	}
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	const dir = "tmp/vmdeb-debs"
	if err := r.RemoveAll(dir); err != nil {
		return err
	}
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer r.RemoveAll(dir)
	var inside []string
	for _, d := range s.CustomPackages {
		data, err := os.ReadFile(s.Path(d))
		if err != nil {
			return err
		}
		if err := r.WriteFile(dir+"/"+filepath.Base(d), data, 0o644); err != nil {
			return err
		}
		inside = append(inside, "/tmp/vmdeb-debs/"+filepath.Base(d))
	}
	st.Log.Printf("installing %d local packages: %s", len(inside), strings.Join(inside, " "))
	return st.Chroot.Run(ctx, buildlog.Cmd{Name: "apt-get", Args: AptInstallArgs(inside, opts...)})
}

// fetchTargetGrub downloads the target's GRUB EFI package with the
// chroot's apt and unpacks it into the work directory, outside the image:
// the host has no GRUB modules for this architecture.
func fetchTargetGrub(ctx context.Context, st *State) error {
	a := st.Plan.Arch
	debs, err := fetchDebs(ctx, st, "grub", []string{a.GrubEFIPackage}, "for the ISO's EFI loader")
	if err != nil {
		return err
	}
	st.GrubDir = filepath.Join(st.WorkDir, "grub", "usr/lib/grub", a.GrubEFITarget)
	st.Log.Printf("EFI loader from the target's %s", debs[0])
	return nil
}

// secureBootStage fetches Debian's signed shim and GRUB for an ISO that
// boots with Secure Boot on.
type secureBootStage struct{ inChroot }

func (secureBootStage) Name() string { return "secure-boot" }

func (secureBootStage) Run(ctx context.Context, st *State) error {
	sb := st.Plan.Arch.SecureBoot
	if sb == nil {
		return fmt.Errorf("Debian signs no boot loaders for %s", st.Plan.Arch.Name)
	}
	debs, err := fetchDebs(ctx, st, "signed", sb.Packages, "for Secure Boot")
	if err != nil {
		return err
	}
	dir := filepath.Join(st.WorkDir, "signed")
	for _, f := range []string{sb.Shim, sb.Grub} {
		if fi, err := os.Lstat(filepath.Join(dir, f)); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%s has no %s", strings.Join(debs, ", "), f)
		}
	}
	st.SignedDir = dir
	st.Log.Printf("signed loaders from %s", strings.Join(debs, ", "))
	return nil
}

// NeedsSecureBoot tells whether a live ISO of s boots on UEFI through
// Debian's signed chain, whose loaders the secure-boot stage fetches
// outside the image, when secure-boot is on (or auto, where Debian signs
// the loaders). A disk needs no such stage: its image holds the signed
// packages itself (diskPackages) and its ESP is laid out from them.
func NeedsSecureBoot(s *config.Spec) bool {
	if !s.UsesSecureBoot() || !s.HasOutput(config.LiveISO) {
		return false
	}
	a, err := arch.Lookup(s.Architecture)
	return err == nil && a.HasFirmware(arch.UEFI)
}

// isoSigned are the signed loaders for a live ISO (nil: the build uses
// no Secure Boot).
func (st *State) isoSigned() *live.SignedLoaders {
	sb := st.Plan.Arch.SecureBoot
	if st.SignedDir == "" || sb == nil {
		return nil
	}
	return &live.SignedLoaders{Shim: filepath.Join(st.SignedDir, sb.Shim), Grub: filepath.Join(st.SignedDir, sb.Grub)}
}

// fetchDebs downloads pkgs with the chroot's apt (from the build's
// mirror, verified through its signed Release) and unpacks them into
// WorkDir/sub, outside the image. It returns the packages' file names.
func fetchDebs(ctx context.Context, st *State, sub string, pkgs []string, why string) ([]string, error) {
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	const dl = "tmp/vmdeb-debs-dl"
	if err := r.RemoveAll(dl); err != nil {
		return nil, err
	}
	if err := r.MkdirAll(dl, 0o755); err != nil {
		return nil, err
	}
	defer r.RemoveAll(dl)
	auth, err := aptAuth(st) // the chroot's /run may be new since the packages stage
	if err != nil {
		return nil, err
	}
	args := append(append(auth, "download"), pkgs...)
	if err := st.Chroot.Run(ctx, buildlog.Cmd{Name: "sh", Args: []string{"-c", "cd /" + dl + " && apt-get -q " + strings.Join(args, " ")}}); err != nil {
		return nil, fmt.Errorf("downloading %s %s: %w", strings.Join(pkgs, ", "), why, err)
	}
	dest := filepath.Join(st.WorkDir, sub)
	var names []string
	for _, pkg := range pkgs {
		debs, _ := r.Glob(dl + "/" + pkg + "_*.deb")
		if len(debs) != 1 {
			return nil, fmt.Errorf("expected one %s package, found %d", pkg, len(debs))
		}
		// The package is read from a copy outside the image: a path into
		// it could be a link.
		data, err := r.ReadFile(debs[0])
		if err != nil {
			return nil, err
		}
		deb := filepath.Join(st.WorkDir, path.Base(debs[0]))
		if err := os.WriteFile(deb, data, 0o644); err != nil {
			return nil, err
		}
		err = archive.ExtractDir(deb, dest)
		os.Remove(deb)
		if err != nil {
			return nil, err
		}
		names = append(names, path.Base(debs[0]))
	}
	return names, nil
}

// systemStage sets the host name, creates the users and locks or sets
// root's password. Passwords go to chpasswd on stdin, which hashes them:
// they never appear on a command line or in the log.
type systemStage struct{ inChroot }

func (systemStage) Name() string { return "system" }

func (systemStage) Run(ctx context.Context, st *State) error {
	s, c := st.Plan.Spec, st.Chroot
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	// Replaced, not written through: a link a package left there is
	// replaced by the file. The modes are set whatever the umask.
	if err := r.WriteFile("etc/hostname", []byte(s.ShortHostname()+"\n"), 0o644); err != nil {
		return err
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n", s.HostsNames())
	if err := r.WriteFile("etc/hosts", []byte(hosts), 0o644); err != nil {
		return err
	}
	for _, u := range s.Users {
		args := []string{"--create-home", "--shell", u.Shell, "--user-group"}
		groups := append([]string{}, u.Groups...)
		if u.Sudo {
			groups = append([]string{"sudo"}, groups...)
		}
		if len(groups) > 0 {
			args = append(args, "--groups", strings.Join(groups, ","))
		}
		if err := c.Run(ctx, buildlog.Cmd{Name: "useradd", Args: append(args, u.Name)}); err != nil {
			return fmt.Errorf("creating user %s: %w", u.Name, err)
		}
		if err := setPassword(ctx, st, u.Name, u.Password, u.PasswordHash); err != nil {
			return err
		}
		st.Log.Printf("user %s created%s", u.Name, map[bool]string{true: " (sudo)", false: ""}[u.Sudo])
	}
	if s.LockRoot() {
		if err := c.Run(ctx, buildlog.Cmd{Name: "passwd", Args: []string{"--lock", "root"}}); err != nil {
			return err
		}
		st.Log.Printf("root password locked")
	} else if err := setPassword(ctx, st, "root", s.Root.Password, s.Root.PasswordHash); err != nil {
		return err
	}
	return nil
}

func setPassword(ctx context.Context, st *State, user, password, hash string) error {
	c := st.Chroot
	if password != "" && hash == "" && st.Plan.SourceDateEpoch > 0 {
		// chpasswd salts with random bytes; a reproducible image takes a
		// salt derived from the config, the user and the epoch instead.
		h, err := reproducibleHash(ctx, st, user, password)
		if err != nil {
			return err
		}
		hash = h
	}
	switch {
	case hash != "":
		return c.Run(ctx, buildlog.Cmd{Name: "chpasswd", Args: []string{"--encrypted"}, Stdin: strings.NewReader(user + ":" + hash + "\n")})
	case password != "":
		return c.Run(ctx, buildlog.Cmd{Name: "chpasswd", Stdin: strings.NewReader(user + ":" + password + "\n")})
	}
	return nil
}

// reproducibleHash is the SHA-512 crypt of password with a salt made from
// the config's name, the user and SOURCE_DATE_EPOCH, computed by the
// host's openssl (the password goes on its stdin, never a command line).
func reproducibleHash(ctx context.Context, st *State, user, password string) (string, error) {
	sum := sha256.Sum256([]byte(fmt.Sprintf("vmdeb password salt\x00%s\x00%s\x00%d", st.Plan.Spec.Name, user, st.Plan.SourceDateEpoch)))
	const alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	salt := make([]byte, 16)
	for i := range salt {
		salt[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	var out bytes.Buffer
	err := st.Log.Run(ctx, buildlog.Cmd{Name: "openssl", Args: []string{"passwd", "-6", "-salt", string(salt), "-stdin"},
		Stdin: strings.NewReader(password + "\n"), Stdout: &out})
	if err != nil {
		return "", fmt.Errorf("hashing the password of %s: %w", user, err)
	}
	h := strings.TrimSpace(out.String())
	if !strings.HasPrefix(h, "$6$"+string(salt)+"$") {
		return "", fmt.Errorf("hashing the password of %s: openssl gave no SHA-512 crypt hash", user)
	}
	return h, nil
}

// hookStage runs the config's customisation hook on the host as
// `HOOK ROOTFS`, with the chroot mounts in place.
type hookStage struct{ inChroot }

func (hookStage) Name() string { return "customise" }

// HookEnv describes the build to the hook.
func HookEnv(st *State) []string {
	p := st.Plan
	return append(chroot.NonInteractiveEnv(),
		"VMDEB_ROOTFS="+st.Rootfs,
		"VMDEB_NAME="+p.Spec.Name,
		"VMDEB_ARCH="+p.Arch.Name,
		"VMDEB_SUITE="+p.Spec.Suite,
		"VMDEB_MIRROR="+p.Mirror,
		"VMDEB_APT_MIRROR="+p.AptMirror,
		"VMDEB_CONFIG="+p.Spec.File,
		"VMDEB_CONFIG_DIR="+p.Spec.Dir,
		"VMDEB_HOSTNAME="+p.Spec.Hostname,
		"VMDEB_COMPONENTS="+strings.Join(p.Spec.Components, " "),
	)
}

func (hookStage) Run(ctx context.Context, st *State) error {
	hook := st.Plan.Spec.Path(st.Plan.Spec.Customise)
	timeout := st.Plan.Spec.HookTimeout.Duration
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st.Log.Printf("running %s %s", hook, st.Rootfs)
	// What the packages the hook installs ask of update-initramfs is
	// made once, when it ends (see initramfs.go).
	restore, err := putOffHookInitramfs(st)
	if err != nil {
		return err
	}
	before := buildMountFiles(st.Rootfs)
	err = st.Log.Run(hctx, buildlog.Cmd{Name: hook, Args: []string{st.Rootfs}, Env: HookEnv(st), Dir: st.Plan.Spec.Dir, Echo: true})
	if rerr := restore(); rerr != nil {
		return errors.Join(err, rerr)
	}
	if lost := newFiles(before, buildMountFiles(st.Rootfs)); len(lost) > 0 {
		if len(lost) > 10 {
			lost = append(lost[:10], "...")
		}
		st.Log.Printf("warning: the hook wrote into the build's own mounts, which are not part of the image: %s", strings.Join(lost, " "))
	}
	if err != nil {
		if errors.Is(hctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("hook %s did not finish within %s (hook-timeout)", hook, timeout)
		}
		return fmt.Errorf("hook %s failed: %w", hook, err)
	}
	return makeInitramfs(ctx, st)
}

// buildMounts are the chroot's file systems that exist for the build only.
var buildMounts = []string{"dev", "run"}

// buildMountFiles lists the files under the build's own mounts, relative
// to root, so that what a hook writes there (and would lose) can be named.
func buildMountFiles(root string) map[string]bool {
	m := map[string]bool{}
	r, err := imgroot.Open(root)
	if err != nil {
		return m
	}
	defer r.Close()
	for _, d := range buildMounts {
		r.Walk(d, func(p string, _ imgroot.Entry) error {
			m["/"+p] = true
			return nil
		})
	}
	return m
}

func newFiles(before, after map[string]bool) []string {
	var l []string
	for p := range after {
		// The initramfs stand-in's own files are the build's.
		if !before[p] && p != initramfsDir && !strings.HasPrefix(p, initramfsDir+"/") {
			l = append(l, p)
		}
	}
	sort.Strings(l)
	return l
}

// finaliseStage cleans apt in the chroot; once the runner has taken the
// chroot down (which puts back the image's own files), it writes the
// image's final apt sources and removes what the build left.
type finaliseStage struct{ inChroot }

func (finaliseStage) Name() string { return "finalise" }

func (finaliseStage) Run(ctx context.Context, st *State) error {
	// Keep what apt downloaded (the native backend's package cache);
	// apt-get clean then empties only the image's copy.
	if err := st.Backend.UnshareCache(); err != nil {
		return err
	}
	if err := st.Chroot.Run(ctx, buildlog.Cmd{Name: "apt-get", Args: []string{"-q", "clean"}}); err != nil {
		return err
	}
	if err := renewFontCaches(ctx, st); err != nil {
		return fmt.Errorf("fontconfig caches: %w", err)
	}
	return nil
}

func (finaliseStage) AfterChroot(ctx context.Context, st *State) error {
	r, err := imgroot.Open(st.Rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	if st.Plan.InterpreterAt != "" {
		// The emulator was for the build only.
		if err := r.Remove(st.Plan.InterpreterAt); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := writeFinalSources(r, st.Plan.Sources()); err != nil {
		return err
	}
	// Package lists are named after the build mirror and stale at once;
	// logs and caches only record when and where the build ran.
	if err := removeGlob(r, buildLeftovers...); err != nil {
		return err
	}
	// The build's resolver must not stay: an empty file until DHCP writes one.
	if fi, err := r.Lstat("etc/resolv.conf"); err == nil && fi.Mode().IsRegular() {
		if err := r.WriteFile("etc/resolv.conf", nil, 0o644); err != nil {
			return err
		}
	}
	// Each booted system makes its own machine id (the file replaced, a
	// link included, and 0444 whatever the umask).
	if err := r.WriteFile("etc/machine-id", nil, 0o444); err != nil {
		return err
	}
	if err := r.Remove("var/lib/dbus/machine-id"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	m, err := manifest(r, st.Plan.Arch.Name)
	if err != nil {
		return err
	}
	st.Manifest = m
	if st.Packages, err = sbom.Read(r); err != nil {
		return err
	}
	st.Log.Printf("apt sources now point at %s", st.Plan.AptMirror)
	if e := st.Plan.SourceDateEpoch; e > 0 {
		n, err := chroot.ClampTimes(st.Rootfs, e)
		if err != nil {
			return fmt.Errorf("clamping file dates to SOURCE_DATE_EPOCH: %w", err)
		}
		st.Log.Printf("dates of %d files made during the build set to SOURCE_DATE_EPOCH (%s)", n, time.Unix(e, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// buildLeftovers are files of the build, not of the system: removed from
// every image (relative to its root).
var buildLeftovers = []string{
	"var/lib/apt/lists/*_*", "var/cache/apt/*.bin",
	"var/log/bootstrap.log", "var/log/dpkg.log", "var/log/alternatives.log", "var/log/apt/*.log", "var/log/apt/eipp.log.xz",
	"var/cache/ldconfig/aux-cache", "var/lib/dpkg/*-old", "var/cache/debconf/*-old",
}

func writeFinalSources(r *imgroot.Root, s apt.ImageSources) error {
	name, content := s.Render()
	if name != "etc/apt/sources.list" {
		if err := r.Remove("etc/apt/sources.list"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := r.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	return r.WriteFile(name, []byte(content), 0o644)
}

func removeGlob(r *imgroot.Root, patterns ...string) error {
	for _, pat := range patterns {
		m, err := r.Glob(pat)
		if err != nil {
			return err
		}
		for _, f := range m {
			if err := r.Remove(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// Manifest lists the installed packages of a root file system, one
// "name<TAB>version" per line, read from dpkg's status file; packages of
// another architecture than native (multiarch) carry it as name:arch.
func Manifest(root, native string) (string, error) {
	r, err := imgroot.Open(root)
	if err != nil {
		return "", err
	}
	defer r.Close()
	return manifest(r, native)
}

func manifest(r *imgroot.Root, native string) (string, error) {
	f, err := r.OpenFile("var/lib/dpkg/status")
	if err != nil {
		return "", err
	}
	defer f.Close()
	pr, err := control.NewParagraphReader(bufio.NewReader(f), nil)
	if err != nil {
		return "", err
	}
	var lines []string
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading dpkg status: %w", err)
		}
		if !strings.HasPrefix(p.Values["Status"], "install ok installed") {
			continue
		}
		name := p.Values["Package"]
		if a := p.Values["Architecture"]; a != "" && a != "all" && a != native {
			name += ":" + a
		}
		lines = append(lines, name+"\t"+p.Values["Version"])
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n", nil
}

// liveISOStage makes the squashfs and the hybrid ISO.
type liveISOStage struct {
	outputStage
	out string
}

func (liveISOStage) Name() string { return "live-iso" }

func (s liveISOStage) Run(ctx context.Context, st *State) error {
	p := st.Plan
	sq := filepath.Join(st.WorkDir, "filesystem.squashfs")
	if _, err := os.Stat(sq); err != nil {
		st.Log.Printf("making the squashfs (%s)", p.Spec.Live.Compression)
		if err := live.MakeSquashfs(ctx, st.Log, st.Rootfs, sq, st.squashfsOptions()); err != nil {
			return err
		}
	}
	inst := stagedInstaller(st)
	locales, _ := live.LookupLocales(p.Spec.Live.Locales)
	info := fmt.Sprintf("%s %s %s - %s", p.Spec.Live.Title, p.Spec.Suite, p.Arch.Name, p.Spec.Name)
	tmp, err := st.temp(s.out)
	if err != nil {
		return err
	}
	st.Log.Printf("assembling %s", s.out)
	err = live.BuildISO(ctx, st.Log, st.Rootfs, sq, tmp, live.ISOOptions{
		Arch: p.Arch, Title: p.Spec.Live.Title, VolumeID: p.Spec.Live.VolumeID, Splash: p.Spec.Path(p.Spec.Live.Splash),
		Info: info, KernelParams: p.Spec.Live.KernelParams, GrubDir: st.GrubDir, SecureBoot: st.isoSigned(), SourceDateEpoch: p.SourceDateEpoch,
		Installer: inst, Locales: locales, DeviceTree: p.Spec.DeviceTree,
	})
	if err != nil {
		return err
	}
	return st.commit(tmp, s.out, config.LiveISO)
}

// squashfsStage writes a directory with filesystem.squashfs and the
// newest kernel and initrd, as vmdebootstrap's --squash did.
type squashfsStage struct {
	outputStage
	out string
}

func (squashfsStage) Name() string { return "squashfs" }

func (s squashfsStage) Run(ctx context.Context, st *State) error {
	if ents, err := os.ReadDir(s.out); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s exists and is not empty", s.out)
	}
	tmp, err := st.temp(s.out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := live.MakeSquashfs(ctx, st.Log, st.Rootfs, filepath.Join(tmp, "filesystem.squashfs"), st.squashfsOptions()); err != nil {
		return err
	}
	k, err := live.FindKernels(st.Rootfs)
	if err != nil {
		return err
	}
	for src, dst := range map[string]string{k[0].Vmlinuz: "vmlinuz", k[0].Initrd: "initrd.img"} {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, dst), data, 0o644); err != nil {
			return err
		}
	}
	return st.commit(tmp, s.out, config.Squashfs)
}

// tarballStage writes the root file system as a tar archive, compressed
// by its name's extension.
type tarballStage struct {
	outputStage
	out string
}

func (tarballStage) Name() string { return "tarball" }

// TarArgs is tar's command line for archiving root into out (the
// compressor follows out's extension).
// With SOURCE_DATE_EPOCH (epoch > 0) no date of the build gets in: file
// dates are clamped to it, and the pax headers that --xattrs brings carry
// neither access/change times nor tar's process id.
func TarArgs(root, out string, epoch int64) []string {
	a := []string{"--create", "--file", out, "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
		"--sort=name", "--auto-compress"}
	if epoch > 0 {
		a = append(a, fmt.Sprintf("--mtime=@%d", epoch), "--clamp-mtime",
			"--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime")
	}
	return append(a, "-C", root, ".")
}

func (s tarballStage) Run(ctx context.Context, st *State) error {
	tmp, err := st.temp(s.out)
	if err != nil {
		return err
	}
	// tar picks the compressor from the name it writes: keep the extension.
	tmpExt := tmp + extension(s.out)
	if err := st.Log.Run(ctx, buildlog.Cmd{Name: "tar", Args: TarArgs(st.Rootfs, tmpExt, st.Plan.SourceDateEpoch)}); err != nil {
		return err
	}
	return st.commit(tmpExt, s.out, config.Tarball)
}

func extension(p string) string {
	for _, e := range []string{".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.bz2", ".tar"} {
		if strings.HasSuffix(p, e) {
			return e
		}
	}
	return ""
}

// directoryStage copies the root file system to a directory.
type directoryStage struct {
	outputStage
	out string
}

func (directoryStage) Name() string { return "directory" }

func (s directoryStage) Run(ctx context.Context, st *State) error {
	if _, err := os.Lstat(s.out); err == nil {
		return fmt.Errorf("%s already exists; remove it or choose another path", s.out)
	}
	tmp, err := st.temp(s.out)
	if err != nil {
		return err
	}
	if err := st.Log.Run(ctx, buildlog.Cmd{Name: "cp", Args: []string{"-a", "--reflink=auto", st.Rootfs, tmp}}); err != nil {
		chroot.RemoveAll(tmp)
		return err
	}
	return st.commit(tmp, s.out, config.Directory)
}

// reportStage writes the package manifest and the SBOMs beside each file
// output and the SHA256SUMS of its directory.
type reportStage struct{}

func (reportStage) Name() string { return "report" }

func (reportStage) Run(ctx context.Context, st *State) error {
	if err := st.publish(); err != nil {
		return err
	}
	byDir := map[string][]string{}
	seen := map[string]bool{}
	var added []Result
	for _, r := range st.Results {
		if r.Type == string(config.Directory) {
			continue
		}
		if r.Type == string(config.Squashfs) {
			// live-build's names, inside the directory.
			man := filepath.Join(r.Path, "filesystem.packages")
			if err := writeAtomic(man, []byte(st.Manifest)); err != nil {
				return err
			}
			spdx, cdx := filepath.Join(r.Path, "filesystem.spdx.json"), filepath.Join(r.Path, "filesystem.cdx.json")
			if err := st.writeSBOMs(spdx, cdx); err != nil {
				return err
			}
			files := []string{man, spdx, cdx}
			for _, f := range []string{"filesystem.squashfs", "vmlinuz", "initrd.img"} {
				files = append(files, filepath.Join(r.Path, f))
			}
			if err := st.updateSums(ctx, filepath.Join(r.Path, "SHA256SUMS"), files); err != nil {
				return err
			}
			continue
		}
		man := manifestPath(r.Path)
		if seen[man] {
			// Two outputs with one stem (NAME.iso, NAME.img) share it.
			byDir[filepath.Dir(r.Path)] = append(byDir[filepath.Dir(r.Path)], r.Path)
			continue
		}
		seen[man] = true
		if err := writeAtomic(man, []byte(st.Manifest)); err != nil {
			return err
		}
		added = append(added, Result{Type: "manifest", Path: man, Size: int64(len(st.Manifest))})
		spdx, cdx := sbomPaths(r.Path)
		if err := st.writeSBOMs(spdx, cdx); err != nil {
			return err
		}
		added = append(added, st.sbomResults(spdx, cdx)...)
		byDir[filepath.Dir(r.Path)] = append(byDir[filepath.Dir(r.Path)], r.Path, man, spdx, cdx)
	}
	st.Results = append(st.Results, added...)
	for dir, files := range byDir {
		if err := st.updateSums(ctx, filepath.Join(dir, "SHA256SUMS"), files); err != nil {
			return err
		}
	}
	return nil
}

func manifestPath(out string) string {
	for _, e := range []string{".iso", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar", ".img", ".qcow2", ".ext4"} {
		if b, ok := strings.CutSuffix(out, e); ok {
			return b + ".packages"
		}
	}
	return out + ".packages"
}

// writeAtomic replaces path with data: written to a new file of a name
// nobody could have planted (O_EXCL), then renamed over path.
func writeAtomic(path string, data []byte) error { return WriteReplacing(path, data) }

// WriteReplacing replaces path with data as vmdeb writes its outputs: a
// new file in a directory of vmdeb's own, renamed into place, never
// written through a link standing at path.
func WriteReplacing(path string, data []byte) error {
	f, err := CreateReplacing(path)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, f.Discard())
	}
	return f.Publish()
}

// updateSums sets the lines for files in a SHA256SUMS file, keeping the
// lines of other files, and keeps the digests in st.Sums for the report.
func (st *State) updateSums(ctx context.Context, sums string, files []string) error {
	entries := map[string]string{}
	unlock, err := lockPath(sums, true)
	if err != nil {
		return err
	}
	defer unlock()
	if data, err := readNoFollow(sums); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.SplitN(l, "  ", 2); len(f) == 2 {
				entries[f[1]] = f[0]
			}
		}
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, _, err := archive.HashFile(f)
		if err != nil {
			return err
		}
		entries[filepath.Base(f)] = h
		if st.Sums == nil {
			st.Sums = map[string]string{}
		}
		st.Sums[f] = h
	}
	var names []string
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", entries[n], n)
	}
	return writeAtomic(sums, []byte(b.String()))
}
