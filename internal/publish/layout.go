package publish

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"vmdeb/internal/report"
)

// Sections are the directories below ARCH/ that each output type is
// published in: Debian's names where Debian publishes that kind of
// medium (iso-hybrid for live ISOs, webboot for a live system's kernel,
// initrd and squashfs), the type's own name otherwise. A type not listed
// here (a newer output type) is published in ARCH/TYPE/.
var Sections = map[string]string{
	"live-iso": "iso-hybrid",
	"disk":     "disk",
	"tarball":  "tarball",
	"ext4":     "ext4",
	"squashfs": "webboot",
	"oci":      "oci",
}

// Names the tree reserves in every section.
const (
	SHA256Sums = "SHA256SUMS"
	SHA512Sums = "SHA512SUMS"
	SignSuffix = ".sign"
)

func reserved(name string) bool {
	for _, r := range []string{SHA256Sums, SHA512Sums} {
		if name == r || name == r+SignSuffix {
			return true
		}
	}
	return false
}

// item is one file of the tree.
type item struct {
	Path string // in the tree: ARCH/SECTION/NAME
	Type string // see File.Type
	Job  *Job
	// Src is the file in the job's directory; empty for a generated file.
	Src string
	// Size and SHA256 are what the job recorded for Src (nil, "": nothing
	// recorded, as for the log).
	Size   *int64
	SHA256 string
	// A generated file (the medium's file list) is made by List from the
	// tree's copy of the medium at From.
	From string
	List func(ctx context.Context, file string) ([]byte, error)
}

