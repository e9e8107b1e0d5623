package config

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"vmdeb/internal/bytesize"

	"golang.org/x/sys/unix"

	"vmdeb/internal/apt"
	"vmdeb/internal/aptauth"
	"vmdeb/internal/arch"
	"vmdeb/internal/archive"
	"vmdeb/internal/disk"
	"vmdeb/internal/live"
	"vmdeb/internal/oci"
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9.+_-]*$`)
	packageRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?([=/][A-Za-z0-9.+~:-]+)?$`)
	userRE     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	volidRE    = regexp.MustCompile(`^[A-Za-z0-9_ .-]{1,32}$`)
	// A crypt(3) hash: a ':' or a newline in it would add fields or
	// lines to /etc/shadow.
	hashRE = regexp.MustCompile(`^\$[A-Za-z0-9./$=,-]+$`)
)

// Validate checks everything that can be checked without the network and
// returns every problem found.
func (s *Spec) Validate() Errors {
	var errs Errors
	bad := func(key, format string, a ...any) { errs = append(errs, s.Errorf(key, format, a...)) }

	switch {
	case s.Name == "":
		bad("name", "missing (the image's name, e.g. debian-live-minimal)")
	case !nameRE.MatchString(s.Name):
		bad("name", "%q: use lower-case letters, digits and . + _ - (starting with a letter or digit)", s.Name)
	case len(s.Name) > MaxNameLen:
		bad("name", "%d characters: at most %d (the name makes file names, NAME.build.log and the work directory vmdeb-NAME-RANDOM, and a file name has at most 255 bytes)", len(s.Name), MaxNameLen)
	}
	controlChars(s, bad)
	if s.Suite == "" {
		bad("suite", "missing (e.g. trixie; valid: %s)", strings.Join(apt.SuiteNames(), ", "))
	} else if _, ok := apt.LookupSuite(s.Suite); !ok {
		bad("suite", "unknown suite %q (valid: %s)", s.Suite, strings.Join(apt.SuiteNames(), ", "))
	}
	var a arch.Arch
	if s.Architecture == "" {
		bad("architecture", "missing (valid: %s)", strings.Join(arch.Names(), ", "))
	} else if x, err := arch.Lookup(s.Architecture); err != nil {
		bad("architecture", "%v", err)
	} else {
		a = x
	}
	for _, k := range []struct{ key, val string }{{"mirror", s.Mirror}, {"apt-mirror", s.AptMirror}, {"security-mirror", s.SecurityMirror}} {
		if k.val == "" {
			continue
		}
		if err := ValidMirror(k.val); err != nil {
			bad(k.key, "%v", err)
		}
	}
	if s.APTAuth != "" {
		if data, err := os.ReadFile(s.Path(s.APTAuth)); err != nil {
			bad("apt-auth", "%v (an apt auth.conf file: machine HOST login USER password PASS)", err)
		} else if set, err := aptauth.Parse(data, s.Path(s.APTAuth)); err != nil {
			bad("apt-auth", "%v", err)
		} else if !s.authRead {
			s.Auth, s.authRead = append(s.Auth, set...), true
		}
	}
	for i, c := range s.Components {
		if !nameRE.MatchString(c) {
			bad(fmt.Sprintf("components[%d]", i), "%q is not a component name (e.g. main, contrib, non-free-firmware)", c)
		}
	}
	if !oneOf(s.Variant, Variants) {
		bad("variant", "unknown variant %q (valid: %s)", s.Variant, Join(Variants))
	}
	if !oneOf(s.Bootstrap, Backends) {
		bad("bootstrap", "unknown backend %q (valid: %s)", s.Bootstrap, Join(Backends))
	}
	// insecure belongs to the native bootstrapper; accepting it for
	// another backend would make users believe it works. (The package
	// cache, cache:, serves the packages stage of either backend.)
	if s.Insecure && s.Bootstrap != Native {
		bad("insecure", "only applies to bootstrap: native")
	}
	if s.Isolation != "" && !oneOf(s.Isolation, Isolations) {
		bad("isolation", "unknown isolation %q (valid: %s)", s.Isolation, Join(Isolations))
	}
	if s.Builder.Suite != "" {
		if _, ok := apt.LookupSuite(s.Builder.Suite); !ok {
			bad("builder.suite", "unknown suite %q (valid: %s)", s.Builder.Suite, strings.Join(apt.SuiteNames(), ", "))
		}
	}
	if s.Builder.Memory.Bytes != 0 && s.Builder.Memory.Bytes < 512<<20 {
		bad("builder.memory", "%d MiB is too little for a builder VM (at least 512M, e.g. 2G)", s.Builder.Memory.Bytes>>20)
	}
	if s.Builder.CPUs < 0 || s.Builder.CPUs > 64 {
		bad("builder.cpus", "%d: give 1 to 64", s.Builder.CPUs)
	}
	if s.Builder.Scratch.Bytes != 0 && s.Builder.Scratch.Bytes < 2<<30 {
		bad("builder.scratch-size", "too small for a build (at least 2G, e.g. 20G)")
	}
	if s.BinfmtHandler != "" {
		p := s.Path(s.BinfmtHandler)
		if fi, err := os.Stat(p); err != nil {
			bad("binfmt-handler", "%s: %v (a static qemu-user binary, e.g. from qemu-user-static)", p, unwrapPath(err))
		} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
			bad("binfmt-handler", "%s is not an executable file", p)
		}
	}
	if s.Keyring != "" {
		if _, err := os.Stat(s.Path(s.Keyring)); err != nil {
			bad("keyring", "cannot read %s: %v", s.Path(s.Keyring), unwrapPath(err))
		}
	}
	if s.Kernel != "" && s.Kernel != "none" && !packageRE.MatchString(s.Kernel) {
		bad("kernel", "%q is not a package name (or none)", s.Kernel)
	}
	if s.DeviceTree != "" {
		validateDeviceTree(s, a, bad)
	}
	for _, l := range []struct {
		key   string
		names []string
	}{{"packages", s.Packages}, {"common-packages", s.CommonPackages}} {
		for i, p := range l.names {
			if !packageRE.MatchString(p) {
				bad(fmt.Sprintf("%s[%d]", l.key, i), "%q is not a Debian package name (lower case, digits, + - .; optionally =VERSION or /SUITE)", p)
			}
		}
	}
	for i, d := range s.CustomPackages {
		key := fmt.Sprintf("custom-packages[%d]", i)
		if !strings.HasSuffix(d, ".deb") {
			bad(key, "%q: a local .deb file", d)
		} else if _, err := os.Stat(s.Path(d)); err != nil {
			bad(key, "%s: %v", s.Path(d), unwrapPath(err))
		} else if info, err := archive.ReadDebInfo(s.Path(d)); err != nil {
			bad(key, "%v (a .deb made by dpkg-deb --build)", err)
		} else if a.Name != "" && info.Architecture != "all" && info.Architecture != a.Name {
			bad(key, "%s is package %s for %s, and the image is %s", s.Path(d), info.Package, info.Architecture, a.Name)
		}
	}
	for i, line := range s.Debconf {
		if msg := debconfLineError(line); msg != "" {
			bad(fmt.Sprintf("debconf[%d]", i), "%q: %s", line, msg)
		}
	}
	seen := map[string]bool{}
	for i, u := range s.Users {
		key := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			bad(key+".name", "missing")
		case u.Name == "root":
			bad(key+".name", "root is set with the root: key, not as a user")
		case !userRE.MatchString(u.Name):
			bad(key+".name", "%q is not a valid user name (lower case letters, digits, _ and -, starting with a letter)", u.Name)
		case seen[u.Name]:
			bad(key+".name", "user %q is given twice", u.Name)
		}
		seen[u.Name] = true
		if u.Password != "" && u.PasswordHash != "" {
			bad(key, "give password or password-hash, not both")
		}
		if u.PasswordHash != "" && !hashRE.MatchString(u.PasswordHash) {
			bad(key+".password-hash", "expected a crypt(3) hash such as $y$... or $6$... (see mkpasswd): $ and the characters A-Z a-z 0-9 . / = , -")
		}
		for j, g := range u.Groups {
			if !userRE.MatchString(g) {
				bad(fmt.Sprintf("%s.groups[%d]", key, j), "%q is not a valid group name", g)
			}
		}
		if !strings.HasPrefix(u.Shell, "/") || strings.ContainsAny(u.Shell, ":,") {
			bad(key+".shell", "%q: expected an absolute path such as /bin/bash (without : or ,)", u.Shell)
		}
	}
	if s.LockRoot() && (s.Root.Password != "" || s.Root.PasswordHash != "") {
		bad("root", "lock: true and a password contradict each other; choose one")
	}
	if s.Root.Password != "" && s.Root.PasswordHash != "" {
		bad("root", "give password or password-hash, not both")
	}
	if s.Root.PasswordHash != "" && !hashRE.MatchString(s.Root.PasswordHash) {
		bad("root.password-hash", "expected a crypt(3) hash such as $y$... or $6$... (see mkpasswd): $ and the characters A-Z a-z 0-9 . / = , -")
	}
	if err := validHostname(s.Hostname); err != nil {
		bad("hostname", "%v", err)
	}
	checkHook(s, "customise", s.Customise, "HOOK ROOTFS", bad)
	for i, o := range s.Outputs {
		checkHook(s, fmt.Sprintf("outputs[%d].image-hook", i), o.ImageHook, "HOOK ROOTDIR IMAGE", bad)
	}
	if !live.ValidCompression(s.Live.Compression) {
		bad("live.compression", "unknown compressor %q (valid: %s)", s.Live.Compression, strings.Join(live.Compressions(), ", "))
	}
	if !volidRE.MatchString(s.Live.VolumeID) {
		bad("live.volume-id", "%q: at most 32 characters of A-Z a-z 0-9 _ . - and space", s.Live.VolumeID)
	}
	if s.Live.Splash != "" {
		p := s.Path(s.Live.Splash)
		if data, err := readHead(p, 8); err != nil {
			bad("live.splash", "%s: %v", p, unwrapPath(err))
		} else if !bytes.Equal(data, []byte("\x89PNG\r\n\x1a\n")) {
			bad("live.splash", "%s is not a PNG image", p)
		}
	}
	if _, unknown := live.LookupLocales(s.Live.Locales); len(unknown) > 0 {
		var known []string
		for _, l := range live.Locales {
			known = append(known, l.Locale)
		}
		bad("live.locales", "unknown locale(s) %s (valid: all, or %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	for i, kp := range s.Live.KernelParams {
		if kp == "" || strings.ContainsAny(kp, " \t\n\"'") {
			bad(fmt.Sprintf("live.kernel-params[%d]", i), "%q: one parameter per list item, no spaces or quotes", kp)
		}
	}
	checkChoice(bad, "secure-boot", s.SecureBoot, SecureBootModes)
	if s.SecureBoot == SecureBootOn && a.Name != "" {
		if why := SecureBootMissing(s); why != "" {
			bad("secure-boot", "true: %s; use auto (on where Debian signs them) or false", why)
		}
	}
	if len(s.Outputs) == 0 {
		bad("outputs", "missing: list at least one output, e.g. - {type: live-iso, path: %s.iso}", s.Name)
	}
	paths := map[string]bool{}
	for i, o := range s.Outputs {
		key := fmt.Sprintf("outputs[%d]", i)
		if !oneOf(o.Type, OutputTypes) {
			bad(key+".type", "unknown output type %q (valid: %s)", o.Type, Join(OutputTypes))
		} else if a.Name != "" && !a.Supports(o.Type) {
			bad(key+".type", "architecture %s cannot produce %s outputs (it can: %s)", a.Name, o.Type, Join(a.Outputs))
		}
		if o.Type == Disk {
			validateDisk(o, key, bad)
			if o.BootFilesystem == disk.VFAT && a.Name != "" && o.DiskBootloader(a) != disk.NoBootloader {
				bad(key+".boot-filesystem", "a vfat /boot is for a board whose firmware reads it, with bootloader: none (GRUB and extlinux read vmdeb's ext /boot)")
			}
			if a.BoardDisks && o.Bootloader != "" && o.Bootloader != disk.NoBootloader {
				bad(key+".bootloader", "%s disks are board images with no boot loader of vmdeb's: use none (the default), and write the board's u-boot with image-hook", a.Name)
			}
		} else if o.Type == Ext4 && o.Size.Bytes != 0 && o.Size.Bytes < MinExt4Size {
			bad(key+".size", "%d bytes is too small for an ext4 file system of a root (at least 16M; leave size out for the content plus headroom)", o.Size.Bytes)
		}
		if o.Type != Disk && (o.Format != "" || (o.Size.Bytes != 0 && o.Type != Ext4) || o.PartitionTable != "" || o.Filesystem != "" || o.BootSize.Bytes != 0 ||
			o.SwapSize.Bytes != 0 || o.ESPSize.Bytes != 0 || o.Bootloader != "" || o.Network != "" || o.GrowRoot || len(o.KernelParams) > 0 ||
			o.BootFilesystem != "" || o.PartitionOffset.Bytes != 0 || o.ImageHook != "") {
			bad(key, "format, size, partition-table, filesystem, boot-size, boot-filesystem, swap-size, esp-size, bootloader, partition-offset, image-hook, network, grow-root and kernel-params apply to disk outputs only (size to ext4 outputs too)")
		}
		if o.Type == OCI {
			validateOCI(s, o, key, bad)
		} else if o.Tag != "" || o.Cmd != nil || o.Entrypoint != nil || o.Env != nil || o.Labels != nil {
			bad(key, "tag, cmd, entrypoint, env and labels apply to oci outputs only (this output is %s)", o.Type)
		}
		if o.Mode != "" {
			if m, err := strconv.ParseUint(o.Mode, 8, 32); err != nil || m > 0o777 {
				bad(key+".mode", "%q is not a file mode: octal permissions such as \"0644\", at most 0777)", o.Mode)
			} else if o.Type == Directory {
				bad(key+".mode", "a directory output keeps the image's own modes; mode applies to file outputs")
			}
		}
		if o.Path == "" {
			bad(key+".path", "missing")
			continue
		}
		p := s.Path(o.Path)
		if len(filepath.Base(p)) > MaxOutputNameLen {
			bad(key+".path", "the file name %q has %d characters: at most %d (vmdeb writes it under a temporary name .NAME.vmdeb-tmp with its extension, and a file name has at most 255 bytes)", filepath.Base(p), len(filepath.Base(p)), MaxOutputNameLen)
		}
		if paths[p] {
			bad(key+".path", "%s is already another output's path", p)
		}
		paths[p] = true
		if err := writableDir(filepath.Dir(p)); err != nil {
			bad(key+".path", "%v", err)
		}
	}
	s.checkDiskSpace(bad)
	for _, t := range []OutputType{LiveISO, Squashfs} {
		if s.Kernel == "none" && hasOutput(s, t) {
			bad("kernel", "a %s output needs a kernel; remove kernel: none", t)
		}
	}
	for i, o := range s.Outputs {
		if s.Kernel == "none" && o.Type == Disk && a.Name != "" && o.DiskBootloader(a) != disk.NoBootloader {
			bad(fmt.Sprintf("outputs[%d].bootloader", i), "a disk with a boot loader needs a kernel for it to boot: with kernel: none use bootloader: none (the image-hook installs the kernel and the board's boot loader), or remove kernel: none")
		}
	}
	return errs
}

