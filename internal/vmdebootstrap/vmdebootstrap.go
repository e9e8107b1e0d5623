// Package vmdebootstrap speaks vmdebootstrap 1.6's language: its
// command-line options (read as its cliapp and optparse read them) and its
// config files become a vmdeb config, so existing scripts keep working.
// Where vmdeb differs, Notes says so once per run (see
// docs/vmdebootstrap.md).
package vmdebootstrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"vmdeb/internal/arch"
)

// Settings are vmdebootstrap's settings after the config files and the
// command line.
type Settings struct {
	vals       map[string]string   // every setting but the lists; booleans "yes"/"no"
	lists      map[string][]string // the lists
	fromConfig map[string]bool     // a list came from a config file: the command line replaces it
	set        map[string]bool     // given in a config file or on the command line

	// Action is a cliapp option that prints and stops instead of
	// building: help, help-all, version, dump-config,
	// dump-setting-names or list-config-files.
	Action string
	// ConfigFiles are the config files read, in order; Candidates those
	// cliapp would have looked for (--list-config-files).
	ConfigFiles, Candidates []string
	notes                   []string
}

func newSettings() *Settings {
	s := &Settings{vals: map[string]string{}, lists: map[string][]string{}, fromConfig: map[string]bool{}, set: map[string]bool{}}
	for _, st := range settings {
		if st.kind == kList {
			continue
		}
		v := st.def
		switch st.kind {
		case kBool:
			v = boolString(v == "yes")
		case kChoice:
			v = st.choices[0]
		}
		s.vals[st.name] = v
	}
	return s
}

// Parse reads the command line with vmdebootstrap's default config files.
func Parse(args []string) (*Settings, error) {
	return ParseWith(args, DefaultConfigFiles())
}

// ParseWith reads the command line as cliapp did: the config files first
// (defaults, then each --config in order, --no-default-configs clearing
// the list so far), then the options again over them. A list setting
// from a config file is replaced by the command line's first occurrence;
// further occurrences add to it.
func ParseWith(args, defaults []string) (*Settings, error) {
	s := newSettings()
	evs, rest, err := tokenize(args)
	if err != nil {
		return nil, fmt.Errorf("%v (see vmdeb vmdebootstrap --help)", err)
	}
	for _, ev := range evs {
		if ev.opt == "help" || ev.opt == "version" {
			s.Action = ev.opt
			return s, nil
		}
	}
	files := append([]string(nil), defaults...)
	required := map[string]bool{}
	for _, ev := range evs {
		switch ev.opt {
		case "config":
			files = append(files, ev.value)
			required[ev.value] = true
		case "no-default-configs":
			files, required = nil, map[string]bool{}
		}
	}
	s.Candidates = files
	for _, f := range files {
		if err := s.readConfigFile(f, required[f]); err != nil {
			return nil, err
		}
	}
	for _, ev := range evs {
		st := ev.def.setting
		if st == nil {
			switch ev.opt {
			case "config", "no-default-configs":
			case "generate-manpage":
				return nil, errors.New("--generate-manpage: not supported; vmdeb's manual page is man vmdeb-vmdebootstrap")
			default:
				if s.Action == "" {
					s.Action = ev.opt // the first one acts, as cliapp's deferred callbacks
				}
			}
			continue
		}
		s.set[st.name] = true
		switch {
		case ev.def.negate:
			s.vals[st.name] = "no"
		case st.kind == kBool:
			s.vals[st.name] = "yes"
		case st.kind == kList:
			if s.fromConfig[st.name] {
				s.lists[st.name], s.fromConfig[st.name] = nil, false
			}
			s.lists[st.name] = append(s.lists[st.name], ev.value)
		default:
			s.vals[st.name] = ev.value
		}
	}
	if len(rest) > 0 {
		// vmdebootstrap ignored them; most often a value meant for the
		// option before it (--package a b).
		return nil, fmt.Errorf("unexpected argument %q: vmdebootstrap takes only options, and ignored this (is it meant for the option before it?)", rest[0])
	}
	return s, nil
}

// Str is a setting's value as given ("yes"/"no" for a boolean).
func (s *Settings) Str(name string) string {
	if lookupSetting(name) == nil {
		panic("vmdebootstrap: no setting " + name)
	}
	return s.vals[name]
}

// Bool is a boolean setting.
func (s *Settings) Bool(name string) bool { return s.Str(name) == "yes" }

// List is a list setting's items, as given.
func (s *Settings) List(name string) []string { return s.lists[name] }

// Bytes is a size setting in bytes as vmdebootstrap read it (0 where it
// could not), and whether it could.
func (s *Settings) Bytes(name string) (int64, bool) { return ParseSize(s.Str(name)) }

