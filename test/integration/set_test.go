package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSetOverlaps: vmdeb build DIR builds its images as a set. The second
// image starts once the first has saved the stages they share (bootstrap
// and common-packages), reuses them, and writes its own outputs only once
// the first has finished (they take turns at that end). Read from the
// images' reports (--report DIR: one per image). The second image holds
// its own packages and the common ones, every package configured (the
// common stage leaves its triggers to the packages stage).
func TestSetOverlaps(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, stages, out, work, reports := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "reports")
	base := "suite: trixie\narchitecture: amd64\nkernel: none\nbootstrap: native\ncommon-packages: [less, man-db]\n"
	// The first image's outputs take a while: a second tarball besides its
	// first.
	cfgs := map[string]string{
		"a.yaml": "name: set-a\n" + base + "outputs:\n  - {type: tarball, path: a.tar.gz}\n  - {type: tarball, path: a-copy.tgz}\n",
		"b.yaml": "name: set-b\n" + base + "packages: [file]\noutputs:\n  - {type: tarball, path: b.tar.gz}\n",
	}
	for name, c := range cfgs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, ctx, "build", "--stage-cache", stages, "--outdir", out, "--workdir", work, "--report", reports, dir)
	if r.code != 0 {
		t.Fatalf("the set failed (%d): %s\n%s", r.code, r.stderr, tail(r.stdout, 40))
	}
	assertClean(t, work)
	a, b := setReport(t, filepath.Join(reports, "a.json")), setReport(t, filepath.Join(reports, "b.json"))
	if !a.OK || !b.OK {
		t.Fatalf("reports say ok %v, %v", a.OK, b.OK)
	}
	for _, st := range []string{"bootstrap", "common-packages"} {
		if c := b.cacheAction(st); c != "restored" {
			t.Errorf("the second image's %s: %q, want restored from the first's", st, c)
		}
	}
	if !b.step("common-packages").IsZero() || a.step("common-packages").IsZero() {
		t.Error("common-packages ran in the second image, or not in the first")
	}
	// That the second restored common-packages shows it started once the
	// first had saved them (the step's end in the report comes later: it
	// includes setting the chroot up again for the packages stage).
	aBase, aEnd := a.step("common-packages"), a.end()
	bStart, bOutputs := b.Steps[0].Started, b.step("tarball")
	if bStart.Before(aBase) {
		t.Errorf("the second image started (%s) before the first's common-packages did (%s)", bStart, aBase)
	}
	if !bStart.Before(aEnd) {
		t.Errorf("the second image started (%s) only once the first had ended (%s): no overlap", bStart, aEnd)
	}
	if bOutputs.Before(aEnd) {
		t.Errorf("the second image wrote its outputs (%s) while the first did (until %s)", bOutputs, aEnd)
	}
	files, err := exec.Command("tar", "-tzf", filepath.Join(out, "b.tar.gz")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"./usr/bin/less\n", "./usr/bin/file\n", "./usr/bin/man\n"} {
		if !strings.Contains(string(files), f) {
			t.Errorf("the second image lacks %s", strings.TrimSpace(f))
		}
	}
	if strings.Contains(string(files), "./var/lib/vmdeb/") {
		t.Error("the second image holds the build's var/lib/vmdeb")
	}
	// The first image's packages stage installs nothing new (apt runs no
	// dpkg): the triggers left pending run all the same.
	for _, img := range []string{"a.tar.gz", "b.tar.gz"} {
		status, err := exec.Command("tar", "-xzOf", filepath.Join(out, img), "./var/lib/dpkg/status").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "Status: ") && l != "Status: install ok installed" {
				t.Errorf("%s: dpkg status has %q", img, l)
			}
		}
		if !strings.Contains(string(status), "Package: man-db\n") {
			t.Errorf("%s: dpkg status lacks man-db", img)
		}
	}
}

// setReportDoc is what TestSetOverlaps reads of a build report.
type setReportDoc struct {
	OK    bool `json:"ok"`
	Steps []struct {
		Name     string    `json:"name"`
		Started  time.Time `json:"started"`
		Duration float64   `json:"duration_seconds"`
	} `json:"stages"`
	Cache struct {
		Stages []struct{ Stage, Action string } `json:"stages"`
	} `json:"cache"`
}

func setReport(t *testing.T, path string) setReportDoc {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d setReportDoc
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(d.Steps) == 0 {
		t.Fatalf("%s: no stages", path)
	}
	return d
}

// step is when the first step of that name started.
func (d setReportDoc) step(name string) time.Time {
	for _, s := range d.Steps {
		if s.Name == name {
			return s.Started
		}
	}
	return time.Time{}
}

// end is when the last step ended.
func (d setReportDoc) end() time.Time {
	l := d.Steps[len(d.Steps)-1]
	return l.Started.Add(time.Duration(l.Duration * float64(time.Second)))
}

func (d setReportDoc) cacheAction(stage string) string {
	for _, s := range d.Cache.Stages {
		if s.Stage == stage {
			return s.Action
		}
	}
	return ""
}
