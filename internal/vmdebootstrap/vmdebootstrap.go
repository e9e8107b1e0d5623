// Package vmdebootstrap speaks vmdebootstrap's language: its command-line
// options and its INI config files become a vmdeb config, so existing
// scripts keep working. Where vmdebootstrap quietly went on after a failure,
// vmdeb stops instead (see docs/vmdebootstrap.md).
package vmdebootstrap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"vmdeb/internal/arch"
	"vmdeb/internal/config"
)

// Settings are vmdebootstrap's options.
type Settings struct {
	Image, Size, Tarball, Squash         string
	ConvertQcow2, Sparse                 bool
	Mirror, AptMirror                    string
	ConfigureApt                         bool
	Distribution, Arch, Foreign          string
	DebootstrapOpts                      string
	Packages, CustomPackages             []string
	NoKernel                             bool
	KernelPackage, Hostname              string
	RootPassword                         string
	LockRootPassword                     bool
	User                                 string // NAME/PASSWORD
	Sudo, EnableDHCP, SerialConsole      bool
	Customize                            string
	RootType, BootType, BootSize, Swap   string
	PartType                             string
	UseUEFI                              bool
	ESPSize                              string
	Grub                                 bool
	Owner                                string
	Pkglist, DryRun, Verbose, DumpConfig bool
	Log, Config                          string

	set map[string]bool // options given on the command line or in --config
	fs  *pflag.FlagSet  // bound to these fields
}

// flags declares vmdebootstrap's options on a flag set.
func (s *Settings) flags(fs *pflag.FlagSet) {
	fs.StringVar(&s.Image, "image", "", "disk image to write")
	fs.StringVar(&s.Size, "size", "", "size of the disk image (e.g. 4G)")
	fs.StringVar(&s.Tarball, "tarball", "", "tar archive of the root file system to write")
	fs.StringVar(&s.Squash, "squash", "", "directory to write filesystem.squashfs, vmlinuz and initrd.img into")
	fs.BoolVar(&s.ConvertQcow2, "convert-qcow2", false, "write the image as qcow2")
	fs.BoolVar(&s.Sparse, "sparse", false, "keep the image sparse (always the case)")
	fs.StringVar(&s.Mirror, "mirror", "", "mirror to build from (default: the host's)")
	fs.StringVar(&s.AptMirror, "apt-mirror", "", "mirror the image's apt uses (needs --configure-apt)")
	fs.BoolVar(&s.ConfigureApt, "configure-apt", false, "write the image's apt sources for --apt-mirror")
	fs.StringVar(&s.Distribution, "distribution", "stable", "suite to install")
	fs.StringVar(&s.Arch, "arch", arch.HostName(), "architecture")
	fs.StringVar(&s.Foreign, "foreign", "", "static qemu-user binary for a foreign architecture")
	fs.StringVar(&s.DebootstrapOpts, "debootstrapopts", "", `debootstrap options, e.g. "variant=buildd keyring=FILE"`)
	fs.StringArrayVar(&s.Packages, "package", nil, "package to install (repeat)")
	fs.StringArrayVar(&s.CustomPackages, "custom-package", nil, "local .deb file to install (repeat)")
	fs.BoolVar(&s.NoKernel, "no-kernel", false, "install no kernel")
	fs.StringVar(&s.KernelPackage, "kernel-package", "", "kernel package (default: the architecture's)")
	fs.StringVar(&s.Hostname, "hostname", "debian", "host name")
	fs.StringVar(&s.RootPassword, "root-password", "", "root's password")
	fs.BoolVar(&s.LockRootPassword, "lock-root-password", false, "lock root's password")
	fs.StringVar(&s.User, "user", "", "create a user: NAME/PASSWORD")
	fs.BoolVar(&s.Sudo, "sudo", false, "put the user in the sudo group")
	fs.BoolVar(&s.EnableDHCP, "enable-dhcp", false, "DHCP on the first network interface")
	fs.BoolVar(&s.SerialConsole, "serial-console", false, "a login on the serial console (vmdeb always adds it)")
	fs.StringVar(&s.Customize, "customize", "", "script run as SCRIPT ROOTDIR after the packages are installed")
	fs.StringVar(&s.RootType, "roottype", "ext4", "root file system type")
	fs.StringVar(&s.BootType, "boottype", "", "/boot file system type (with --bootsize)")
	fs.StringVar(&s.BootSize, "bootsize", "", "size of a separate /boot partition")
	fs.StringVar(&s.Swap, "swap", "", "size of a swap partition")
	fs.StringVar(&s.PartType, "part-type", "msdos", "partition table: msdos or gpt")
	fs.BoolVar(&s.UseUEFI, "use-uefi", false, "boot with UEFI (GRUB on an EFI system partition)")
	fs.StringVar(&s.ESPSize, "esp-size", "", "size of the EFI system partition (with --use-uefi)")
	fs.BoolVar(&s.Grub, "grub", false, "install GRUB as the boot loader")
	fs.StringVar(&s.Owner, "owner", "", "give the outputs to this user")
	fs.BoolVar(&s.Pkglist, "pkglist", false, "write the package list (vmdeb always does)")
	fs.BoolVar(&s.DryRun, "dry-run", false, "print the vmdeb config this makes and stop")
	fs.BoolVar(&s.Verbose, "verbose", false, "say more")
	fs.StringVar(&s.Log, "log", "", "log file")
	fs.StringVar(&s.Config, "config", "", "vmdebootstrap INI config file ([config] section)")
	fs.BoolVar(&s.DumpConfig, "dump-config", false, "print the settings as a vmdebootstrap config file and stop")
}

