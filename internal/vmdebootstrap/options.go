package vmdebootstrap

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// kind is a cliapp setting type: it decides how a value is read from the
// command line and from a config file.
type kind int

const (
	kString kind = iota
	kList        // cliapp string_list: repeated options add up
	kBool        // cliapp boolean: --X and --no-X
	kSize        // cliapp bytesize: 1G is 10^9, 1GiB 2^30
	kInt
	kChoice
)

// setting is one of vmdebootstrap's settings (a command-line option and
// a config-file key), as bin/vmdebootstrap's add_settings and cliapp's
// Settings._add_default_settings declare it.
type setting struct {
	name    string
	kind    kind
	def     string
	metavar string
	help    string
	choices []string
}

// settings are vmdebootstrap 1.6's, in add_settings' order, then cliapp's
// generic ones. Defaults are vmdebootstrap's; mirror and arch are "" for
// the host's (vmdebootstrap: a fixed mirror, dpkg --print-architecture).
var settings = []setting{
	{name: "verbose", kind: kBool, help: "report what is going on"},
	{name: "image", kind: kString, metavar: "FILE", help: "put created disk image in FILE"},
	{name: "size", kind: kSize, def: "1G", help: "create a disk image of size SIZE (1G: 10^9 bytes; 1GiB: 2^30)"},
	{name: "bootsize", kind: kSize, def: "0%", metavar: "BOOTSIZE", help: "create boot partition of size SIZE"},
	{name: "boottype", kind: kString, def: "ext2", help: "file system type for /boot"},
	{name: "bootflag", kind: kString, help: "flag to set on the first partition (besides boot)"},
	{name: "bootoffset", kind: kSize, def: "0", help: "space to leave at the start of the image for a boot loader"},
	{name: "use-uefi", kind: kBool, help: "set the image up for UEFI boot (needs --grub)"},
	{name: "esp-size", kind: kSize, def: "5mib", help: "size of the EFI system partition (needs --use-uefi)"},
	{name: "part-type", kind: kString, def: "msdos", help: "partition table: msdos or gpt"},
	{name: "roottype", kind: kString, def: "ext4", help: "file system type for /"},
	{name: "swap", kind: kSize, def: "0", help: "create swap space of size SIZE (at least 256MB)"},
	{name: "foreign", kind: kString, help: "static qemu-user binary (binfmt handler) for a foreign architecture"},
	{name: "debootstrapopts", kind: kList, help: "debootstrap options without their --, space-separated (repeat)"},
	{name: "extlinux", kind: kBool, def: "yes", help: "install extlinux (vmdeb: GRUB on PCs; --no-extlinux leaves the boot loader to the hook elsewhere)"},
	{name: "tarball", kind: kString, metavar: "FILE", help: "tar up the disk's contents in FILE"},
	{name: "apt-mirror", kind: kString, metavar: "URL", help: "configure apt to use MIRROR (needs --configure-apt)"},
	{name: "mirror", kind: kString, metavar: "URL", help: "use MIRROR as package source (default: the host's)"},
	{name: "arch", kind: kString, metavar: "ARCH", help: "architecture to use (default: the host's)"},
	{name: "distribution", kind: kString, def: "stable", metavar: "NAME", help: "release to use"},
	{name: "package", kind: kList, help: "install PACKAGE onto system (repeat; a,b and 'a b' are two)"},
	{name: "custom-package", kind: kList, metavar: "DEB", help: "install package in DEB file onto system (repeat)"},
	{name: "no-kernel", kind: kBool, help: "do not install a linux package"},
	{name: "kernel-package", kind: kString, metavar: "PACKAGE", help: "install PACKAGE instead of the default kernel package"},
	{name: "enable-dhcp", kind: kBool, help: "enable DHCP"},
	{name: "root-password", kind: kString, metavar: "PASSWORD", help: "set root password"},
	{name: "lock-root-password", kind: kBool, help: "lock root account"},
	{name: "customize", kind: kString, metavar: "SCRIPT", help: "run SCRIPT ROOTDIR IMAGE after setting up system"},
	{name: "hostname", kind: kString, def: "debian", metavar: "HOSTNAME", help: "set name to HOSTNAME"},
	{name: "user", kind: kList, metavar: "USER/PASSWORD", help: "create USER with PASSWORD (repeat; USER alone: empty password)"},
	{name: "serial-console", kind: kBool, help: "configure image to use a serial console (vmdeb always does)"},
	{name: "serial-console-command", kind: kString, def: "/sbin/getty -L ttyS0 115200 vt100", metavar: "COMMAND", help: "wheezy's inittab getty (ignored)"},
	{name: "sudo", kind: kBool, help: "install sudo, and if user is created, add them to sudo group"},
	{name: "owner", kind: kString, help: "the user (USER, USER:GROUP, numeric ids) who will own the outputs"},
	{name: "squash", kind: kString, metavar: "DIRECTORY", help: "write filesystem.squashfs and the /boot files into DIRECTORY"},
	{name: "configure-apt", kind: kBool, help: "create an apt source for the distribution and --apt-mirror"},
	{name: "mbr", kind: kBool, help: "run install-mbr (extlinux only; GRUB writes its own)"},
	{name: "grub", kind: kBool, help: "install and configure GRUB"},
	{name: "sparse", kind: kBool, help: "do not fill the image with zeros (vmdeb's images are always sparse)"},
	{name: "pkglist", kind: kBool, help: "write dpkg.list, the installed packages, in the working directory"},
	{name: "no-acpid", kind: kBool, help: "do not install the acpid package"},
	{name: "update-initramfs", kind: kBool, def: "yes", help: "run update-initramfs after customisation"},
	{name: "convert-qcow2", kind: kBool, help: "convert final image to qcow2"},
	{name: "systemd-networkd", kind: kBool, def: "yes", help: "DHCP on every en* interface with systemd-networkd"},
	{name: "dry-run", kind: kBool, help: "print the vmdeb config this makes and stop"},
	// cliapp's own settings.
	{name: "output", kind: kString, metavar: "FILE", help: "cliapp's output file (vmdebootstrap writes nothing to it; ignored)"},
	{name: "log", kind: kString, metavar: "FILE", help: `log file; "stderr", "syslog" or "none": vmdeb's default build log`},
	{name: "log-level", kind: kChoice, choices: []string{"debug", "info", "warning", "error", "critical", "fatal"}, metavar: "LEVEL", help: "accepted; vmdeb's build log is always complete"},
	{name: "log-max", kind: kSize, def: "0", help: "accepted; vmdeb does not rotate its log"},
	{name: "log-keep", kind: kInt, def: "10", metavar: "N", help: "accepted; vmdeb does not rotate its log"},
	{name: "log-mode", kind: kString, def: "0600", metavar: "MODE", help: "accepted; vmdeb's build log has its own mode"},
	{name: "dump-memory-profile", kind: kChoice, choices: []string{"simple", "none"}, metavar: "METHOD", help: "accepted; no memory profiling"},
	{name: "memory-dump-interval", kind: kInt, def: "300", metavar: "SECONDS", help: "accepted; no memory profiling"},
}