// checkHook checks that hook, given by key, is an executable file.
func checkHook(s *Spec, key, hook, how string, bad func(string, string, ...any)) {
	if hook == "" {
		return
	}
	p := s.Path(hook)
	if fi, err := os.Stat(p); err != nil && strings.ContainsAny(hook, " \t") {
		bad(key, "%q: the hook takes no arguments (vmdeb runs it as %s); put options inside the hook, or in a wrapper script that calls it with them", hook, how)
	} else if err != nil {
		bad(key, "hook %s: %v", p, unwrapPath(err))
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		bad(key, "hook %s is not an executable file (chmod +x it)", p)
	}
}

// validateDeviceTree checks the board's device tree: a name the boot
// loader can load from the kernel's device tree directory, on an
// architecture that has them, with an output whose boot loader loads it.
// Whether the kernel has it is known once it is installed (the build
// checks then).
func validateDeviceTree(s *Spec, a arch.Arch, bad func(string, string, ...any)) {
	if err := live.ValidDeviceTree(s.DeviceTree); err != nil {
		bad("device-tree", "%v", err)
	}
	if a.Name != "" && !a.DeviceTrees {
		var with []string
		for _, n := range arch.Names() {
			if x, _ := arch.Lookup(n); x.DeviceTrees {
				with = append(with, n)
			}
		}
		bad("device-tree", "architecture %s does not use device trees (those that do: %s)", a.Name, strings.Join(with, ", "))
		return
	}
	if s.Kernel == "none" {
		bad("device-tree", "a device tree comes with the image's kernel; kernel: none installs none")
		return
	}
	for _, o := range s.Outputs {
		if o.Type == LiveISO || (o.Type == Disk && o.Bootloader != disk.NoBootloader) {
			return
		}
	}
	bad("device-tree", "only the boot loader of a live-iso or disk output loads it, and this config has none (remove device-tree, or add such an output)")
}

