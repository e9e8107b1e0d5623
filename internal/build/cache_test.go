package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/bootstrap"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/config"
	"vmdeb/internal/deb"
	"vmdeb/internal/live"
	"vmdeb/internal/squashfs"
	"vmdeb/internal/stagecache"
)

// cachePlan is a plan made offline from a config, with a Release digest
// as the mirror would give it.
func cachePlan(t *testing.T, s *config.Spec) *Plan {
	t.Helper()
	p, err := NewPlan(context.Background(), s, Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	p.ReleaseDigest = "release-1"
	return p
}

// specFiles is spec with files beside the config.
func specFiles(t *testing.T, extra string, files map[string]string) *config.Spec {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755)
	}
	y := "name: t\nsuite: trixie\narchitecture: amd64\nmirror: http://m.example/debian\noutputs:\n  - {type: live-iso, path: t.iso}\n" + extra
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(y), 0o644)
	s, err := config.Load(filepath.Join(dir, "c.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var cacheFiles = map[string]string{"keyring.gpg": "key 1", "local.deb": localDeb("1"), "hook.sh": "#!/bin/sh\n"}

// localDeb is a real package (the config checks that a custom package is one).
func localDeb(version string) string {
	b, err := deb.Build(&deb.Package{Name: "local", Version: version, Maintainer: "T <t@example.org>", Description: "test"}, time.Unix(1700000000, 0))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func keys(p *Plan) (base, pkgs string) {
	pts := cachePoints(p, Stages(p))
	return pts[0].key, pts[1].key
}

// The keys change when, and only when, something the stage depends on
// changes; a change to the bootstrap's inputs changes both keys.
func TestCacheKeys(t *testing.T) {
	extra := "components: [main]\nkeyring: keyring.gpg\ncustom-packages: [local.deb]\npackages: [task-english]\n" +
		"users: [{name: user, password: live}]\ncustomise: hook.sh\nhostname: one\n"
	s0 := specFiles(t, extra, cacheFiles)
	b0, p0 := keys(cachePlan(t, s0))
	if b1, p1 := keys(cachePlan(t, s0)); b1 != b0 || p1 != p0 {
		t.Fatal("the same config gave other keys")
	}

	type change struct {
		name       string
		mutate     func(p *Plan)
		base, pkgs bool // which keys must change
	}
	changes := []change{
		{"suite", func(p *Plan) { p.Spec.Suite = "bookworm" }, true, true},
		{"architecture", func(p *Plan) { p.Arch.Name = "arm64" }, true, true},
		{"mirror", func(p *Plan) { p.Mirror = "http://other.example/debian" }, true, true},
		{"components", func(p *Plan) { p.Spec.Components = []string{"main", "contrib"} }, true, true},
		{"variant", func(p *Plan) { p.Spec.Variant = "buildd" }, true, true},
		{"bootstrap", func(p *Plan) { p.Bootstrap = &bootstrap.Native{} }, true, true},
		{"insecure", func(p *Plan) { p.Spec.Insecure = true }, true, true},
		{"release date or index hashes", func(p *Plan) { p.ReleaseDigest = "release-2" }, true, true},
		{"keyring content", func(p *Plan) {
			os.WriteFile(filepath.Join(p.Spec.Dir, "keyring.gpg"), []byte("key 2"), 0o644)
		}, true, true},
		{"binfmt handler", func(p *Plan) { p.Interpreter, p.InterpreterAt = "/bin/true", "/usr/bin/qemu" }, true, true},
		{"package list", func(p *Plan) { p.Packages = append(p.Packages, "vim") }, false, true},
		{"local package content", func(p *Plan) {
			os.WriteFile(filepath.Join(p.Spec.Dir, "local.deb"), []byte(localDeb("2")), 0o644)
		}, false, true},
		{"SOURCE_DATE_EPOCH", func(p *Plan) { p.SourceDateEpoch = 1700000000 }, false, true},
		{"debconf answers", func(p *Plan) {
			p.Spec.Debconf = []string{"firmware-ipw2x00 firmware-ipw2x00/license/accepted boolean true"}
		}, false, true},
		{"vmdeb version", func(p *Plan) { Version = "other" }, true, true},
		// What later stages read never touches the cached stages' keys.
		{"hook content", func(p *Plan) { os.WriteFile(filepath.Join(p.Spec.Dir, "hook.sh"), []byte("#!/bin/sh\necho\n"), 0o755) }, false, false},
		{"hostname", func(p *Plan) { p.Spec.Hostname = "two" }, false, false},
		{"user password", func(p *Plan) { p.Spec.Users[0].Password = "other" }, false, false},
		{"image mirror", func(p *Plan) { p.AptMirror = "http://image.example/debian" }, false, false},
		{"live title", func(p *Plan) { p.Spec.Live.Title = "Other" }, false, false},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			s := specFiles(t, extra, cacheFiles)
			p := cachePlan(t, s)
			defer func(v string) { Version = v }(Version)
			c.mutate(p)
			b, k := keys(p)
			if (b != b0) != c.base {
				t.Errorf("bootstrap key changed: %v, want %v", b != b0, c.base)
			}
			if (k != p0) != c.pkgs {
				t.Errorf("packages key changed: %v, want %v", k != p0, c.pkgs)
			}
		})
	}
}

// whyRebuilt names what changed since the config's last cached build.
func TestWhyRebuilt(t *testing.T) {
	c, err := stagecache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := spec(t, "packages: [aa]\n")
	p := cachePlan(t, s)
	pts := cachePoints(p, Stages(p))
	if got := whyRebuilt(c, "t", pts[1], true); got != "no earlier build of t in the cache" {
		t.Errorf("empty cache: %q", got)
	}
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644)
	for _, pt := range pts {
		e := &stagecache.Entry{Key: pt.key, Config: "t", Stage: pt.stage, Parent: pt.parent, Inputs: pt.inputs}
		if err := c.Save(context.Background(), e, root, nil); err != nil {
			t.Skipf("no tar here: %v", err)
		}
	}
	p.Packages = append(p.Packages, "bb")
	pts2 := cachePoints(p, Stages(p))
	if got := whyRebuilt(c, "t", pts2[1], true); got != "changed since the last cached build: packages" {
		t.Errorf("package list change: %q", got)
	}
	p.Spec.Variant = "buildd"
	pts3 := cachePoints(p, Stages(p))
	if got := whyRebuilt(c, "t", pts3[0], true); got != "changed since the last cached build: variant" {
		t.Errorf("variant change: %q", got)
	}
	if got := whyRebuilt(c, "t", pts3[1], false); got != "a stage before it is rebuilt" {
		t.Errorf("after a rebuilt stage: %q", got)
	}
}