// Skipped is an output that is not published, and why.
type Skipped struct {
	Job    string `json:"job"`
	Type   string `json:"type"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

var simpleName = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)

// stemExts are the output extensions that the names of an output's
// package manifest and SBOMs replace (as vmdeb build names them:
// NAME.iso beside NAME.packages), for an output whose report lists no
// manifest to take the stem from.
var stemExts = []string{".iso", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar", ".img", ".qcow2", ".ext4"}

// stem is the name an output's companions take: that of the manifest
// the report lists beside it (NAME.packages for NAME.EXT; the longest
// when several match), else the name less a known extension.
func stem(name string, byName map[string]report.File) string {
	best := ""
	for n, f := range byName {
		s, ok := strings.CutSuffix(n, ".packages")
		if ok && f.Type == "manifest" && strings.HasPrefix(name, s+".") && len(s) > len(best) {
			best = s
		}
	}
	if best != "" {
		return best
	}
	for _, e := range stemExts {
		if s, ok := strings.CutSuffix(name, e); ok {
			return s
		}
	}
	return name
}

// layout lists the files the jobs publish: per output its file(s), the
// package manifest, the SBOMs, the medium's file list and the build log,
// named by the output's stem. Outputs that cannot be published are
// skipped, with the reason.
func layout(jobs []*Job) ([]*item, []Skipped, []string, []error) {
	var items []*item
	var skipped []Skipped
	var notes []string
	var errs []error
	for _, j := range jobs {
		logNoted := false
		if !simpleName.MatchString(j.Arch) {
			errs = append(errs, fmt.Errorf("%s: architecture %q is not a Debian architecture name", j.Report, j.Arch))
			continue
		}
		byName := map[string]report.File{}
		for _, f := range j.Doc.Outputs {
			byName[filepath.Base(f.Path)] = f
		}
		for _, o := range j.Doc.Outputs {
			switch o.Type {
			case "manifest", "sbom-spdx", "sbom-cyclonedx", "sha256sums", "log", "report":
				continue // published beside their output
			}
			name := filepath.Base(o.Path)
			if name == "." || name == ".." || name == "/" {
				errs = append(errs, fmt.Errorf("%s: output %q has no file name", j.Report, o.Path))
				continue
			}
			section, ok := Sections[o.Type]
			if !ok {
				if !simpleName.MatchString(o.Type) {
					errs = append(errs, fmt.Errorf("%s: output %s has type %q, not a type name", j.Report, o.Path, o.Type))
					continue
				}
				section = o.Type
			}
			dir := path.Join(j.Arch, section)
			var add []*item
			var err error
			switch {
			case o.Type == "squashfs":
				add, err = squashfsItems(j, dir, o)
			case o.SHA256 == "" || o.Size == nil:
				skipped = append(skipped, Skipped{j.ID, o.Type, o.Path, "a directory, not a file (publish a tarball or squashfs of it instead)"})
				continue
			default:
				add, err = fileItems(j, dir, o, byName)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			items = append(items, add...)
			if log := logItem(j, dir, stem(name, byName)); log != nil {
				items = append(items, log)
			} else if !logNoted && j.Doc.Log != "" {
				logNoted = true
				notes = append(notes, fmt.Sprintf("job %s: its build log %s is not in %s: published without it", j.ID, filepath.Base(j.Doc.Log), j.Dir))
			}
		}
	}
	return items, skipped, notes, errs
}

// fileItems are an output file's items: the file, its manifest and
// SBOMs (found by its stem among the report's outputs) and its file list.
func fileItems(j *Job, dir string, o report.File, byName map[string]report.File) ([]*item, error) {
	name := filepath.Base(o.Path)
	s := stem(name, byName)
	main := &item{Path: path.Join(dir, name), Type: o.Type, Job: j, Src: filepath.Join(j.Dir, name), Size: o.Size, SHA256: o.SHA256}
	items := []*item{main}
	for _, c := range []struct{ suffix, typ string }{
		{".packages", "manifest"}, {".spdx.json", "sbom-spdx"}, {".cdx.json", "sbom-cyclonedx"},
	} {
		f, ok := byName[s+c.suffix]
		if !ok || f.Type != c.typ {
			continue
		}
		if f.SHA256 == "" || f.Size == nil {
			return nil, fmt.Errorf("%s: %s has no size or sha256", j.Report, f.Path)
		}
		items = append(items, &item{Path: path.Join(dir, s+c.suffix), Type: c.typ, Job: j, Src: filepath.Join(j.Dir, s+c.suffix), Size: f.Size, SHA256: f.SHA256})
	}
	if list := listerFor(o.Type); list != nil {
		items = append(items, &item{Path: path.Join(dir, s+".contents"), Type: "contents", Job: j, From: main.Path, List: list})
	}
	return items, nil
}

// squashfsItems publish a squashfs output's directory as Debian's
// webboot files: NAME.squashfs, NAME.vmlinuz, NAME.initrd.img,
// NAME.packages, the SBOMs, and NAME.contents.
func squashfsItems(j *Job, dir string, o report.File) ([]*item, error) {
	name := filepath.Base(o.Path)
	src := filepath.Join(j.Dir, name)
	parts := map[string]struct{ suffix, typ string }{
		"filesystem.squashfs": {".squashfs", "squashfs"},
		"vmlinuz":             {".vmlinuz", "kernel"},
		"initrd.img":          {".initrd.img", "initrd"},
		"filesystem.packages": {".packages", "manifest"},
	}
	var items []*item
	for _, f := range o.Files {
		p, ok := parts[filepath.Base(f.Path)]
		if !ok {
			continue
		}
		if f.SHA256 == "" || f.Size == nil {
			return nil, fmt.Errorf("%s: %s has no size or sha256", j.Report, f.Path)
		}
		items = append(items, &item{Path: path.Join(dir, name+p.suffix), Type: p.typ, Job: j,
			Src: filepath.Join(src, filepath.Base(f.Path)), Size: f.Size, SHA256: f.SHA256})
	}
	if !hasType(items, "squashfs") {
		return nil, fmt.Errorf("%s: squashfs output %s lists no filesystem.squashfs", j.Report, o.Path)
	}
	// The SBOMs are not in the report; the directory's SHA256SUMS,
	// written by the same build, vouches for them.
	sums, _ := readSums(filepath.Join(src, SHA256Sums))
	for _, c := range []struct{ file, suffix, typ string }{
		{"filesystem.spdx.json", ".spdx.json", "sbom-spdx"}, {"filesystem.cdx.json", ".cdx.json", "sbom-cyclonedx"},
	} {
		if h, ok := sums[c.file]; ok {
			items = append(items, &item{Path: path.Join(dir, name+c.suffix), Type: c.typ, Job: j, Src: filepath.Join(src, c.file), SHA256: h})
		}
	}
	items = append(items, &item{Path: path.Join(dir, name+".contents"), Type: "contents", Job: j,
		From: path.Join(dir, name+".squashfs"), List: listSquashfs})
	return items, nil
}

func hasType(items []*item, t string) bool {
	for _, i := range items {
		if i.Type == t {
			return true
		}
	}
	return false
}

// logItem is the job's build log published as STEM.log, when the
// directory has it (it is not among the report's outputs, so nothing
// vouches for its digest).
func logItem(j *Job, dir, s string) *item {
	if j.Doc.Log == "" {
		return nil
	}
	src := filepath.Join(j.Dir, filepath.Base(j.Doc.Log))
	if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return &item{Path: path.Join(dir, s+".log"), Type: "log", Job: j, Src: src}
}

// readSums reads a file as sha256sum writes it: HEX, two characters
// (" *" in binary mode, "  " in text mode), NAME.
func readSums(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		h, name, ok := strings.Cut(sc.Text(), " ")
		if !ok || len(name) < 2 {
			continue
		}
		m[name[1:]] = h
	}
	return m, sc.Err()
}
