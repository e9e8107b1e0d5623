package buildervm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vmdeb/internal/config"
)

func TestBuildArgs(t *testing.T) {
	for _, c := range []struct {
		in   BuildArgs
		want string
	}{
		{BuildArgs{Config: "c.yaml"}, "build --no-cache c.yaml"},
		{BuildArgs{WorkDir: "/w", KeepWork: true, Log: "l.log", OutDir: "out", Report: "/r/b.json", JSON: true, StageCache: "/sc", Config: "c.yaml"},
			"build --workdir /w --keep-work --log l.log --outdir out --report /r/b.json --json --stage-cache /sc c.yaml"},
		{BuildArgs{Isolation: config.Userns, OutDir: "/o", Config: "/b.yaml"}, "build --isolation userns --outdir /o --no-cache /b.yaml"},
	} {
		if got := strings.Join(c.in.Argv(), " "); got != c.want {
			t.Errorf("%+v: argv\n got %s\nwant %s", c.in, got, c.want)
		}
	}
	// An argument that looks like a flag stays one argument after its flag.
	if got := (BuildArgs{Log: "--json", Config: "c"}).Argv(); !slices.Equal(got, []string{"build", "--log", "--json", "--no-cache", "c"}) {
		t.Errorf("argv %q", got)
	}
}

func TestMakerArgs(t *testing.T) {
	if got := strings.Join(MakerArgs(0, "", "/t/builder.yaml", "/t/out"), " "); got != "build --isolation host --outdir /t/out --no-cache /t/builder.yaml" {
		t.Errorf("root's maker: %s", got)
	}
	if got := strings.Join(MakerArgs(1000, "/big", "/t/builder.yaml", "/t/out"), " "); got != "build --isolation userns --workdir /big --outdir /t/out --no-cache /t/builder.yaml" {
		t.Errorf("a user's maker: %s", got)
	}
}

// planFixture is a config in dir/cfg naming files inside and outside its
// directory, with an output directory that does not exist yet, and a host
// whose apt sources name a file:// mirror.
func planFixture(t *testing.T) (Request, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cfg")
	hostRoot := filepath.Join(dir, "host")
	for _, d := range []string{cfg, filepath.Join(hostRoot, "etc/apt/sources.list.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/apt/sources.list":                 "deb file:///srv/local-mirror trixie main\n",
		"etc/apt/sources.list.d/extra.sources": "Types: deb\nURIs: file:///srv/other\nSuites: trixie\nComponents: main\n",
		"etc/apt/sources.list.d/notes.txt":     "not a source\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(hostRoot, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &config.Spec{
		File: filepath.Join(cfg, "c.yaml"), Dir: cfg, Suite: "trixie",
		Includes:  []string{filepath.Join(dir, "base/base.yaml")},
		Customise: "hooks/customise.sh",             // under the config's directory: no share of its own
		Keyring:   filepath.Join(dir, "keys/k.gpg"), // elsewhere
		Mirror:    "file:///srv/mirror",
		Cache:     "cache",
		Outputs:   []config.Output{{Type: "live-iso", Path: "out/a.iso"}, {Type: "tar", Path: filepath.Join(dir, "tars/a.tar")}},
	}
	r := Request{Spec: s, Config: s.File, Binary: "/usr/bin/vmdeb", WorkDir: "/big", Report: filepath.Join(dir, "reports/b.json"),
		Host: Host{Euid: 1000, NumCPU: 16, Root: hostRoot, Env: []string{"VMDEB_ACCEL=tcg", "SOURCE_DATE_EPOCH=1700000000", "HOME=/home/u", "https_proxy=http://proxy:3128"}}}
	return r, dir
}

func TestPlanJob(t *testing.T) {
	r, dir := planFixture(t)
	cfg := r.Spec.Dir
	j, err := PlanJob(r)
	if err != nil {
		t.Fatal(err)
	}
	if j.Memory != 2<<30 || j.CPUs != 4 || j.Scratch != 20<<30 || j.Accel != "tcg" || j.TempDir != "/big" || j.Binary != "/usr/bin/vmdeb" {
		t.Errorf("size and settings: memory %d, %d CPUs, scratch %d, accel %q, tempdir %q, binary %q", j.Memory, j.CPUs, j.Scratch, j.Accel, j.TempDir, j.Binary)
	}
	wantArgs := []string{"build", "--isolation", "host", "--workdir", GuestWorkDir, "--report", filepath.Join(dir, "reports/b.json"), "--no-cache", r.Spec.File}
	if !slices.Equal(j.Args, wantArgs) {
		t.Errorf("guest's arguments\n got %q\nwant %q", j.Args, wantArgs)
	}
	ro := func(p string) Share { return Share{Host: p, Guest: p, ReadOnly: true} }
	rw := func(p string) Share { return Share{Host: p, Guest: p} }
	want := PlanShares([]Share{
		ro(cfg), ro(filepath.Join(dir, "base")), ro(filepath.Join(dir, "keys")), ro("/srv/mirror"),
		rw(filepath.Join(dir, "tars")), rw(filepath.Join(dir, "reports")),
		ro(filepath.Join(cfg, "cache")),
		ro("/srv/local-mirror"), ro("/srv/other"),
	})
	// cfg/out lies in the read-only config directory: it is shared
	// writable over it.
	want = append(want, rw(filepath.Join(cfg, "out")))
	want = PlanShares(want)
	if !slices.Equal(j.Shares, want) {
		t.Errorf("shares\n got %+v\nwant %+v", j.Shares, want)
	}
	for _, d := range []string{"cfg/out", "tars", "reports", "cfg/cache"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("shared directory %s not made: %v", d, err)
		}
	}
	if got := strings.Join(j.Env, " "); got != "SOURCE_DATE_EPOCH=1700000000 https_proxy=http://proxy:3128" {
		t.Errorf("guest's environment: %s", got)
	}
	if len(j.Apt) != 2 || string(j.Apt["sources.list"]) != "deb file:///srv/local-mirror trixie main\n" || j.Apt["sources.list.d/extra.sources"] == nil {
		t.Errorf("guest's apt sources: %q", j.Apt)
	}
}

