package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tree writes files (name: contents; names ending in .sh are executable
// hooks) under a temp dir and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const baseYAML = `name: base-image
suite: trixie
architecture: amd64
components: [main, contrib]
packages: [task-english, wpasupplicant]
users:
  - name: user
    password: live
live:
  title: Base
  compression: zstd
  kernel-params: [quiet]
outputs:
  - type: live-iso
    path: out/base.iso
`

func TestIncludeMergesMapsAndReplacesLists(t *testing.T) {
	dir := tree(t, map[string]string{
		"base.yaml": baseYAML,
		"image.yaml": `include: base.yaml
name: flavour
packages: [vim]
live:
  title: Flavour
`,
	})
	s, err := Load(filepath.Join(dir, "image.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "flavour" || s.Suite != "trixie" || s.Architecture != "amd64" {
		t.Errorf("top level not merged: name %q suite %q arch %q", s.Name, s.Suite, s.Architecture)
	}
	if !slices.Equal(s.Packages, []string{"vim"}) {
		t.Errorf("packages = %v, want the including file's list alone", s.Packages)
	}
	if !slices.Equal(s.Components, []string{"main", "contrib"}) {
		t.Errorf("components = %v, want the included list", s.Components)
	}
	if s.Live.Title != "Flavour" || s.Live.Compression != "zstd" || !slices.Equal(s.Live.KernelParams, []string{"quiet"}) {
		t.Errorf("live not merged key by key: %+v", s.Live)
	}
	if want := filepath.Join(dir, "out/base.iso"); s.Path(s.Outputs[0].Path) != want {
		t.Errorf("output path %s, want %s", s.Path(s.Outputs[0].Path), want)
	}
	if !slices.Equal(s.Includes, []string{filepath.Join(dir, "base.yaml")}) {
		t.Errorf("Includes = %v", s.Includes)
	}
}

func TestIncludeAppendsLists(t *testing.T) {
	dir := tree(t, map[string]string{
		"base.yaml": baseYAML,
		"image.yaml": `include: [base.yaml]
packages+: [vim]
users+:
  - name: admin
    sudo: true
live:
  kernel-params+: [splash]
outputs+:
  - type: tarball
    path: out/root.tar.gz
`,
	})
	s, err := Load(filepath.Join(dir, "image.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Packages, []string{"task-english", "wpasupplicant", "vim"}) {
		t.Errorf("packages = %v", s.Packages)
	}
	if len(s.Users) != 2 || s.Users[0].Name != "user" || s.Users[1].Name != "admin" || !s.Users[1].Sudo {
		t.Errorf("users = %+v", s.Users)
	}
	if !slices.Equal(s.Live.KernelParams, []string{"quiet", "splash"}) {
		t.Errorf("live.kernel-params = %v", s.Live.KernelParams)
	}
	if len(s.Outputs) != 2 || s.Outputs[1].Type != "tarball" {
		t.Errorf("outputs = %+v", s.Outputs)
	}
	// The appended item's line is in image.yaml.
	if f, l := s.Pos("users[1].name"); f != filepath.Join(dir, "image.yaml") || l != 4 {
		t.Errorf("users[1].name at %s:%d, want image.yaml:4", f, l)
	}
	if f, l := s.Pos("users[0].name"); f != filepath.Join(dir, "base.yaml") || l != 7 {
		t.Errorf("users[0].name at %s:%d, want base.yaml:7", f, l)
	}
}

// Nested includes, later includes over earlier ones, relative paths
// relative to the file that names them.
func TestIncludeNestedAndRelativePaths(t *testing.T) {
	dir := tree(t, map[string]string{
		"common/base.yaml": `include: ../shared/arch.yaml
name: base-image
suite: trixie
customise: hooks/base.sh
live:
  splash: art/splash.png
packages: [a1]
`,
		"shared/arch.yaml": `architecture: arm64
packages: [zz]
`,
		"common/hooks/base.sh":  "#!/bin/sh\n",
		"common/art/splash.png": "\x89PNG\r\n\x1a\nrest",
		"extra.yaml":            "packages+: [b2]\narchitecture: amd64\n",
		"images/one.yaml": `include: [../common/base.yaml, ../extra.yaml]
name: one
outputs:
  - type: live-iso
    path: one.iso
`,
	})
	s, err := Load(filepath.Join(dir, "images/one.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Architecture != "amd64" {
		t.Errorf("architecture %q: the later include wins", s.Architecture)
	}
	if !slices.Equal(s.Packages, []string{"a1", "b2"}) {
		t.Errorf("packages = %v", s.Packages)
	}
	if got, want := s.Path(s.Customise), filepath.Join(dir, "common/hooks/base.sh"); got != want {
		t.Errorf("customise resolves to %s, want %s", got, want)
	}
	if s.Customise != "../common/hooks/base.sh" {
		t.Errorf("customise = %q, want it relative to the config's directory", s.Customise)
	}
	if got, want := s.Path(s.Live.Splash), filepath.Join(dir, "common/art/splash.png"); got != want {
		t.Errorf("splash resolves to %s, want %s", got, want)
	}
	if got, want := s.Path(s.Outputs[0].Path), filepath.Join(dir, "images/one.iso"); got != want {
		t.Errorf("output resolves to %s, want %s", got, want)
	}
	want := []string{filepath.Join(dir, "common/base.yaml"), filepath.Join(dir, "shared/arch.yaml"), filepath.Join(dir, "extra.yaml")}
	if !slices.Equal(s.Includes, want) {
		t.Errorf("Includes = %v, want %v", s.Includes, want)
	}
}

// Errors name the file and line that give the value, wherever it is.
func TestIncludeErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string // substrings; FILE: is replaced by the file's path
	}{
		{"bad value in included file", map[string]string{
			"base.yaml":  strings.Replace(baseYAML, "wpasupplicant", "Bad_Pkg", 1),
			"image.yaml": "include: base.yaml\nname: x\n",
		}, []string{"base.yaml:5: packages[1]:", "Bad_Pkg"}},
		{"missing hook in included file", map[string]string{
			"base.yaml":  baseYAML + "customise: nohook.sh\n",
			"image.yaml": "include: base.yaml\n",
		}, []string{"base.yaml:16: customise:", "nohook.sh", "no such file"}},
		{"unknown key in included file", map[string]string{
			"base.yaml":  strings.Replace(baseYAML, "  title: Base", "  title: Base\n  titel: x", 1),
			"image.yaml": "include: base.yaml\n",
		}, []string{"base.yaml:11: live.titel: unknown key"}},
		{"type error in included file", map[string]string{
			"base.yaml":  baseYAML + "hook-timeout: soon\n",
			"image.yaml": "include: base.yaml\n",
		}, []string{"base.yaml:16:", "not a duration"}},
		{"list expected in included file", map[string]string{
			"base.yaml":  strings.Replace(baseYAML, "[main, contrib]", "main", 1),
			"image.yaml": "include: base.yaml\n",
		}, []string{"base.yaml:4:", "expected a list"}},
		{"overridden value in including file", map[string]string{
			"base.yaml":  baseYAML,
			"image.yaml": "include: base.yaml\n\nsuite: trixy\n",
		}, []string{"image.yaml:3: suite: unknown suite"}},
		{"missing include", map[string]string{
			"image.yaml": "name: x\ninclude: [nothere.yaml]\n",
		}, []string{"image.yaml:2: include: nothere.yaml:", "no such file"}},
		{"cycle", map[string]string{
			"image.yaml": "include: a.yaml\n",
			"a.yaml":     "name: a\ninclude: b.yaml\n",
			"b.yaml":     "\ninclude:\n  - a.yaml\n",
		}, []string{"b.yaml:3: include: include cycle: a.yaml includes b.yaml includes a.yaml"}},
		{"self include", map[string]string{
			"image.yaml": "include: image.yaml\n",
		}, []string{"image.yaml:1: include: include cycle: image.yaml includes image.yaml"}},
		{"include not a name", map[string]string{
			"image.yaml": "include: {a: b}\n",
		}, []string{"image.yaml:1: include: expected a file name"}},
		{"include a directory", map[string]string{
			"sub/x":      "",
			"image.yaml": "include: sub\n",
		}, []string{"image.yaml:1: include: sub: not a regular file"}},
		{"append to a non-list", map[string]string{
			"image.yaml": "include: base.yaml\nname+: x\n",
			"base.yaml":  baseYAML,
		}, []string{"image.yaml:2: name+:", "not a list"}},
		{"append and replace", map[string]string{
			"image.yaml": "include: base.yaml\npackages: [a]\npackages+: [b]\n",
			"base.yaml":  baseYAML,
		}, []string{"image.yaml:3: packages:", "choose one"}},
		{"invalid YAML in included file", map[string]string{
			"image.yaml": "include: base.yaml\n",
			"base.yaml":  "name: [\n",
		}, []string{"base.yaml:", "not valid YAML"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := tree(t, c.files)
			_, err := Load(filepath.Join(dir, "image.yaml"))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if !strings.Contains(msg, dir+"/") {
				t.Errorf("error %q does not name the file by its path", msg)
			}
		})
	}
}

// A diamond (two includes of one file) is no cycle; null clears.
func TestIncludeDiamondAndNull(t *testing.T) {
	dir := tree(t, map[string]string{
		"base.yaml": baseYAML,
		"a.yaml":    "include: base.yaml\nhostname: a\nhook-timeout: 5m\n",
		"b.yaml":    "include: base.yaml\nvariant: buildd\n",
		"image.yaml": `include: [a.yaml, b.yaml]
hook-timeout: ~
live:
  kernel-params: ~
`,
	})
	s, err := Load(filepath.Join(dir, "image.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "a" || s.Variant != "buildd" {
		t.Errorf("hostname %q variant %q", s.Hostname, s.Variant)
	}
	if s.HookTimeout.Duration != time.Hour {
		t.Errorf("hook-timeout = %s, want the default after ~", s.HookTimeout)
	}
	if len(s.Live.KernelParams) != 0 {
		t.Errorf("live.kernel-params = %v, want cleared by ~", s.Live.KernelParams)
	}
	if len(s.Includes) != 3 {
		t.Errorf("Includes = %v", s.Includes)
	}
}

func TestIncludeGivenTwice(t *testing.T) {
	dir := tree(t, map[string]string{"base.yaml": baseYAML, "image.yaml": "include: base.yaml\nname: x\ninclude: base.yaml\n"})
	_, err := Load(filepath.Join(dir, "image.yaml"))
	if err == nil || !strings.Contains(err.Error(), "image.yaml:3: include: given twice") {
		t.Errorf("err = %v", err)
	}
}
