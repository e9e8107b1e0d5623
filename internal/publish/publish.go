// Package publish gathers the outputs of a plan's jobs (each built by
// vmdeb build --plan PLAN --job ID into its own directory, with its
// build report) into one release tree shaped as Debian publishes its
// images: a directory per architecture, in it one per kind of medium
// (iso-hybrid, webboot, disk, ...), each file beside its package
// manifest, file list and build log, and each directory's SHA256SUMS
// and SHA512SUMS, optionally signed. Nothing is published unless every
// job of the plan built, and every file is what its job's report says
// it wrote (docs/publish.md).
package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"vmdeb/internal/report"
)

// Kind is the summary document's kind.
const Kind = "publish"

// Options are what vmdeb publish was asked.
type Options struct {
	// Dirs are the jobs' output directories.
	Dirs []string
	// To is the release tree's directory.
	To string
	// Add adds to an existing tree instead of refusing a non-empty To.
	Add bool
	// SignKey, when set, is the GnuPG key (of the user's keyring, or
	// GNUPGHOME's) that signs each SHA256SUMS and SHA512SUMS.
	SignKey string
	// Progress gets one line per step; nil for none.
	Progress io.Writer
}

// Summary is what was published: what vmdeb publish --json prints.
type Summary struct {
	SchemaVersion int    `json:"schema_version"`
	Kind          string `json:"kind"` // "publish"
	VmdebVersion  string `json:"vmdeb_version"`
	OK            bool   `json:"ok"`
	ExitStatus    int    `json:"exit_status"`
	// To is the tree's directory, absolute.
	To string `json:"to"`
	// Add: the files were added to an existing tree.
	Add        bool   `json:"add"`
	PlanSHA256 string `json:"plan_sha256,omitempty"`
	// SignKey is the key that signed the checksum files, when one did.
	SignKey string       `json:"sign_key,omitempty"`
	Jobs    []JobSummary `json:"jobs"`
	// Files are the files this run wrote into the tree, by path.
	Files []File `json:"files"`
	// Directories are the tree's directories that got files (and so
	// new checksum files).
	Directories []Directory `json:"directories"`
	Skipped     []Skipped   `json:"skipped"`
	// Notes are what a person should know of the tree: a job's log that
	// was missing, files not readable by all, signatures removed.
	Notes []string      `json:"notes"`
	Error *report.Error `json:"error,omitempty"`
}

// JobSummary is one job whose outputs were gathered.
type JobSummary struct {
	ID           string `json:"id"`
	Dir          string `json:"dir"`
	Report       string `json:"report"`
	Architecture string `json:"architecture"`
}