// The common-packages stage's key depends on the base system and its own
// list, never on the image's own packages: images that share the list
// share the entry. Its key is chained into the packages stage's.
func TestCommonPackagesKeys(t *testing.T) {
	common := func(extra string) (string, string) {
		p := cachePlan(t, specFiles(t, extra, cacheFiles))
		pts := cachePoints(p, Stages(p))
		if len(pts) != 3 || pts[1].stage != "common-packages" || pts[2].parent != pts[1].key || !pts[1].shared || pts[2].shared {
			t.Fatalf("cache points %+v, want bootstrap, common-packages (shared), packages", pts)
		}
		return pts[1].key, pts[2].key
	}
	c0, k0 := common("common-packages: [live-task-base, firmware-linux]\npackages: [task-xfce-desktop]\n")
	c1, k1 := common("common-packages: [live-task-base, firmware-linux]\npackages: [task-kde-desktop]\n")
	if c1 != c0 || k1 == k0 {
		t.Errorf("other packages: common key changed %v (want false), packages key changed %v (want true)", c1 != c0, k1 != k0)
	}
	c2, k2 := common("common-packages: [live-task-base]\npackages: [task-xfce-desktop]\n")
	if c2 == c0 || k2 == k0 {
		t.Error("other common-packages: want both keys changed")
	}
	c3, _ := common("common-packages: [live-task-base, firmware-linux]\npackages: [task-xfce-desktop]\n" +
		"debconf: [firmware-ipw2x00 firmware-ipw2x00/license/accepted boolean true]\n")
	if c3 == c0 {
		t.Error("debconf answers: want the common key changed (they are given before it installs)")
	}
	// Without common-packages there is no such stage, and the packages
	// stage installs the same list as with them.
	p := cachePlan(t, specFiles(t, "packages: [live-task-base, firmware-linux, task-xfce-desktop]\n", cacheFiles))
	if pts := cachePoints(p, Stages(p)); len(pts) != 2 || pts[1].stage != "packages" {
		t.Errorf("without common-packages: cache points %+v", pts)
	}
	q := cachePlan(t, specFiles(t, "common-packages: [live-task-base, firmware-linux]\npackages: [task-xfce-desktop]\n", cacheFiles))
	if !slices.Equal(p.Packages, q.Packages) {
		t.Errorf("packages stage installs %v with common-packages, %v without", q.Packages, p.Packages)
	}
}

