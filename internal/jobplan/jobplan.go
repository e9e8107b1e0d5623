// Package jobplan describes a set of image builds as independent jobs for
// the CI engine that runs them (vmdeb plan), and finds one of them again
// where it runs (vmdeb build --plan FILE --job ID). vmdeb schedules
// nothing itself: a job is one config built on one runner, and what the
// jobs share goes through the caches, not through the plan.
package jobplan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"vmdeb/internal/arch"
	"vmdeb/internal/build"
	"vmdeb/internal/config"
	"vmdeb/internal/report"
)

// SchemaVersion is the plan document's layout version; fields may be
// added without raising it.
const SchemaVersion = 1

// Kind is the plan document's kind.
const Kind = "plan"

// Document is what vmdeb plan --format json writes (docs/plan.md).
type Document struct {
	SchemaVersion int    `json:"schema_version"`
	Kind          string `json:"kind"`
	VmdebVersion  string `json:"vmdeb_version"`
	Jobs          []Job  `json:"jobs"`
}

// Job is one image: one config built by one runner.
type Job struct {
	// ID is stable: the config's name, and its architecture unless the
	// name ends with it already.
	ID string `json:"id"`
	// Config is the config file's path as given to vmdeb plan (relative
	// paths stay relative: jobs run in a checkout of the same tree), and
	// ConfigSHA256 its content's digest, checked when the job is built.
	Config       string `json:"config"`
	ConfigSHA256 string `json:"config_sha256"`
	Name         string `json:"name"`
	Suite        string `json:"suite"`
	Architecture string `json:"architecture"`
	Runner       Runner `json:"runner"`
	// Stages are the stage cache keys the build will compute (the same
	// as its report's cache.stages), so that identical work in two jobs
	// or two pipelines is recognisable. Empty when they cannot be known
	// here; StagesUnknown says why.
	Stages        []build.StageKey `json:"stages"`
	StagesUnknown string           `json:"stages_unknown,omitempty"`
	// OutDir is the job's output directory (relative to where it runs);
	// Report is its build report (docs/json.md) in it, and Outputs the
	// files the build writes there.
	OutDir  string        `json:"outdir"`
	Report  string        `json:"report"`
	Outputs []report.File `json:"outputs"`
}

// Runner is what a job needs of the machine that runs it.
type Runner struct {
	// Isolation is how the build runs: host (as root), userns (an
	// ordinary user with subordinate ids) or vm (a builder VM).
	Isolation string `json:"isolation"`
	// Root: the runner must run the job as root (isolation host).
	Root bool `json:"root"`
	// Architecture is the Debian architecture of the runner that builds
	// the image natively (fastest). Foreign says another runner can build
	// it through qemu-user binfmt handlers, more slowly.
	Architecture string `json:"architecture"`
	Foreign      string `json:"foreign"`
	// KVM: the job runs a VM (the builder VM) and wants /dev/kvm; without
	// it qemu emulates the CPU and the build takes several times as long.
	KVM bool `json:"kvm"`
}

// Options change how a plan is made.
type Options struct {
	// OutRoot is the directory under which each job's output directory
	// (OutRoot/ID) is made. Default "jobs".
	OutRoot string
	// Isolation overrides every config's isolation ("" = the config's,
	// else host: CI runners of image builds run as root).
	Isolation string
	// Offline: do not ask the mirror; the stage keys are then unknown.
	Offline bool
	// Keys computes a config's stage keys (default: StageKeys). Tests
	// replace it.
	Keys func(ctx context.Context, s *config.Spec, where config.Isolation) ([]build.StageKey, error)
	// Warn receives what could not be known (stage keys), one line each.
	Warn func(string)
}

// StageKeys makes the build's plan for s as vmdeb build would (asking
// the mirror for its Release file) and returns its stage cache keys.
func StageKeys(ctx context.Context, s *config.Spec, where config.Isolation) ([]build.StageKey, error) {
	p, err := build.NewPlan(ctx, s, build.Options{Rootless: where == config.Userns})
	if err != nil {
		return nil, err
	}
	return build.StageKeys(p), nil
}

// Make plans one job per config file, in the order given.
func Make(ctx context.Context, configs []string, o Options) (*Document, error) {
	if o.OutRoot == "" {
		o.OutRoot = "jobs"
	}
	if o.Keys == nil {
		o.Keys = StageKeys
	}
	doc := &Document{SchemaVersion: SchemaVersion, Kind: Kind, VmdebVersion: build.Version, Jobs: []Job{}}
	byID := map[string]string{}
	for _, path := range configs {
		j, err := planJob(ctx, path, o)
		if err != nil {
			return nil, err
		}
		if other, dup := byID[j.ID]; dup {
			return nil, fmt.Errorf("%s and %s are both the job %s (same name and architecture): their outputs would collide; give one of them another name", other, path, j.ID)
		}
		byID[j.ID] = path
		doc.Jobs = append(doc.Jobs, *j)
	}
	return doc, nil
}

