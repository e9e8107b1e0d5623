package apt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostRoot makes a fake host with the given apt files.
func hostRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, "etc/apt", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDetectDeb822(t *testing.T) {
	root := hostRoot(t, map[string]string{
		"sources.list.d/debian.sources": `Types: deb
# a comment line
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`,
		"sources.list.d/vendor.sources": "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n",
	})
	h, err := DetectHostMirrors(root)
	if err != nil {
		t.Fatal(err)
	}
	if h.Mirror != "http://mirror.example/debian" || h.Security != "http://mirror.example/debian-security" {
		t.Errorf("got %+v", h)
	}
}

func TestDetectOneLine(t *testing.T) {
	root := hostRoot(t, map[string]string{
		"sources.list": `# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://one.example/debian/ bullseye main contrib
deb http://one.example/debian-security bullseye-security main
deb http://old.example/debian-security buster/updates main
`,
	})
	h, err := DetectHostMirrors(root)
	if err != nil {
		t.Fatal(err)
	}
	if h.Mirror != "http://one.example/debian" || h.Security != "http://one.example/debian-security" {
		t.Errorf("got %+v", h)
	}
}

func TestDetectDisabledAndVendorOnly(t *testing.T) {
	root := hostRoot(t, map[string]string{
		"sources.list.d/a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: trixie\nComponents: main\n",
		"sources.list.d/b.list":    "deb https://vendor.example/apt cloud-sdk main\n",
	})
	if _, err := DetectHostMirrors(root); err == nil || !strings.Contains(err.Error(), "set `mirror:`") {
		t.Fatalf("want a no-mirror error, got %v", err)
	}
}

func TestParseOneLineError(t *testing.T) {
	_, err := ParseOneLine(strings.NewReader("deb\nfoo bar\n"), "x.list")
	if err == nil || !strings.Contains(err.Error(), "x.list:1") {
		t.Fatalf("got %v", err)
	}
}

func TestRenderDeb822Stable(t *testing.T) {
	r, _ := LookupSuite("trixie")
	path, content := ImageSources{Release: r, Suite: "trixie", Mirror: "http://m.example/debian",
		Security: "http://m.example/debian-security", Components: []string{"main", "non-free-firmware"}, Updates: true}.Render()
	if path != "etc/apt/sources.list.d/debian.sources" {
		t.Errorf("path %s", path)
	}
	want := `Types: deb
URIs: http://m.example/debian
Suites: trixie trixie-updates
Components: main non-free-firmware

Types: deb
URIs: http://m.example/debian-security
Suites: trixie-security
Components: main non-free-firmware
`
	if content != want {
		t.Errorf("got\n%s\nwant\n%s", content, want)
	}
}

func TestRenderOneLineOld(t *testing.T) {
	r, _ := LookupSuite("buster")
	path, content := ImageSources{Release: r, Suite: "buster", Mirror: "http://a.example/debian",
		Security: "http://a.example/debian-security", Components: []string{"main"}, Updates: true}.Render()
	if path != "etc/apt/sources.list" {
		t.Errorf("path %s", path)
	}
	want := "deb http://a.example/debian buster main\ndeb http://a.example/debian buster-updates main\ndeb http://a.example/debian-security buster/updates main\n"
	if content != want {
		t.Errorf("got\n%s", content)
	}
}

func TestRenderSid(t *testing.T) {
	r, _ := LookupSuite("sid")
	_, content := ImageSources{Release: r, Suite: "sid", Mirror: "http://a.example/debian", Components: []string{"main"}}.Render()
	if strings.Contains(content, "security") || strings.Contains(content, "updates") {
		t.Errorf("sid has no security or updates: %s", content)
	}
}

func TestBuildSources(t *testing.T) {
	if got := BuildSources("http://b.example/debian", "bookworm", []string{"main", "contrib"}); got != "deb http://b.example/debian bookworm main contrib\n" {
		t.Errorf("got %q", got)
	}
}

func TestParseRelease(t *testing.T) {
	data := `Origin: Debian
Label: Debian
Suite: stable
Codename: trixie
Architectures: all amd64 arm64 armel armhf i386 ppc64el riscv64 s390x
Components: main contrib non-free-firmware non-free
MD5Sum:
 0123 456 main/binary-all/Packages
SHA256:
 0000000000000000000000000000000000000000000000000000000000000000 456 main/binary-all/Packages
`
	ri, err := ParseRelease([]byte(data), "Release")
	if err != nil {
		t.Fatal(err)
	}
	if !ri.Stable() || !ri.HasArch("arm64") || ri.HasArch("mips") || !ri.HasComponent("non-free-firmware") || ri.HasComponent("universe") {
		t.Errorf("got %+v", ri)
	}
	sec, _ := ParseRelease([]byte("Suite: stable-security\nCodename: trixie-security\nComponents: updates/main\nSHA256:\n 0000000000000000000000000000000000000000000000000000000000000000 1 updates/main/Contents-all\n"), "R")
	if !sec.HasComponent("main") {
		t.Error("updates/main should count as main")
	}
	if _, err := ParseRelease([]byte("<html>not found</html>\n"), "R"); err == nil {
		t.Error("garbage accepted")
	}
}

func TestFetchReleaseFile(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "dists/sid"), 0o755)
	os.WriteFile(filepath.Join(dir, "dists/sid/Release"), []byte("Suite: unstable\nCodename: sid\nArchitectures: amd64\nComponents: main\nSHA256:\n 0000000000000000000000000000000000000000000000000000000000000000 1 main/binary-amd64/Packages\n"), 0o644)
	ri, err := FetchRelease(context.Background(), "file://"+dir, "sid", nil)
	if err != nil || ri.Codename != "sid" || ri.Stable() {
		t.Fatalf("%+v %v", ri, err)
	}
	if _, err := FetchRelease(context.Background(), "file://"+dir, "nosuch", nil); err == nil {
		t.Error("missing suite accepted")
	}
}

func TestSecuritySuite(t *testing.T) {
	for suite, want := range map[string]string{"buster": "buster/updates", "bullseye": "bullseye-security", "trixie": "trixie-security"} {
		r, _ := LookupSuite(suite)
		if got := SecuritySuite(r); got != want {
			t.Errorf("%s: %s, want %s", suite, got, want)
		}
	}
}