// checkChoice reports v, a value of an enumerated key, unless it is
// empty (the default) or one of valid.
func checkChoice[T ~string](bad func(string, string, ...any), key string, v T, valid []T) {
	if v != "" && !oneOf(v, valid) {
		bad(key, "%q is not valid (valid: %s)", v, Join(valid))
	}
}

func validateDisk(o Output, key string, bad func(string, string, ...any)) {
	checkChoice(bad, key+".format", o.Format, disk.Formats)
	checkChoice(bad, key+".partition-table", o.PartitionTable, disk.PartitionTables)
	checkChoice(bad, key+".filesystem", o.Filesystem, disk.Filesystems)
	checkChoice(bad, key+".bootloader", o.Bootloader, disk.Bootloaders)
	checkChoice(bad, key+".boot-filesystem", o.BootFilesystem, disk.BootFilesystems)
	if o.BootFilesystem != "" && o.BootSize.Bytes == 0 {
		bad(key+".boot-filesystem", "applies to a separate /boot: add boot-size")
	}
	if b := o.PartitionOffset.Bytes; b != 0 && (b < 1<<20 || b%(1<<20) != 0) {
		bad(key+".partition-offset", "%d bytes: a whole number of MiB, at least 1M (e.g. 1M, 4M, 16M)", b)
	}
	// Whether this host can make it (xfs from a directory needs a recent
	// xfsprogs): said here, with the key, rather than as a missing tool.
	if err := disk.CheckFS(o.Filesystem); oneOf(o.Filesystem, disk.Filesystems) && err != nil {
		bad(key+".filesystem", "%v", err)
	}
	if o.Bootloader == disk.Extlinux && o.ESPSize.Bytes != 0 {
		bad(key+".esp-size", "extlinux boots BIOS PCs only and has no EFI system partition (for UEFI use grub-uefi or grub-hybrid)")
	}
	if o.Bootloader == disk.Extlinux && o.Filesystem == disk.XFS && o.BootSize.Bytes == 0 {
		bad(key+".bootloader", "extlinux cannot boot from an xfs root: add boot-size for a separate ext4 /boot, or use grub-bios")
	}
	checkChoice(bad, key+".network", o.Network, disk.Networks)
	if o.Size.Bytes == 0 {
		bad(key+".size", "missing: the disk image's size, e.g. size: 4G")
	} else if o.Size.Bytes < 64<<20 {
		bad(key+".size", "%d bytes is too small for a disk image (at least 64M)", o.Size.Bytes)
	}
	for i, kp := range o.KernelParams {
		if kp == "" || strings.ContainsAny(kp, " \t\n\"'") {
			bad(fmt.Sprintf("%s.kernel-params[%d]", key, i), "%q: one parameter per list item, no spaces or quotes", kp)
		}
	}
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateOCI checks a container image output's keys.
func validateOCI(s *Spec, o Output, key string, bad func(string, string, ...any)) {
	if o.Tag != "" {
		if err := oci.ValidRef(o.Tag); err != nil {
			bad(key+".tag", "%v", err)
		}
	} else if s.Name != "" && !oci.ValidName(s.Name) {
		bad(key+".tag", "missing, and the config's name %q cannot name an image (lower case letters and digits, single . _ or - between them): give one, e.g. tag: %s:latest", s.Name, imageName(s.Name))
	}
	for _, l := range []struct {
		name string
		args []string
	}{{"cmd", o.Cmd}, {"entrypoint", o.Entrypoint}} {
		if len(l.args) > 0 && l.args[0] == "" {
			bad(fmt.Sprintf("%s.%s[0]", key, l.name), "empty: the first item is the program to run, e.g. [/bin/bash] or [/usr/local/bin/vmdeb, --help]")
		}
	}
	seen := map[string]bool{}
	for i, e := range o.Env {
		name, _, ok := strings.Cut(e, "=")
		switch {
		case !ok || !envNameRE.MatchString(name):
			bad(fmt.Sprintf("%s.env[%d]", key, i), "%q: write NAME=VALUE, NAME of letters, digits and _ (not starting with a digit)", e)
		case seen[name]:
			bad(fmt.Sprintf("%s.env[%d]", key, i), "%s is given twice", name)
		}
		seen[name] = true
	}
	for k := range o.Labels {
		if strings.TrimSpace(k) == "" {
			bad(key+".labels", "a label has an empty name (labels are NAME: VALUE, e.g. org.opencontainers.image.source: URL)")
		}
	}
}

// imageName is name made into a valid image name, for a message's example.
func imageName(name string) string {
	n := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(name, "-"), "-")
	if n == "" {
		return "image"
	}
	return n
}