// Given reports whether a setting was given in a config file or on the
// command line.
func (s *Settings) Given(name string) bool { return s.set[name] }

func (s *Settings) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if !contains(s.notes, msg) {
		s.notes = append(s.notes, msg)
	}
}

// Notes are the lines to log for this run: where vmdeb does something
// else than vmdebootstrap did with these settings. Call after Config.
func (s *Settings) Notes() []string { return s.notes }

// Arch is the architecture: --arch, else the host's.
func (s *Settings) Arch() string {
	if a := s.Str("arch"); a != "" {
		return a
	}
	return arch.HostName()
}

// wheezy is vmdebootstrap's was_oldstable(2015-04-26): the suite named
// wheezy (a suite name is resolved to today's codename, never wheezy).
func (s *Settings) wheezy() bool { return s.Str("distribution") == "wheezy" }

// uefiArches is vmdebootstrap's constants.arch_table: the architectures
// it set up for UEFI, and whether UEFI was their only way to boot.
var uefiArches = map[string]bool{"amd64": false, "i386": false, "arm64": true}

// Validate refuses what vmdebootstrap refused (bin/vmdebootstrap's
// process_args and uefi.check_settings, with its messages) and what vmdeb
// cannot build from these settings.
func (s *Settings) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	image, tarball, squash := s.Str("image"), s.Str("tarball"), s.Str("squash")
	a := s.Arch()
	if squash != "" && image != "" {
		bad("--image can no longer be used with --squash")
	}
	if image == "" && tarball == "" && squash == "" {
		bad("You must give disk image filename or use either a tarball filename or use squash (--image, --tarball or --squash)")
	}
	size, ok := s.Bytes("size")
	switch {
	case !ok:
		bad("A size of 0 bytes is too small for a bootstrap (--size %q: vmdebootstrap reads no size in it; e.g. 4G, 4GiB, 4000M)", s.Str("size"))
	case size <= 100000000:
		bad("A size of %d bytes is too small for a bootstrap (--size: more than 100M; 1G is 10^9 bytes)", size)
	}
	if s.Str("apt-mirror") != "" && !s.Bool("configure-apt") {
		bad("--apt-mirror requires --configure-apt as well.")
	}
	if s.Bool("convert-qcow2") && image == "" {
		bad("--convert-qcow2 can only be used with --image.")
	}
	if image != "" && tarball != "" {
		bad("Use --image or --tarball, not both.")
	}
	if squash != "" && tarball != "" {
		bad("Use --squash or --tarball, not both.")
	}
	if !s.wheezy() {
		if !s.Bool("systemd-networkd") && !s.Bool("update-initramfs") {
			bad("Disabling systemd-networkd for jessie and later requires updating the initramfs (--no-systemd-networkd needs --update-initramfs).")
		}
	} else if s.Str("roottype") == "ext4" {
		bad("Wheezy images using ext4 will not be able to boot. Please use --roottype ext2 or --roottype ext3")
	}
	if s.Str("roottype") == "btrfs" && s.Bool("extlinux") && !s.Bool("grub") {
		bad("extlinux is not yet supported on btrfs. Use grub (--grub).")
	}
	// uefi.check_settings
	uefi := s.Bool("use-uefi")
	if esp, _ := s.Bytes("esp-size"); !uefi && esp != 5242880 {
		bad("You must specify use-uefi for esp-size to have effect (--esp-size needs --use-uefi)")
	}
	exclusive, known := uefiArches[a]
	boot, _ := s.Bytes("bootsize")
	offset, _ := s.Bytes("bootoffset")
	switch {
	case exclusive && !uefi && image != "":
		// vmdebootstrap refused tarballs too; a tarball needs no boot loader.
		bad("Only UEFI is supported on %s: an --image for %s needs --use-uefi --grub", a, a)
	case uefi && !known:
		bad("%s is not a supported UEFI architecture (--use-uefi: amd64, i386, arm64)", a)
	}
	if uefi && (boot > 0 || offset > 0) {
		bad("A separate boot partition is not supported with UEFI (--bootsize, --bootoffset with --use-uefi)")
	}
	if uefi && !s.Bool("grub") {
		bad("UEFI without Grub is not supported (--use-uefi needs --grub).")
	}
	if s.wheezy() && uefi && a != "amd64" {
		bad("Only amd64 supports UEFI in Wheezy")
	}

	// What vmdeb cannot build (yet) from settings vmdebootstrap took.
	if image != "" {
		if x, err := arch.Lookup(a); err == nil && !x.Supports(arch.Disk) {
			bad("--image --arch %s: vmdeb cannot yet write %s disk images; use --tarball or --squash (and partition the disk from it)", a, a)
		}
		if s.Bool("no-kernel") && s.bootloader() != "none" {
			bad("--no-kernel with --image and a boot loader: nothing for it to boot; leave the boot loader to the --customize script (--no-extlinux without --grub), as board images do")
		}
		if bt := s.Str("boottype"); boot > 0 && s.Given("boottype") && bootFS(bt) == "" {
			bad("--boottype %s: vmdeb makes a /boot of ext2, ext3, ext4 or vfat", bt)
		}
		// parted's lba flag turns a FAT partition's type into its LBA
		// form, which vmdeb's FAT /boot has already.
		fatBoot := boot > 0 && bootFS(s.Str("boottype")) == "vfat"
		if f := s.Str("bootflag"); f != "" && f != "boot" && (f != "lba" || !fatBoot) {
			bad("--bootflag %s: vmdeb cannot yet set partition flags besides boot (and lba on a vfat /boot)", f)
		}
		if p := s.Str("part-type"); p != "msdos" && p != "gpt" {
			bad("--part-type %q: vmdeb writes msdos or gpt", p)
		}
	}
	for _, n := range []string{"bootsize", "bootoffset", "swap", "esp-size", "log-max"} {
		if v := s.Str(n); v != "" && v != "0%" {
			if _, ok := ParseSize(v); !ok {
				bad("--%s %q: vmdebootstrap read 0 from it; give a size such as 256M or 256MiB", n, v)
			}
		}
	}
	if c := s.Str("customize"); c != "" {
		if _, err := s.script(""); err != nil {
			bad("--customize: %v", err)
		}
	}
	if _, _, err := s.debootstrap(); err != nil {
		errs = append(errs, err)
	}
	for _, u := range s.List("user") {
		if name, _, _ := strings.Cut(u, "/"); name == "" {
			bad("--user %q: a user name is needed (USER/PASSWORD or USER)", u)
		}
	}
	return errors.Join(errs...)
}

