package vmdebootstrap

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/config"
)

// Run checks the config it writes as a build would, says its differences
// once, builds, and then does vmdebootstrap's last steps.
func TestRun(t *testing.T) {
	cwd := t.TempDir()
	t.Chdir(cwd)
	os.WriteFile("hook.sh", []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile("vm.conf", []byte("[config]\nsquash = live\ndistribution = trixie\nsparse = yes\n"), 0o644)

	var gotCfg, gotLog string
	var out, errOut bytes.Buffer
	r := Runner{Stdout: &out, Stderr: &errOut, DefaultConfigs: []string{},
		Build: func(_ context.Context, cfg, logPath string) error {
			gotCfg, gotLog = cfg, logPath
			spec, err := config.Load(cfg)
			if err != nil {
				return err
			}
			if spec.Customise == "" {
				return errors.New("no hook")
			}
			if _, err := os.Stat(spec.Customise); err != nil {
				return err
			}
			// What the build and the hook leave.
			live := filepath.Join(cwd, "live")
			os.MkdirAll(live, 0o755)
			os.WriteFile(filepath.Join(live, "vmlinuz"), []byte("k"), 0o644)
			stage := filepath.Join(filepath.Dir(cfg), BootStage)
			os.MkdirAll(stage, 0o755)
			return os.WriteFile(filepath.Join(stage, "vmlinuz-6.12.0-1-amd64"), []byte("k"), 0o644)
		}}
	if err := Run(context.Background(), []string{"--config", "vm.conf", "--customize", "hook.sh", "--log", "stderr"}, r); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if gotCfg == "" || gotLog != "" {
		t.Errorf("build of %q, log %q", gotCfg, gotLog)
	}
	if _, err := os.Stat(gotCfg); err == nil {
		t.Error("the temporary config is left behind")
	}
	if b, err := os.ReadFile(filepath.Join(cwd, "live", "vmlinuz-6.12.0-1-amd64")); err != nil || string(b) != "k" {
		t.Errorf("versioned kernel: %q %v", b, err)
	}
	log := errOut.String()
	for _, w := range []string{"config files read: vm.conf", Strictness, "--sparse", "--log stderr", "root's password is locked"} {
		if strings.Count(log, w) != 1 {
			t.Errorf("the log has %q %d times:\n%s", w, strings.Count(log, w), log)
		}
	}

	// --dry-run prints the config and builds nothing.
	out.Reset()
	r.Build = func(context.Context, string, string) error { t.Error("built on --dry-run"); return nil }
	if err := Run(context.Background(), []string{"--image", "vm.img", "--dry-run"}, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "path: "+filepath.Join(cwd, "vm.img")) {
		t.Errorf("dry run:\n%s", out.String())
	}

	// A refusal is a usage error.
	err := Run(context.Background(), []string{"--image", "vm.img", "--tarball", "t.tar"}, r)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "not both") {
		t.Errorf("got %v", err)
	}

	out.Reset()
	if err := Run(context.Background(), []string{"--vers"}, r); err != nil || out.String() != "1.6\n" {
		t.Errorf("--version: %q %v", out.String(), err)
	}
	out.Reset()
	if err := Run(context.Background(), []string{"--dump-setting-names"}, r); err != nil || !strings.Contains(out.String(), "\nlog-keep\n") {
		t.Errorf("--dump-setting-names: %q %v", out.String(), err)
	}
}
