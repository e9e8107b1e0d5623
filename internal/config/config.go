// Package config is vmdeb's image description: one YAML file per image
// type, decoded strictly, with every error naming the file, line and key.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"vmdeb/internal/apt"
	"vmdeb/internal/aptauth"
	"vmdeb/internal/arch"
	"vmdeb/internal/archive"
	"vmdeb/internal/disk"

	"go.yaml.in/yaml/v3"
)

// Spec is one image description as written in the file, with defaults
// filled in by Load. Paths are absolute after Load.
type Spec struct {
	Name           string `yaml:"name"`
	Suite          string `yaml:"suite"`
	Architecture   string `yaml:"architecture"`
	BinfmtHandler  string `yaml:"binfmt-handler"`
	Mirror         string `yaml:"mirror"`
	AptMirror      string `yaml:"apt-mirror"`
	SecurityMirror string `yaml:"security-mirror"`
	// APTAuth names an apt auth.conf file (apt_auth.conf(5)) with the
	// mirrors' credentials: given to the build, never put in the image.
	APTAuth    string   `yaml:"apt-auth"`
	Components []string `yaml:"components"`
	Variant    Variant  `yaml:"variant"`
	Bootstrap  Backend  `yaml:"bootstrap"`
	Keyring    string   `yaml:"keyring"`
	Cache      string   `yaml:"cache"`
	Insecure   bool     `yaml:"insecure"`
	Kernel     string   `yaml:"kernel"`
	DeviceTree string   `yaml:"device-tree"`
	Packages   []string `yaml:"packages"`
	// CommonPackages are installed before Packages, in a stage of their
	// own whose cache entry every image with the same base system and the
	// same CommonPackages shares: what a family of images has in common.
	CommonPackages []string `yaml:"common-packages"`
	CustomPackages []string `yaml:"custom-packages"`
	// Debconf are answers given to debconf before the packages are
	// installed, one debconf-set-selections line each: OWNER QUESTION
	// TYPE VALUE (a licence to accept, a default to change).
	Debconf     []string `yaml:"debconf"`
	Users       []User   `yaml:"users"`
	Root        Root     `yaml:"root"`
	Hostname    string   `yaml:"hostname"`
	Customise   string   `yaml:"customise"`
	HookTimeout Duration `yaml:"hook-timeout"`
	Live        Live     `yaml:"live"`
	Outputs     []Output `yaml:"outputs"`
	// Isolation is where the build runs: host (as root), userns (an
	// ordinary user's user namespace) or vm (a builder VM). "" means host
	// for root and userns for anybody else.
	Isolation Isolation `yaml:"isolation"`
	// SecureBoot: whether the outputs that boot on UEFI (live ISOs, disks
	// with GRUB for UEFI) do so through Debian's signed shim, GRUB and
	// kernel, so that firmware with Secure Boot on starts them.
	SecureBoot SecureBootMode `yaml:"secure-boot"`
	Builder    Builder        `yaml:"builder"`

	// Auth is the mirrors' credentials: taken out of the mirror URLs by
	// Parse (which leaves the URLs without them) and read from APTAuth by
	// Validate. Nothing but apt's and vmdeb's downloads sees them.
	Auth     aptauth.Set `yaml:"-"`
	authRead bool        // APTAuth's entries are in Auth

	// File is the config file's absolute path, Dir its directory.
	File string `yaml:"-"`
	Dir  string `yaml:"-"`
	// Includes are the files File includes, directly or through another,
	// as absolute paths in the order they were read. The relative paths
	// they give are rewritten relative to Dir, so Path resolves them.
	Includes []string `yaml:"-"`
	// lines maps a key path ("users[0].name") to the file and line that
	// give it.
	lines map[string]pos
}

// pos is where a key is: a file and a line in it.
type pos struct {
	file string
	line int
}

// User is an account created in the image.
type User struct {
	Name         string   `yaml:"name"`
	Password     string   `yaml:"password"`
	PasswordHash string   `yaml:"password-hash"`
	Sudo         bool     `yaml:"sudo"`
	Shell        string   `yaml:"shell"`
	Groups       []string `yaml:"groups"`
}

