package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"vmdeb/internal/arch"
	"vmdeb/internal/bootstrap"
	"vmdeb/internal/build"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
	"vmdeb/internal/jobplan"
	"vmdeb/internal/report"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// A small config: a tarball made by the native bootstrapper, which needs
// no host tool but tar and chroot.
const smallConfig = `name: small
suite: trixie
architecture: amd64
mirror: http://mirror.example/debian
variant: minbase
bootstrap: native
kernel: none
packages: [systemd-sysv]
users:
  - {name: user, password: secret, sudo: true}
outputs:
  - {type: tarball, path: out/small.tar.gz}
`

// writeConfig writes a config into a new directory and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "small.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// golden compares got, with dir written as $DIR, to testdata/name (or
// rewrites it with -update).
func golden(t *testing.T, name, dir string, got []byte) {
	t.Helper()
	got = bytes.ReplaceAll(got, []byte(dir), []byte("$DIR"))
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to make it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// runCheckJSON runs `vmdeb check --json ARGS` in process.
func runCheckJSON(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	c := checkCmd()
	c.SilenceUsage, c.SilenceErrors = true, true
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&bytes.Buffer{})
	c.SetArgs(append([]string{"--json"}, args...))
	err := c.Execute()
	if !json.Valid(out.Bytes()) {
		t.Fatalf("check --json printed no JSON document: %q", out.String())
	}
	return out.Bytes(), err
}

