package installer

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"

	"vmdeb/internal/archive"
)

// Stanza is one package of a Packages index: its fields as
// internal/archive parses them, and its text as the archive wrote it,
// which goes onto the medium unchanged (the medium's pool holds the very
// files it describes).
type Stanza struct {
	*archive.Package
	Text   string // the stanza's lines, each ending in "\n"
	Kernel string // Kernel-Version, for kernel module udebs
}

// ParseIndex parses a Packages file and keeps each stanza's text.
func ParseIndex(data []byte, component string) ([]Stanza, error) {
	pkgs, err := archive.ParsePackagesData(data, component)
	if err != nil {
		return nil, err
	}
	type key struct{ name, version, arch string }
	text := map[key]string{}
	kernel := map[key]string{}
	for _, para := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n") {
		para = strings.Trim(para, "\n")
		if para == "" {
			continue
		}
		var k key
		var kv string
		for _, l := range strings.Split(para, "\n") {
			name, v, ok := strings.Cut(l, ":")
			if !ok || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
				continue
			}
			v = strings.TrimSpace(v)
			switch name {
			case "Package":
				k.name = v
			case "Version":
				k.version = v
			case "Architecture":
				k.arch = v
			case "Kernel-Version":
				kv = v
			}
		}
		text[k] = para + "\n"
		kernel[k] = kv
	}
	out := make([]Stanza, 0, len(pkgs))
	for _, p := range pkgs {
		k := key{p.Name, p.Version, p.Architecture}
		t, ok := text[k]
		if !ok {
			return nil, fmt.Errorf("Packages: no stanza text for %s", p.ID())
		}
		out = append(out, Stanza{Package: p, Text: t, Kernel: kernel[k]})
	}
	return out, nil
}

// udebSeeds are the udebs the medium carries beyond those of priority
// standard and higher (which anna loads by itself): live-installer, which
// installs the live system's own squashfs; the boot loader installer;
// every partitioning method and file system partman offers; the medium
// checker; and speech synthesis for the entry that asks for it.
var udebSeeds = []string{
	"live-installer", "grub-installer", "partman-*", "cdrom-checker",
	"espeakup-udeb", "user-setup-udeb", "apt-setup-udeb", "apt-cdrom-setup",
	"finish-install", "clock-setup", "tzsetup-udeb", "localechooser", "console-setup-udeb",
}

// udebExcluded never go onto the medium: live-installer installs the
// system, so debootstrap's installer step would only offer a second,
// network-bound way to do it.
var udebExcluded = []string{"bootstrap-base", "cdebootstrap-udeb", "debootstrap-udeb"}

// UdebInclude is what .disk/udeb_include lists: the udebs anna loads from
// the medium whatever their priority (live-installer's is optional).
var UdebInclude = []string{"live-installer"}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func highPriority(p string) bool {
	return p == "required" || p == "important" || p == "standard"
}

// SelectUdebs picks the udebs for the medium from the archive's
// debian-installer index: the seeds (every udeb of priority standard or
// higher, udebSeeds, and every kernel module udeb of the initrds' kernel)
// and the closure of their dependencies, without the udebs every initrd
// already holds (have) and those of other kernels. unresolved lists the
// dependencies nothing in the index or the initrds satisfies.
func SelectUdebs(index []Stanza, have InitrdInfo) (sel []Stanza, unresolved []string, err error) {
	skip := func(s *Stanza) bool {
		return have.Udebs[s.Name] || matchAny(udebExcluded, s.Name) || (s.Kernel != "" && s.Kernel != have.Kernel)
	}
	seed := func(s *Stanza) bool {
		return s.Kernel == have.Kernel || highPriority(s.Priority) || matchAny(udebSeeds, s.Name)
	}
	present := func(n string) bool { return have.Udebs[n] || have.Provided[n] }
	return closure(index, seed, skip, present)
}

// TargetPackages are the .debs the installed system may need that the
// live system lacks, by architecture: the boot loaders grub-installer
// installs for BIOS and for UEFI (Debian's signed ones with shim where
// the archive has them), and the tools partman's methods need in the
// target (encryption, LVM, RAID and the file systems it offers).
func TargetPackages(arch string) []string {
	var l []string
	switch arch {
	case "amd64":
		l = []string{"grub-pc", "grub-efi-amd64", "grub-efi-amd64-signed", "shim-signed"}
	case "i386":
		l = []string{"grub-pc", "grub-efi-ia32"}
	case "arm64":
		l = []string{"grub-efi-arm64", "grub-efi-arm64-signed", "shim-signed"}
	case "ppc64el":
		l = []string{"grub-ieee1275"}
	default:
		l = []string{"grub-efi-" + arch}
	}
	return append(l, "cryptsetup", "cryptsetup-initramfs", "lvm2", "mdadm", "dosfstools", "btrfs-progs", "xfsprogs")
}

// SelectDebs picks the pool's .debs from the archive's index: seeds that
// the index has (all of them, installed in the live system or not: d-i
// installs the boot loaders from the medium, never from the target), and
// what they depend on that installed (the live system's packages) lacks.
func SelectDebs(index []Stanza, seeds []string, installed map[string]bool) (sel []Stanza, unresolved []string, err error) {
	seed := func(s *Stanza) bool { return slices.Contains(seeds, s.Name) }
	return closure(index, seed, func(*Stanza) bool { return false }, func(n string) bool { return installed[n] })
}