// Root says what happens to root's password: locked, or set.
type Root struct {
	Lock         *bool  `yaml:"lock"`
	Password     string `yaml:"password"`
	PasswordHash string `yaml:"password-hash"`
}

// Live holds the live ISO's options.
type Live struct {
	Title        string   `yaml:"title"`
	VolumeID     string   `yaml:"volume-id"`
	Splash       string   `yaml:"splash"`
	Compression  string   `yaml:"compression"`
	KernelParams []string `yaml:"kernel-params"`
	// Installer puts debian-installer (fetched from the mirror, verified
	// against the archive's signature) on the ISO with its menu entries.
	Installer bool `yaml:"installer"`
	// Locales makes the localisation submenu: locale names, or "all".
	Locales []string `yaml:"locales"`
}

// Output is one thing the build writes. The disk keys apply to type disk
// (size to ext4 too).
type Output struct {
	Type OutputType `yaml:"type"`
	Path string     `yaml:"path"`

	Format         disk.Format         `yaml:"format"`          // raw | qcow2 (default: from the extension)
	Size           Size                `yaml:"size"`            // whole image, e.g. 4G; an ext4 output's file system
	PartitionTable disk.PartitionTable `yaml:"partition-table"` // gpt | mbr
	Filesystem     disk.Filesystem     `yaml:"filesystem"`      // ext4 | ext3 | ext2 | btrfs | xfs
	BootSize       Size                `yaml:"boot-size"`       // separate /boot
	BootFilesystem disk.Filesystem     `yaml:"boot-filesystem"` // ext4 | ext3 | ext2 | vfat
	// PartitionOffset is where the first partition starts (room for a
	// board's boot loader before it); 0 is 1 MiB.
	PartitionOffset Size `yaml:"partition-offset"`
	// ImageHook runs as HOOK ROOTDIR IMAGE once the disk image is
	// partitioned and before its file systems are made from ROOTDIR
	// (disk.Hook).
	ImageHook  string          `yaml:"image-hook"`
	SwapSize   Size            `yaml:"swap-size"`
	ESPSize    Size            `yaml:"esp-size"`
	Bootloader disk.Bootloader `yaml:"bootloader"` // grub-bios | grub-uefi | grub-hybrid | extlinux | none
	Network    disk.Network    `yaml:"network"`    // networkd | ifupdown | none
	GrowRoot   bool            `yaml:"grow-root"`
	// Mode is the output file's permissions, octal ("0644"); "" is the
	// default of its type (OutputMode).
	Mode         string   `yaml:"mode"`
	KernelParams []string `yaml:"kernel-params"`

	// The container image's (type oci): Tag names it (NAME[:TAG]; the
	// default is the config's name), the others are the defaults of the
	// containers run from it.
	Tag        string   `yaml:"tag"`
	Cmd        []string `yaml:"cmd"`
	Entrypoint []string `yaml:"entrypoint"`
	Env        []string `yaml:"env"`
	Labels     Labels   `yaml:"labels"`
}

// Labels are a container image's labels, name to value.
type Labels map[string]string

// MarshalJSON writes no labels as {} (the config's JSON in reports has
// [] for a list not given, and {} for a mapping).
func (l Labels) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string]string(l))
}

// OutputMode is the permissions an output file is created with, before
// the umask: mode when the config gives one; 0600 for the outputs that
// hold the image's files as they are, /etc/shadow's password hashes
// included, readable by whoever can read the file (tarball, disk image,
// the squashfs output's file system, an ext4 image, a container image);
// 0644 for a live ISO, made to be published. A directory output keeps the
// image's own modes.
func (o Output) OutputMode() os.FileMode {
	if m, err := strconv.ParseUint(o.Mode, 8, 32); o.Mode != "" && err == nil {
		return os.FileMode(m)
	}
	switch o.Type {
	case Tarball, Disk, Squashfs, Ext4, OCI:
		return 0o600
	}
	return 0o644
}