// ImageRef is the oci output's image name: tag, else the config's name.
func (o Output) ImageRef(s *Spec) string {
	if o.Tag != "" {
		return o.Tag
	}
	return s.Name
}

// DiskBootloader is the disk output's boot loader on architecture a: the
// config's, else a's default.
func (o Output) DiskBootloader(a arch.Arch) disk.Bootloader {
	if o.Bootloader != "" {
		return o.Bootloader
	}
	return disk.DefaultBootloader(a)
}

// DiskFormat is the disk output's image format: the config's, else from
// the file name (.qcow2), else raw.
func (o Output) DiskFormat() disk.Format {
	if o.Format != "" {
		return o.Format
	}
	if strings.HasSuffix(o.Path, ".qcow2") {
		return disk.Qcow2
	}
	return disk.Raw
}

// SetOutputDir moves every output into dir, keeping its file name.
func (s *Spec) SetOutputDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := writableDir(abs); err != nil {
		return &Error{File: s.File, Key: "--outdir", Msg: err.Error()}
	}
	for i := range s.Outputs {
		s.Outputs[i].Path = filepath.Join(abs, filepath.Base(s.Outputs[i].Path))
	}
	return nil
}

// KernelPackage is the kernel to install ("" for none).
func (s *Spec) KernelPackage() string {
	if s.Kernel == "none" {
		return ""
	}
	if s.Kernel != "" {
		return s.Kernel
	}
	a, err := arch.Lookup(s.Architecture)
	if err != nil {
		return ""
	}
	return a.Kernel
}

