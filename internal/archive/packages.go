package archive

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// Package is one stanza of a Packages index: the fields a bootstrap needs.
type Package struct {
	Name, Version, Architecture string
	MultiArch, Priority         string
	Essential                   bool
	Depends, PreDepends         string // as written; parsed on demand
	Provides                    string
	Filename                    string
	Size                        int64
	SHA256                      string
	Component                   string

	verOnce    sync.Once
	depOnce    sync.Once
	ver        version.Version
	verErr     error
	deps, pdep *dependency.Dependency
	depErr     error
}

// ID is name=version:arch, how errors and logs name a package.
func (p *Package) ID() string { return p.Name + " " + p.Version + " (" + p.Architecture + ")" }

// DebName is the file name apt gives the package in its archive directory
// (an epoch's colon escaped as %3a).
func (p *Package) DebName() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Architecture + ".deb"
}

func (p *Package) parseVer() {
	p.verOnce.Do(func() { p.ver, p.verErr = version.Parse(p.Version) })
}

func (p *Package) parse() {
	p.parseVer()
	p.depOnce.Do(func() {
		if p.deps, p.depErr = parseDep(p.Depends); p.depErr != nil {
			p.depErr = fmt.Errorf("%s: Depends: %w", p.ID(), p.depErr)
			return
		}
		if p.pdep, p.depErr = parseDep(p.PreDepends); p.depErr != nil {
			p.depErr = fmt.Errorf("%s: Pre-Depends: %w", p.ID(), p.depErr)
		}
	})
}

func parseDep(s string) (*dependency.Dependency, error) {
	if strings.TrimSpace(s) == "" {
		return &dependency.Dependency{}, nil
	}
	return dependency.Parse(s)
}

// Ver is the parsed version.
func (p *Package) Ver() version.Version { p.parseVer(); return p.ver }

// Relations returns Pre-Depends then Depends.
func (p *Package) Relations() ([]dependency.Relation, error) {
	p.parse()
	if p.verErr != nil {
		return nil, fmt.Errorf("%s: bad version: %w", p.ID(), p.verErr)
	}
	if p.depErr != nil {
		return nil, p.depErr
	}
	return append(append([]dependency.Relation{}, p.pdep.Relations...), p.deps.Relations...), nil
}

// PreDependsOn lists the names p pre-depends on (every alternative).
func (p *Package) PreDependsOn() []string {
	p.parse()
	if p.pdep == nil {
		return nil
	}
	var out []string
	for _, r := range p.pdep.Relations {
		for _, po := range r.Possibilities {
			out = append(out, po.Name)
		}
	}
	return out
}

// provide is one entry of a Provides field.
type provide struct {
	pkg     *Package
	version string // "" when unversioned
}

// Index is the packages of one architecture (plus Architecture: all)
// from one or more Packages files.
type Index struct {
	Arch      string
	byName    map[string][]*Package
	providers map[string][]provide
}

// NewIndex returns an empty index for arch.
func NewIndex(arch string) *Index {
	return &Index{Arch: arch, byName: map[string][]*Package{}, providers: map[string][]provide{}}
}

// Add puts packages into the index; packages of other architectures are
// left out.
func (x *Index) Add(pkgs []*Package) {
	for _, p := range pkgs {
		if p.Architecture != x.Arch && p.Architecture != "all" {
			continue
		}
		x.byName[p.Name] = append(x.byName[p.Name], p)
		for _, pr := range strings.Split(p.Provides, ",") {
			name, ver := parseProvide(pr)
			if name != "" {
				x.providers[name] = append(x.providers[name], provide{p, ver})
			}
		}
	}
}

// parseProvide reads "name (= 1.0)" or "name" or "name:any".
func parseProvide(s string) (string, string) {
	s = strings.TrimSpace(s)
	name, rest, _ := strings.Cut(s, "(")
	name = strings.TrimSpace(name)
	name, _, _ = strings.Cut(name, ":")
	rest = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), ")"))
	if v, ok := strings.CutPrefix(rest, "="); ok {
		return name, strings.TrimSpace(v)
	}
	return name, ""
}

// All lists every package of the index.
func (x *Index) All() []*Package {
	var out []*Package
	for _, l := range x.byName {
		out = append(out, l...)
	}
	return out
}

// Len is the number of packages in the index.
func (x *Index) Len() int {
	n := 0
	for _, l := range x.byName {
		n += len(l)
	}
	return n
}

// Candidate is the newest version of a real package named name, or nil.
func (x *Index) Candidate(name string) *Package {
	var best *Package
	for _, p := range x.byName[name] {
		if best == nil || version.Compare(p.Ver(), best.Ver()) > 0 {
			best = p
		}
	}
	return best
}

