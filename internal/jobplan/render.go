package jobplan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CIOptions shape the GitLab and GitHub renderings.
type CIOptions struct {
	// PlanPath is where the jobs find the plan document (relative to
	// the checkout they run in).
	PlanPath string
	// Tags are the GitLab runner tags of a build job; {arch} stands for
	// the runner's architecture. Default: vmdeb-{arch}.
	Tags []string
	// PublishTags are the publish job's tags. Default: vmdeb.
	PublishTags []string
	// PlanJob, when set, is the parent pipeline's job that made the plan:
	// each child job fetches its artifacts (the plan document) through
	// needs:pipeline:$PARENT_PIPELINE_ID.
	PlanJob string
	// Vmdeb is the command that runs vmdeb on the runners. Default vmdeb.
	Vmdeb string
	// ReleaseDir is where the publish job writes the release tree.
	// Default release.
	ReleaseDir string
	// SignKey, when set, is the OpenPGP key id publish signs the sums
	// with (the runner's GnuPG must hold it).
	SignKey string
}

func (o *CIOptions) defaults() {
	if o.PlanPath == "" {
		o.PlanPath = "plan.json"
	}
	if len(o.Tags) == 0 {
		o.Tags = []string{"vmdeb-{arch}"}
	}
	if len(o.PublishTags) == 0 {
		o.PublishTags = []string{"vmdeb"}
	}
	if o.Vmdeb == "" {
		o.Vmdeb = "vmdeb"
	}
	if o.ReleaseDir == "" {
		o.ReleaseDir = "release"
	}
}

// gitlabJob is one job of the child pipeline, its keys in GitLab's usual
// order.
type gitlabJob struct {
	Stage         string            `yaml:"stage"`
	Tags          []string          `yaml:"tags,omitempty"`
	Variables     map[string]string `yaml:"variables,omitempty"`
	Needs         []gitlabNeed      `yaml:"needs"`
	Script        []string          `yaml:"script"`
	Artifacts     gitlabArtifacts   `yaml:"artifacts"`
	Interruptible bool              `yaml:"interruptible,omitempty"`
}

type gitlabNeed struct {
	Pipeline  string `yaml:"pipeline,omitempty"`
	Job       string `yaml:"job"`
	Artifacts bool   `yaml:"artifacts"`
}

type gitlabArtifacts struct {
	When  string   `yaml:"when,omitempty"`
	Paths []string `yaml:"paths"`
}

// PublishJob is the name of the GitLab pipeline's final job.
const PublishJob = "vmdeb-publish"

// GitLab renders the plan as a GitLab CI child pipeline: a build job per
// image on a runner of its architecture, its output directory kept as
// artifacts (on failure too, for the log and report), then one job that
// gathers them all into a release tree with vmdeb publish.
func (d *Document) GitLab(o CIOptions) ([]byte, error) {
	o.defaults()
	root := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v any) error {
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			return err
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &n)
		return nil
	}
	if err := add("stages", []string{"build", "publish"}); err != nil {
		return nil, err
	}
	if err := add("variables", map[string]string{"VMDEB_PLAN": o.PlanPath}); err != nil {
		return nil, err
	}
	var pubNeeds []gitlabNeed
	var dirs []string
	for _, j := range d.Jobs {
		var tags []string
		for _, t := range o.Tags {
			tags = append(tags, strings.ReplaceAll(t, "{arch}", j.Runner.Architecture))
		}
		needs := []gitlabNeed{}
		if o.PlanJob != "" {
			needs = append(needs, gitlabNeed{Pipeline: "$PARENT_PIPELINE_ID", Job: o.PlanJob, Artifacts: true})
		}
		gj := gitlabJob{
			Stage: "build", Tags: tags, Needs: needs,
			Variables:     map[string]string{"VMDEB_JOB": j.ID},
			Script:        []string{fmt.Sprintf(`%s build --plan "$VMDEB_PLAN" --job "$VMDEB_JOB"`, o.Vmdeb)},
			Artifacts:     gitlabArtifacts{When: "always", Paths: []string{j.OutDir + "/"}},
			Interruptible: true,
		}
		if err := add(j.ID, gj); err != nil {
			return nil, err
		}
		pubNeeds = append(pubNeeds, gitlabNeed{Job: j.ID, Artifacts: true})
		dirs = append(dirs, shellQuote(j.OutDir))
	}
	publish := fmt.Sprintf("%s publish %s --to %s", o.Vmdeb, strings.Join(dirs, " "), shellQuote(o.ReleaseDir))
	if o.SignKey != "" {
		publish += " --sign-key " + shellQuote(o.SignKey)
	}
	if err := add(PublishJob, gitlabJob{
		Stage: "publish", Tags: o.PublishTags, Needs: pubNeeds,
		Script:    []string{publish},
		Artifacts: gitlabArtifacts{Paths: []string{o.ReleaseDir + "/"}},
	}); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString("# A GitLab CI child pipeline made by vmdeb plan --format gitlab: one job per\n# image, then " + PublishJob + ". Make it again rather than editing it.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// githubArch are the architecture labels GitHub's self-hosted runners
// carry by default.
var githubArch = map[string]string{"amd64": "X64", "arm64": "ARM64", "armhf": "ARM", "i386": "X86"}

// GitHubEntry is one row of the GitHub Actions matrix.
type GitHubEntry struct {
	ID           string   `json:"id"`
	Config       string   `json:"config"`
	Architecture string   `json:"architecture"`
	RunsOn       []string `json:"runs-on"`
	Isolation    string   `json:"isolation"`
	OutDir       string   `json:"outdir"`
	Report       string   `json:"report"`
}

// GitHub renders the plan as a matrix for
// strategy.matrix: ${{ fromJSON(...) }}: {"include": [...]}, one entry per
// job, runs-on naming a self-hosted Linux runner of the job's
// architecture (X64, ARM64, ARM, X86 as GitHub labels them; vmdeb-ARCH
// for the others).
func (d *Document) GitHub() ([]byte, error) {
	m := struct {
		Include []GitHubEntry `json:"include"`
	}{Include: []GitHubEntry{}}
	for _, j := range d.Jobs {
		label, ok := githubArch[j.Runner.Architecture]
		if !ok {
			label = "vmdeb-" + j.Runner.Architecture
		}
		m.Include = append(m.Include, GitHubEntry{ID: j.ID, Config: j.Config, Architecture: j.Architecture,
			RunsOn: []string{"self-hosted", "linux", label}, Isolation: j.Runner.Isolation,
			OutDir: filepath.ToSlash(j.OutDir), Report: filepath.ToSlash(j.Report)})
	}
	return json.Marshal(m)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