// FlagSet returns the options bound to s, for help text.
func (s *Settings) FlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("vmdebootstrap", pflag.ContinueOnError)
	fs.SortFlags = false
	s.flags(fs)
	return fs
}

// Parse reads the command line; a --config file is read first and the
// command line overrides it, as in vmdebootstrap.
func Parse(args []string) (*Settings, error) {
	s := &Settings{}
	fs := s.FlagSet()
	s.fs = fs
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%v (see vmdeb vmdebootstrap --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: vmdebootstrap takes only options", fs.Arg(0))
	}
	s.set = map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { s.set[f.Name] = true })
	if s.Config != "" {
		f, err := os.Open(s.Config)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		values, err := ParseINI(f, s.Config)
		if err != nil {
			return nil, err
		}
		// Config values for everything the command line did not set.
		keys := make([]string, 0, len(values))
		for k := range values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := values[k]
			fl := fs.Lookup(k)
			if fl == nil || k == "config" {
				return nil, fmt.Errorf("%s: unknown setting %q (valid: the long option names, e.g. image, size, distribution)", s.Config, k)
			}
			if s.set[k] {
				continue
			}
			if err := setFromINI(fs, fl, k, v); err != nil {
				return nil, fmt.Errorf("%s: %s: %v", s.Config, k, err)
			}
			s.set[k] = true
		}
	}
	return s, nil
}

