package archive

import (
	"fmt"
	"sort"
	"strings"

	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// UnsatisfiableError names a dependency no package of the index meets.
type UnsatisfiableError struct {
	Package  string // the package that has the dependency ("" for a requested package)
	Relation string
	Reason   string
}

func (e *UnsatisfiableError) Error() string {
	if e.Package == "" {
		return fmt.Sprintf("cannot install %s: %s", e.Relation, e.Reason)
	}
	return fmt.Sprintf("unsatisfiable dependency: %s depends on %s, %s", e.Package, e.Relation, e.Reason)
}

// Selection is a set of packages, one version per name.
type Selection struct {
	idx   *Index
	pkgs  map[string]*Package
	order []*Package
	// exclude names never chosen to satisfy a dependency.
	exclude map[string]bool
}

// NewSelection returns an empty selection over idx.
func (x *Index) NewSelection() *Selection {
	return &Selection{idx: x, pkgs: map[string]*Package{}, exclude: map[string]bool{}}
}

// Exclude keeps name out of every choice between alternatives (debootstrap's
// EXCLUDE_DEPENDENCY: usrmerge on bookworm and later).
func (s *Selection) Exclude(name string) { s.exclude[name] = true }

// Has reports whether a package called name is selected.
func (s *Selection) Has(name string) bool { return s.pkgs[name] != nil }

// Packages lists the selection in the order packages were added.
func (s *Selection) Packages() []*Package { return append([]*Package{}, s.order...) }

func (s *Selection) add(p *Package) bool {
	if s.pkgs[p.Name] != nil {
		return false
	}
	s.pkgs[p.Name] = p
	s.order = append(s.order, p)
	return true
}

// Add selects packages by name ("name" or "name=version") and then every
// package their Pre-Depends and Depends need, recursively. It returns the
// packages it added, in the order added. Requested packages are all
// selected before any dependency is looked at, so an alternative that one
// of them satisfies is not replaced by another choice.
func (s *Selection) Add(names ...string) ([]*Package, error) {
	start := len(s.order)
	for _, n := range names {
		name, ver, _ := strings.Cut(n, "=")
		if s.Has(name) {
			continue
		}
		var p *Package
		if ver == "" {
			p = s.idx.Candidate(name)
		} else {
			for _, c := range s.idx.byName[name] {
				if c.Version == ver {
					p = c
				}
			}
		}
		if p == nil {
			if ver != "" && s.idx.byName[name] != nil {
				return nil, &UnsatisfiableError{Relation: n, Reason: "that version is not in the archive"}
			}
			prov := s.providersOf(name, nil)
			if len(prov) == 0 {
				return nil, &UnsatisfiableError{Relation: n, Reason: "no such package in the archive"}
			}
			p = s.pick(prov)
		}
		s.add(p)
	}
	for i := start; i < len(s.order); i++ {
		p := s.order[i]
		rels, err := p.Relations()
		if err != nil {
			return nil, err
		}
		for _, r := range rels {
			if err := s.satisfy(p, r); err != nil {
				return nil, err
			}
		}
	}
	return append([]*Package{}, s.order[start:]...), nil
}

// satisfy selects a package for relation r of p unless one already
// meets it: the first alternative that a real package of a suitable
// version provides, else a package that Provides it.
func (s *Selection) satisfy(p *Package, r dependency.Relation) error {
	poss := s.usable(r.Possibilities)
	for _, po := range poss {
		if s.satisfiedBySelected(po) {
			return nil
		}
	}
	for _, po := range poss {
		if s.exclude[po.Name] {
			continue
		}
		for _, c := range s.idx.Versions(po.Name) {
			if versionOK(po, c.Ver()) && multiArchOK(po, c) {
				s.add(c)
				return nil
			}
		}
	}
	for _, po := range poss {
		if prov := s.providersOf(po.Name, po.Version); len(prov) > 0 {
			s.add(s.pick(prov))
			return nil
		}
	}
	return &UnsatisfiableError{Package: p.ID(), Relation: r.String(), Reason: s.why(poss)}
}

// why explains an unsatisfiable relation.
func (s *Selection) why(poss []dependency.Possibility) string {
	var parts []string
	for _, po := range poss {
		vs := s.idx.Versions(po.Name)
		switch {
		case s.exclude[po.Name]:
			parts = append(parts, po.Name+" is excluded")
		case len(vs) == 0:
			parts = append(parts, po.Name+" is not in the archive")
		default:
			var have []string
			for _, v := range vs {
				have = append(have, v.Version)
			}
			parts = append(parts, fmt.Sprintf("the archive has %s %s", po.Name, strings.Join(have, ", ")))
		}
	}
	if len(parts) == 0 {
		return "no alternative applies to " + s.idx.Arch
	}
	return strings.Join(parts, "; ")
}

// usable drops alternatives restricted to other architectures.
func (s *Selection) usable(poss []dependency.Possibility) []dependency.Possibility {
	var out []dependency.Possibility
	arch, err := dependency.ParseArch(s.idx.Arch)
	for _, po := range poss {
		if po.Architectures != nil && err == nil && !po.Architectures.Matches(arch) {
			continue
		}
		out = append(out, po)
	}
	return out
}

func versionOK(po dependency.Possibility, v version.Version) bool {
	return po.Version == nil || po.Version.SatisfiedBy(v)
}

// multiArchOK: "foo:any" needs foo to be Multi-Arch: allowed; with one
// architecture in the index, every other qualifier is the native one.
func multiArchOK(po dependency.Possibility, c *Package) bool {
	if po.Arch != nil && po.Arch.CPU == "any" {
		return c.MultiArch == "allowed"
	}
	return true
}

func (s *Selection) satisfiedBySelected(po dependency.Possibility) bool {
	if c := s.pkgs[po.Name]; c != nil && versionOK(po, c.Ver()) && multiArchOK(po, c) {
		return true
	}
	for _, pr := range s.idx.providers[po.Name] {
		if s.pkgs[pr.pkg.Name] == pr.pkg && provideOK(po.Version, pr) {
			return true
		}
	}
	return false
}

// provideOK: a versioned dependency is met only by a versioned Provides.
func provideOK(vr *dependency.VersionRelation, pr provide) bool {
	if vr == nil {
		return true
	}
	if pr.version == "" {
		return false
	}
	v, err := version.Parse(pr.version)
	return err == nil && vr.SatisfiedBy(v)
}

// providersOf lists the candidate packages providing name (newest version
// of each provider only), excluding excluded ones.
func (s *Selection) providersOf(name string, vr *dependency.VersionRelation) []*Package {
	var out []*Package
	seen := map[string]bool{}
	for _, pr := range s.idx.providers[name] {
		if s.exclude[pr.pkg.Name] || seen[pr.pkg.Name] || s.idx.Candidate(pr.pkg.Name) != pr.pkg || !provideOK(vr, pr) {
			continue
		}
		seen[pr.pkg.Name] = true
		out = append(out, pr.pkg)
	}
	return out
}

var priorityRank = map[string]int{"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}

// pick chooses among providers of a virtual package: one already selected,
// else the highest priority, then the name, so the choice never depends
// on the order of the Packages file.
func (s *Selection) pick(l []*Package) *Package {
	for _, p := range l {
		if s.pkgs[p.Name] == p {
			return p
		}
	}
	sort.SliceStable(l, func(i, j int) bool {
		ri, ok := priorityRank[l[i].Priority]
		if !ok {
			ri = 5
		}
		rj, ok := priorityRank[l[j].Priority]
		if !ok {
			rj = 5
		}
		if ri != rj {
			return ri < rj
		}
		return l[i].Name < l[j].Name
	})
	return l[0]
}

// BaseSet is what a bootstrap installs, split as debootstrap splits it.
type BaseSet struct {
	// Required is every Priority: required package and their dependencies:
	// unpacked first, then installed by dpkg.
	Required []*Package
	// Essential is the part of Required that is unpacked before dpkg runs:
	// the Essential: yes packages, awk, and what they depend on.
	Essential []*Package
	// Base is the variant's further packages (apt for minbase, Priority:
	// important for the default), the includes and their dependencies,
	// minus Required.
	Base []*Package
}

// All is Required then Base.
func (b BaseSet) All() []*Package { return append(append([]*Package{}, b.Required...), b.Base...) }

// Variant is a bootstrap variant, as debootstrap names it: the package
// set of the base system.
type Variant string

const (
	Minbase   Variant = "minbase"   // Priority: required, and apt
	Buildd    Variant = "buildd"    // minbase and build-essential
	Important Variant = "important" // required and important: debootstrap's default, with no --variant
)

// Variants are the bootstrap variants.
var Variants = []Variant{Minbase, Buildd, Important}

// ResolveBase works out the packages of a variant the way debootstrap's
// scripts do: Priority: required, plus apt for minbase (plus
// build-essential for buildd, plus Priority: important for the default),
// plus includes, each set closed under Depends and Pre-Depends. codename
// and https adjust it as debootstrap does (usr-is-merged on bookworm,
// ca-certificates for an https mirror).
func ResolveBase(x *Index, variant Variant, codename string, https bool, include []string) (BaseSet, error) {
	var required, base []string
	for _, p := range x.Where(func(p *Package) bool { return p.Priority == "required" }) {
		required = append(required, p.Name)
	}
	if len(required) == 0 {
		return BaseSet{}, fmt.Errorf("the archive has no Priority: required packages for %s", x.Arch)
	}
	switch variant {
	case Minbase:
		base = []string{"apt"}
	case Buildd:
		base = []string{"apt", "build-essential"}
	case Important, "":
		for _, p := range x.Where(func(p *Package) bool { return p.Priority == "important" }) {
			base = append(base, p.Name)
		}
	default:
		names := make([]string, len(Variants))
		for i, v := range Variants {
			names[i] = string(v)
		}
		return BaseSet{}, fmt.Errorf("unknown variant %q (valid: %s)", variant, strings.Join(names, ", "))
	}
	if https {
		base = append(base, "ca-certificates")
	}
	sel := x.NewSelection()
	switch codename {
	case "stretch", "buster", "bullseye":
	case "bookworm":
		if x.Candidate("usr-is-merged") != nil {
			required = append(required, "usr-is-merged")
		}
		sel.Exclude("usrmerge")
	default:
		sel.Exclude("usrmerge")
	}
	req, err := sel.Add(required...)
	if err != nil {
		return BaseSet{}, err
	}
	rest, err := sel.Add(append(base, include...)...)
	if err != nil {
		return BaseSet{}, err
	}
	return BaseSet{Required: req, Essential: essentialOf(req, x), Base: rest}, nil
}

// essentialOf is the packages of req that must be on disk before the
// target's dpkg can run and its maintainer scripts can rely on the
// Essential set: every Essential: yes package, mawk (debootstrap points
// awk at it before it is installed), and their dependencies, each met by
// the package req already chose for it.
func essentialOf(req []*Package, x *Index) []*Package {
	in := map[string]*Package{}
	for _, p := range req {
		in[p.Name] = p
	}
	var out []*Package
	seen := map[string]bool{}
	var walk func(p *Package)
	walk = func(p *Package) {
		if seen[p.Name] {
			return
		}
		seen[p.Name] = true
		out = append(out, p)
		rels, _ := p.Relations()
		for _, r := range rels {
			for _, po := range r.Possibilities {
				if c := in[po.Name]; c != nil {
					walk(c)
					break
				}
				found := false
				for _, pr := range x.providers[po.Name] {
					if c := in[pr.pkg.Name]; c == pr.pkg {
						walk(c)
						found = true
						break
					}
				}
				if found {
					break
				}
			}
		}
	}
	for _, p := range req {
		if p.Essential || p.Name == "mawk" {
			walk(p)
		}
	}
	return out
}
