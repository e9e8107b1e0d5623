package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"vmdeb/internal/report"
)

// Job is one build of a plan's job, read from its report.
type Job struct {
	ID     string
	Dir    string // the job's output directory, absolute
	Report string // its NAME.report.json, absolute
	Arch   string
	Doc    *report.Build
}

// RefusedError is input publish will not take (a failed job, a missing
// one, a file that changed since its build): found before anything was
// written.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// refused joins errs into a RefusedError, nil when there are none.
func refused(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &RefusedError{errors.Join(errs...)}
}

// ReadJobs reads the build reports (*.report.json) in each directory and
// checks that together they are every job of one plan, each built
// successfully and once. Every problem found is in the error, each
// naming its directory or file.
func ReadJobs(dirs []string) ([]*Job, error) {
	var jobs []*Job
	var errs []error
	seenDir := map[string]string{}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			continue
		}
		if prev, ok := seenDir[abs]; ok {
			errs = append(errs, fmt.Errorf("%s: given twice (also as %s)", d, prev))
			continue
		}
		seenDir[abs] = d
		fi, err := os.Stat(abs)
		if err != nil {
			errs = append(errs, fmt.Errorf("job directory %s: %w", d, err))
			continue
		}
		if !fi.IsDir() {
			errs = append(errs, fmt.Errorf("job directory %s: not a directory (give the directory vmdeb build --outdir wrote)", d))
			continue
		}
		reports, _ := filepath.Glob(filepath.Join(abs, "*.report.json")) // the pattern is valid
		if len(reports) == 0 {
			errs = append(errs, fmt.Errorf("job directory %s: no build report (*.report.json) in it: build the job with vmdeb build --plan PLAN --job ID --outdir %s", d, d))
			continue
		}
		for _, r := range reports {
			j, err := readJob(abs, r)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			jobs = append(jobs, j)
		}
	}
	if len(errs) > 0 {
		return nil, refused(errs)
	}
	if len(jobs) == 0 {
		return nil, refused([]error{errors.New("no job directories given")})
	}
	return jobs, refused(checkPlan(jobs))
}

// readJob reads and checks one report.
func readJob(dir, path string) (*Job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc report.Build
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: not a build report: %w", path, err)
	}
	switch {
	case doc.Kind != report.KindBuild:
		return nil, fmt.Errorf("%s: kind %q: not a build report (kind %q)", path, doc.Kind, report.KindBuild)
	case doc.SchemaVersion != report.SchemaVersion:
		return nil, fmt.Errorf("%s: schema_version %d: this vmdeb reads version %d", path, doc.SchemaVersion, report.SchemaVersion)
	case !doc.OK:
		msg := "no error recorded"
		if doc.Error != nil {
			msg = firstLine(doc.Error.Message)
		}
		return nil, fmt.Errorf("%s: the build failed (exit status %d: %s); only successful builds are published", path, doc.ExitStatus, msg)
	case doc.Job == nil:
		return nil, fmt.Errorf("%s: the report names no job of a plan (no \"job\"): build it with vmdeb build --plan PLAN --job ID", path)
	case doc.Job.ID == "" || doc.Job.PlanSHA256 == "":
		return nil, fmt.Errorf("%s: job without id or plan_sha256", path)
	case !slices.Contains(doc.Job.PlanJobs, doc.Job.ID):
		return nil, fmt.Errorf("%s: job %s is not among its plan's jobs (plan_jobs %s)", path, doc.Job.ID, strings.Join(doc.Job.PlanJobs, ", "))
	}
	a := architecture(&doc)
	if a == "" {
		return nil, fmt.Errorf("%s: no architecture (neither plan.architecture nor config.architecture)", path)
	}
	return &Job{ID: doc.Job.ID, Dir: dir, Report: path, Arch: a, Doc: &doc}, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// architecture is the Debian architecture the job built for.
func architecture(doc *report.Build) string {
	if doc.Plan != nil && doc.Plan.Architecture != "" {
		return doc.Plan.Architecture
	}
	var c struct {
		Architecture string `json:"architecture"`
	}
	if len(doc.Config) > 0 && json.Unmarshal(doc.Config, &c) == nil {
		return c.Architecture
	}
	return ""
}

// checkPlan: one plan, each of its jobs present exactly once.
func checkPlan(jobs []*Job) []error {
	var errs []error
	byPlan := map[string][]*Job{}
	for _, j := range jobs {
		byPlan[j.Doc.Job.PlanSHA256] = append(byPlan[j.Doc.Job.PlanSHA256], j)
	}
	if len(byPlan) > 1 {
		var plans []string
		for sha, js := range byPlan {
			var names []string
			for _, j := range js {
				names = append(names, fmt.Sprintf("%s (%s)", j.ID, j.Report))
			}
			plans = append(plans, fmt.Sprintf("  plan %s: %s", short(sha), strings.Join(names, ", ")))
		}
		sort.Strings(plans)
		return []error{fmt.Errorf("the reports come from %d different plans (plan_sha256 differs); publish one plan's jobs at a time:\n%s", len(byPlan), strings.Join(plans, "\n"))}
	}
	first := jobs[0]
	want := slices.Sorted(slices.Values(first.Doc.Job.PlanJobs))
	byID := map[string]*Job{}
	for _, j := range jobs {
		if prev, ok := byID[j.ID]; ok {
			errs = append(errs, fmt.Errorf("job %s is in two reports: %s and %s", j.ID, prev.Report, j.Report))
			continue
		}
		byID[j.ID] = j
		if got := slices.Sorted(slices.Values(j.Doc.Job.PlanJobs)); !slices.Equal(got, want) {
			errs = append(errs, fmt.Errorf("%s: plan_jobs %s differ from %s's %s, though the plan is the same", j.Report, strings.Join(got, ", "), first.Report, strings.Join(want, ", ")))
		}
	}
	var missing []string
	for _, id := range want {
		if byID[id] == nil {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("plan %s has %d job(s) with no directory among those given: %s (each job's outputs are needed; give the directory its vmdeb build --job wrote)",
			short(first.Doc.Job.PlanSHA256), len(missing), strings.Join(missing, ", ")))
	}
	return errs
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