// actions are cliapp's options that are no settings (and no config keys).
var actions = []struct {
	name, metavar, help string
}{
	{"config", "FILE", "add FILE to config files (repeat: read in order, a later file's key wins)"},
	{"no-default-configs", "", "clear list of configuration files to read"},
	{"dump-config", "", "write out the entire current configuration"},
	{"dump-setting-names", "", "write out all names of settings and quit"},
	{"list-config-files", "", "list all possible config files"},
	{"generate-manpage", "TEMPLATE", "not supported (see man vmdeb-vmdebootstrap)"},
	{"help-all", "", "show all options"},
	{"help", "", "show this help message and exit"},
	{"version", "", "show program's version number and exit"},
}

// Version is the vmdebootstrap version whose options are spoken.
const Version = "1.6"

func lookupSetting(name string) *setting {
	for i := range settings {
		if settings[i].name == name {
			return &settings[i]
		}
	}
	return nil
}

// longOptions maps every long option name to what it does: a setting,
// its negation (cliapp adds --no-X for each boolean X unless that is a
// setting's name itself, as --no-kernel is), or an action.
func longOptions() map[string]optDef {
	m := map[string]optDef{}
	for i := range settings {
		s := &settings[i]
		m[s.name] = optDef{setting: s, takesValue: s.kind != kBool}
	}
	for i := range settings {
		s := &settings[i]
		if s.kind == kBool && lookupSetting("no-"+s.name) == nil {
			m["no-"+s.name] = optDef{setting: s, negate: true}
		}
	}
	for _, a := range actions {
		m[a.name] = optDef{action: a.name, takesValue: a.metavar != ""}
	}
	return m
}

type optDef struct {
	setting    *setting
	negate     bool
	action     string
	takesValue bool
}

// event is one option as given on the command line, name resolved.
type event struct {
	opt   string // the full option name without --
	def   optDef
	value string
}