func setFromINI(fs *pflag.FlagSet, fl *pflag.Flag, k, v string) error {
	switch fl.Value.Type() {
	case "bool":
		switch strings.ToLower(v) {
		case "yes", "true", "1", "on":
			v = "true"
		case "no", "false", "0", "off", "":
			v = "false"
		default:
			return fmt.Errorf("%q is not yes or no", v)
		}
		return fs.Set(k, v)
	case "stringArray":
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				if err := fs.Set(k, item); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return fs.Set(k, v)
}

// ParseINI reads a vmdebootstrap config file: settings under [config],
// "key = value" (or "key: value"), lists comma-separated.
func ParseINI(r io.Reader, file string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	section, n := "", 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("%s:%d: a section header needs a closing ]", file, n)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: expected key = value", file, n)
		}
		if section != "config" {
			return nil, fmt.Errorf("%s:%d: settings belong in the [config] section", file, n)
		}
		out[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return out, sc.Err()
}

// Validate rejects the combinations vmdebootstrap rejected.
func (s *Settings) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Image == "" && s.Tarball == "" && s.Squash == "" {
		bad("nothing to write: give --image, --tarball or --squash")
	}
	if s.Squash != "" && s.Image != "" {
		bad("--squash cannot be used with --image (a squashfs is made from a directory, not a disk image)")
	}
	if s.Image != "" && s.Size == "" {
		bad("--image needs --size")
	}
	if s.ConvertQcow2 && s.Image == "" {
		bad("--convert-qcow2 needs --image")
	}
	if s.AptMirror != "" && !s.ConfigureApt {
		bad("--apt-mirror needs --configure-apt")
	}
	if s.ESPSize != "" && !s.UseUEFI {
		bad("--esp-size needs --use-uefi")
	}
	if s.UseUEFI && s.Image == "" {
		bad("--use-uefi needs --image")
	}
	if s.Sudo && s.User == "" {
		bad("--sudo needs --user")
	}
	if s.RootPassword != "" && s.LockRootPassword {
		bad("--root-password and --lock-root-password contradict each other")
	}
	if s.BootType != "" && s.BootSize == "" {
		bad("--boottype needs --bootsize")
	}
	if s.User != "" && !strings.Contains(s.User, "/") {
		bad("--user takes NAME/PASSWORD, e.g. --user user/live")
	}
	if s.NoKernel && s.KernelPackage != "" {
		bad("--no-kernel and --kernel-package contradict each other")
	}
	if s.NoKernel && s.Image != "" {
		bad("--no-kernel cannot make a bootable --image")
	}
	if s.PartType != "msdos" && s.PartType != "gpt" {
		bad("--part-type %q: valid are msdos and gpt", s.PartType)
	}
	if s.UseUEFI {
		if a, err := arch.Lookup(s.Arch); err == nil && !a.HasFirmware(arch.UEFI) {
			bad("--use-uefi: architecture %s does not boot with UEFI", s.Arch)
		}
	}
	for _, sz := range []struct{ opt, v string }{{"size", s.Size}, {"bootsize", s.BootSize}, {"swap", s.Swap}, {"esp-size", s.ESPSize}} {
		if sz.v != "" {
			if _, err := config.ParseSize(sz.v); err != nil {
				bad("--%s: %v", sz.opt, err)
			}
		}
	}
	return errors.Join(errs...)
}

var nameRE = regexp.MustCompile(`[^a-z0-9.+_-]+`)

