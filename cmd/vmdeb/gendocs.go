package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"vmdeb/internal/config"
)

// The man pages and shell completions are generated from the command
// tree that runs (newRoot), so they say what --help says:
//
//	DIR/man/man1/vmdeb.1, DIR/man/man1/vmdeb-COMMAND.1, ...  (cobra's generator)
//	DIR/man/man5/vmdeb.yaml.5                                (config.Keys)
//	DIR/completions/bash/vmdeb
//	DIR/completions/zsh/_vmdeb
//	DIR/completions/fish/vmdeb.fish
//
// The completion files are where Debian's bash-completion, zsh and fish
// packages look for them below /usr/share (bash-completion/completions,
// zsh/vendor-completions, fish/vendor_completions.d).

func genDocsCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write the man pages and the bash, zsh and fish completions into DIR",
		Hidden: true,
		Args:   args(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			return genDocs(newRoot(), a[0], docDate())
		},
	}
}

// docDate is the pages' date: SOURCE_DATE_EPOCH's when set, so that the
// same source makes the same pages.
func docDate() time.Time {
	if e, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return time.Unix(e, 0).UTC()
	}
	return time.Now().UTC()
}

// genDocs writes the man pages and completions of root's tree into dir.
func genDocs(root *cobra.Command, dir string, date time.Time) error {
	pages, err := manPages(root, date)
	if err != nil {
		return err
	}
	comps, err := completions(root)
	if err != nil {
		return err
	}
	for name, data := range pages {
		sect := name[strings.LastIndexByte(name, '.')+1:]
		if err := writeFile(filepath.Join(dir, "man", "man"+sect, name), data); err != nil {
			return err
		}
	}
	for name, data := range comps {
		if err := writeFile(filepath.Join(dir, "completions", name), data); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// docRoot readies root's tree for its pages: the flags and the
// completion command cobra adds when it runs, and no "auto generated"
// footer.
func docRoot(root *cobra.Command) {
	root.InitDefaultVersionFlag()
	root.InitDefaultHelpFlag()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		c.DisableAutoGenTag = true
		c.InitDefaultHelpFlag()
		for _, s := range c.Commands() {
			visit(s)
		}
	}
	visit(root)
}

// documented are the commands that have a man page: every command but
// the hidden ones and help.
func documented(root *cobra.Command) []*cobra.Command {
	var l []*cobra.Command
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		if c != root && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return
		}
		l = append(l, c)
		for _, s := range c.Commands() {
			visit(s)
		}
	}
	visit(root)
	return l
}

// pageName is a command's man page: vmdeb-cache-prune for "vmdeb cache prune".
func pageName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "-")
}

// manPages renders every command's page and vmdeb.yaml(5), by file name.
// It rewrites root's texts as markdown for cobra's generator: give it a
// tree of its own (newRoot()), not one that runs.
func manPages(root *cobra.Command, date time.Time) (map[string][]byte, error) {
	docRoot(root)
	pages := map[string][]byte{}
	escaped := map[*pflag.Flag]bool{} // a persistent flag is many commands'
	for _, c := range documented(root) {
		// cobra's generator reads descriptions as markdown: keep them
		// as --help prints them.
		c.Short, c.Long = mdEscape(c.Short), mdLong(c.Long)
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags(), c.InheritedFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if !escaped[f] {
					f.Usage, escaped[f] = mdEscape(f.Usage), true
				}
			})
		}
		var b bytes.Buffer
		h := &doc.GenManHeader{Section: "1", Date: &date, Source: "vmdeb " + Version, Manual: "vmdeb Manual"}
		if err := doc.GenMan(c, h, &b); err != nil {
			return nil, err
		}
		pages[pageName(c)+".1"] = addSeeAlso(flagList(b.Bytes()), c)
	}
	pages["vmdeb.yaml.5"] = configPage(date)
	return pages, nil
}

var (
	flagLine = regexp.MustCompile(`(?m)^(\\fB-.*)\n\t`)
	ppTP     = regexp.MustCompile(`(?m)^\.PP\n\.TP$`)
	thLine   = regexp.MustCompile(`(?m)^\.TH .*\n`)
)

// flagList lays cobra's options out as a man page's list: each option
// tagged (.TP) with its text indented below it, rather than a tab
// after it.
func flagList(page []byte) []byte {
	page = flagLine.ReplaceAll(page, []byte(".TP\n$1\n"))
	// Neither hyphenated nor justified (long paths and option names
	// make justified lines gappy): after .TH, which resets both.
	page = bytes.Replace(page, []byte(".nh\n"), nil, 1)
	page = thLine.ReplaceAll(page, []byte("$0.nh\n.ad l\n"))
	return ppTP.ReplaceAll(page, []byte(".TP"))
}

// addSeeAlso names vmdeb.yaml(5) in the pages of the commands that read
// a config.
func addSeeAlso(page []byte, c *cobra.Command) []byte {
	switch c.Name() {
	case "vmdeb", "build", "check", "metapackage":
	default:
		return page
	}
	s := string(page)
	i := strings.Index(s, ".SH SEE ALSO\n")
	if i < 0 {
		return page
	}
	j := i + len(".SH SEE ALSO\n")
	end := strings.IndexByte(s[j:], '\n')
	if end < 0 {
		end = len(s) - j
	}
	return []byte(s[:j+end] + ", \\fBvmdeb.yaml(5)\\fP" + s[j+end:])
}

var mdSpecial = regexp.MustCompile("([\\\\`*_{}\\[\\]<>|~])")

// mdEscape makes s a markdown paragraph that reads as s. A # is left
// alone: only at a line's start is it markdown, where cobra's own help
// texts (vmdeb completion's) mean a heading.
func mdEscape(s string) string { return mdSpecial.ReplaceAllString(s, `\$1`) }