// HasOutput reports whether the spec has an output of type t.
func (s *Spec) HasOutput(t OutputType) bool { return hasOutput(s, t) }

func hasOutput(s *Spec, t OutputType) bool {
	for _, o := range s.Outputs {
		if o.Type == t {
			return true
		}
	}
	return false
}

// writableDir checks that dir, or its nearest existing ancestor (which the
// build would create dir under), is a writable directory.
func writableDir(dir string) error {
	d := dir
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("output directory %s: %s is not a directory", dir, d)
			}
			if unix.Access(d, unix.W_OK|unix.X_OK) != nil {
				return fmt.Errorf("output directory %s cannot be written (no write permission on %s)", dir, d)
			}
			return nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return fmt.Errorf("output directory %s: no existing parent", dir)
		}
		d = parent
	}
}

func readHead(p string, n int) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := f.Read(b)
	if err != nil {
		return nil, err
	}
	return b[:m], nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// Length limits that come from file names (255 bytes on Linux's file
// systems): the image name makes NAME.build.log and the work directory
// vmdeb-NAME-RANDOM (RANDOM up to 10 digits); an output's file name gets
// a leading dot, ".vmdeb-tmp", its extension again (tarballs) and the
// tools' own temporary suffixes. 200 leaves room for all of them.
const (
	// MinExt4Size is the smallest size an ext4 output may be given.
	MinExt4Size      = 16 << 20
	MaxNameLen       = 200
	MaxOutputNameLen = 200
)