// bootFS is the boot-filesystem for vmdebootstrap's --boottype (the
// type it gave mkfs -t), "" for one vmdeb does not make.
func bootFS(t string) string {
	switch t {
	case "ext2", "ext3", "ext4", "vfat":
		return t
	case "fat", "msdos", "fat16", "fat32":
		return "vfat"
	}
	return ""
}

// vmdebBootFS is the file system vmdeb makes a separate /boot with.
func vmdebBootFS(root string) string {
	if root == "ext2" {
		return "ext2"
	}
	return "ext4"
}

// ExamplesDir is where vmdebootstrap looked for a --customize script that
// is not a path to a file (base.customize).
const ExamplesDir = "/usr/share/vmdebootstrap/examples"

// script is the --customize script's path, as base.customize found it:
// the name as given, else in ExamplesDir.
// A relative name is taken from cwd ("" for the process's).
func (s *Settings) script(cwd string) (string, error) {
	c := s.Str("customize")
	p := c
	if cwd != "" && !filepath.IsAbs(c) {
		p = filepath.Join(cwd, c)
	}
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	ex := filepath.Join(ExamplesDir, c)
	if _, err := os.Stat(ex); err == nil {
		return ex, nil
	}
	// vmdebootstrap said "Unable to find" and built without it.
	return "", fmt.Errorf("%s: no such file, here or in %s", c, ExamplesDir)
}

// packageSplit is how debootstrap read vmdebootstrap's --include=a,b:
// commas and spaces both separate.
var packageSplit = regexp.MustCompile(`[,\s]+`)

func splitPackages(items []string) []string {
	var l []string
	for _, it := range items {
		for _, p := range packageSplit.Split(it, -1) {
			if p != "" && !contains(l, p) {
				l = append(l, p)
			}
		}
	}
	return l
}

// debootstrapOpts is what vmdeb does with debootstrap's options: the
// vmdeb config key each one sets.
var debootstrapOpts = []string{"variant=", "keyring=", "components=", "include=", "no-check-gpg", "merged-usr", "arch=", "foreign", "verbose", "no-resolve-deps"}