// mdLong turns a command's Long text into markdown: its paragraphs
// escaped, its indented blocks (tables of values) kept as they are laid out.
func mdLong(s string) string {
	var out []string
	for _, para := range strings.Split(s, "\n\n") {
		lines := strings.Split(para, "\n")
		var b []string
		for _, l := range lines {
			if strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "\t") {
				if len(b) > 0 && !strings.HasPrefix(b[len(b)-1], "    ") {
					b = append(b, "")
				}
				if t, ok := strings.CutPrefix(l, "\t"); ok {
					l = t
				}
				b = append(b, "    "+l)
				continue
			}
			if len(b) > 0 && strings.HasPrefix(b[len(b)-1], "    ") {
				b = append(b, "")
			}
			b = append(b, mdEscape(l))
		}
		out = append(out, strings.Join(b, "\n"))
	}
	return strings.Join(out, "\n\n")
}

// configArgs completes a config argument: YAML files and directories.
func configArgs(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// isolationValues completes --isolation.
func isolationValues(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	var v []string
	for _, i := range config.Isolations {
		v = append(v, string(i))
	}
	return v, cobra.ShellCompDirectiveNoFileComp
}

// completions are the bash, zsh and fish completion scripts, by path
// below completions/. They ask vmdeb itself (vmdeb __complete) for the
// commands, flags and values, so they follow the tree.
func completions(root *cobra.Command) (map[string][]byte, error) {
	var bash, zsh, fish bytes.Buffer
	if err := root.GenBashCompletionV2(&bash, true); err != nil {
		return nil, err
	}
	if err := root.GenZshCompletion(&zsh); err != nil {
		return nil, err
	}
	if err := root.GenFishCompletion(&fish, true); err != nil {
		return nil, err
	}
	return map[string][]byte{
		"bash/vmdeb":      bash.Bytes(),
		"zsh/_vmdeb":      zsh.Bytes(),
		"fish/vmdeb.fish": fish.Bytes(),
	}, nil
}

// configPage is vmdeb.yaml(5): the config format, from config.Keys.
func configPage(date time.Time) []byte {
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p(`.TH "VMDEB.YAML" "5" "%s" "vmdeb %s" "vmdeb Manual"`, date.Format("Jan 2006"), roff(Version))
	p(".nh")
	p(".ad l")
	p(".SH NAME")
	p(`vmdeb.yaml \- the image description that vmdeb builds`)
	p(".SH SYNOPSIS")
	p(".nf")
	p(".RS")
	for _, l := range strings.Split(strings.TrimSpace(configExample), "\n") {
		p("%s", roff(l))
	}
	p(".RE")
	p(".fi")
	p(".SH DESCRIPTION")
	p("%s", roff(`One YAML file describes one image: its Debian release and architecture, the packages, users and hook that make its root file system, and the outputs the build writes (live ISO, disk image, tarball, directory, squashfs, bare ext4 file system image, container image). vmdeb check validates it; vmdeb build builds it.`))
	p(".PP")
	p("%s", roff(`The file is decoded strictly: an unknown key, a key given twice or a value of the wrong type is an error, and every error names the file, the line and the key, and says what would be valid. Relative paths are relative to the file that gives them (an included file's to that file). A key not given takes its default. Sizes are written with binary units (4G, 512M, 300MiB); durations as 90s, 30m, 1h.`))
	sections := []struct{ title, prefix string }{
		{"KEYS", ""},
		{"ROOT", "root."},
		{"USERS", "users[]."},
		{"LIVE ISO", "live."},
		{"OUTPUTS", "outputs[]."},
		{"BUILDER VM", "builder."},
	}
	keys := config.Keys()
	section := func(k config.Key) string {
		for i := len(sections) - 1; i > 0; i-- {
			if strings.HasPrefix(k.Path, sections[i].prefix) {
				return sections[i].title
			}
		}
		return "KEYS"
	}
	for _, s := range sections {
		p(".SH %s", s.title)
		if s.title == "OUTPUTS" {
			p("%s", roff("Each item of outputs: is a mapping of these keys. The keys marked (disk) apply to disk outputs only, which are bootable VM disk images made without loop devices or mounts."))
		}
		for _, k := range keys {
			if section(k) != s.title {
				continue
			}
			p(".TP")
			typ := k.Type
			if k.Disk {
				typ = "disk; " + typ
			}
			p(`\fB%s\fR (%s)`, roff(k.Path), roff(typ))
			p("%s", roff(k.Text))
			switch {
			case k.Required:
				p(".br")
				p("Required.")
			case k.Default != "":
				p(".br")
				p("Default: %s.", roff(k.Default))
			}
			if len(k.Values) > 0 {
				p(".br")
				p("Valid values: %s.", roff(strings.Join(k.Values, ", ")))
			}
		}
	}
	p(".SH SEE ALSO")
	p(`\fBvmdeb\fR(1), \fBvmdeb\-check\fR(1), \fBvmdeb\-build\fR(1), \fBvmdeb\-boot\fR(1), \fBdebootstrap\fR(8), \fBapt_auth.conf\fR(5), \fBcrypt\fR(5)`)
	return b.Bytes()
}

// configExample is the SYNOPSIS of vmdeb.yaml(5): a small live ISO.
const configExample = `
name: debian-live-minimal
suite: trixie
architecture: amd64
packages: [systemd-sysv, live-boot, linux-image-amd64]
users:
  - {name: user, password: live, sudo: true}
live:
  title: Debian GNU/Linux trixie live
outputs:
  - {type: live-iso, path: out/debian-live-minimal-amd64.iso}
  - {type: disk, path: out/debian-vm.qcow2, size: 4G}
`

// roff escapes text for a man page line: backslashes, and a dot or a
// quote at the start of a line, which roff would read as a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
