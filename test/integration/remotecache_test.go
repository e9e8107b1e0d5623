package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// registry is Debian's docker-registry serving from a temporary
// directory on 127.0.0.1.
type registry struct {
	addr, root string
	stopOnce   sync.Once
	cmd        *exec.Cmd
}

func startRegistry(t *testing.T) *registry {
	t.Helper()
	bin := "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: install the docker-registry package (make deps)", bin)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	r := &registry{addr: addr, root: filepath.Join(dir, "storage")}
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", r.root, addr)), 0o644)
	var logBuf bytes.Buffer
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout, r.cmd.Stderr = &logBuf, &logBuf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
		if i == 100 {
			t.Fatalf("the registry does not answer on %s: %v\n%s", addr, err, logBuf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *registry) stop() {
	r.stopOnce.Do(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	})
}

// remoteReport is what the test reads of a build's JSON report.
type remoteReport struct {
	OK     bool `json:"ok"`
	Stages []struct {
		Name string `json:"name"`
	} `json:"stages"`
	Cache struct {
		Stages []struct {
			Stage, Key, Action string
		} `json:"stages"`
		Remote *struct {
			URL    string `json:"url"`
			Stages []struct {
				Stage, Key, Action, Digest, Reason string
			} `json:"stages"`
			Debs struct {
				Pulled, Pushed int
			} `json:"debs"`
			Warning string `json:"warning"`
		} `json:"remote"`
	} `json:"cache"`
}

func (r *remoteReport) ran(stage string) bool {
	for _, s := range r.Stages {
		if s.Name == stage {
			return true
		}
	}
	return false
}

// remote is the registry's record of a stage with this action ("" when
// there is none).
func (r *remoteReport) remote(stage, action string) (digest, reason string, ok bool) {
	for _, s := range r.Cache.Remote.Stages {
		if s.Stage == stage && s.Action == action {
			return s.Digest, s.Reason, true
		}
	}
	return "", "", false
}

