package jobplan

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"vmdeb/internal/build"
	"vmdeb/internal/config"
)

// fakeKeys stands for the mirror: a key per stage from the config's name.
func fakeKeys(_ context.Context, s *config.Spec, _ config.Isolation) ([]build.StageKey, error) {
	return []build.StageKey{{Stage: "bootstrap", Key: "b-" + s.Suite + "-" + s.Architecture}, {Stage: "packages", Key: "p-" + s.Name}}, nil
}

// repoConfigs are the repository's image configs and examples.
func repoConfigs(t *testing.T) []string {
	t.Helper()
	var all []string
	for _, d := range []string{"../../configs", "../../examples"} {
		m, err := filepath.Glob(filepath.Join(d, "*.yaml"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no configs in %s: %v", d, err)
		}
		all = append(all, m...)
	}
	return all
}

func TestPlanRepositoryConfigs(t *testing.T) {
	configs := repoConfigs(t)
	doc, err := Make(context.Background(), configs, Options{Keys: fakeKeys})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Kind != "plan" || doc.SchemaVersion != 1 {
		t.Errorf("kind %q schema %d", doc.Kind, doc.SchemaVersion)
	}
	if len(doc.Jobs) != len(configs) {
		t.Fatalf("%d jobs for %d configs", len(doc.Jobs), len(configs))
	}
	ids := map[string]bool{}
	for i, j := range doc.Jobs {
		if j.Config != filepath.Clean(configs[i]) {
			t.Errorf("job %d: config %s, want %s (the order given)", i, j.Config, configs[i])
		}
		if ids[j.ID] {
			t.Errorf("id %s twice", j.ID)
		}
		ids[j.ID] = true
		if !strings.HasSuffix(j.ID, "-"+j.Architecture) {
			t.Errorf("id %s does not end with its architecture %s", j.ID, j.Architecture)
		}
		if j.Runner.Architecture != j.Architecture || j.Runner.Foreign != "qemu-user" {
			t.Errorf("%s: runner %+v", j.ID, j.Runner)
		}
		if j.Runner.Isolation == "host" != j.Runner.Root {
			t.Errorf("%s: isolation %s but root %v", j.ID, j.Runner.Isolation, j.Runner.Root)
		}
		want, _ := fakeKeys(nil, &config.Spec{Name: j.Name, Suite: j.Suite, Architecture: j.Architecture}, "")
		if !slices.Equal(j.Stages, want) {
			t.Errorf("%s: stages %v, want %v", j.ID, j.Stages, want)
		}
		if j.OutDir != filepath.Join("jobs", j.ID) || filepath.Dir(j.Report) != j.OutDir {
			t.Errorf("%s: outdir %s report %s", j.ID, j.OutDir, j.Report)
		}
		var kinds []string
		for _, o := range j.Outputs {
			kinds = append(kinds, o.Type)
			if filepath.Dir(o.Path) != j.OutDir {
				t.Errorf("%s: output %s outside %s", j.ID, o.Path, j.OutDir)
			}
		}
		for _, k := range []string{"log", "report", "sha256sums"} {
			if !slices.Contains(kinds, k) {
				t.Errorf("%s: outputs lack the %s (%v)", j.ID, k, kinds)
			}
		}
	}
	// The foreign examples keep their architecture.
	for _, want := range []string{"debian-live-minimal-arm64", "debian-live-minimal-i386", "debian-live-xfce-amd64"} {
		if !ids[want] {
			t.Errorf("no job %s in %v", want, ids)
		}
	}
	// Stable: the same configs make the same document.
	again, err := Make(context.Background(), configs, Options{Keys: fakeKeys})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := doc.Marshal()
	b, _ := again.Marshal()
	if string(a) != string(b) {
		t.Error("two plans of the same configs differ")
	}
}

func TestID(t *testing.T) {
	for _, c := range [][3]string{
		{"debian-live-xfce", "amd64", "debian-live-xfce-amd64"},
		{"debian-live-minimal-arm64", "arm64", "debian-live-minimal-arm64"},
		{"vm-arm64x", "arm64", "vm-arm64x-arm64"},
	} {
		if got := ID(c[0], c[1]); got != c[2] {
			t.Errorf("ID(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
}

const small = "name: NAME\nsuite: trixie\narchitecture: ARCH\nkernel: none\noutputs:\n  - {type: tarball, path: NAME.tar.gz}\n"

func writeCfg(t *testing.T, dir, file, name, arch string) string {
	t.Helper()
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(strings.NewReplacer("NAME", name, "ARCH", arch).Replace(small)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanRefusesTwoJobsOneID(t *testing.T) {
	dir := t.TempDir()
	a := writeCfg(t, dir, "a.yaml", "img", "amd64")
	b := writeCfg(t, dir, "b.yaml", "img", "amd64")
	_, err := Make(context.Background(), []string{a, b}, Options{Keys: fakeKeys})
	if err == nil || !strings.Contains(err.Error(), "a.yaml and "+b) || !strings.Contains(err.Error(), "img-amd64") {
		t.Errorf("err = %v, want both files and the id named", err)
	}
	// Another architecture is another job.
	c := writeCfg(t, dir, "c.yaml", "img", "arm64")
	if _, err := Make(context.Background(), []string{a, c}, Options{Keys: fakeKeys}); err != nil {
		t.Error(err)
	}
}

func TestPlanStageKeysUnknown(t *testing.T) {
	dir := t.TempDir()
	a := writeCfg(t, dir, "a.yaml", "img", "arm64")
	doc, err := Make(context.Background(), []string{a}, Options{Offline: true, Keys: fakeKeys})
	if err != nil {
		t.Fatal(err)
	}
	if j := doc.Jobs[0]; len(j.Stages) != 0 || !strings.Contains(j.StagesUnknown, "offline") {
		t.Errorf("offline: stages %v, unknown %q", j.Stages, j.StagesUnknown)
	}
	// A host that cannot build (no binfmt handler): described, keys unknown, warned.
	var warned []string
	noHandler := func(context.Context, *config.Spec, config.Isolation) ([]build.StageKey, error) {
		return nil, &build.PreflightError{Err: errors.New("no qemu-aarch64 handler")}
	}
	doc, err = Make(context.Background(), []string{a}, Options{Keys: noHandler, Warn: func(s string) { warned = append(warned, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if j := doc.Jobs[0]; !strings.Contains(j.StagesUnknown, "qemu-aarch64") || len(warned) != 1 {
		t.Errorf("unknown %q, warned %v", j.StagesUnknown, warned)
	}
	// Any other failure stops the plan.
	broken := func(context.Context, *config.Spec, config.Isolation) ([]build.StageKey, error) {
		return nil, errors.New("interrupted")
	}
	if _, err := Make(context.Background(), []string{a}, Options{Keys: broken}); err == nil {
		t.Error("a failure to compute the keys was ignored")
	}
	// A builder VM computes its own.
	doc, err = Make(context.Background(), []string{a}, Options{Keys: fakeKeys, Isolation: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	if j := doc.Jobs[0]; !j.Runner.KVM || j.Runner.Root || len(j.Stages) != 0 || j.StagesUnknown == "" {
		t.Errorf("vm job: %+v", j)
	}
}

func TestPlanBadConfigNamed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte("name: x\nsuite: trixie\narchitecture: vax\noutputs:\n  - {type: tarball, path: x.tar}\n"), 0o644)
	_, err := Make(context.Background(), []string{p}, Options{Keys: fakeKeys})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "architecture") {
		t.Errorf("err = %v, want the file and the option", err)
	}
}

func TestReadAndFind(t *testing.T) {
	dir := t.TempDir()
	a := writeCfg(t, dir, "a.yaml", "one", "amd64")
	b := writeCfg(t, dir, "b.yaml", "two", "arm64")
	doc, err := Make(context.Background(), []string{a, b}, Options{Keys: fakeKeys})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := doc.Marshal()
	pp := filepath.Join(dir, "plan.json")
	os.WriteFile(pp, data, 0o644)
	got, sum, err := Read(pp)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum) != 64 || !slices.Equal(got.IDs(), []string{"one-amd64", "two-arm64"}) {
		t.Errorf("sum %q ids %v", sum, got.IDs())
	}
	j, err := got.Find("two-arm64")
	if err != nil || j.Config != b {
		t.Fatalf("find: %v %+v", err, j)
	}
	if _, err := got.Find("three"); err == nil || !strings.Contains(err.Error(), "one-amd64, two-arm64") {
		t.Errorf("unknown job: %v", err)
	}
	if err := j.CheckConfig(); err != nil {
		t.Error(err)
	}
	os.WriteFile(b, append([]byte("# changed\n"), []byte(strings.NewReplacer("NAME", "two", "ARCH", "arm64").Replace(small))...), 0o644)
	if err := j.CheckConfig(); err == nil || !strings.Contains(err.Error(), "changed since the plan was made") {
		t.Errorf("changed config: %v", err)
	}
	if d := j.KeysDiffer([]build.StageKey{{Stage: "bootstrap", Key: "b-trixie-arm64"}, {Stage: "packages", Key: "other"}}); !slices.Equal(d, []string{"packages"}) {
		t.Errorf("KeysDiffer = %v", d)
	}

	for name, text := range map[string]string{
		"not json":  "jobs:\n",
		"a check":   `{"schema_version":1,"kind":"check"}`,
		"newer":     `{"schema_version":9,"kind":"plan","jobs":[]}`,
		"twice":     `{"schema_version":1,"kind":"plan","jobs":[{"id":"a","config":"a.yaml","outdir":"jobs/a"},{"id":"a","config":"b.yaml","outdir":"jobs/a"}]}`,
		"no config": `{"schema_version":1,"kind":"plan","jobs":[{"id":"a","outdir":"jobs/a"}]}`,
	} {
		os.WriteFile(pp, []byte(text), 0o644)
		if _, _, err := Read(pp); err == nil || !strings.Contains(err.Error(), pp) {
			t.Errorf("%s: err = %v, want the file named", name, err)
		}
	}
}

func TestGitLab(t *testing.T) {
	dir := t.TempDir()
	doc, err := Make(context.Background(), []string{writeCfg(t, dir, "a.yaml", "one", "amd64"), writeCfg(t, dir, "b.yaml", "two", "arm64")}, Options{Keys: fakeKeys})
	if err != nil {
		t.Fatal(err)
	}
	out, err := doc.GitLab(CIOptions{PlanJob: "plan", SignKey: "0xABCD", Tags: []string{"vmdeb", "{arch}"}})
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := yaml.Unmarshal(out, &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := p["stages"]; !slices.Equal(toStrings(got), []string{"build", "publish"}) {
		t.Errorf("stages %v", got)
	}
	if v := p["variables"].(map[string]any)["VMDEB_PLAN"]; v != "plan.json" {
		t.Errorf("VMDEB_PLAN %v", v)
	}
	two := p["two-arm64"].(map[string]any)
	if !slices.Equal(toStrings(two["tags"]), []string{"vmdeb", "arm64"}) {
		t.Errorf("tags %v", two["tags"])
	}
	if two["variables"].(map[string]any)["VMDEB_JOB"] != "two-arm64" ||
		!strings.Contains(toStrings(two["script"])[0], `vmdeb build --plan "$VMDEB_PLAN" --job "$VMDEB_JOB"`) {
		t.Errorf("job: %v", two)
	}
	if a := two["artifacts"].(map[string]any); !slices.Equal(toStrings(a["paths"]), []string{"jobs/two-arm64/"}) || a["when"] != "always" {
		t.Errorf("artifacts %v", a)
	}
	need := two["needs"].([]any)[0].(map[string]any)
	if need["pipeline"] != "$PARENT_PIPELINE_ID" || need["job"] != "plan" {
		t.Errorf("needs %v", need)
	}
	pub := p[PublishJob].(map[string]any)
	if len(pub["needs"].([]any)) != 2 {
		t.Errorf("publish needs %v", pub["needs"])
	}
	if s := toStrings(pub["script"])[0]; s != "vmdeb publish jobs/one-amd64 jobs/two-arm64 --to release --sign-key 0xABCD" {
		t.Errorf("publish script %q", s)
	}
	// Without a parent job, the build jobs need nothing: they start at once.
	out, _ = doc.GitLab(CIOptions{})
	yaml.Unmarshal(out, &p)
	if n := p["one-amd64"].(map[string]any)["needs"].([]any); len(n) != 0 {
		t.Errorf("needs %v", n)
	}
	if !slices.Equal(toStrings(p["one-amd64"].(map[string]any)["tags"]), []string{"vmdeb-amd64"}) {
		t.Errorf("default tags %v", p["one-amd64"])
	}
}

func TestGitHub(t *testing.T) {
	dir := t.TempDir()
	doc, err := Make(context.Background(), []string{writeCfg(t, dir, "a.yaml", "one", "amd64"), writeCfg(t, dir, "b.yaml", "two", "arm64"), writeCfg(t, dir, "c.yaml", "three", "riscv64")}, Options{Keys: fakeKeys})
	if err != nil {
		t.Fatal(err)
	}
	out, err := doc.GitHub()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Include []GitHubEntry `json:"include"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{}
	for _, e := range m.Include {
		labels[e.ID] = e.RunsOn[2]
	}
	if labels["one-amd64"] != "X64" || labels["two-arm64"] != "ARM64" || labels["three-riscv64"] != "vmdeb-riscv64" || len(m.Include) != 3 {
		t.Errorf("matrix %s", out)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
