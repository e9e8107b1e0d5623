package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"vmdeb/internal/build"
	"vmdeb/internal/jobplan"
	"vmdeb/internal/report"
)

// planFlags are vmdeb plan's options.
type planFlags struct {
	format, out, outRoot, isolation string
	offline                         bool
	ci                              jobplan.CIOptions
}

// planFormats are --format's values.
var planFormats = []string{"json", "gitlab", "github"}

func planCmd() *cobra.Command {
	var f planFlags
	c := &cobra.Command{
		Use:   "plan CONFIG|DIR...",
		Short: "Describe the builds of config files as independent jobs for a CI engine",
		Long: `Describe the builds of config files as independent jobs for a CI engine
(docs/plan.md); a directory means every *.yaml in it.

Each config is one job with a stable id (its name and architecture), what
its runner needs (root, a user namespace or a VM; the architecture of a
runner that builds it natively; KVM for a builder VM), the stage cache
keys its build will compute, and the files it writes under
OUTROOT/ID. vmdeb build --plan PLAN --job ID builds one job there.

  --format json    the plan document (the default)
  --format gitlab  a GitLab CI child pipeline: a job per image with runner
                   tags per architecture and its directory as artifacts,
                   then a job that gathers them with vmdeb publish; the
                   plan document is written to --plan-path too
  --format github  the matrix for strategy.matrix: ${{ fromJSON(...) }};
                   the plan document is written to --plan-path too

Stage keys are asked of the mirror as a build would (its Release file is
one of their inputs); with --offline they are left out.`,
		ValidArgsFunction: configArgs,
		Args: func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				return &usageError{errors.New("plan needs config files or a directory of them (see vmdeb plan --help)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, a []string) error { return runPlan(cmd, a, f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.format, "format", "json", "what to write: "+strings.Join(planFormats, ", "))
	fl.StringVarP(&f.out, "output", "o", "-", "the file to write (- for stdout)")
	fl.StringVar(&f.outRoot, "outroot", "jobs", "each job writes its files into OUTROOT/ID")
	fl.StringVar(&f.isolation, "isolation", "", "plan every job with this isolation (default: each config's, else host)")
	fl.BoolVar(&f.offline, "offline", false, "do not ask the mirror; the stage keys are left out")
	fl.StringVar(&f.ci.PlanPath, "plan-path", "plan.json", "gitlab, github: where the plan document is written, and where the jobs read it")
	fl.StringSliceVar(&f.ci.Tags, "tag", nil, "gitlab: a build job's runner tag; {arch} is its architecture (repeatable; default vmdeb-{arch})")
	fl.StringSliceVar(&f.ci.PublishTags, "publish-tag", nil, "gitlab: the publish job's runner tag (repeatable; default vmdeb)")
	fl.StringVar(&f.ci.PlanJob, "parent-job", "", "gitlab: the parent pipeline's job whose artifacts hold the plan document (needs:pipeline)")
	fl.StringVar(&f.ci.Vmdeb, "vmdeb", "vmdeb", "gitlab: the command that runs vmdeb on the runners")
	fl.StringVar(&f.ci.ReleaseDir, "release-dir", "release", "gitlab: where the publish job writes the release tree")
	fl.StringVar(&f.ci.SignKey, "sign-key", "", "gitlab: the OpenPGP key id the publish job signs the sums with")
	return c
}

func runPlan(cmd *cobra.Command, a []string, f planFlags) error {
	if !contains(planFormats, f.format) {
		return &usageError{fmt.Errorf("--format %q: expected one of %s", f.format, strings.Join(planFormats, ", "))}
	}
	if f.isolation != "" {
		if err := checkIsolationFlag(f.isolation); err != nil {
			return err
		}
	}
	if f.format != "json" && f.out != "-" && filepath.Clean(f.out) == filepath.Clean(f.ci.PlanPath) {
		return &usageError{fmt.Errorf("--output and --plan-path are both %s: the %s file and the plan document need two files", f.out, f.format)}
	}
	configs, err := expandConfigs(a)
	if err != nil {
		return &usageError{err}
	}
	doc, err := jobplan.Make(cmd.Context(), configs, jobplan.Options{OutRoot: f.outRoot, Isolation: f.isolation, Offline: f.offline,
		Warn: func(s string) { fmt.Fprintln(os.Stderr, "vmdeb: warning:", s) }})
	if err != nil {
		return err
	}
	planJSON, err := doc.Marshal()
	if err != nil {
		return err
	}
	var data []byte
	switch f.format {
	case "json":
		data = planJSON
	case "gitlab":
		data, err = doc.GitLab(f.ci)
	case "github":
		data, err = doc.GitHub()
		data = append(data, '\n')
	}
	if err != nil {
		return err
	}
	if f.format != "json" {
		if err := build.WriteReplacing(f.ci.PlanPath, planJSON); err != nil {
			return err
		}
	}
	if f.out == "-" {
		_, err = cmd.OutOrStdout().Write(data)
		return err
	}
	return build.WriteReplacing(f.out, data)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fromPlan resolves --plan and --job: the job's config is the one to
// build, into the job's output directory (unless --outdir says
// otherwise), with its report (unless --report does); the report names
// the job (f.jobRef, passed to the build's own process).
func (f *buildFlags) fromPlan() ([]string, error) {
	if f.planFile == "" || f.jobID == "" {
		return nil, &usageError{errors.New("--plan and --job go together: --plan PLAN.json --job ID (vmdeb plan writes the plan)")}
	}
	doc, sum, err := jobplan.Read(f.planFile)
	if err != nil {
		return nil, &usageError{fmt.Errorf("--plan: %w", err)}
	}
	j, err := doc.Find(f.jobID)
	if err != nil {
		return nil, &usageError{fmt.Errorf("--job: %s: %w", f.planFile, err)}
	}
	if err := j.CheckConfig(); err != nil {
		return nil, &usageError{err}
	}
	if f.outDir == "" {
		f.outDir = j.OutDir
	}
	if err := os.MkdirAll(f.outDir, 0o755); err != nil {
		return nil, &exitError{exitFailed, err}
	}
	if f.report.path == "" {
		f.report.path = filepath.Join(f.outDir, filepath.Base(j.Report))
	}
	ref, err := json.Marshal(report.JobRef{ID: j.ID, PlanSHA256: sum, PlanJobs: doc.IDs()})
	if err != nil {
		return nil, err
	}
	f.job, f.jobRef = j, string(ref)
	return []string{j.Config}, nil
}

// setJob records the plan job (--job-ref) in the build's report.
func (b *buildReporter) setJob(ref string) error {
	if ref == "" || b == nil {
		return nil
	}
	var j report.JobRef
	dec := json.NewDecoder(strings.NewReader(ref))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("--job-ref: %v", err)
	}
	b.rep.Job = &j
	return nil
}