// Size is a byte count written as 4G, 512M, 300MiB or a plain number.
type Size struct{ Bytes int64 }

// UnmarshalYAML reads sizes with binary units.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	z.Bytes = v
	return nil
}

// ParseSize reads "4G", "512M", "300MiB", "1.5G", "1048576" (binary units).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num := strings.TrimRightFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(strings.TrimSpace(t[len(num):]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f < 0 || f*mult > 1<<60 {
		return 0, fmt.Errorf("%q is not a size (valid: e.g. 4G, 512M, 300MiB; at most 1E)", s)
	}
	return int64(f * mult), nil
}

// Duration is a time.Duration written as "30m", "90s".
type Duration struct{ time.Duration }

// UnmarshalYAML reads Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration (valid: e.g. 90s, 30m, 1h)", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// The enumerated keys: each a type, its values and the list of them
// that validation, its messages and the documentation give. The disk
// output's own (format, partition-table, filesystem, bootloader, network)
// are internal/disk's, the output types internal/arch's: the packages
// that act on them.

// OutputType is an output's type: live-iso, disk, tarball, directory,
// squashfs, ext4 or oci.
type OutputType = arch.OutputType

const (
	LiveISO   = arch.LiveISO
	Disk      = arch.Disk
	Tarball   = arch.Tarball
	Directory = arch.Directory
	Squashfs  = arch.Squashfs
	Ext4      = arch.Ext4
	OCI       = arch.OCI
)

// OutputTypes are the output types vmdeb knows.
var OutputTypes = arch.OutputTypes

// Variant is the bootstrap variant, as debootstrap names it.
type Variant = archive.Variant

const (
	Minbase   = archive.Minbase
	Buildd    = archive.Buildd
	Important = archive.Important
)

// Variants are the variants vmdeb accepts ("important" means
// debootstrap's default: Priority required and important).
var Variants = archive.Variants

// Backend is the base system's bootstrapper (the key bootstrap).
type Backend string

const (
	Debootstrap Backend = "debootstrap" // Debian's debootstrap (the default)
	Native      Backend = "native"      // vmdeb's own, in Go
)

// Backends are the base-system backends.
var Backends = []Backend{Debootstrap, Native}

// Isolation is where a build runs.
type Isolation string

const (
	Host   Isolation = "host"   // on the host, as root
	Userns Isolation = "userns" // in an ordinary user's user namespace
	VM     Isolation = "vm"     // in a builder VM
)

// Isolations are the places a build can run.
var Isolations = []Isolation{Host, Userns, VM}

// SecureBootMode is the secure-boot key's value.
type SecureBootMode string

const (
	// SecureBootAuto (the default) is on where the suite and the
	// architecture have Debian's signed boot loaders.
	SecureBootAuto SecureBootMode = "auto"
	SecureBootOn   SecureBootMode = "true"  // on, or an error where they are missing
	SecureBootOff  SecureBootMode = "false" // vmdeb's own, unsigned GRUB image
)

// SecureBootModes are the secure-boot key's valid values.
var SecureBootModes = []SecureBootMode{SecureBootAuto, SecureBootOn, SecureBootOff}

// SecureBootFrom is the first release Debian signed its boot chain for.
const SecureBootFrom = 10 // buster

// SecureBootMissing says why the suite and architecture of s have no
// signed boot loaders ("" when they have them).
func SecureBootMissing(s *Spec) string {
	a, err := arch.Lookup(s.Architecture)
	if err != nil {
		return err.Error()
	}
	if a.SecureBoot == nil {
		return fmt.Sprintf("Debian signs no boot loaders for %s (it does for %s)", a.Name, strings.Join(arch.SecureBootNames(), ", "))
	}
	if r, ok := apt.LookupSuite(s.Suite); ok && r.Version != 0 && r.Version < SecureBootFrom {
		return fmt.Sprintf("%s has no signed boot loaders (Debian signs them from buster on)", s.Suite)
	}
	return ""
}