// tokenize reads a command line as optparse did: --name=value or
// --name value (the next argument, even one starting with -), any
// unambiguous prefix of a long option, -- ending the options, and
// arguments among the options. It stops at --help or --version, which
// optparse acted on at once.
func tokenize(args []string) (evs []event, rest []string, err error) {
	opts := longOptions()
	names := make([]string, 0, len(opts))
	for n := range opts {
		names = append(names, n)
	}
	sort.Strings(names)
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return evs, append(rest, args[i+1:]...), nil
		case a == "-h":
			return append(evs, event{opt: "help", def: opts["help"]}), rest, nil
		case strings.HasPrefix(a, "--"):
		case strings.HasPrefix(a, "-") && a != "-":
			return nil, nil, fmt.Errorf("no such option: %s", a[:2])
		default:
			rest = append(rest, a)
			continue
		}
		name, value, explicit := strings.Cut(a[2:], "=")
		full, err := matchAbbrev(name, opts, names)
		if err != nil {
			return nil, nil, err
		}
		d := opts[full]
		ev := event{opt: full, def: d}
		switch {
		case d.takesValue && explicit:
			ev.value = value
		case d.takesValue:
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("--%s option requires an argument", full)
			}
			i++
			ev.value = args[i]
		case explicit:
			return nil, nil, fmt.Errorf("--%s option does not take a value", full)
		}
		if s := d.setting; s != nil && !d.negate {
			switch s.kind {
			case kInt:
				if _, err := strconv.Atoi(ev.value); err != nil {
					return nil, nil, fmt.Errorf("option --%s: invalid integer value: %q", full, ev.value)
				}
			case kChoice:
				if !contains(s.choices, ev.value) {
					return nil, nil, fmt.Errorf("option --%s: invalid choice: %q (choose from %s)", full, ev.value, strings.Join(s.choices, ", "))
				}
			}
		}
		evs = append(evs, ev)
		if full == "help" || full == "version" {
			return evs, rest, nil
		}
	}
	return evs, rest, nil
}

// matchAbbrev is optparse's _match_abbrev: the exact name, else the one
// option the prefix starts.
func matchAbbrev(s string, opts map[string]optDef, names []string) (string, error) {
	if _, ok := opts[s]; ok {
		return s, nil
	}
	var hits []string
	for _, n := range names {
		if strings.HasPrefix(n, s) {
			hits = append(hits, n)
		}
	}
	switch {
	case s == "" || len(hits) == 0:
		return "", fmt.Errorf("no such option: --%s", s)
	case len(hits) > 1:
		return "", fmt.Errorf("ambiguous option: --%s (--%s?)", s, strings.Join(hits, ", --"))
	}
	return hits[0], nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// sizeRE is cliapp's ByteSizeSetting.parse_human_size.
var sizeRE = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*(k|ki|m|mi|g|gi|t|ti)?b?\s*$`)

// ParseSize reads a size as vmdebootstrap did: k, m, g, t are powers of
// ten, ki, mi, gi, ti powers of two, any case, an optional b. ok is false
// where cliapp read 0 because it could not parse the value.
func ParseSize(v string) (n int64, ok bool) {
	m := sizeRE.FindStringSubmatch(strings.ToLower(v))
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	mult := map[string]float64{"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
		"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}[m[2]]
	if f*mult > 1<<62 {
		return 0, false
	}
	return int64(f * mult), true
}

// FlagSet declares the options on a pflag set, for the manual page and
// the shell completions; Parse does the parsing.
func FlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("vmdebootstrap", pflag.ContinueOnError)
	fs.SortFlags = false
	for _, s := range settings {
		help := s.help
		if s.def != "" && s.kind != kBool {
			help += fmt.Sprintf(" (default %s)", s.def)
		}
		switch s.kind {
		case kBool:
			fs.Bool(s.name, s.def == "yes", help)
		case kList:
			fs.StringArray(s.name, nil, help)
		default:
			fs.String(s.name, "", help)
		}
		if f := fs.Lookup(s.name); f != nil && s.metavar != "" {
			f.Annotations = map[string][]string{"metavar": {s.metavar}}
		}
	}
	for _, s := range settings {
		if s.kind == kBool && lookupSetting("no-"+s.name) == nil {
			fs.Bool("no-"+s.name, false, "opposite of --"+s.name)
		}
	}
	for _, a := range actions {
		if a.name == "help" || a.name == "version" {
			continue
		}
		if a.metavar != "" {
			fs.String(a.name, "", a.help)
		} else {
			fs.Bool(a.name, false, a.help)
		}
	}
	return fs
}

// Usage is the --help text.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: vmdeb vmdebootstrap [OPTIONS]\n\nvmdebootstrap " + Version + "'s options and config files (see docs/vmdebootstrap.md).\n" +
		"Any unambiguous prefix of an option works; every boolean --X has --no-X.\n\n")
	b.WriteString(FlagSet().FlagUsages())
	return b.String()
}