// controlChars refuses control characters (newline, tab, escape, ...)
// in every string of the config: no key has a use for them, and a value
// is written into files that are read line by line (a newline in a
// password once set another account's password through chpasswd).
func controlChars(s *Spec, bad func(string, string, ...any)) {
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.String:
			if i := strings.IndexFunc(v.String(), func(r rune) bool { return unicode.IsControl(r) }); i >= 0 {
				secret := strings.HasSuffix(path, "password") || strings.HasSuffix(path, "password-hash")
				shown := fmt.Sprintf("%q", v.String())
				if secret {
					shown = "the value"
				}
				bad(path, "%s contains a control character (%U at byte %d): not allowed in any value", shown, []rune(v.String()[i:])[0], i)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case reflect.Map:
			keys := v.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				walk(k, path)
				walk(v.MapIndex(k), join(path, k.String()))
			}
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
				if tag == "" || tag == "-" || !t.Field(i).IsExported() {
					continue
				}
				walk(v.Field(i), join(path, tag))
			}
		}
	}
	walk(reflect.ValueOf(*s), "")
}

// ValidMirror checks a mirror URL: http, https or file, a host (for
// http and https), a path, and nothing that apt would read as something
// else in a sources line (spaces, brackets, quotes: "[trusted=yes]").
func ValidMirror(m string) error {
	valid := "valid: http://HOST/PATH, https://..., file:///PATH"
	if strings.ContainsAny(m, " \t[]\"'#?<>\\{}|^`") || strings.IndexFunc(m, func(r rune) bool { return r > 0x7e || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%q is not a mirror URL: it has spaces, brackets, quotes or other characters a URL cannot have (%s)", m, valid)
	}
	u, err := url.Parse(m)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") || u.Opaque != "" {
		return fmt.Errorf("%q is not a mirror URL (%s)", m, valid)
	}
	if u.Scheme == "file" && u.User != nil {
		return fmt.Errorf("%q: a file:// mirror has no user or password (%s)", m, valid)
	}
	return nil
}

