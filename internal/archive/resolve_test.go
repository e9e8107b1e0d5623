package archive

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// index builds an Index from Packages stanzas (Filename, Size and SHA256
// filled in).
func index(t *testing.T, stanzas ...string) *Index {
	t.Helper()
	var b strings.Builder
	for _, s := range stanzas {
		b.WriteString(s)
		if !strings.Contains(s, "Architecture:") {
			b.WriteString("\nArchitecture: amd64")
		}
		b.WriteString("\nFilename: pool/x.deb\nSize: 1\nSHA256: " + strings.Repeat("0", 64) + "\n\n")
	}
	pkgs, err := ParsePackagesData([]byte(b.String()), "main")
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex("amd64")
	x.Add(pkgs)
	return x
}

func names(pkgs []*Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, p.Name+"="+p.Version)
	}
	return out
}

func TestResolveAlternativesAndVersions(t *testing.T) {
	x := index(t,
		"Package: a\nVersion: 1\nDepends: b (>= 2) | c, d:any",
		"Package: b\nVersion: 1",
		"Package: b\nVersion: 3",
		"Package: b\nVersion: 2",
		"Package: c\nVersion: 1",
		"Package: d\nVersion: 1\nMulti-Arch: allowed\nArchitecture: all",
		"Package: e\nVersion: 1\nArchitecture: arm64",
	)
	sel := x.NewSelection()
	got, err := sel.Add("a")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a=1", "b=3", "d=1"}; !reflect.DeepEqual(names(got), want) {
		t.Errorf("got %v, want %v (the newest b that satisfies, not c)", names(got), want)
	}
	if x.Candidate("e") != nil {
		t.Error("a package of another architecture was indexed")
	}
}

func TestResolveKeepsSatisfiedAlternative(t *testing.T) {
	x := index(t,
		"Package: a\nVersion: 1\nDepends: b | c",
		"Package: b\nVersion: 1",
		"Package: c\nVersion: 1",
	)
	sel := x.NewSelection()
	got, err := sel.Add("c", "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c=1", "a=1"}; !reflect.DeepEqual(names(got), want) {
		t.Errorf("got %v, want %v (c already meets b | c)", names(got), want)
	}
}

func TestResolveVirtual(t *testing.T) {
	x := index(t,
		"Package: a\nVersion: 1\nDepends: awk, mail-transport (>= 2)",
		"Package: mawk\nVersion: 1\nPriority: required\nProvides: awk",
		"Package: gawk\nVersion: 5\nPriority: optional\nProvides: awk",
		"Package: exim\nVersion: 4\nProvides: mail-transport (= 3)",
		"Package: postfix\nVersion: 3\nProvides: mail-transport",
	)
	sel := x.NewSelection()
	got, err := sel.Add("a")
	if err != nil {
		t.Fatal(err)
	}
	// mawk: the required provider; exim: the only versioned provider.
	if want := []string{"a=1", "mawk=1", "exim=4"}; !reflect.DeepEqual(names(got), want) {
		t.Errorf("got %v, want %v", names(got), want)
	}
	sel = x.NewSelection()
	if got, _ := sel.Add("gawk", "a"); !reflect.DeepEqual(names(got), []string{"gawk=5", "a=1", "exim=4"}) {
		t.Errorf("an already selected provider was not used: %v", names(got))
	}
}

func TestResolveUnsatisfiableNamed(t *testing.T) {
	x := index(t,
		"Package: a\nVersion: 1\nDepends: b",
		"Package: b\nVersion: 1\nPre-Depends: libfoo (>= 2) | libbar",
		"Package: libfoo\nVersion: 1.5",
	)
	_, err := x.NewSelection().Add("a")
	var ue *UnsatisfiableError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"b 1 (amd64)", "libfoo (>= 2) | libbar", "libfoo 1.5", "libbar is not in the archive"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if _, err := x.NewSelection().Add("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch: no such package") {
		t.Errorf("got %v", err)
	}
}

