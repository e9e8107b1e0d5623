package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// smallJob is a small image for the plan's jobs: a minbase tarball made
// by the native bootstrapper from the machine's shared package cache.
const smallJob = `name: NAME
suite: trixie
architecture: amd64
kernel: none
bootstrap: native
packages: [PKG]
outputs:
  - {type: tarball, path: NAME.tar.gz}
`

// TestGitLabPipeline: the child pipeline vmdeb plan --format gitlab makes
// for two configs runs in gitlab-ci-local (shell executor) as GitLab
// would run it: both build jobs and the publish job succeed, each job's
// report names its job and the plan and computed the stage keys the plan
// announced, and the published sums verify.
func TestGitLabPipeline(t *testing.T) {
	needRoot(t)
	gcl, err := exec.LookPath("gitlab-ci-local")
	if err != nil {
		t.Fatal("gitlab-ci-local is not installed (make deps installs it with npm)")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=vmdeb", "GIT_AUTHOR_EMAIL=vmdeb@localhost", "GIT_COMMITTER_NAME=vmdeb", "GIT_COMMITTER_EMAIL=vmdeb@localhost")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q")
	os.Mkdir(filepath.Join(dir, "images"), 0o755)
	for name, pkg := range map[string]string{"one": "less", "two": "file"} {
		cfg := strings.NewReplacer("NAME", name, "PKG", pkg).Replace(smallJob)
		if err := os.WriteFile(filepath.Join(dir, "images", name+".yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The runners' stage cache: shared by the two jobs, kept from the
	// machine's own.
	stages := t.TempDir()
	env := append(os.Environ(), "PATH="+filepath.Dir(vmdeb)+":"+os.Getenv("PATH"), "VMDEB_STAGE_CACHE="+stages)

	plan := exec.CommandContext(ctx, vmdeb, "plan", "images/", "--format", "gitlab", "-o", ".gitlab-ci.yml", "--plan-path", "plan.json")
	plan.Dir, plan.Env = dir, env
	if r := runCmd(t, plan, "vmdeb plan"); r.code != 0 {
		t.Fatalf("vmdeb plan: exit %d", r.code)
	}
	git("add", ".gitlab-ci.yml", "images")
	git("commit", "-qm", "images")

	// The plan, as the jobs read it.
	var doc struct {
		Jobs []struct {
			ID     string `json:"id"`
			OutDir string `json:"outdir"`
			Report string `json:"report"`
			Stages []struct{ Stage, Key string }
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Jobs) != 2 || doc.Jobs[0].ID != "one-amd64" || doc.Jobs[1].ID != "two-amd64" {
		t.Fatalf("plan jobs: %+v", doc.Jobs)
	}

	pipe := exec.CommandContext(ctx, gcl, "--no-color")
	pipe.Dir, pipe.Env = dir, env
	r := runCmd(t, pipe, "gitlab-ci-local")
	if r.code != 0 {
		t.Fatalf("the pipeline failed (exit %d)", r.code)
	}
	for _, job := range []string{"one-amd64", "two-amd64", "vmdeb-publish"} {
		if !strings.Contains(r.stdout, "PASS  "+job) {
			t.Errorf("job %s did not pass", job)
		}
	}

	for _, j := range doc.Jobs {
		var rep struct {
			OK  bool `json:"ok"`
			Job struct {
				ID       string   `json:"id"`
				PlanJobs []string `json:"plan_jobs"`
			} `json:"job"`
			Cache struct {
				Stages []struct{ Stage, Key string }
			} `json:"cache"`
		}
		data, err := os.ReadFile(filepath.Join(dir, j.Report))
		if err != nil {
			t.Fatalf("job %s: %v", j.ID, err)
		}
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.Job.ID != j.ID || !slices.Equal(rep.Job.PlanJobs, []string{"one-amd64", "two-amd64"}) {
			t.Errorf("job %s: report ok=%v job=%+v", j.ID, rep.OK, rep.Job)
		}
		if len(j.Stages) != 2 || len(rep.Cache.Stages) != 2 {
			t.Fatalf("job %s: plan stages %v, report stages %v", j.ID, j.Stages, rep.Cache.Stages)
		}
		for i := range j.Stages {
			if j.Stages[i] != rep.Cache.Stages[i] {
				t.Errorf("job %s: the plan said %v, the build computed %v", j.ID, j.Stages[i], rep.Cache.Stages[i])
			}
		}
	}

	// The release tree: every sums file verifies, and both images are in it.
	var sums []string
	var images []string
	filepath.Walk(filepath.Join(dir, "release"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && (fi.Name() == "SHA256SUMS" || fi.Name() == "SHA512SUMS") {
			sums = append(sums, p)
		}
		if err == nil && strings.HasSuffix(p, ".tar.gz") {
			images = append(images, fi.Name())
		}
		return nil
	})
	slices.Sort(images)
	if len(sums) == 0 || !slices.Equal(images, []string{"one.tar.gz", "two.tar.gz"}) {
		t.Fatalf("release tree: sums %v, images %v", sums, images)
	}
	for _, s := range sums {
		tool := "sha256sum"
		if strings.HasSuffix(s, "SHA512SUMS") {
			tool = "sha512sum"
		}
		c := exec.CommandContext(ctx, tool, "--strict", "-c", filepath.Base(s))
		c.Dir = filepath.Dir(s)
		if r := runCmd(t, c, tool+" -c "+s); r.code != 0 {
			t.Errorf("%s does not verify", s)
		}
	}
}