// TestRemoteCache: two machines (their own stage caches and package
// caches) share one registry. The first builds and pushes its bootstrap
// and packages stages; the second pulls them, runs neither stage, and
// makes bit-identical outputs. A third, after the packages stage's
// archive was altered in the registry's storage, refuses it, pulls the
// bootstrap, builds the packages itself, and finishes with one warning
// when the registry stops before its push.
func TestRemoteCache(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	reg := startRegistry(t)
	url := "oci://" + reg.addr + "/vmdeb/cache"

	type machine struct{ cfg, stages, out, work, report string }
	newMachine := func() machine {
		dir := t.TempDir()
		m := machine{stages: filepath.Join(dir, "stages"), out: filepath.Join(dir, "out"), work: t.TempDir()}
		m.report = filepath.Join(m.out, "report.json")
		m.cfg = writeConfig(t, dir, `name: shared
suite: trixie
architecture: amd64
variant: minbase
kernel: none
bootstrap: native
cache: `+filepath.Join(dir, "debs")+`
packages: [less]
outputs:
  - {type: tarball, path: shared.tar.gz}
`, nil)
		return m
	}
	command := func(m machine) *exec.Cmd {
		cmd := exec.CommandContext(ctx, vmdeb, "build", "--remote-cache", url, "--stage-cache", m.stages,
			"--outdir", m.out, "--workdir", m.work, "--report", m.report, m.cfg)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		return cmd
	}
	readReport := func(m machine) *remoteReport {
		t.Helper()
		var r remoteReport
		data, err := os.ReadFile(m.report)
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err != nil || r.Cache.Remote == nil {
			t.Fatalf("report %s: %v, remote %v", m.report, err, r.Cache.Remote)
		}
		return &r
	}
	sameOutputs := func(a, b machine) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(a.out, "*"))
		n := 0
		for _, f := range files {
			base := filepath.Base(f)
			if base == "report.json" || strings.HasSuffix(base, ".build.log") {
				continue
			}
			x, _ := os.ReadFile(f)
			y, err := os.ReadFile(filepath.Join(b.out, base))
			if err != nil || !bytes.Equal(x, y) {
				t.Errorf("%s differs between the machines (%v)", base, err)
			}
			n++
		}
		if n < 3 {
			t.Errorf("only %d outputs compared: %v", n, files)
		}
	}

	// Machine A: everything built, both stages pushed.
	a := newMachine()
	start := time.Now()
	if r := runCmd(t, command(a), "vmdeb build (machine A)"); r.code != 0 {
		t.Fatalf("machine A's build failed")
	}
	t.Logf("machine A: %.0fs", time.Since(start).Seconds())
	ra := readReport(a)
	pushed := map[string]string{}
	for _, st := range []string{"bootstrap", "packages"} {
		dg, _, ok := ra.remote(st, "pushed")
		if !ok || !strings.HasPrefix(dg, "sha256:") {
			t.Fatalf("machine A did not push %s: %+v", st, ra.Cache.Remote.Stages)
		}
		pushed[st] = dg
	}
	if ra.Cache.Remote.Debs.Pushed == 0 || ra.Cache.Remote.Warning != "" {
		t.Errorf("machine A: %d packages pushed, warning %q", ra.Cache.Remote.Debs.Pushed, ra.Cache.Remote.Warning)
	}

	// Machine B: both stages pulled, neither run, the same outputs.
	b := newMachine()
	start = time.Now()
	if r := runCmd(t, command(b), "vmdeb build (machine B)"); r.code != 0 {
		t.Fatalf("machine B's build failed")
	}
	t.Logf("machine B: %.0fs", time.Since(start).Seconds())
	rb := readReport(b)
	for _, st := range []string{"bootstrap", "packages"} {
		if dg, _, ok := rb.remote(st, "pulled"); !ok || dg != pushed[st] {
			t.Errorf("machine B: %s not pulled with A's digest %s: %+v", st, pushed[st], rb.Cache.Remote.Stages)
		}
		if rb.ran(st) {
			t.Errorf("machine B ran the %s stage: %+v", st, rb.Stages)
		}
	}
	for _, c := range rb.Cache.Stages {
		if c.Action != "restored" {
			t.Errorf("machine B: stage cache record %+v, want restored", c)
		}
	}
	if log, _ := os.ReadFile(filepath.Join(b.out, "shared.build.log")); strings.Contains(string(log), "Setting up ") || strings.Contains(string(log), "packages fetched") {
		t.Error("machine B installed or fetched packages")
	}
	sameOutputs(a, b)

	// The packages stage's archive altered in the registry's storage.
	pkgKey := ""
	for _, c := range rb.Cache.Stages {
		if c.Stage == "packages" {
			pkgKey = c.Key
		}
	}
	layer := layerOf(t, reg.addr, "vmdeb/cache", "stage-"+pkgKey)
	blob := filepath.Join(reg.root, "docker/registry/v2/blobs/sha256", layer[:2], layer, "data")
	f, err := os.OpenFile(blob, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("the packages stage's blob: %v", err)
	}
	buf := make([]byte, 16)
	f.ReadAt(buf, 1<<20)
	for i := range buf {
		buf[i] ^= 0xff
	}
	f.WriteAt(buf, 1<<20)
	f.Close()

	// Machine C: the altered archive refused, the bootstrap pulled; the
	// registry stopped after the pull, so the push fails: one warning,
	// the build finishes locally, with the same outputs.
	c := newMachine()
	cmd := command(c)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	stopped := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if !stopped && strings.Contains(sc.Text(), "remote cache: bootstrap pulled") {
			reg.stop()
			stopped = true
		}
	}
	err = cmd.Wait()
	t.Logf("vmdeb build (machine C): %v, %.0fs\n%s%s", err, time.Since(start).Seconds(), tail(out.String(), 40), stderr.String())
	if err != nil {
		t.Fatalf("machine C's build failed")
	}
	if !stopped {
		t.Fatal("machine C never pulled the bootstrap stage")
	}
	assertClean(t, c.work)
	rc := readReport(c)
	if _, reason, ok := rc.remote("packages", "pull-failed"); !ok || !strings.Contains(reason, "does not match its digest") {
		t.Errorf("machine C did not refuse the altered packages stage: %+v", rc.Cache.Remote.Stages)
	}
	if dg, _, ok := rc.remote("bootstrap", "pulled"); !ok || dg != pushed["bootstrap"] {
		t.Errorf("machine C did not pull the bootstrap: %+v", rc.Cache.Remote.Stages)
	}
	if _, _, ok := rc.remote("packages", "push-failed"); !ok || rc.Cache.Remote.Warning == "" {
		t.Errorf("machine C: the push to the stopped registry is not reported: %+v, warning %q", rc.Cache.Remote.Stages, rc.Cache.Remote.Warning)
	}
	if rc.ran("bootstrap") || !rc.ran("packages") {
		t.Errorf("machine C's stages: %+v (want packages run, bootstrap not)", rc.Stages)
	}
	if n := strings.Count(out.String(), "WARNING: remote cache "+url); n != 1 {
		t.Errorf("machine C logged %d warnings about the stopped registry, want 1:\n%s", n, out.String())
	}
	if entries, _ := filepath.Glob(filepath.Join(c.stages, "*", "entry.json")); len(entries) != 2 {
		t.Errorf("machine C's stage cache holds %d entries, want 2 (the pulled bootstrap, the built packages)", len(entries))
	}
	sameOutputs(a, c)
}

// layerOf is the digest (hex) of the one layer of the manifest under tag.
func layerOf(t *testing.T, addr, repo, tag string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest of %s: %v %+v", tag, err, m)
	}
	return strings.TrimPrefix(m.Layers[0].Digest, "sha256:")
}