// closure selects the newest version of each seed not skipped, then, for
// each Depends and Pre-Depends of a selected package not already met by
// present or the selection, the first alternative the index has (by name,
// then by what provides it).
func closure(index []Stanza, seed, skip func(*Stanza) bool, present func(string) bool) ([]Stanza, []string, error) {
	byName := map[string]*Stanza{}
	providers := map[string][]*Stanza{}
	for i := range index {
		s := &index[i]
		if skip(s) {
			continue
		}
		if c := byName[s.Name]; c == nil || version.Compare(s.Ver(), c.Ver()) > 0 {
			byName[s.Name] = s
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := byName[n]
		for _, pr := range strings.Split(s.Provides, ",") {
			if v, _, _ := strings.Cut(strings.TrimSpace(pr), " "); v != "" {
				providers[v] = append(providers[v], s)
			}
		}
	}
	selected := map[string]*Stanza{}
	provided := map[string]bool{}
	var queue []*Stanza
	add := func(s *Stanza) {
		if selected[s.Name] != nil {
			return
		}
		selected[s.Name] = s
		for _, pr := range strings.Split(s.Provides, ",") {
			if v, _, _ := strings.Cut(strings.TrimSpace(pr), " "); v != "" {
				provided[v] = true
			}
		}
		queue = append(queue, s)
	}
	for _, n := range names {
		if seed(byName[n]) {
			add(byName[n])
		}
	}
	met := func(po dependency.Possibility) bool {
		return present(po.Name) || selected[po.Name] != nil || provided[po.Name]
	}
	missing := map[string]bool{}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		rels, err := s.Relations()
		if err != nil {
			return nil, nil, err
		}
	next:
		for _, r := range rels {
			for _, po := range r.Possibilities {
				if met(po) {
					continue next
				}
			}
			for _, po := range r.Possibilities {
				if c := byName[po.Name]; c != nil {
					add(c)
					continue next
				}
			}
			for _, po := range r.Possibilities {
				if ps := providers[po.Name]; len(ps) > 0 {
					add(ps[0])
					continue next
				}
			}
			var alts []string
			for _, po := range r.Possibilities {
				alts = append(alts, po.Name)
			}
			missing[s.Name+" -> "+strings.Join(alts, " | ")] = true
		}
	}
	out := make([]Stanza, 0, len(selected))
	for _, n := range names {
		if s := selected[n]; s != nil {
			out = append(out, *s)
		}
	}
	var unresolved []string
	for m := range missing {
		unresolved = append(unresolved, m)
	}
	sort.Strings(unresolved)
	return out, unresolved, nil
}

// IndexOptions describe the medium's archive: its Release's fields,
// taken from the signed Release of the archive its packages come from.
type IndexOptions struct {
	Origin, Label, Suite, Codename, Version string
	Arch                                    string
	Date                                    time.Time
}

// PackagesText is a Packages file of the stanzas, sorted by name.
func PackagesText(st []Stanza) []byte {
	s := slices.Clone(st)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(x.Text)
	}
	return b.Bytes()
}

func gzipBytes(data []byte) []byte {
	var b bytes.Buffer
	// No name and no time in the header: the same index gives the same bytes.
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// Indices are the medium's index files, by path below its root: for the
// .debs dists/CODENAME/main/binary-ARCH/Packages(.gz), for the udebs
// dists/CODENAME/main/debian-installer/binary-ARCH/Packages(.gz), and
// dists/CODENAME/Release listing the MD5 and SHA256 of each.
func Indices(o IndexOptions, debs, udebs []Stanza) map[string][]byte {
	dist := "dists/" + o.Codename + "/"
	files := map[string][]byte{}
	var listed []string
	for _, ix := range []struct {
		dir string
		st  []Stanza
	}{{"main/binary-" + o.Arch, debs}, {"main/debian-installer/binary-" + o.Arch, udebs}} {
		p := PackagesText(ix.st)
		files[dist+ix.dir+"/Packages"] = p
		files[dist+ix.dir+"/Packages.gz"] = gzipBytes(p)
		listed = append(listed, ix.dir+"/Packages", ix.dir+"/Packages.gz")
	}
	sort.Strings(listed)
	var b strings.Builder
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	field("Origin", o.Origin)
	field("Label", o.Label)
	field("Suite", o.Suite)
	field("Version", o.Version)
	field("Codename", o.Codename)
	if !o.Date.IsZero() {
		field("Date", o.Date.UTC().Format(time.RFC1123Z))
	}
	field("Architectures", o.Arch)
	field("Components", "main")
	field("Description", fmt.Sprintf("%s %s %s: the installer's packages", o.Label, o.Codename, o.Arch))
	for _, h := range []struct {
		name string
		sum  func([]byte) string
	}{
		{"MD5Sum", func(d []byte) string { s := md5.Sum(d); return hex.EncodeToString(s[:]) }},
		{"SHA256", func(d []byte) string { s := sha256.Sum256(d); return hex.EncodeToString(s[:]) }},
	} {
		b.WriteString(h.name + ":\n")
		for _, p := range listed {
			d := files[dist+p]
			fmt.Fprintf(&b, " %s %8d %s\n", h.sum(d), len(d), p)
		}
	}
	files[dist+"Release"] = []byte(b.String())
	return files
}

// DiskFiles are the .disk files debian-cd writes that d-i reads on a live
// medium with the installer (/.disk/info is the ISO's own): the base
// system's components, that a base system is installable from it, that
// it is a live medium (cd_type "live": the live system is what gets
// installed), and the udebs anna must load whatever their priority.
func DiskFiles() map[string]string {
	return map[string]string{
		".disk/base_components":  "main\n",
		".disk/base_installable": "",
		".disk/cd_type":          "live\n",
		".disk/udeb_include":     strings.Join(UdebInclude, "\n") + "\n",
	}
}
