package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"vmdeb/internal/config"
	"vmdeb/internal/disk"
)

var docTime = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)

// roffText undoes the escapes the pages use for text: what a reader
// sees, near enough to search in.
func roffText(page []byte) string {
	return strings.NewReplacer(`\-`, "-", `\e`, `\`, `\&`, "", `\fB`, "", `\fP`, "", `\fR`, "", `\fI`, "").Replace(string(page))
}

// flags are a command's options as its page lists them: its own and
// those it inherits, less hidden ones.
func pageFlags(c *cobra.Command) []*pflag.Flag {
	var l []*pflag.Flag
	for _, fs := range []*pflag.FlagSet{c.NonInheritedFlags(), c.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && f.Deprecated == "" {
				l = append(l, f)
			}
		})
	}
	return l
}

// Every command has a page, named as Debian's man pages for subcommands
// are, and every option of the command appears in it.
func TestManPagesHaveEveryCommandAndFlag(t *testing.T) {
	pages, err := manPages(newRoot(), docTime)
	if err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	docRoot(root)
	cmds := documented(root)
	for _, want := range []string{"vmdeb", "vmdeb-build", "vmdeb-check", "vmdeb-boot", "vmdeb-cache", "vmdeb-cache-list",
		"vmdeb-cache-prune", "vmdeb-cache-builders", "vmdeb-metapackage", "vmdeb-vmdebootstrap",
		"vmdeb-completion", "vmdeb-completion-bash", "vmdeb-completion-zsh", "vmdeb-completion-fish"} {
		if _, ok := pages[want+".1"]; !ok {
			t.Errorf("no man page %s.1", want)
		}
	}
	if _, ok := pages["vmdeb-gen-docs.1"]; ok {
		t.Error("the hidden gen-docs command has a man page")
	}
	if len(pages) != len(cmds)+1 {
		t.Errorf("%d pages for %d commands and vmdeb.yaml(5)", len(pages), len(cmds))
	}
	nflags := 0
	for _, c := range cmds {
		name := pageName(c)
		page, ok := pages[name+".1"]
		if !ok {
			t.Errorf("command %q has no page %s.1", c.CommandPath(), name)
			continue
		}
		text := roffText(page)
		if !strings.Contains(text, ".TH \""+strings.ToUpper(name)+"\" \"1\"") {
			t.Errorf("%s.1: no .TH line for %s(1):\n%s", name, name, text[:min(len(text), 300)])
		}
		if !strings.Contains(text, name+" - ") {
			t.Errorf("%s.1: NAME section does not name %s", name, name)
		}
		if c.HasParent() && !strings.Contains(text, pageName(c.Parent())+"(1)") {
			t.Errorf("%s.1: SEE ALSO misses the parent command's page", name)
		}
		for _, f := range pageFlags(c) {
			nflags++
			if !strings.Contains(text, "--"+f.Name) {
				t.Errorf("%s.1: option --%s missing", name, f.Name)
			}
			if f.Shorthand != "" && !strings.Contains(text, "-"+f.Shorthand+", --"+f.Name) {
				t.Errorf("%s.1: option -%s, --%s missing", name, f.Shorthand, f.Name)
			}
		}
	}
	// The flags are all there: build's, boot's and vmdebootstrap's own
	// options (parsed by vmdebootstrap.Parse, declared for the pages).
	if nflags < 60 {
		t.Errorf("only %d options across the pages", nflags)
	}
	for page, want := range map[string]string{"vmdeb-build.1": "--isolation", "vmdeb-boot.1": "--secure-boot",
		"vmdeb-vmdebootstrap.1": "--convert-qcow2", "vmdeb-cache-prune.1": "--stage-cache", "vmdeb.1": "--version"} {
		if !strings.Contains(roffText(pages[page]), want) {
			t.Errorf("%s lacks %s", page, want)
		}
	}
	for _, p := range []string{"vmdeb.1", "vmdeb-build.1", "vmdeb-check.1"} {
		if !strings.Contains(roffText(pages[p]), "vmdeb.yaml(5)") {
			t.Errorf("%s does not point to vmdeb.yaml(5)", p)
		}
	}
	// Descriptions are the --help text, not markdown: build's table
	// keeps its layout, a * stays a *.
	build := string(pages["vmdeb-build.1"])
	if !strings.Contains(build, "  userns  as an ordinary user") || !strings.Contains(roffText(pages["vmdeb-build.1"]), "every *.yaml") {
		t.Errorf("vmdeb-build.1 lost its description's layout:\n%s", build)
	}
	for page, want := range map[string]string{
		"vmdeb-completion-bash.1": "source <(vmdeb completion bash)",
		"vmdeb-metapackage.1":     `"$DEBFULLNAME <$DEBEMAIL>"`,
		"vmdeb-boot.1":            "OVMF/AAVMF *.ms.fd",
		"vmdeb-check.1":           "check for a build with --outdir DIR",
	} {
		if text := roffText(pages[page]); !strings.Contains(text, want) {
			t.Errorf("%s does not say %q as --help does:\n%s", page, want, text)
		}
	}
}

// vmdeb.yaml(5) lists every config key with its description, default
// and the valid values validation takes.
func TestConfigPageHasEveryKeyAndValue(t *testing.T) {
	page := roffText(configPage(docTime))
	for _, k := range config.Keys() {
		i := strings.Index(page, "\n"+k.Path+" (")
		if i < 0 {
			t.Errorf("vmdeb.yaml(5) lacks the key %s", k.Path)
			continue
		}
		entry := page[i+1:]
		if j := strings.Index(entry, "\n.TP"); j >= 0 {
			entry = entry[:j]
		}
		if !strings.Contains(entry, k.Text) {
			t.Errorf("%s: description missing from its entry:\n%s", k.Path, entry)
		}
		if k.Default != "" && !k.Required && !strings.Contains(entry, "Default: "+k.Default) {
			t.Errorf("%s: default %q missing from its entry:\n%s", k.Path, k.Default, entry)
		}
		if len(k.Values) > 0 && !strings.Contains(entry, "Valid values: "+strings.Join(k.Values, ", ")+".") {
			t.Errorf("%s: valid values %v missing from its entry:\n%s", k.Path, k.Values, entry)
		}
	}
	// The lists validation uses, each in the entry of its key.
	lists := map[string][]string{
		"outputs[].type":       toStrings(config.OutputTypes),
		"outputs[].bootloader": toStrings(disk.Bootloaders),
		"outputs[].filesystem": toStrings(disk.Filesystems),
		"outputs[].network":    toStrings(disk.Networks),
		"outputs[].format":     toStrings(disk.Formats),
		"variant":              toStrings(config.Variants),
		"isolation":            toStrings(config.Isolations),
		"bootstrap":            toStrings(config.Backends),
	}
	for key, values := range lists {
		if !strings.Contains(page, key+" (") || !strings.Contains(page, "Valid values: "+strings.Join(values, ", ")+".") {
			t.Errorf("vmdeb.yaml(5): %s's valid values %v missing", key, values)
		}
	}
	for _, s := range []string{"outputs[].size (disk; size", "live.title (string)", "users[].name (string)", "builder.scratch-size (size"} {
		if !strings.Contains(page, s) {
			t.Errorf("vmdeb.yaml(5) lacks %q", s)
		}
	}
}

func toStrings[T ~string](v []T) []string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = string(x)
	}
	return s
}

// Each page renders without a warning: groff -ww, man --warnings as
// lintian runs it, and mandoc -Tlint, each where installed.
func TestManPagesRender(t *testing.T) {
	pages, err := manPages(newRoot(), docTime)
	if err != nil {
		t.Fatal(err)
	}
	groff, _ := exec.LookPath("groff")
	mandoc, _ := exec.LookPath("mandoc")
	man, _ := exec.LookPath("man")
	if groff == "" && mandoc == "" {
		t.Skip("neither groff nor mandoc is installed")
	}
	dir := t.TempDir()
	for name, page := range pages {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, page, 0o644); err != nil {
			t.Fatal(err)
		}
		if groff != "" {
			cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", path)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil || stderr.Len() > 0 {
				t.Errorf("groff %s: %v\n%s", name, err, stderr.String())
			}
			out, err := exec.Command(groff, "-man", "-Tutf8", "-P-cbou", path).Output()
			if err != nil || !bytes.Contains(out, []byte("NAME")) {
				t.Errorf("groff %s: %v, output:\n%s", name, err, out)
			}
		}
		if man != "" {
			// As lintian checks a package's pages.
			cmd := exec.Command(man, "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path)
			cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANROFFSEQ=", "MANWIDTH=80")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil || stderr.Len() > 0 {
				t.Errorf("man --warnings -l %s: %v\n%s", name, err, stderr.String())
			}
		}
		if mandoc != "" {
			out, err := exec.Command(mandoc, "-Tlint", "-Wwarning", path).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("mandoc -Tlint %s: %v\n%s", name, err, out)
			}
		}
	}
}

// execute runs the command tree with args, as the shell would run vmdeb.
func execute(t *testing.T, args ...string) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("vmdeb %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// vmdeb completion SHELL prints a script for bash, zsh and fish; the
// scripts ask vmdeb __complete, which offers every command and each
// command's options.
func TestCompletions(t *testing.T) {
	marks := map[string]string{"bash": "complete -o default -F __start_vmdeb vmdeb", "zsh": "#compdef vmdeb", "fish": "complete -c vmdeb"}
	files, err := completions(newRoot())
	if err != nil {
		t.Fatal(err)
	}
	for sh, mark := range marks {
		out := execute(t, "completion", sh)
		if !strings.Contains(out, mark) || !strings.Contains(out, "__complete") {
			t.Errorf("vmdeb completion %s: no %q or __complete in\n%s", sh, mark, out[:min(len(out), 500)])
		}
		var file []byte
		for name, data := range files {
			if strings.HasPrefix(name, sh+"/") {
				file = data
			}
		}
		if !strings.Contains(string(file), mark) {
			t.Errorf("gen-docs' %s completion file lacks %q", sh, mark)
		}
	}
	root := newRoot()
	docRoot(root)
	top := execute(t, "__complete", "")
	for _, c := range documented(root) {
		if c.Parent() == root && !strings.Contains(top, "\n"+c.Name()+"\t") && !strings.HasPrefix(top, c.Name()+"\t") {
			t.Errorf("completion does not offer the command %s:\n%s", c.Name(), top)
		}
		if c == root || c.DisableFlagParsing {
			continue // vmdebootstrap parses its own options
		}
		path := strings.Fields(c.CommandPath())[1:]
		out := execute(t, append(append([]string{"__complete"}, path...), "--")...)
		for _, f := range pageFlags(c) {
			if f.Name == "help" {
				continue
			}
			if !strings.Contains(out, "--"+f.Name) {
				t.Errorf("completion of %q does not offer --%s:\n%s", c.CommandPath(), f.Name, out)
			}
		}
	}
	sub := execute(t, "__complete", "cache", "")
	for _, want := range []string{"list", "prune", "builders"} {
		if !strings.Contains(sub, want+"\t") {
			t.Errorf("completion of vmdeb cache does not offer %s:\n%s", want, sub)
		}
	}
	isolations := execute(t, "__complete", "build", "--isolation", "")
	for _, i := range config.Isolations {
		if !slices.Contains(strings.Split(isolations, "\n"), string(i)) {
			t.Errorf("completion of --isolation does not offer %s:\n%s", i, isolations)
		}
	}
}

// vmdeb gen-docs DIR writes the pages and completions where the Makefile
// and a package take them from.
func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1767312000")
	execute(t, "gen-docs", dir)
	for _, f := range []string{"man/man1/vmdeb.1", "man/man1/vmdeb-build.1", "man/man1/vmdeb-cache-prune.1", "man/man5/vmdeb.yaml.5",
		"completions/bash/vmdeb", "completions/zsh/_vmdeb", "completions/fish/vmdeb.fish"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(data) == 0 {
			t.Errorf("gen-docs wrote no %s: %v", f, err)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, "man/man1/vmdeb.1"))
	if !bytes.Contains(page, []byte(`"Jan 2026"`)) {
		t.Errorf("vmdeb.1 is not dated by SOURCE_DATE_EPOCH:\n%s", page[:min(len(page), 200)])
	}
}

// The example in vmdeb.yaml(5)'s SYNOPSIS is a valid config.
func TestConfigPageExampleIsValid(t *testing.T) {
	s, err := config.Parse([]byte(configExample), filepath.Join(t.TempDir(), "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
}
