package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPackageCopyright: every Go module linked into vmdeb is named in
// debian/copyright, which the package installs as the binary's licence
// statement; a module added to go.mod without its entry fails here.
func TestPackageCopyright(t *testing.T) {
	out, err := exec.Command("go", "version", "-m", vmdeb).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", vmdeb, err)
	}
	copyright, err := os.ReadFile(filepath.Join(repo(t), "debian", "copyright"))
	if err != nil {
		t.Fatal(err)
	}
	var deps int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "dep" {
			continue
		}
		deps++
		if !bytes.Contains(copyright, []byte(f[1])) {
			t.Errorf("debian/copyright does not name %s, linked into vmdeb: add its copyright and licence", f[1])
		}
	}
	if deps == 0 {
		t.Fatalf("go version -m lists no modules in vmdeb:\n%s", out)
	}
}

// TestPackageInstall builds the Debian package with make deb, lints it,
// and installs it with apt into a fresh minbase chroot of the host's
// release, where apt resolves its dependencies: vmdeb runs, its man pages
// are found by man, and its Depends alone (no Recommends) are enough for
// `vmdeb check` of the shipped example.
func TestPackageInstall(t *testing.T) {
	needRoot(t)
	t.Parallel() // long and independent: overlap it with the others
	for _, tool := range []string{"dpkg-buildpackage", "dh", "lintian", "debootstrap", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (make deps installs it)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	top := repo(t)
	out := t.TempDir()
	start := time.Now()
	step := func(what string) { t.Logf("%s: %s", what, time.Since(start).Round(time.Second)) }

	// The unit tests run elsewhere; nocheck keeps this test short.
	mk := exec.CommandContext(ctx, "make", "-C", top, "deb", "BUILDDIR="+out)
	mk.Env = append(os.Environ(), "DEB_BUILD_OPTIONS=nocheck")
	if r := runCmd(t, mk, "make deb"); r.code != 0 {
		t.Fatalf("make deb: exit %d\n%s", r.code, tail(r.stdout+r.stderr, 40))
	}
	step("make deb done")
	version := pkgOutput(t, ctx, "dpkg-parsechangelog", "-l", filepath.Join(top, "debian", "changelog"), "-S", "Version")
	arch := pkgOutput(t, ctx, "dpkg-architecture", "-q", "DEB_HOST_ARCH")
	deb := filepath.Join(out, "deb", fmt.Sprintf("vmdeb_%s_%s.deb", version, arch))
	changes := filepath.Join(out, "deb", fmt.Sprintf("vmdeb_%s_%s.changes", version, arch))

	// Lintian on the .changes: the package, its debug symbols and the
	// .buildinfo. Overrides live in debian/vmdeb.lintian-overrides.
	if r := runCmd(t, exec.CommandContext(ctx, "lintian", "--fail-on", "error,warning", changes), "lintian"); r.code != 0 {
		t.Errorf("lintian %s: exit %d\n%s%s", filepath.Base(changes), r.code, r.stdout, r.stderr)
	}

	files := pkgOutput(t, ctx, "dpkg-deb", "-c", deb)
	has := map[string]bool{}
	for _, line := range strings.Split(files, "\n") {
		if f := strings.Fields(line); len(f) >= 6 {
			has[f[5]] = true
		}
	}
	for _, want := range []string{
		"./usr/bin/vmdeb",
		"./usr/share/man/man1/vmdeb.1.gz",
		"./usr/share/man/man1/vmdeb-build.1.gz",
		"./usr/share/man/man5/vmdeb.yaml.5.gz",
		"./usr/share/bash-completion/completions/vmdeb",
		"./usr/share/zsh/vendor-completions/_vmdeb",
		"./usr/share/fish/vendor_completions.d/vmdeb.fish",
		"./usr/share/doc/vmdeb/copyright",
		"./usr/share/doc/vmdeb/examples/live-minimal.yaml",
		"./usr/share/lintian/overrides/vmdeb",
	} {
		if !has[want] {
			t.Errorf("%s lacks %s; it has:\n%s", filepath.Base(deb), want, files)
		}
	}

	// A fresh minbase chroot of the host's release, from the mirror vmdeb
	// itself would use (the host's).
	suite := pkgOSRelease(t, "VERSION_CODENAME")
	r := run(t, ctx, "check", "--json", "--offline", filepath.Join(top, "examples", "live-minimal.yaml"))
	var check struct {
		Plan struct{ Mirror string } `json:"plan"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &check); err != nil || check.Plan.Mirror == "" {
		t.Fatalf("vmdeb check --json: no plan.mirror (%v)\n%s%s", err, r.stdout, r.stderr)
	}
	root := filepath.Join(t.TempDir(), "root")
	ds := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", suite, root, check.Plan.Mirror)
	if r := runCmd(t, ds, "debootstrap"); r.code != 0 {
		t.Fatalf("debootstrap %s: exit %d\n%s", suite, r.code, tail(r.stdout+r.stderr, 30))
	}
	step("debootstrap done")
	defer pkgAssertUnmounted(t, root)
	pkgCopyFile(t, "/etc/resolv.conf", filepath.Join(root, "etc", "resolv.conf"))
	pkgCopyFile(t, deb, filepath.Join(root, "tmp", filepath.Base(deb)))

	inChroot := func(script string) result {
		t.Helper()
		// A private mount namespace: /proc goes when the command ends,
		// however it ends.
		cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--",
			"sh", "-ec", `mount -t proc proc "$0/proc"; mount -t devpts -o newinstance,ptmxmode=0666 devpts "$0/dev/pts"; exec chroot "$0" sh -ec "$1"`, root, script)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8")
		return runCmd(t, cmd, "chroot: "+script)
	}
	if r := inChroot("apt-get update -q && apt-get install -y -q --no-install-recommends /tmp/" + filepath.Base(deb) + " man-db"); r.code != 0 {
		t.Fatalf("apt-get install vmdeb: exit %d\n%s", r.code, tail(r.stdout+r.stderr, 40))
	}

	step("apt-get install done")
	if r := inChroot("vmdeb --version"); r.code != 0 || !strings.Contains(r.stdout, version) {
		t.Errorf("vmdeb --version: exit %d, %q; want version %s", r.code, r.stdout+r.stderr, version)
	}
	for page, want := range map[string]string{
		"vmdeb":             "/usr/share/man/man1/vmdeb.1.gz",
		"vmdeb-check":       "/usr/share/man/man1/vmdeb-check.1.gz",
		"5 vmdeb.yaml":      "/usr/share/man/man5/vmdeb.yaml.5.gz",
		"vmdeb-metapackage": "/usr/share/man/man1/vmdeb-metapackage.1.gz",
	} {
		if r := inChroot("man -w " + page); r.code != 0 || strings.TrimSpace(r.stdout) != want {
			t.Errorf("man -w %s: exit %d, %q; want %s", page, r.code, r.stdout+r.stderr, want)
		}
	}
	// The bash completion loads and completes vmdeb's commands.
	if r := inChroot(`bash -c '. /usr/share/bash-completion/completions/vmdeb && complete -p vmdeb && vmdeb __complete bu'`); r.code != 0 ||
		!strings.Contains(r.stdout, "complete ") || !strings.Contains(r.stdout, "build") {
		t.Errorf("bash completion: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Depends alone suffice to build the shipped example: check finds
	// every host tool (it exits 2 naming the missing ones otherwise).
	if r := inChroot("vmdeb check --offline /usr/share/doc/vmdeb/examples/live-minimal.yaml"); r.code != 0 {
		t.Errorf("vmdeb check --offline: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// ... and they were alone: a Recommends (qemu) was not installed.
	if r := inChroot("dpkg-query -W -f '${Status}\n' qemu-system-x86 2>/dev/null || true"); strings.Contains(r.stdout, "install ok installed") {
		t.Errorf("qemu-system-x86 is installed although only Depends were asked for: %q", r.stdout)
	}
	// Purged, the package leaves none of its files behind.
	if r := inChroot("apt-get purge -y -q vmdeb && ! ls -d /usr/bin/vmdeb /usr/share/man/man1/vmdeb* /usr/share/doc/vmdeb 2>/dev/null"); r.code != 0 {
		t.Errorf("apt-get purge vmdeb: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// pkgOutput runs a command and returns its trimmed stdout, failing the test
// if it fails.
func pkgOutput(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	r := runCmd(t, exec.CommandContext(ctx, name, args...), name+" "+strings.Join(args, " "))
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// pkgOSRelease returns a field of the host's /etc/os-release.
func pkgOSRelease(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatalf("/etc/os-release has no %s", key)
	return ""
}

func pkgCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pkgAssertUnmounted fails if a mount under dir outlived the
// commands run in it.
func pkgAssertUnmounted(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			t.Errorf("still mounted: %s", f[4])
		}
	}
}