// validHostname accepts a host name or a fully qualified domain name:
// labels of letters, digits and -, each 1 to 63 characters, 253 in all.
func validHostname(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("%d characters: a host name has at most 253 (each label at most 63)", len(h))
	}
	for _, l := range strings.Split(h, ".") {
		if !hostnameRE.MatchString(l) {
			return fmt.Errorf("%q is not a valid host name (a name, or a fully qualified one such as web1.example.org: labels of letters, digits and -, each 1 to 63 characters, not starting or ending with -)", h)
		}
	}
	return nil
}

// ShortHostname is the host name without its domain: what /etc/hostname
// holds (Debian's installer writes the short name there and the fully
// qualified one in /etc/hosts).
func (s *Spec) ShortHostname() string {
	short, _, _ := strings.Cut(s.Hostname, ".")
	return short
}

// HostsNames is what follows 127.0.1.1 in /etc/hosts: "fqdn short" for
// a fully qualified host name, else the name alone.
func (s *Spec) HostsNames() string {
	if short := s.ShortHostname(); short != s.Hostname {
		return s.Hostname + " " + short
	}
	return s.Hostname
}

// checkDiskSpace refuses disk images larger than the free space of the
// file system they are written to (the sizes of the outputs on one file
// system added up). A raw image is sparse when written, but it grows to
// its full size as the machine that boots it fills its disk, and a qcow2
// likewise: vmdeb counts the full size.
func (s *Spec) checkDiskSpace(bad func(string, string, ...any)) {
	type fsUse struct {
		need  int64
		free  int64
		dir   string
		first string
	}
	byDev := map[uint64]*fsUse{}
	for i, o := range s.Outputs {
		if o.Type != Disk || o.Size.Bytes == 0 || o.Path == "" {
			continue
		}
		dir := existingDir(filepath.Dir(s.Path(o.Path)))
		var st unix.Statfs_t
		var fst unix.Stat_t
		if unix.Statfs(dir, &st) != nil || unix.Stat(dir, &fst) != nil {
			continue // writableDir says what is wrong with it
		}
		u := byDev[fst.Dev]
		if u == nil {
			u = &fsUse{free: int64(st.Bavail) * st.Bsize, dir: dir}
			byDev[fst.Dev] = u
		}
		u.need += o.Size.Bytes
		key := fmt.Sprintf("outputs[%d].size", i)
		if u.need > u.free {
			what := fmt.Sprintf("%s is larger than", bytesize.Format(o.Size.Bytes))
			if u.first != "" {
				what = fmt.Sprintf("%s, with %s (%s), is more than", bytesize.Format(o.Size.Bytes), u.first, bytesize.Format(u.need-o.Size.Bytes))
			}
			bad(key, "%s the free space of %s's file system (%s); vmdeb counts a disk image's full size, sparse or not, since it grows to it in use", what, u.dir, bytesize.Format(u.free))
		}
		if u.first == "" {
			u.first = key
		}
	}
}

