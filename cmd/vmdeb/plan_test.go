package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// runPlanCmd runs vmdeb plan with args and returns its stdout.
func runPlanCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := planCmd()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	c.SilenceUsage, c.SilenceErrors = true, true
	err := c.ExecuteContext(context.Background())
	return out.String(), err
}

// The plan document of the repository's configs matches the schema.
func TestPlanDocumentSchema(t *testing.T) {
	out, err := runPlanCmd(t, "--offline", "../../configs", "../../examples")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema(t).Validate(v); err != nil {
		t.Errorf("the plan document does not match the schema: %v", err)
	}
}

func TestPlanFormats(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.json")
	child := filepath.Join(dir, "child.yml")
	if _, err := runPlanCmd(t, "--offline", "--format", "gitlab", "-o", child, "--plan-path", plan, "../../configs"); err != nil {
		t.Fatal(err)
	}
	y, _ := os.ReadFile(child)
	var doc struct{ Jobs []struct{ ID string } }
	data, _ := os.ReadFile(plan)
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.Jobs) == 0 {
		t.Fatalf("the plan document beside the pipeline: %v %s", err, data)
	}
	for _, j := range doc.Jobs {
		if !strings.Contains(string(y), "\n"+j.ID+":\n") {
			t.Errorf("the pipeline has no job %s", j.ID)
		}
	}
	// Bad input: named, nothing written.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "jenkins", "../../configs"}, `--format "jenkins"`},
		{[]string{"--format", "gitlab", "-o", plan, "--plan-path", plan, "../../configs"}, "--output and --plan-path"},
		{[]string{"--isolation", "chroot", "../../configs"}, "chroot"},
		{[]string{filepath.Join(dir, "none.yaml")}, "none.yaml"},
	} {
		before, _ := os.ReadDir(dir)
		_, err := runPlanCmd(t, append([]string{"--offline"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q named", c.args, err, c.want)
		}
		if after, _ := os.ReadDir(dir); len(after) != len(before) {
			t.Errorf("%v: a refused plan wrote a file", c.args)
		}
	}
}