// A set starts its next image after the last cached stage images share.
func TestBaseStage(t *testing.T) {
	for _, c := range []struct {
		points []cachePoint
		want   int
	}{
		{nil, 0},
		{[]cachePoint{{index: 0, shared: true}, {index: 1}}, 0},
		{[]cachePoint{{index: 0, shared: true}, {index: 1, shared: true}, {index: 2}}, 1},
		{[]cachePoint{{index: 2}, {index: 3}}, 2},
	} {
		if got := baseStage(c.points); got != c.want {
			t.Errorf("baseStage(%+v) = %d, want %d", c.points, got, c.want)
		}
	}
}

// The eight live images of configs/ share their bootstrap and
// common-packages entries: a set of them installs the firmware and the
// localisation once.
func TestConfigsShareCommonPackages(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) < 8 {
		t.Fatalf("configs: %v %v", files, err)
	}
	var first []cachePoint
	for _, f := range files {
		s, err := config.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		p := cachePlan(t, s)
		pts := cachePoints(p, Stages(p))
		if len(pts) != 3 || pts[1].stage != "common-packages" {
			t.Fatalf("%s: cache points %+v, want bootstrap, common-packages, packages", f, pts)
		}
		if first == nil {
			first = pts
			continue
		}
		if pts[0].key != first[0].key || pts[1].key != first[1].key {
			t.Errorf("%s: bootstrap or common-packages key differs from %s's", f, files[0])
		}
	}
}

// TestTrimBlockCache: after a build that made its squashfs through the
// block cache, the cache is trimmed to the bound, least recently used
// blocks first; a build that did not use it leaves it alone.
func TestTrimBlockCache(t *testing.T) {
	dir := t.TempDir()
	c := &squashfs.Cache{Dir: dir, Ident: "test"}
	var keys []string
	for i := 0; i < 4; i++ {
		raw := []byte{byte(i), 1, 2, 3}
		k := c.Key(raw)
		if err := c.Put(k, squashfs.Stored{Data: bytes.Repeat([]byte{byte(i)}, 1000)}); err != nil {
			t.Fatal(err)
		}
		// Block i last used i hours ago: block 3 is the oldest.
		when := time.Now().Add(-time.Duration(i) * time.Hour)
		if err := os.Chtimes(filepath.Join(dir, k[:2], k), when, when); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	_, size, err := c.Usage()
	if err != nil {
		t.Fatal(err)
	}
	one := size / 4
	var logged strings.Builder
	st := &State{Log: buildlog.New(&logged, "log", nil), BlockCache: dir}

	// No squashfs made through the cache: nothing removed.
	st.Blocks = []*live.BlockReport{{Used: false}}
	trimBlockCache(st, one)
	if n, _, _ := c.Usage(); n != 4 {
		t.Fatalf("a build that did not use the block cache trimmed it: %d blocks left", n)
	}

	st.Blocks = append(st.Blocks, &live.BlockReport{Used: true})
	trimBlockCache(st, 2*one)
	for i, k := range keys {
		_, err := c.Get(k)
		if kept := err == nil; kept != (i < 2) {
			t.Errorf("block %d (used %d hours ago): kept %v, want %v (%v)", i, i, kept, i < 2, err)
		}
	}
	if !strings.Contains(logged.String(), "squashfs block cache: removed 2 least recently used blocks") {
		t.Errorf("log does not say what was removed:\n%s", logged.String())
	}

	// Under the bound: nothing removed, nothing said.
	logged.Reset()
	trimBlockCache(st, AutoPruneSize)
	if n, _, _ := c.Usage(); n != 2 || logged.Len() != 0 {
		t.Errorf("under the bound: %d blocks left, log %q", n, logged.String())
	}
}