// Versions lists every version of name, newest first.
func (x *Index) Versions(name string) []*Package {
	l := append([]*Package{}, x.byName[name]...)
	sort.SliceStable(l, func(i, j int) bool { return version.Compare(l[i].Ver(), l[j].Ver()) > 0 })
	return l
}

// Where lists the packages with a field matching: Priority or Essential.
func (x *Index) Where(keep func(*Package) bool) []*Package {
	var out []*Package
	names := make([]string, 0, len(x.byName))
	for n := range x.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if c := x.Candidate(n); c != nil && keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// ParsePackagesData parses a whole Packages file held in memory, in
// parallel: it is cut at stanza boundaries into one piece per CPU.
func ParsePackagesData(data []byte, component string) ([]*Package, error) {
	n := runtime.GOMAXPROCS(0)
	var pieces [][]byte
	for len(data) > 0 {
		cut := len(data)
		if n > 1 && len(pieces) < n-1 {
			if i := bytes.Index(data[len(data)/(n-len(pieces)):], []byte("\n\n")); i >= 0 {
				cut = len(data)/(n-len(pieces)) + i + 2
			}
		}
		pieces = append(pieces, data[:cut])
		data = data[cut:]
	}
	results := make([][]*Package, len(pieces))
	errs := make([]error, len(pieces))
	var wg sync.WaitGroup
	for i, p := range pieces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = ParsePackages(bytes.NewReader(p), component)
		}()
	}
	wg.Wait()
	var out []*Package
	for i := range pieces {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, results[i]...)
	}
	return out, nil
}

// set stores one field of a stanza; it returns the field a continuation
// line would extend (nil for one that takes none).
func (p *Package) set(key, val string) (*string, error) {
	switch key {
	case "Package":
		p.Name = val
	case "Version":
		p.Version = val
	case "Architecture":
		p.Architecture = val
	case "Multi-Arch":
		p.MultiArch = val
	case "Priority":
		p.Priority = val
	case "Essential":
		p.Essential = val == "yes"
	case "Depends":
		p.Depends = val
		return &p.Depends, nil
	case "Pre-Depends":
		p.PreDepends = val
		return &p.PreDepends, nil
	case "Provides":
		p.Provides = val
		return &p.Provides, nil
	case "Filename":
		p.Filename = val
	case "Size":
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad Size %q", val)
		}
		p.Size = n
	case "SHA256":
		if !IsSHA256(val) {
			return nil, fmt.Errorf("bad SHA256 %q", val)
		}
		p.SHA256 = val
	}
	return nil, nil
}

// ParsePackages reads a Packages file. It is a hand-written scanner, not
// a general control file reader: the file is tens of megabytes and only a
// dozen fields of each stanza matter.
func ParsePackages(r io.Reader, component string) ([]*Package, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var out []*Package
	var cur *Package
	var field *string // the field a continuation line extends
	line := 0
	finish := func() error {
		if cur == nil {
			return nil
		}
		if cur.Name == "" || cur.Version == "" || cur.Filename == "" || cur.SHA256 == "" {
			return fmt.Errorf("line %d: stanza of %q lacks Package, Version, Filename or SHA256", line, cur.Name)
		}
		out = append(out, cur)
		cur, field = nil, nil
		return nil
	}
	for {
		b, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line (a Description): read the rest.
			full := append([]byte{}, b...)
			for err == bufio.ErrBufferFull {
				b, err = br.ReadSlice('\n')
				full = append(full, b...)
			}
			b = full
		}
		if len(b) == 0 && err != nil {
			if err != io.EOF {
				return nil, err
			}
			break
		}
		line++
		b = bytes.TrimRight(b, "\r\n")
		if len(bytes.TrimSpace(b)) == 0 {
			if ferr := finish(); ferr != nil {
				return nil, ferr
			}
			if err == io.EOF {
				break
			}
			continue
		}
		if b[0] == ' ' || b[0] == '\t' {
			if field != nil {
				*field += " " + string(bytes.TrimSpace(b))
			}
			continue
		}
		i := bytes.IndexByte(b, ':')
		if i <= 0 {
			return nil, fmt.Errorf("line %d: not a field: %q", line, b)
		}
		if cur == nil {
			cur = &Package{Component: component}
		}
		key, val := b[:i], string(bytes.TrimSpace(b[i+1:]))
		var serr error
		if field, serr = cur.set(string(key), val); serr != nil {
			return nil, fmt.Errorf("line %d: %w", line, serr)
		}
		if err == io.EOF {
			break
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return out, nil
}