// YAML renders the equivalent vmdeb config. Relative paths are made
// absolute against cwd, so the file can live anywhere.
func (s *Settings) YAML(cwd string) (string, error) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cwd, p)
	}
	base := s.Image
	if base == "" {
		base = s.Tarball
	}
	if base == "" {
		base = s.Squash
	}
	name := nameRE.ReplaceAllString(strings.ToLower(strings.SplitN(filepath.Base(base), ".", 2)[0]), "-")
	if name == "" || !regexp.MustCompile(`^[a-z0-9]`).MatchString(name) {
		name = "vmdebootstrap"
	}
	m := yaml.Node{Kind: yaml.MappingNode}
	add := func(k string, v any) {
		var n yaml.Node
		n.Encode(v)
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &n)
	}
	add("name", name)
	add("suite", s.Distribution)
	add("architecture", s.Arch)
	if s.Mirror != "" {
		add("mirror", s.Mirror)
	}
	if s.ConfigureApt && s.AptMirror != "" {
		add("apt-mirror", s.AptMirror)
	}
	if s.Foreign != "" {
		add("binfmt-handler", abs(s.Foreign))
	}
	// vmdebootstrap ran debootstrap without --variant unless told: the
	// default set (required and important), which brings an init.
	variant := "important"
	var include []string
	for _, o := range strings.Fields(s.DebootstrapOpts) {
		k, v, _ := strings.Cut(strings.TrimPrefix(o, "--"), "=")
		switch k {
		case "variant":
			variant = v
		case "keyring":
			add("keyring", abs(v))
		case "components":
			add("components", strings.Split(v, ","))
		case "include":
			include = append(include, strings.Split(v, ",")...)
		default:
			return "", fmt.Errorf("--debootstrapopts %q: vmdeb passes on variant=, keyring=, components= and include=", o)
		}
	}
	add("variant", variant)
	switch {
	case s.NoKernel:
		add("kernel", "none")
	case s.KernelPackage != "":
		add("kernel", s.KernelPackage)
	}
	if pk := append(include, s.Packages...); len(pk) > 0 {
		add("packages", pk)
	}
	if len(s.CustomPackages) > 0 {
		var l []string
		for _, p := range s.CustomPackages {
			l = append(l, abs(p))
		}
		add("custom-packages", l)
	}
	if s.User != "" {
		name, pw, _ := strings.Cut(s.User, "/")
		add("users", []map[string]any{{"name": name, "password": pw, "sudo": s.Sudo}})
	}
	switch {
	case s.RootPassword != "":
		add("root", map[string]any{"password": s.RootPassword})
	case s.LockRootPassword:
		add("root", map[string]any{"lock": true})
	default:
		// vmdebootstrap left root without a password; vmdeb locks it.
		add("root", map[string]any{"lock": true})
	}
	add("hostname", s.Hostname)
	if s.Customize != "" {
		add("customise", abs(s.Customize))
	}
	var outs []map[string]any
	if s.Image != "" {
		d := map[string]any{"type": "disk", "path": abs(s.Image), "size": s.Size, "filesystem": s.RootType,
			"partition-table": map[string]string{"msdos": "mbr", "gpt": "gpt"}[s.PartType]}
		if s.ConvertQcow2 {
			d["format"] = "qcow2"
		} else {
			d["format"] = "raw"
		}
		if s.BootSize != "" {
			d["boot-size"] = s.BootSize
		}
		if s.Swap != "" {
			d["swap-size"] = s.Swap
		}
		if s.ESPSize != "" {
			d["esp-size"] = s.ESPSize
		}
		switch {
		case s.UseUEFI:
			d["bootloader"] = "grub-uefi"
		default:
			// vmdebootstrap used extlinux without --grub; vmdeb uses GRUB.
			d["bootloader"] = "grub-bios"
		}
		if s.EnableDHCP {
			d["network"] = "ifupdown" // vmdebootstrap's way: /etc/network/interfaces
		} else {
			d["network"] = "none"
		}
		outs = append(outs, d)
	}
	if s.Tarball != "" {
		outs = append(outs, map[string]any{"type": "tarball", "path": abs(s.Tarball)})
	}
	if s.Squash != "" {
		outs = append(outs, map[string]any{"type": "squashfs", "path": abs(s.Squash)})
	}
	add("outputs", outs)
	out, err := yaml.Marshal(&m)
	return "# made by vmdeb vmdebootstrap\n" + string(out), err
}

// INI renders the settings as a vmdebootstrap config file (--dump-config).
// Only for Settings made by Parse.
func (s *Settings) INI() string {
	var b strings.Builder
	b.WriteString("[config]\n")
	s.fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "dump-config" || f.Name == "config" {
			return
		}
		v := f.Value.String()
		switch f.Value.Type() {
		case "bool":
			v = map[string]string{"true": "yes", "false": "no"}[v]
		case "stringArray":
			v = strings.Trim(v, "[]")
		}
		fmt.Fprintf(&b, "%s = %s\n", f.Name, v)
	})
	return b.String()
}
