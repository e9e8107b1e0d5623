package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
)

func load(t *testing.T, text string) *config.Spec {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte(text), 0o644)
	os.WriteFile(filepath.Join(dir, "hook.sh"), []byte("#!/bin/sh\n"), 0o755)
	s, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const cfg = `name: t
suite: trixie
architecture: amd64
mirror: http://mirror.example/debian
customise: hook.sh
users:
  - {name: u, password: plain-secret}
  - {name: v, password-hash: '$6$salt$hashsecret'}
root: {password: root-secret}
outputs:
  - {type: disk, path: out/t.img, size: 2G}
`

// keys lists the config keys of t (yaml tags), as paths.
func keys(t reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		out[prefix+name] = true
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != sizeType && ft != durationType {
			keys(ft, prefix+name+".", out)
		}
	}
}

// jsonKeys lists the keys of a decoded JSON object, as paths (an array's
// objects under the array's key).
func jsonKeys(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out[prefix+k] = true
			jsonKeys(e, prefix+k+".", out)
		}
	case []any:
		for _, e := range x {
			jsonKeys(e, prefix, out)
		}
	}
}

func TestConfigJSONKeysAreTheConfigFile(t *testing.T) {
	s := load(t, cfg)
	raw := ConfigJSON(s)
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	got, want := map[string]bool{}, map[string]bool{}
	jsonKeys(v, "", got)
	keys(reflect.TypeOf(config.Spec{}), "", want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys differ from the config file's:\ngot  %v\nwant %v", got, want)
	}
	m := v.(map[string]any)
	out := m["outputs"].([]any)[0].(map[string]any)
	if out["size"] != float64(2<<30) {
		t.Errorf("size %v, want bytes", out["size"])
	}
	if p := out["path"].(string); p != filepath.Join(s.Dir, "out/t.img") {
		t.Errorf("output path %q not absolute", p)
	}
	if p := m["customise"].(string); p != filepath.Join(s.Dir, "hook.sh") {
		t.Errorf("customise %q not absolute", p)
	}
	if m["hook-timeout"] != "1h0m0s" {
		t.Errorf("hook-timeout %v", m["hook-timeout"])
	}
}

func TestConfigJSONHidesPasswords(t *testing.T) {
	s := load(t, cfg)
	raw := string(ConfigJSON(s))
	for _, secret := range []string{"plain-secret", "hashsecret", "root-secret"} {
		if strings.Contains(raw, secret) {
			t.Errorf("%s in the resolved config: %s", secret, raw)
		}
	}
	if n := strings.Count(raw, `"`+Hidden+`"`); n != 3 {
		t.Errorf("%d hidden values, want 3: %s", n, raw)
	}
	// The Spec itself is untouched.
	if s.Users[0].Password != "plain-secret" || !strings.HasPrefix(s.Outputs[0].Path, "out/") && !filepath.IsAbs(s.Outputs[0].Path) {
		t.Errorf("ConfigJSON changed the spec: %+v", s.Users[0])
	}
	if ConfigJSON(nil) != nil {
		t.Error("no config, yet a document")
	}
}

type staged struct{ error }

func (staged) StageName() string { return "packages" }
func (s staged) Unwrap() error   { return s.error }

func TestErrorOf(t *testing.T) {
	if ErrorOf(nil, "failed") != nil {
		t.Error("an error for nil")
	}
	one := &config.Error{File: "/c.yaml", Line: 7, Key: "suite", Msg: "unknown suite"}
	e := ErrorOf(fmt.Errorf("wrapped: %w", one), "preflight")
	if e.Kind != "config" || e.File != "/c.yaml" || e.Line != 7 || e.Option != "suite" || len(e.Problems) != 0 {
		t.Errorf("%+v", e)
	}
	many := config.Errors{one, {File: "/c.yaml", Line: 9, Key: "outputs[0].type", Msg: "unknown output type"}}
	e = ErrorOf(many, "failed")
	if e.Kind != "config" || e.Option != "suite" || len(e.Problems) != 2 || e.Problems[1].Option != "outputs[0].type" {
		t.Errorf("%+v", e)
	}
	ce := &buildlog.CommandError{Cmd: "mksquashfs", Err: errors.New("could not start"), Last: []string{"a", "https://u:p@m.example/x"}, LogPath: "/l"}
	e = ErrorOf(staged{ce}, "stage")
	if e.Command == nil {
		t.Fatalf("no command: %+v", e)
	}
	if e.Stage != "packages" || e.Command.Name != "mksquashfs" || e.Command.ExitStatus != nil || e.Log != "/l" {
		t.Errorf("%+v %+v", e, e.Command)
	}
	if strings.Contains(strings.Join(e.Command.LastLines, "\n"), "u:p@") {
		t.Errorf("credentials in the last lines: %v", e.Command.LastLines)
	}
}