func TestPlanJobLogOutdirAndBuilder(t *testing.T) {
	r, dir := planFixture(t)
	r.Spec.Builder = config.Builder{Memory: config.Size{Bytes: 3 << 30}, CPUs: 1, Scratch: config.Size{Bytes: 8 << 30}}
	r.Spec.Cache = ""
	r.Report = ""
	r.Log = filepath.Join(dir, "logs/b.log")
	r.OutDir = filepath.Join(dir, "o")
	r.Host.Euid = 0
	j, err := PlanJob(r)
	if err != nil {
		t.Fatal(err)
	}
	if j.Memory != 3<<30 || j.CPUs != 1 || j.Scratch != 8<<30 {
		t.Errorf("builder: in the config: memory %d, %d CPUs, scratch %d", j.Memory, j.CPUs, j.Scratch)
	}
	if got, want := strings.Join(j.Args, " "), "build --isolation host --workdir /scratch/work --log "+r.Log+" --outdir "+r.OutDir+" --no-cache "+r.Spec.File; got != want {
		t.Errorf("guest's arguments\n got %s\nwant %s", got, want)
	}
	if !slices.Contains(j.Shares, Share{Host: filepath.Join(dir, "logs"), Guest: filepath.Join(dir, "logs")}) {
		t.Errorf("the log's directory is not shared writable: %+v", j.Shares)
	}
	// root's package cache, at its own path (r.Spec.Cache unset).
	if !slices.ContainsFunc(j.Shares, func(s Share) bool { return s.Guest == "/var/cache/vmdeb/debs" && s.ReadOnly }) {
		t.Errorf("root's package cache is not shared read-only: %+v", j.Shares)
	}
}

func TestPlanJobUnmakeableShare(t *testing.T) {
	r, dir := planFixture(t)
	if err := os.WriteFile(filepath.Join(dir, "tars"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := PlanJob(r)
	var se *ShareError
	if !errors.As(err, &se) || se.Dir != filepath.Join(dir, "tars") || !strings.Contains(err.Error(), "the builder VM shares "+se.Dir) {
		t.Errorf("an output directory that is a file: %v", err)
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	s := &config.Spec{Dir: dir, Outputs: []config.Output{{Path: "a.iso"}}}
	for _, n := range []string{".a.iso.vmdeb-tmp123/a.iso", ".b.iso.vmdeb-tmp1/b.iso", "a.iso"} {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTemps(s); err != nil {
		t.Fatal(err)
	}
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{".b.iso.vmdeb-tmp1", "a.iso"}) {
		t.Errorf("left after RemoveTemps: %q", left)
	}
}