// existingDir is dir or its nearest existing ancestor.
func existingDir(dir string) string {
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// debconfTypes are the question types debconf knows (debconf-devel(7)).
var debconfTypes = []string{"boolean", "error", "multiselect", "note", "password", "select", "string", "text", "title"}

// debconfLineError says what is wrong with a debconf-set-selections line
// (OWNER QUESTION TYPE VALUE, the value being the rest of the line and
// possibly empty), or "" when nothing is.
func debconfLineError(line string) string {
	f := strings.Fields(line)
	const want = "a debconf-set-selections line, OWNER QUESTION TYPE VALUE (e.g. firmware-ipw2x00 firmware-ipw2x00/license/accepted boolean true)"
	switch {
	case strings.ContainsAny(line, "\n\r"):
		return "one line only: " + want
	case len(f) < 3:
		return "expected " + want
	case !strings.Contains(f[1], "/"):
		return fmt.Sprintf("question %q has no /: expected OWNER QUESTION TYPE VALUE, the question named as OWNER/NAME", f[1])
	case !slices.Contains(debconfTypes, f[2]):
		return fmt.Sprintf("type %q is not a debconf type (%s)", f[2], strings.Join(debconfTypes, ", "))
	case f[2] == "boolean" && (len(f) != 4 || (f[3] != "true" && f[3] != "false")):
		return "a boolean's value is true or false"
	}
	return ""
}