// UsesSecureBoot tells whether the UEFI boot of s's outputs goes through
// Debian's signed chain.
func (s *Spec) UsesSecureBoot() bool {
	switch s.SecureBoot {
	case SecureBootOff:
		return false
	case SecureBootOn:
		return true
	}
	return SecureBootMissing(s) == ""
}

// Join lists values for a message or a help text: "a, b, c".
func Join[T ~string](values []T) string { return disk.Join(values) }

// oneOf reports whether v is one of valid.
func oneOf[T comparable](v T, valid []T) bool { return slices.Contains(valid, v) }

// Error is one problem in a config file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	var s []string
	for _, e := range es {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

// Load reads, decodes strictly, fills defaults and validates a config file.
// It touches nothing but the file and the paths it names.
func Load(path string) (*Spec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := readConfig(abs)
	if err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	s, err := Parse(data, abs)
	if err != nil {
		return nil, err
	}
	if errs := s.Validate(); len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// Limits on what a config may make the loader do: a config is a page of
// keys, and anything far larger is a mistake or an attack (a 50 MB file
// took 1.9 GB to decode; 20,000 aliases of one long string kept the
// validation busy for minutes).
const (
	MaxConfigSize = 1 << 20 // bytes in the file
	MaxAliases    = 1000    // alias nodes (*name) in the document
	// MaxExpanded bounds the text the document stands for once every
	// alias is expanded (scalars and keys, counted at each use).
	MaxExpanded = 4 << 20
)

// readConfig reads a config file, refusing one larger than MaxConfigSize
// without reading it all.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %v", errors.Unwrap(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %v", err)
	}
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("larger than %d KiB: not a config file (a config is a page of keys)", MaxConfigSize>>10)
	}
	return data, nil
}

// Parse decodes data (the contents of file) and the files it includes,
// merges them (include.go) and fills defaults; it does not validate.
func Parse(data []byte, file string) (*Spec, error) {
	p := &parser{top: file, topDir: filepath.Dir(file), fileOf: map[*yaml.Node]string{}}
	doc, err := p.load(data, file, nil)
	if err != nil {
		return nil, err
	}
	doc = p.strip(doc)
	s := &Spec{File: file, Dir: filepath.Dir(file), Includes: p.included, lines: map[string]pos{}}
	var errs Errors
	checkKeys(doc, reflect.TypeOf(*s), "", func(key string, n *yaml.Node) {
		s.lines[key] = pos{p.fileOf[n], n.Line}
	}, func(n *yaml.Node, key, msg string) {
		errs = append(errs, &Error{File: p.fileOf[n], Line: n.Line, Key: key, Msg: msg})
	})
	if len(errs) > 0 {
		return nil, errs
	}
	if err := decode(doc, s, file); err != nil {
		return nil, err
	}
	s.setDefaults()
	s.splitCredentials()
	return s, nil
}

// readDoc decodes one file's YAML document: a mapping, one document,
// its aliases bounded.
func readDoc(data []byte, file string) (*yaml.Node, error) {
	if len(data) > MaxConfigSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than %d KiB: not a config file (a config is a page of keys)", MaxConfigSize>>10)}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if err == io.EOF {
			return nil, &Error{File: file, Msg: "the file is empty (a config needs at least name, suite, architecture and outputs)"}
		}
		return nil, &Error{File: file, Line: yamlErrLine(err), Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	// One image per file: a second document would be silently ignored.
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		line := next.Line
		if err != nil {
			line = yamlErrLine(err)
		}
		return nil, &Error{File: file, Line: line, Msg: "a second YAML document (after ---): one config file describes one image; put the other image in a file of its own"}
	}
	if err := checkAliases(&root); err != nil {
		return nil, &Error{File: file, Line: err.line, Msg: err.msg}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: doc.Line, Msg: "the top level must be a mapping of keys (name:, suite:, ...)"}
	}
	return doc, nil
}

// decode decodes n into v, with yaml's type errors made Errors in file.
func decode(n *yaml.Node, v any, file string) error {
	err := n.Decode(v)
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs Errors
		for _, m := range te.Errors {
			errs = append(errs, typeError(file, m))
		}
		return errs
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return &Error{File: file, Line: yamlErrLine(err), Msg: linePrefixRE.ReplaceAllString(msg, "")}
}