// File is one file of the tree.
type File struct {
	// Path is relative to the tree: ARCH/SECTION/NAME.
	Path string `json:"path"`
	// Type is the output's type (live-iso, disk, tarball, ext4, ...),
	// squashfs, kernel and initrd for a squashfs output's files, or
	// manifest, sbom-spdx, sbom-cyclonedx, contents, log, sha256sums,
	// sha512sums, signature.
	Type string `json:"type"`
	// Job is the job it comes from ("" for the checksum files and their
	// signatures).
	Job string `json:"job,omitempty"`
	// Source is the job's file it was made from (absent for a file
	// publish made).
	Source string `json:"source,omitempty"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
	// Method is how it got into the tree: link (a hard link to the
	// job's file), reflink (a copy sharing its blocks), copy, or
	// generated.
	Method string `json:"method"`
}

// Directory is a directory of the tree that got files.
type Directory struct {
	Path   string `json:"path"`
	Files  int    `json:"files"` // listed in its checksum files
	Signed bool   `json:"signed"`
}

// Publish checks the jobs' directories and writes the tree. Whatever
// is wrong with the input is a *RefusedError, and then nothing is
// written into o.To (the tree is made in a directory beside it and
// renamed into place at the end). The summary is filled as far as the
// run got.
func Publish(ctx context.Context, o Options) (*Summary, error) {
	s := &Summary{SchemaVersion: report.SchemaVersion, Kind: Kind, Add: o.Add, SignKey: o.SignKey,
		Jobs: []JobSummary{}, Files: []File{}, Directories: []Directory{}, Skipped: []Skipped{}, Notes: []string{}}
	if o.To == "" {
		return s, &RefusedError{errors.New("no --to directory given")}
	}
	to, err := filepath.Abs(o.To)
	if err != nil {
		return s, err
	}
	s.To = to
	jobs, err := ReadJobs(o.Dirs)
	if err != nil {
		return s, err
	}
	s.PlanSHA256 = jobs[0].Doc.Job.PlanSHA256
	for _, j := range jobs {
		s.Jobs = append(s.Jobs, JobSummary{j.ID, j.Dir, j.Report, j.Arch})
	}
	items, skipped, notes, errs := layout(jobs)
	s.Skipped = append(s.Skipped, skipped...)
	s.Notes = append(s.Notes, notes...)
	notes = s.Notes[:len(s.Notes):len(s.Notes)]
	items, cerrs := dedupe(items)
	errs = append(errs, cerrs...)
	if o.Add {
		unlock, err := lockTree(to)
		if err != nil {
			return s, err
		}
		defer unlock()
	}
	existing, err := existingTree(to, o.Add)
	if err != nil {
		errs = append(errs, err)
	}
	for _, it := range items {
		if existing[it.Path] {
			errs = append(errs, fmt.Errorf("%s: job %s would publish %s, which the tree already has (a tree takes each name once)", to, it.Job.ID, it.Path))
		}
		if it.Src != "" {
			if err := checkSource(it); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(items) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("the jobs have no outputs to publish (directory outputs are not published)"))
	}
	errs = append(errs, checkTools(items)...)
	if o.SignKey != "" {
		if err := checkKey(ctx, o.SignKey); err != nil {
			errs = append(errs, err)
		}
	}
	if err := refused(errs); err != nil {
		return s, err
	}
	t, err := newTree(to, o.Progress)
	if err != nil {
		return s, err
	}
	err = t.write(ctx, s, items, existing, o)
	if err == nil {
		err = t.commit(o.Add)
	}
	if err != nil {
		s.Files, s.Directories, s.Notes = []File{}, []Directory{}, notes // none of them is published
		return s, errors.Join(err, t.discard())
	}
	sort.Slice(s.Files, func(a, b int) bool { return s.Files[a].Path < s.Files[b].Path })
	return s, nil
}

// dedupe drops the items published twice from one source (two outputs
// of a job with one stem share a manifest and the log), and refuses one
// name claimed by two sources.
func dedupe(items []*item) ([]*item, []error) {
	var out []*item
	var errs []error
	by := map[string]*item{}
	for _, it := range items {
		name := filepath.Base(it.Path)
		if reserved(name) || strings.ContainsAny(name, "\n\\") || strings.HasPrefix(name, ".") {
			errs = append(errs, fmt.Errorf("%s: job %s cannot publish a file named %q (reserved for the tree, or not a name sha256sum lists plainly)", it.Job.Report, it.Job.ID, name))
			continue
		}
		prev, ok := by[it.Path]
		switch {
		case !ok:
			by[it.Path] = it
			out = append(out, it)
		case prev.Job == it.Job && prev.Src == it.Src && prev.From == it.From:
		case prev.Job != it.Job:
			errs = append(errs, fmt.Errorf("two jobs claim the published name %s: job %s (%s) and job %s (%s); give their outputs different names",
				it.Path, prev.Job.ID, origin(prev), it.Job.ID, origin(it)))
		default:
			errs = append(errs, fmt.Errorf("job %s publishes two files as %s: %s and %s; give its outputs different names", it.Job.ID, it.Path, origin(prev), origin(it)))
		}
	}
	return out, errs
}

func origin(it *item) string {
	if it.Src != "" {
		return it.Src
	}
	return "the file list of " + it.From
}

// checkSource: the job's file is there, a regular file of the size its
// report recorded (the digest is checked as it is published).
func checkSource(it *item) error {
	fi, err := os.Lstat(it.Src)
	if err != nil {
		return fmt.Errorf("job %s (%s): %w", it.Job.ID, it.Job.Report, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("job %s: %s is not a regular file", it.Job.ID, it.Src)
	}
	if it.Size != nil && fi.Size() != *it.Size {
		return fmt.Errorf("job %s: %s is %d bytes, but its report %s recorded %d: the file changed after its build", it.Job.ID, it.Src, fi.Size(), it.Job.Report, *it.Size)
	}
	return nil
}

// checkTools: the programs that make the file lists are installed.
func checkTools(items []*item) []error {
	need := map[string]bool{}
	for _, it := range items {
		if it.List == nil {
			continue
		}
		for _, src := range items {
			if src.Path == it.From {
				if tool, ok := Tools[src.Type]; ok {
					need[tool] = true
				}
			}
		}
	}
	var errs []error
	for tool := range need {
		if _, err := exec.LookPath(tool); err != nil {
			errs = append(errs, fmt.Errorf("%s is needed to list the files of the outputs, and is not installed (%w)", tool, err))
		}
	}
	return errs
}

// checkKey: GnuPG has the secret key.
func checkKey(ctx context.Context, key string) error {
	if _, err := exec.LookPath("gpg"); err != nil {
		return fmt.Errorf("--sign-key: gpg is not installed (%w)", err)
	}
	cmd := exec.CommandContext(ctx, "gpg", "--batch", "--with-colons", "--list-secret-keys", "--", key)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("--sign-key %s: no such secret key in %s (%v): %s", key, gnupgHome(), err, lastLines(string(out), 3))
	}
	return nil
}

func gnupgHome() string {
	if h := os.Getenv("GNUPGHOME"); h != "" {
		return "GNUPGHOME " + h
	}
	return "the user's GnuPG home (~/.gnupg)"
}
