package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmdeb/internal/config"
)

// specIn writes a config with the given outputs (and a hook) into dir.
func specIn(t *testing.T, dir, outputs string) *config.Spec {
	t.Helper()
	s, err := loadIn(dir, outputs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func loadIn(dir, outputs string) (*config.Spec, error) {
	os.WriteFile(filepath.Join(dir, "hook.sh"), []byte("#!/bin/sh\n"), 0o755)
	y := "name: t\nsuite: trixie\narchitecture: amd64\nmirror: http://m.example/debian\ncustomise: hook.sh\noutputs:\n" + outputs
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte(y), 0o644)
	return config.Load(p)
}

func TestCheckOutputsCollisions(t *testing.T) {
	for _, c := range []struct {
		name, outputs, log, outdir string
		want                       []string // "" = no error
	}{
		{"distinct", "  - {type: tarball, path: a.tar}\n  - {type: live-iso, path: a.iso}\n", "", "", nil},
		{"one stem shares a manifest", "  - {type: live-iso, path: a.iso}\n  - {type: disk, path: a.img, size: 2G}\n", "", "", nil},
		{"the config", "  - {type: tarball, path: c.yaml}\n", "", "", []string{"the config file", "outputs[0] (tarball)"}},
		{"the hook", "  - {type: tarball, path: hook.sh}\n", "", "", []string{"customise (the hook)"}},
		{"SHA256SUMS", "  - {type: tarball, path: SHA256SUMS}\n", "", "", []string{"SHA256SUMS", "same file"}},
		{"a manifest", "  - {type: tarball, path: a.tar}\n  - {type: tarball, path: a.packages}\n", "", "", []string{"outputs[1] (tarball)", "package manifest"}},
		{"directory named like a manifest", "  - {type: tarball, path: x.tar}\n  - {type: directory, path: x.packages}\n", "", "", []string{"outputs[1] (directory)", "outputs[0] (tarball)'s package manifest"}},
		{"the log", "  - {type: tarball, path: t.build.log}\n", "", "", []string{"the build log"}},
		{"--log", "  - {type: tarball, path: a.tar}\n", "a.tar", "", []string{"the build log", "outputs[0]"}},
		{"through //", "  - {type: tarball, path: a.tar}\n  - {type: tarball, path: .//a.tar}\n", "", "", []string{"outputs[0] (tarball)", "outputs[1] (tarball)"}},
		{"through ..", "  - {type: tarball, path: a.tar}\n  - {type: tarball, path: sub/../a.tar}\n", "", "", []string{"outputs[1] (tarball)"}},
		{"through a linked directory", "  - {type: tarball, path: a.tar}\n  - {type: tarball, path: link/a.tar}\n", "", "", []string{"outputs[1] (tarball)"}},
		{"made equal by --outdir", "  - {type: tarball, path: one/a.tar}\n  - {type: tarball, path: two/a.tar}\n", "", "out", []string{"outputs[0] (tarball)", "outputs[1] (tarball)"}},
		{"inside a directory output", "  - {type: directory, path: root}\n  - {type: tarball, path: root/a.tar}\n", "", "", []string{"lies inside outputs[0]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
			os.Symlink(".", filepath.Join(dir, "link"))
			s, err := loadIn(dir, c.outputs)
			if err != nil {
				// The config's own check sees outputs equal once cleaned.
				if c.want == nil || !strings.Contains(err.Error(), "already another output's path") {
					t.Fatalf("loading: %v", err)
				}
				return
			}
			if c.outdir != "" {
				if err := s.SetOutputDir(filepath.Join(dir, c.outdir)); err != nil {
					t.Fatal(err)
				}
			}
			log := c.log
			if log != "" {
				log = filepath.Join(dir, log)
			}
			err = CheckOutputs(s, log)
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want one naming %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

// An output over a file the config includes is refused like one over the
// config itself.
func TestCheckOutputsIncludedConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "base.yaml"), []byte("suite: trixie\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hook.sh"), []byte("#!/bin/sh\n"), 0o755)
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("include: base.yaml\nname: t\narchitecture: amd64\nmirror: http://m.example/debian\noutputs:\n  - {type: tarball, path: base.yaml}\n"), 0o644)
	s, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckOutputs(s, "")
	if err == nil || !strings.Contains(err.Error(), "a file the config includes") || !strings.Contains(err.Error(), "outputs[0] (tarball)") {
		t.Errorf("err = %v, want outputs[0] and the included file named", err)
	}
}

func TestCheckOutputsRefusesLinksAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("v"), 0o644)
	s := specIn(t, dir, "  - {type: tarball, path: a.tar}\n")
	for _, name := range []string{"a.tar", "a.packages", "SHA256SUMS", "t.build.log"} {
		p := filepath.Join(dir, name)
		os.Symlink(victim, p)
		err := CheckOutputs(s, "")
		if err == nil || !strings.Contains(err.Error(), p+" is a symbolic link") {
			t.Errorf("a link at %s: want a refusal naming it, got %v", name, err)
		}
		os.Remove(p)
	}
	fifo := filepath.Join(dir, "a.tar")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	if err := CheckOutputs(s, ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO at the output: want a refusal, got %v", err)
	}
}

func TestCreateReplacingNeverWritesThroughALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("victim"), 0o644)
	// Every name a previous version used, and the guessable prefix.
	for _, n := range []string{".SHA256SUMS.vmdeb-tmp", ".SHA256SUMS.vmdeb-tmp-1", ".SHA256SUMS.vmdeb-tmp-"} {
		os.Symlink(victim, filepath.Join(dir, n))
	}
	sums := filepath.Join(dir, "SHA256SUMS")
	if err := writeAtomic(sums, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "victim" {
		t.Errorf("victim changed: %q", b)
	}
	if fi, err := os.Lstat(sums); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("SHA256SUMS is not a regular file: %v %v", fi, err)
	}
	// A link at the final name is refused, not followed.
	os.Remove(sums)
	os.Symlink(victim, sums)
	if err := writeAtomic(sums, []byte("x")); err == nil {
		t.Error("writeAtomic through a link at the final name: no error")
	}
	if b, _ := os.ReadFile(victim); string(b) != "victim" {
		t.Errorf("victim changed: %q", b)
	}
}

func TestTempIsPrivateAndCleansWithoutFollowing(t *testing.T) {
	dir := t.TempDir()
	victimDir := t.TempDir()
	victim := filepath.Join(victimDir, "keep")
	os.WriteFile(victim, []byte("victim"), 0o644)
	out := filepath.Join(dir, "x.tar")
	// Planted where a killed build's temporary files would be.
	os.Symlink(victimDir, filepath.Join(dir, ".x.tar.vmdeb-tmp"))
	os.Symlink(victim, filepath.Join(dir, ".x.tar.vmdeb-tmp.tar"))
	st := &State{}
	tmp, err := st.temp(out)
	if err != nil || len(st.temps) != 1 {
		t.Fatalf("temp(%s) = %s, %v made no temporary directory", out, tmp, err)
	}
	defer st.temps[0].Remove()
	if b, err := os.ReadFile(victim); err != nil || string(b) != "victim" {
		t.Errorf("victim changed or removed: %q %v", b, err)
	}
	fi, err := os.Stat(filepath.Dir(tmp))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("temporary name %s is not in a private directory: %v %v", tmp, fi, err)
	}
	// Beside the output: the directory's name in dir is the one it holds.
	if named, err := os.Stat(filepath.Join(dir, st.temps[0].name)); err != nil || !os.SameFile(fi, named) {
		t.Errorf("temporary directory %s is not beside the output (%v)", filepath.Join(dir, st.temps[0].name), err)
	}
}

func TestLockOutputs(t *testing.T) {
	old := lockDir
	lockDir = t.TempDir()
	defer func() { lockDir = old }()
	dir := t.TempDir()
	s := specIn(t, dir, "  - {type: tarball, path: a.tar}\n")
	// A killed build's leftovers go when the next build locks the output;
	// a link among them is removed, never followed.
	victim := t.TempDir()
	os.WriteFile(filepath.Join(victim, "keep"), []byte("keep"), 0o644)
	os.MkdirAll(filepath.Join(dir, ".a.tar.vmdeb-tmp-0123", "sub"), 0o700)
	os.Symlink(victim, filepath.Join(dir, ".a.tar.vmdeb-tmp-link"))
	l, err := LockOutputs(s, "")
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".a.tar.vmdeb-tmp*")); len(left) > 0 {
		t.Errorf("a killed build's leftovers remain after the lock: %v", left)
	}
	if _, err := os.Stat(filepath.Join(victim, "keep")); err != nil {
		t.Errorf("a link's target was removed: %v", err)
	}
	// The same output through another spelling, from another config.
	other := t.TempDir()
	os.Symlink(dir, filepath.Join(other, "d"))
	s2 := specIn(t, other, "  - {type: tarball, path: d/a.tar}\n")
	_, err = LockOutputs(s2, filepath.Join(other, "own.log"))
	if err == nil || !strings.Contains(err.Error(), "PID ") || !strings.Contains(err.Error(), "a.tar") {
		t.Errorf("second lock of one output: want an error naming the path and the holder's PID, got %v", err)
	}
	l.Release()
	l2, err := LockOutputs(s2, filepath.Join(other, "own.log"))
	if err != nil {
		t.Errorf("after release: %v", err)
	} else {
		l2.Release()
	}
}