func TestCheckJSONGolden(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation host checks as root")
	}
	if arch.HostName() != "amd64" {
		t.Skip("the golden plan is an amd64 host's")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	cfg := writeConfig(t, smallConfig)
	out, err := runCheckJSON(t, "--offline", "--isolation", "host", cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	golden(t, "check-ok.json", filepath.Dir(cfg), out)
}

func TestCheckJSONConfigError(t *testing.T) {
	cfg := writeConfig(t, strings.Replace(smallConfig, "variant: minbase", "variant: tiny", 1)+"hostname: -bad-\n")
	out, err := runCheckJSON(t, "--offline", cfg)
	if err == nil || exitCode(err) != exitUsage {
		t.Fatalf("a bad config: %v", err)
	}
	golden(t, "check-config-error.json", filepath.Dir(cfg), out)
	var r report.Check
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if r.OK || r.ExitStatus != 2 || r.Error == nil || r.Error.Kind != "config" || r.Error.Option != "variant" || r.Error.Line != 5 {
		t.Errorf("the error does not name the option and its line: %+v", r.Error)
	}
}

func TestCheckJSONBadFlag(t *testing.T) {
	cfg := writeConfig(t, smallConfig)
	out, err := runCheckJSON(t, "--offline", "--isolation", "moon", cfg)
	if exitCode(err) != exitUsage {
		t.Fatalf("--isolation moon: %v", err)
	}
	var r report.Check
	json.Unmarshal(out, &r)
	if r.Error == nil || r.Error.Kind != "usage" || !strings.Contains(r.Error.Message, "--isolation") {
		t.Errorf("the error does not name the option: %+v", r.Error)
	}
	if len(r.Config) == 0 {
		t.Error("the resolved config is missing from a report whose config was read")
	}
}

// recordedBuild is a build's report made from recorded stage results: a
// finished tarball and its manifest, two cached stages, four stages run.
func recordedBuild(t *testing.T) (*buildReporter, string) {
	t.Helper()
	cfg := writeConfig(t, smallConfig)
	s, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(cfg)
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	tarball, manifest := filepath.Join(out, "small.tar.gz"), filepath.Join(out, "small.packages")
	os.WriteFile(tarball, []byte("not really a tarball\n"), 0o600)
	os.WriteFile(manifest, []byte("systemd-sysv 257.9-1\n"), 0o644)
	a, _ := arch.Lookup("amd64")
	p := &build.Plan{Spec: s, Arch: a, Bootstrap: &bootstrap.Native{}, Mirror: s.Mirror, AptMirror: s.Mirror, Packages: []string{"systemd-sysv"},
		Notes: []string{"a note the plan made"}}
	st := &build.State{
		Plan: p,
		Results: []build.Result{
			{Type: "tarball", Path: tarball, Size: 21},
			{Type: "manifest", Path: manifest, Size: 21},
		},
		Sums: map[string]string{
			tarball:  "5f1b3b2c1c2b34e0e7c1a0a8f8d1f3f4a3e1f4b1e2d3c4b5a69788796a5b4c3d",
			manifest: "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
		},
		Cache: []report.CacheResult{
			{Stage: "bootstrap", Key: "1111111111111111111111111111111111111111111111111111111111111111", Action: report.CacheRestored},
			{Stage: "packages", Key: "2222222222222222222222222222222222222222222222222222222222222222", Action: report.CacheSaved,
				Reason: "changed since the last cached build: packages"},
		},
	}
	log := buildlog.New(nil, filepath.Join(out, "small.build.log"), nil)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, name := range []string{"restore", "chroot", "packages", "tarball"} {
		log.Steps = append(log.Steps, buildlog.StepTime{Name: name, Start: t0.Add(time.Duration(i) * 10 * time.Second), Duration: 9500 * time.Millisecond})
	}
	r := newBuildReporter(cfg, filepath.Join(out, "small.report.json"), nil)
	r.start, r.spec, r.plan, r.isolation, r.st, r.log, r.cache, r.cacheDir = t0, s, p, "host", st, log, true, "/var/cache/vmdeb/stages"
	return r, dir
}

func TestBuildReportGolden(t *testing.T) {
	r, dir := recordedBuild(t)
	data, err := report.Marshal(r.document(nil, r.start.Add(41*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "build-ok.json", dir, data)
}

func TestBuildReportFailure(t *testing.T) {
	r, dir := recordedBuild(t)
	// A command that failed as apt-get does, with its last lines.
	xerr := exec.Command("sh", "-c", "exit 100").Run()
	var xe *exec.ExitError
	if !errors.As(xerr, &xe) {
		t.Fatalf("sh: %v", xerr)
	}
	ce := &buildlog.CommandError{Cmd: "chroot", Args: []string{"/var/tmp/vmdeb-0/vmdeb-small-1/rootfs", "apt-get", "install", "-y", "no-such-package"}, Err: xerr, LogPath: r.log.Path(),
		Last: []string{"E: Unable to locate package no-such-package", "from http://user:pw@mirror.example/debian"}}
	err := &exitError{exitFailed, &build.StageError{Stage: "packages", Err: fmt.Errorf("installing: %w", ce)}}
	data, merr := report.Marshal(r.document(err, r.start.Add(30*time.Second)))
	if merr != nil {
		t.Fatal(merr)
	}
	if bytes.Contains(data, []byte("pw@")) {
		t.Errorf("a URL's credentials reached the report:\n%s", data)
	}
	golden(t, "build-failed.json", dir, data)
}

// The report file is made like the build's other files: a link planted
// at its name is refused, never written through.
func TestReportFileNotThroughALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep\n"), 0o644)
	path := filepath.Join(dir, "report.json")
	os.Symlink(victim, path)
	if err := writeReportFile(path, []byte("{}\n")); err == nil {
		t.Error("a report written over a link")
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("written through the link: %q", b)
	}
	os.Remove(path)
	if err := writeReportFile(path, []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("report file: %v %v", fi.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".report.json.vmdeb-tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

// The build's own process writes the file and prints the same document.
func TestReporterFinish(t *testing.T) {
	r, _ := recordedBuild(t)
	var stdout bytes.Buffer
	r.stdout = &stdout
	if err := r.finish(nil); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	var doc report.Build
	if err := json.Unmarshal(file, &doc); err != nil || !doc.OK || len(doc.Outputs) != 2 {
		t.Errorf("report file: %v %+v", err, doc)
	}
	var printed report.Build
	if err := json.Unmarshal(stdout.Bytes(), &printed); err != nil || printed.ConfigFile != doc.ConfigFile {
		t.Errorf("--json printed: %v %s", err, stdout.String())
	}
	// A failed build still writes its report, and keeps its error.
	stageErr := &build.StageError{Stage: "tarball", Err: errors.New("disk full")}
	if err := r.finish(stageErr); !errors.Is(err, stageErr) {
		t.Errorf("finish lost the build's error: %v", err)
	}
	file, _ = os.ReadFile(r.file)
	doc = report.Build{}
	json.Unmarshal(file, &doc)
	if doc.OK || doc.Error == nil || doc.Error.Stage != "tarball" || doc.Error.Kind != "stage" || len(doc.Outputs) != 0 {
		t.Errorf("failed build's report: %+v", doc)
	}
}

func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../docs/vmdeb-report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("vmdeb-report.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("vmdeb-report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// The schema is itself a valid JSON Schema 2020-12 document (checked
// against the draft's metaschema, which the validator carries).
func TestSchemaIsValid(t *testing.T) {
	meta, err := jsonschema.NewCompiler().Compile("https://json-schema.org/draft/2020-12/schema")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../docs/vmdeb-report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(t, meta, data); err != nil {
		t.Error(err)
	}
	if err := validate(t, meta, []byte(`{"type": "no-such-type"}`)); err == nil {
		t.Error("the metaschema takes anything")
	}
}

func validate(t *testing.T, sch *jsonschema.Schema, data []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(v)
}

// Every golden document is valid by the published schema, and the
// schema catches what is wrong.
func TestGoldenFilesMatchSchema(t *testing.T) {
	sch := schema(t)
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) < 4 {
		t.Fatalf("golden files: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, sch, data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	bad := map[string]string{
		"no kind":            `{"schema_version":1,"vmdeb_version":"dev","config_file":"c","ok":true,"exit_status":0}`,
		"ok with an error":   `{"schema_version":1,"kind":"check","vmdeb_version":"dev","config_file":"c","ok":true,"exit_status":0,"error":{"kind":"config","message":"m"}}`,
		"failed, no error":   `{"schema_version":1,"kind":"check","vmdeb_version":"dev","config_file":"c","ok":false,"exit_status":2}`,
		"short sha256":       `{"schema_version":1,"kind":"check","vmdeb_version":"dev","config_file":"c","ok":true,"exit_status":0,"outputs":[{"type":"disk","path":"p","sha256":"abc"}]}`,
		"unknown cache verb": `{"schema_version":1,"kind":"build","vmdeb_version":"dev","config_file":"c","ok":true,"exit_status":0,"duration_seconds":1,"stages":[],"outputs":[],"cache":{"enabled":true,"stages":[{"stage":"s","key":"k","action":"maybe"}]}}`,
		"later version":      `{"schema_version":2,"kind":"check","vmdeb_version":"dev","config_file":"c","ok":true,"exit_status":0}`,
	}
	for what, doc := range bad {
		if err := validate(t, sch, []byte(doc)); err == nil {
			t.Errorf("%s: valid by the schema", what)
		}
	}
}

// The documents vmdeb makes are valid whatever the run: a check of the
// small config as this host sees it (online answers aside).
func TestCheckJSONMatchesSchemaOnThisHost(t *testing.T) {
	sch := schema(t)
	cfg := writeConfig(t, smallConfig)
	out, _ := runCheckJSON(t, "--offline", cfg)
	if err := validate(t, sch, out); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}

// The schema and the Go types describe the same fields: every field of
// report.Check and report.Build (and of the objects in them) is in the
// schema, and every property the schema names is a field (the config's
// keys aside: they are the config file's).
func TestSchemaMatchesTypes(t *testing.T) {
	data, err := os.ReadFile("../../docs/vmdeb-report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	defs := root["$defs"].(map[string]any)
	resolve := func(n map[string]any) map[string]any {
		for {
			ref, ok := n["$ref"].(string)
			if !ok {
				return n
			}
			n = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
	}
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type, node map[string]any, where string)
	walk = func(typ reflect.Type, node map[string]any, where string) {
		node = resolve(node)
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
			if items, ok := node["items"].(map[string]any); ok {
				node = resolve(items)
			}
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeOf(time.Time{}) || seen[typ] {
			return
		}
		seen[typ] = true // File holds Files
		props, _ := node["properties"].(map[string]any)
		fields := map[string]bool{}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields[name] = true
			p, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s (%s.%s) is not in the schema", where, name, typ.Name(), f.Name)
				continue
			}
			if name != "config" {
				walk(f.Type, p, where+"."+name)
			}
		}
		for name := range props {
			if !fields[name] {
				t.Errorf("the schema's %s.%s is no field of %s", where, name, typ.Name())
			}
		}
	}
	walk(reflect.TypeOf(report.Check{}), defs["check"].(map[string]any), "check")
	walk(reflect.TypeOf(report.Build{}), defs["build"].(map[string]any), "build")
	walk(reflect.TypeOf(jobplan.Document{}), defs["job_plan"].(map[string]any), "plan")
}
