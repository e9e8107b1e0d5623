package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRepositoryConfigs: every config in configs/ and examples/ loads and
// validates, and every file in configs/base/ is included by one of them.
func TestRepositoryConfigs(t *testing.T) {
	var files []string
	for _, g := range []string{"configs/*.yaml", "configs/arm64/*.yaml", "configs/ci/*.yaml", "examples/*.yaml"} {
		m, err := filepath.Glob(filepath.Join("..", "..", g))
		if err != nil || len(m) == 0 {
			t.Fatalf("%s: no configs (%v)", g, err)
		}
		files = append(files, m...)
	}
	included := map[string]bool{}
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		data, err := readConfig(abs)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Parse(data, abs)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, e := range s.Validate() {
			// The disk image examples need their size free on this machine.
			if !strings.Contains(e.Msg, "the free space of") {
				t.Errorf("%s: %v", f, e)
			}
		}
		for _, i := range s.Includes {
			included[i] = true
		}
	}
	bases, _ := filepath.Glob(filepath.Join("..", "..", "configs", "base", "*.yaml"))
	for _, b := range bases {
		abs, _ := filepath.Abs(b)
		if !included[abs] {
			t.Errorf("%s is included by no config in configs/", b)
		}
	}
	if !slices.ContainsFunc(files, func(f string) bool { return filepath.Base(f) == "live-installer.yaml" }) {
		t.Error("configs/ci/live-installer.yaml not found")
	}
}

// TestRepositoryHooksInstallNothing: the hooks of configs/ install no
// packages: what an image installs is in its packages (and so in the
// packages stage's cache entry), which keeps a rebuild after a change to
// a hook alone from installing and making the initramfs again.
func TestRepositoryHooksInstallNothing(t *testing.T) {
	hooks, _ := filepath.Glob(filepath.Join("..", "..", "configs", "hooks", "*.sh"))
	if len(hooks) == 0 {
		t.Fatal("no hooks in configs/hooks")
	}
	lib, err := os.ReadFile(filepath.Join("..", "..", "configs", "hooks", "lib", "live.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// live_common's body, which every image's hook calls.
	common := string(lib)
	if i := strings.Index(common, "\nlive_common() {"); i >= 0 {
		common = common[i:]
		common = common[:strings.Index(common, "\n}")]
	} else {
		t.Fatal("lib/live.sh has no live_common")
	}
	for _, h := range append(hooks, "lib/live.sh:live_common") {
		text := common
		if h != "lib/live.sh:live_common" {
			b, err := os.ReadFile(h)
			if err != nil {
				t.Fatal(err)
			}
			text = string(b)
		}
		for _, verb := range []string{"install_packages", "install_available", "apt-get", "apt install", "dpkg -i"} {
			if strings.Contains(text, verb) {
				t.Errorf("%s calls %s: put the packages in the config's packages instead", h, verb)
			}
		}
	}
}