// planJob is the job of one config.
func planJob(ctx context.Context, path string, o Options) (*Job, error) {
	s, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	a, err := arch.Lookup(s.Architecture)
	if err != nil {
		return nil, s.Errorf("architecture", "%v", err)
	}
	where, err := config.ChooseIsolation(config.Isolation(o.Isolation), s.Isolation, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	j := &Job{
		ID: ID(s.Name, a.Name), Config: filepath.Clean(path), ConfigSHA256: hex.EncodeToString(sum[:]),
		Name: s.Name, Suite: s.Suite, Architecture: a.Name,
		Runner: Runner{Isolation: string(where), Root: where == config.Host, Architecture: a.Name, Foreign: "qemu-user", KVM: where == config.VM},
		Stages: []build.StageKey{},
	}
	j.OutDir = filepath.Join(o.OutRoot, j.ID)
	j.Report = filepath.Join(j.OutDir, ReportName(s.Name))
	j.Outputs = outputs(s, j.OutDir, j.Report)
	switch {
	case where == config.VM:
		j.StagesUnknown = "built in a builder VM, whose own vmdeb computes them"
	case o.Offline:
		j.StagesUnknown = "planned with --offline (the keys include the mirror's Release file)"
	default:
		keys, err := o.Keys(ctx, s, where)
		if err != nil {
			var pe *build.PreflightError
			if !errors.As(err, &pe) {
				return nil, err
			}
			// A planning machine may lack what a build needs (a foreign
			// architecture's binfmt handler, a tool): the job is still
			// described, its keys are not.
			j.StagesUnknown = err.Error()
			if o.Warn != nil {
				o.Warn(fmt.Sprintf("%s: stage keys unknown: %v", path, err))
			}
		} else {
			j.Stages = append(j.Stages, keys...)
		}
	}
	return j, nil
}

// ID is a job's id: the image's name, followed by its architecture
// unless the name ends with it.
func ID(name, archName string) string {
	if strings.HasSuffix(name, "-"+archName) {
		return name
	}
	return name + "-" + archName
}

// ReportName is the build report's file name in a job's directory.
func ReportName(name string) string { return name + ".report.json" }

// outputs are the files a build of s writes into outDir: each output
// (under its own file name) and the files beside it, the log and the
// report.
func outputs(s *config.Spec, outDir, reportPath string) []report.File {
	writes, _ := build.Writes(s, filepath.Join(outDir, s.Name+".build.log"),
		build.Written{What: "the report", Path: reportPath, Kind: "report"})
	out := []report.File{}
	seen := map[string]bool{}
	for _, w := range writes {
		p := w.Path
		if w.Kind != "log" && w.Kind != "report" {
			p = filepath.Join(outDir, filepath.Base(w.Path))
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, report.File{Type: w.Kind, Path: p})
	}
	return out
}

// Marshal is the plan as JSON.
func (d *Document) Marshal() ([]byte, error) { return report.Marshal(d) }

// Find returns the job with this id.
func (d *Document) Find(id string) (*Job, error) {
	var ids []string
	for i := range d.Jobs {
		if d.Jobs[i].ID == id {
			return &d.Jobs[i], nil
		}
		ids = append(ids, d.Jobs[i].ID)
	}
	return nil, fmt.Errorf("the plan has no job %q (it has: %s)", id, strings.Join(ids, ", "))
}

// IDs are the ids of every job, in the plan's order.
func (d *Document) IDs() []string {
	var ids []string
	for _, j := range d.Jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

// Read reads a plan document and returns it with its file's SHA256.
func Read(path string) (*Document, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	var d Document
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return nil, "", fmt.Errorf("%s: not a plan document (vmdeb plan --format json): %v", path, err)
	}
	if d.Kind != Kind {
		return nil, "", fmt.Errorf("%s: kind %q, not a plan document (vmdeb plan --format json writes one)", path, d.Kind)
	}
	if d.SchemaVersion > SchemaVersion {
		return nil, "", fmt.Errorf("%s: schema_version %d is newer than this vmdeb's (%d): use the vmdeb that made the plan", path, d.SchemaVersion, SchemaVersion)
	}
	seen := map[string]bool{}
	for i, j := range d.Jobs {
		if j.ID == "" || j.Config == "" || j.OutDir == "" {
			return nil, "", fmt.Errorf("%s: jobs[%d]: id, config and outdir are required", path, i)
		}
		if seen[j.ID] {
			return nil, "", fmt.Errorf("%s: jobs[%d]: the id %s appears twice", path, i, j.ID)
		}
		seen[j.ID] = true
	}
	sum := sha256.Sum256(data)
	return &d, hex.EncodeToString(sum[:]), nil
}

// CheckConfig refuses a job whose config file is no longer the one the
// plan was made from.
func (j *Job) CheckConfig() error {
	data, err := os.ReadFile(j.Config)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != j.ConfigSHA256 {
		return fmt.Errorf("job %s: %s changed since the plan was made (SHA256 %s, the plan says %s): make the plan again with vmdeb plan", j.ID, j.Config, got[:12], j.ConfigSHA256[:min(12, len(j.ConfigSHA256))])
	}
	return nil
}

// KeysDiffer names the stages whose key a build computed differently
// from the plan's (the mirror's Release changed since planning, or
// another vmdeb or host tools build it).
func (j *Job) KeysDiffer(got []build.StageKey) []string {
	if len(j.Stages) == 0 {
		return nil
	}
	var diff []string
	for _, g := range got {
		i := slices.IndexFunc(j.Stages, func(k build.StageKey) bool { return k.Stage == g.Stage })
		if i < 0 || j.Stages[i].Key != g.Key {
			diff = append(diff, g.Stage)
		}
	}
	return diff
}