// splitCredentials moves a user and password out of the mirror URLs into
// Auth, so that no URL the build writes (into the image's sources, the
// log, a message) carries them.
func (s *Spec) splitCredentials() {
	for _, m := range []*string{&s.Mirror, &s.AptMirror, &s.SecurityMirror} {
		if u, e := aptauth.Split(*m); e != nil {
			*m = u
			s.Auth = append(s.Auth, *e)
		}
	}
}

type aliasError struct {
	line int
	msg  string
}

// checkAliases refuses a document with more than MaxAliases aliases or
// one that expands to more than MaxExpanded bytes of text, before
// anything expands it. Each anchored node's expanded size is computed
// once, so the check itself is linear in the document.
func checkAliases(root *yaml.Node) *aliasError {
	aliases := 0
	sizes := map[*yaml.Node]int64{}
	var size func(n *yaml.Node, depth int) (int64, *aliasError)
	size = func(n *yaml.Node, depth int) (int64, *aliasError) {
		if depth > 10000 {
			return 0, &aliasError{n.Line, "nested too deeply"}
		}
		if v, ok := sizes[n]; ok {
			return v, nil
		}
		var total int64
		switch n.Kind {
		case yaml.AliasNode:
			aliases++
			if aliases > MaxAliases {
				return 0, &aliasError{n.Line, fmt.Sprintf("more than %d aliases (*name): not a config file", MaxAliases)}
			}
			if n.Alias == nil {
				return 0, nil
			}
			v, err := size(n.Alias, depth+1)
			if err != nil {
				return 0, err
			}
			total = v
		default:
			total = int64(len(n.Value)) + 1
			for _, c := range n.Content {
				v, err := size(c, depth+1)
				if err != nil {
					return 0, err
				}
				total += v
				if total > MaxExpanded {
					break
				}
			}
		}
		if total > MaxExpanded {
			return 0, &aliasError{n.Line, fmt.Sprintf("its aliases (*name) expand to more than %d MiB of text: not a config file", MaxExpanded>>20)}
		}
		if n.Anchor != "" {
			sizes[n] = total
		}
		return total, nil
	}
	_, err := size(root, 0)
	return err
}

var (
	lineRE       = regexp.MustCompile(`line (\d+)`)
	linePrefixRE = regexp.MustCompile(`^line \d+: `)
)