func TestResolveBaseVariants(t *testing.T) {
	x := index(t,
		"Package: base-files\nVersion: 1\nPriority: required\nEssential: yes",
		"Package: dpkg\nVersion: 1\nPriority: required\nEssential: yes\nPre-Depends: libc6",
		"Package: libc6\nVersion: 1\nPriority: optional",
		"Package: mawk\nVersion: 1\nPriority: required\nProvides: awk",
		"Package: libapt\nVersion: 1\nPriority: optional",
		"Package: apt\nVersion: 1\nPriority: important\nDepends: libapt, usrmerge | usr-is-merged",
		"Package: usrmerge\nVersion: 1\nPriority: optional",
		"Package: usr-is-merged\nVersion: 1\nPriority: optional",
		"Package: vim-tiny\nVersion: 1\nPriority: important",
		"Package: ca-certificates\nVersion: 1\nPriority: optional",
		"Package: build-essential\nVersion: 1\nPriority: optional",
		"Package: extra\nVersion: 1\nPriority: optional",
	)
	for _, tc := range []struct {
		variant  Variant
		codename string
		https    bool
		include  []string
		base     []string
	}{
		{"minbase", "trixie", false, nil, []string{"apt=1", "libapt=1", "usr-is-merged=1"}},
		{"buildd", "trixie", true, nil, []string{"apt=1", "build-essential=1", "ca-certificates=1", "libapt=1", "usr-is-merged=1"}},
		{"important", "trixie", false, []string{"extra"}, []string{"apt=1", "vim-tiny=1", "extra=1", "libapt=1", "usr-is-merged=1"}},
		{"minbase", "bookworm", false, nil, []string{"apt=1", "libapt=1"}},
	} {
		b, err := ResolveBase(x, tc.variant, tc.codename, tc.https, tc.include)
		if err != nil {
			t.Fatal(err)
		}
		req := []string{"base-files=1", "dpkg=1", "mawk=1", "libc6=1"}
		if tc.codename == "bookworm" {
			req = []string{"base-files=1", "dpkg=1", "mawk=1", "usr-is-merged=1", "libc6=1"}
		}
		if !reflect.DeepEqual(names(b.Required), req) || !reflect.DeepEqual(names(b.Base), tc.base) {
			t.Errorf("%s %s: required %v base %v, want %v %v", tc.variant, tc.codename, names(b.Required), names(b.Base), req, tc.base)
		}
		if ess := Names(b.Essential); !reflect.DeepEqual(ess, []string{"base-files", "dpkg", "libc6", "mawk"}) {
			t.Errorf("essential %v", ess)
		}
	}
}

func TestParsePackagesErrors(t *testing.T) {
	if _, err := ParsePackagesData([]byte("Package: a\nVersion: 1\n\n"), "main"); err == nil || !strings.Contains(err.Error(), "lacks") {
		t.Errorf("a stanza without Filename/SHA256 accepted: %v", err)
	}
	if _, err := ParsePackagesData([]byte("Package: a\nSHA256: xyz\n"), "main"); err == nil {
		t.Error("a bad SHA256 accepted")
	}
	// Folded fields and many pieces parse the same as one.
	var b strings.Builder
	for i := 0; i < 500; i++ {
		b.WriteString("Package: p" + strings.Repeat("x", i%7) + "\nVersion: 1\nArchitecture: all\nDepends: a,\n b\nFilename: f\nSize: 1\nSHA256: " + strings.Repeat("1", 64) + "\nDescription: d\n more\n\n")
	}
	pkgs, err := ParsePackagesData([]byte(b.String()), "main")
	if err != nil || len(pkgs) != 500 || pkgs[0].Depends != "a, b" {
		t.Fatalf("%d packages, %v, %q", len(pkgs), err, pkgs[0].Depends)
	}
}