// debootstrap reads --debootstrapopts as bin/vmdebootstrap's debootstrap
// passed them: every item of every occurrence split at spaces, each part
// given to debootstrap with -- in front. It returns the config keys they
// set and the packages of include=.
func (s *Settings) debootstrap() (map[string]any, []string, error) {
	keys := map[string]any{}
	var include []string
	for _, item := range s.List("debootstrapopts") {
		for _, part := range strings.Split(item, " ") {
			if part == "" {
				continue
			}
			k, v, _ := strings.Cut(strings.TrimPrefix(part, "--"), "=")
			switch k {
			case "variant":
				keys["variant"] = v
			case "keyring":
				keys["keyring"] = v
			case "components":
				keys["components"] = strings.Split(v, ",")
			case "include":
				include = append(include, v)
			case "no-check-gpg":
				keys["insecure"] = true
			case "arch":
				if v != s.Arch() {
					return nil, nil, fmt.Errorf("--debootstrapopts %q: give the architecture with --arch", part)
				}
			case "merged-usr":
				// debootstrap's default since buster; vmdeb's bootstrap merges as it does.
				s.note("--debootstrapopts merged-usr: /usr is merged as debootstrap merges it by default")
			case "foreign":
				// vmdeb runs the second stage itself wherever needed.
			case "verbose":
			case "no-resolve-deps":
				// vmdeb resolves the dependencies of every package it installs.
				s.note("--debootstrapopts no-resolve-deps: ignored, vmdeb installs every dependency")
			default:
				return nil, nil, fmt.Errorf("--debootstrapopts %q: vmdeb cannot pass this on to its bootstrap (it takes: %s)", part, strings.Join(debootstrapOpts, " "))
			}
		}
	}
	return keys, splitPackages(include), nil
}

// kernel is the config's kernel key: bootstrap_packages' choice
// (codenames.kernel_package, base.base_packages).
func (s *Settings) kernel() string {
	switch {
	case s.Bool("no-kernel"):
		return "none"
	case s.Str("kernel-package") != "":
		return s.Str("kernel-package")
	}
	switch s.Arch() {
	case "armhf":
		return "linux-image-armmp"
	case "i386", "armel":
		// linux-image-586 and linux-image-armel are gone from Debian.
		if x, err := arch.Lookup(s.Arch()); err == nil {
			s.note("--arch %s: kernel %s (vmdebootstrap's linux-image-%s is no longer in Debian)", s.Arch(), x.Kernel, map[string]string{"i386": "586", "armel": "armel"}[s.Arch()])
		}
	}
	return "" // the architecture's: linux-image-ARCH as vmdebootstrap's
}

// users are --user's accounts: NAME/PASSWORD, or NAME with an empty
// password (base.create_users).
func (s *Settings) users() (l []map[string]any, empty []string) {
	for _, u := range s.List("user") {
		name, pw, hasPW := strings.Cut(u, "/")
		m := map[string]any{"name": name, "sudo": s.Bool("sudo")}
		if hasPW {
			m["password"] = pw
		} else {
			empty = append(empty, name)
		}
		l = append(l, m)
	}
	return l, empty
}

// loaderArches are those where vmdeb puts GRUB for BIOS on a disk.
var loaderArches = map[string]bool{"amd64": true, "i386": true}

// bootloader is the disk's boot loader (_image_operations).
func (s *Settings) bootloader() string {
	a := s.Arch()
	switch {
	case s.Bool("use-uefi"):
		return "grub-uefi"
	case !loaderArches[a]:
		// vmdebootstrap's GRUB for BIOS and extlinux were for PCs; a
		// board's boot loader was the hook's to write.
		s.note("--arch %s: no boot loader on the disk; the --customize script writes the board's", a)
		return "none"
	case s.Bool("grub"):
		return "grub-bios"
	case s.Bool("extlinux"):
		s.note("no --grub: GRUB for BIOS, not extlinux (vmdeb's boot loader for disk images)")
		return "grub-bios"
	}
	s.note("--no-extlinux without --grub: no boot loader, as vmdebootstrap; the --customize script writes one")
	return "none"
}

// networking says how the image's network is set up
// (start_ops: networking for jessie and later).
func (s *Settings) networking() string {
	switch {
	case s.Bool("systemd-networkd") && !s.wheezy():
		return "networkd" // DHCP on every en* interface, whatever --enable-dhcp says
	case s.Bool("enable-dhcp"):
		return "ifupdown"
	}
	return "none"
}

var nameRE = regexp.MustCompile(`[^a-z0-9.+_-]+`)

// name is the config's name, from the output's file name.
func (s *Settings) name() string {
	base := s.Str("image")
	for _, o := range []string{"tarball", "squash"} {
		if base == "" {
			base = s.Str(o)
		}
	}
	name := nameRE.ReplaceAllString(strings.ToLower(strings.SplitN(filepath.Base(base), ".", 2)[0]), "-")
	if name == "" || !regexp.MustCompile(`^[a-z0-9]`).MatchString(name) {
		name = "vmdebootstrap"
	}
	return name
}

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	l := make([]string, 0, len(m))
	for k := range m {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}