func yamlErrLine(err error) int {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

var typeRE = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*?)`)? into (.+)$")

func typeError(file, msg string) *Error {
	if m := typeRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		want := m[4]
		switch {
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case want == "bool":
			want = "true or false"
		case strings.HasPrefix(want, "config."):
			want = "a mapping of keys"
		}
		got := map[string]string{"str": "a string", "seq": "a list", "map": "a mapping", "int": "a number", "bool": "a boolean", "float": "a number"}[m[2]]
		if got == "" {
			got = m[2]
		}
		v := strings.TrimSpace(m[3])
		if v != "" {
			got += " (" + v + ")"
		}
		return &Error{File: file, Line: n, Msg: fmt.Sprintf("expected %s, found %s", want, got)}
	}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Msg: strings.TrimPrefix(msg, m[0]+": ")}
	}
	return &Error{File: file, Msg: msg}
}

// checkKeys walks the YAML tree beside the Go type and reports every key
// that the type does not have, with the keys that would be valid. It
// calls record with the key node of every key path ("users[0].name") and
// the node of every list item, for later validation messages. A key
// KEY+ (append to the included list, include.go) is KEY's path.
func checkKeys(n *yaml.Node, t reflect.Type, path string, record func(string, *yaml.Node), report func(*yaml.Node, string, string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode && t != reflect.TypeOf(Duration{}) && t != reflect.TypeOf(Size{}):
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
			names = append(names, tag)
		}
		if path == "" && t == reflect.TypeOf(Spec{}) {
			names = append(names, "include")
		}
		sort.Strings(names)
		seen := map[string]string{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name, appends := strings.CutSuffix(k.Value, "+")
			key := join(path, name)
			ft, ok := fields[name]
			if !ok || name == "" {
				report(k, join(path, k.Value), fmt.Sprintf("unknown key (valid keys here: %s)", strings.Join(names, ", ")))
				continue
			}
			if appends && ft.Kind() != reflect.Slice {
				report(k, join(path, k.Value), fmt.Sprintf("%s+ appends to a list, and %s is not a list (write %s: to replace it)", name, name, name))
				continue
			}
			if prev, ok := seen[name]; ok {
				if prev == k.Value {
					report(k, key, "given twice")
				} else {
					report(k, key, fmt.Sprintf("%s: and %s+: both given; choose one (%s+ appends to the included list, %s replaces it)", name, name, name, name))
				}
			}
			seen[name] = k.Value
			record(key, k)
			checkKeys(v, ft, key, record, report)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			record(key, c)
			checkKeys(c, t.Elem(), key, record, report)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Line is the line of a key path in the file that gives it (0 when
// absent); Pos names that file too.
func (s *Spec) Line(key string) int {
	_, l := s.Pos(key)
	return l
}

// Pos is the file and line that give a key path: the config's file or
// one it includes ("", 0 when absent).
func (s *Spec) Pos(key string) (string, int) {
	for k := key; k != ""; {
		if p, ok := s.lines[k]; ok {
			return p.file, p.line
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return "", 0
}

// Errorf makes an Error about a key of this spec.
func (s *Spec) Errorf(key, format string, a ...any) *Error {
	file, line := s.Pos(key)
	if file == "" {
		file = s.File
	}
	return &Error{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, a...)}
}

// Path resolves p against the config file's directory.
func (s *Spec) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}

func (s *Spec) setDefaults() {
	if len(s.Components) == 0 {
		s.Components = []string{"main"}
	}
	if s.Variant == "" {
		s.Variant = Minbase
	}
	if s.Bootstrap == "" {
		s.Bootstrap = Debootstrap
	}
	if s.Hostname == "" {
		s.Hostname = "debian"
	}
	if s.SecureBoot == "" {
		s.SecureBoot = SecureBootAuto
	}
	if s.Root.Lock == nil && s.Root.Password == "" && s.Root.PasswordHash == "" {
		t := true
		s.Root.Lock = &t
	}
	if s.Live.Compression == "" {
		s.Live.Compression = "xz"
	}
	if s.Live.Title == "" {
		s.Live.Title = fmt.Sprintf("Debian GNU/Linux %s (%s)", s.Suite, s.Architecture)
	}
	if s.Live.VolumeID == "" {
		v := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_", "+", "_").Replace(s.Name))
		if len(v) > 32 {
			v = v[:32]
		}
		s.Live.VolumeID = v
	}
	if s.HookTimeout.Duration == 0 {
		s.HookTimeout.Duration = time.Hour
	}
	for i := range s.Users {
		if s.Users[i].Shell == "" {
			s.Users[i].Shell = "/bin/bash"
		}
	}
}

// Builder is the builder VM of isolation: vm.
type Builder struct {
	Suite   string `yaml:"suite"`        // the builder's release (default: the image's suite)
	Memory  Size   `yaml:"memory"`       // default 2G
	CPUs    int    `yaml:"cpus"`         // default: the host's, at most 4
	Scratch Size   `yaml:"scratch-size"` // the VM's work disk (default 20G)
}

// LockRoot reports whether root's password is locked.
func (s *Spec) LockRoot() bool { return s.Root.Lock != nil && *s.Root.Lock }

// HasPlainPassword reports whether a user or root is given a password in
// clear (to be hashed at build time) rather than a hash.
func (s *Spec) HasPlainPassword() bool {
	for _, u := range s.Users {
		if u.Password != "" && u.PasswordHash == "" {
			return true
		}
	}
	return !s.LockRoot() && s.Root.Password != "" && s.Root.PasswordHash == ""
}
