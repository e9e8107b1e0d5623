package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"vmdeb/internal/publish"
	"vmdeb/internal/report"
)

// publishJob writes a job directory with one disk output and its build
// report.
func publishJob(t *testing.T, root, id string, planJobs []string, ok bool) string {
	t.Helper()
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := []byte("disk image of " + id)
	if err := os.WriteFile(filepath.Join(dir, id+".img"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	n := int64(len(data))
	doc := report.Build{SchemaVersion: 1, Kind: "build", OK: ok, Stages: []report.Stage{},
		Plan:    &report.Plan{Architecture: "amd64"},
		Outputs: []report.File{{Type: "disk", Path: "/elsewhere/" + id + ".img", Size: &n, SHA256: hex.EncodeToString(h[:])}},
		Job:     &report.JobRef{ID: id, PlanSHA256: strings.Repeat("0", 64), PlanJobs: planJobs}}
	if !ok {
		doc.ExitStatus, doc.Error = 1, &report.Error{Kind: "stage", Message: "stage disk failed"}
	}
	b, err := report.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".report.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// publishDoc is the part of the publish document the tests read.
type publishDoc struct {
	Kind        string `json:"kind"`
	OK          bool   `json:"ok"`
	ExitStatus  int    `json:"exit_status"`
	To          string `json:"to"`
	Directories []struct {
		Path  string `json:"path"`
		Files int    `json:"files"`
	} `json:"directories"`
	Files []struct {
		Path, Type, Job, Method string
	} `json:"files"`
	Error *report.Error `json:"error"`
}

func TestPublishJSON(t *testing.T) {
	root := t.TempDir()
	jobs := []string{"a", "b"}
	dirs := []string{publishJob(t, root, "a", jobs, true), publishJob(t, root, "b", jobs, true)}
	to := filepath.Join(root, "release")
	var out, progress bytes.Buffer
	err := runPublish(context.Background(), &out, &progress, dirs, publishFlags{to: to, json: true})
	if err != nil {
		t.Fatal(err)
	}
	validatePublish(t, out.Bytes())
	var doc publishDoc
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out.String())
	}
	if doc.Kind != "publish" || !doc.OK || doc.ExitStatus != 0 || doc.To != to || doc.Error != nil {
		t.Errorf("document: %+v", doc)
	}
	if len(doc.Directories) != 1 || doc.Directories[0].Path != "amd64/disk" || doc.Directories[0].Files != 2 {
		t.Errorf("directories: %+v", doc.Directories)
	}
	if len(doc.Files) != 4 || doc.Files[2].Path != "amd64/disk/a.img" || doc.Files[2].Job != "a" || doc.Files[2].Method != "link" {
		t.Errorf("files: %+v", doc.Files)
	}
	if !strings.Contains(progress.String(), "publish: amd64/disk/a.img") {
		t.Errorf("progress (stderr):\n%s", progress.String())
	}

	// A failed job: exit status 2, the document says why, nothing written.
	dirs[1] = publishJob(t, t.TempDir(), "b", jobs, false)
	to2 := filepath.Join(root, "release2")
	out.Reset()
	err = runPublish(context.Background(), &out, &progress, dirs, publishFlags{to: to2, json: true})
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "b.report.json: the build failed (exit status 1: stage disk failed)") {
		t.Errorf("a failed job: exit status %d: %v", exitCode(err), err)
	}
	validatePublish(t, out.Bytes())
	doc = publishDoc{}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out.String())
	}
	if doc.OK || doc.ExitStatus != exitUsage || doc.Error == nil || doc.Error.Kind != "preflight" || !strings.Contains(doc.Error.Message, "the build failed") {
		t.Errorf("document of a refusal: %+v %+v", doc, doc.Error)
	}
	if _, err := os.Stat(to2); !os.IsNotExist(err) {
		t.Errorf("%s was made: %v", to2, err)
	}
}

func TestPublishProse(t *testing.T) {
	root := t.TempDir()
	dir := publishJob(t, root, "a", []string{"a"}, true)
	if err := os.Chmod(filepath.Join(dir, "a.img"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	if err := runPublish(context.Background(), &out, &progress, []string{dir}, publishFlags{to: filepath.Join(root, "rel")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"published 1 job(s) of plan 000000000000 into " + filepath.Join(root, "rel"), "  amd64/disk/ (1 files)", "    a.img\n", "    SHA512SUMS\n",
		"note: amd64/disk/a.img is not readable by all (mode 0600"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("prose lacks %q:\n%s", want, out.String())
		}
	}
}

// validatePublish checks a publish document against the schema.
func validatePublish(t *testing.T, data []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema(t).Validate(v); err != nil {
		t.Errorf("the publish document does not match the schema: %v\n%s", err, data)
	}
}

// The schema's publish document has the fields of publish.Summary, no
// more, no fewer.
func TestPublishSchemaMatchesTypes(t *testing.T) {
	data, err := os.ReadFile("../../docs/vmdeb-report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		Defs map[string]json.RawMessage `json:"$defs"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	type node struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Items      *struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"items"`
	}
	var top node
	if err := json.Unmarshal(root.Defs["publish"], &top); err != nil {
		t.Fatal(err)
	}
	compare := func(where string, typ reflect.Type, props map[string]json.RawMessage) {
		fields := map[string]bool{}
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			fields[name] = true
			if _, ok := props[name]; !ok {
				t.Errorf("%s.%s (%s.%s) is not in the schema", where, name, typ.Name(), typ.Field(i).Name)
			}
		}
		for name := range props {
			if !fields[name] {
				t.Errorf("the schema's %s.%s is no field of %s", where, name, typ.Name())
			}
		}
	}
	compare("publish", reflect.TypeOf(publish.Summary{}), top.Properties)
	for name, typ := range map[string]reflect.Type{"jobs": reflect.TypeOf(publish.JobSummary{}), "files": reflect.TypeOf(publish.File{}),
		"directories": reflect.TypeOf(publish.Directory{}), "skipped": reflect.TypeOf(publish.Skipped{})} {
		var n node
		if err := json.Unmarshal(top.Properties[name], &n); err != nil || n.Items == nil {
			t.Fatalf("publish.%s: %v", name, err)
		}
		compare("publish."+name, typ, n.Items.Properties)
	}
}
