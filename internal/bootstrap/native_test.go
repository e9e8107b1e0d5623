package bootstrap

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"vmdeb/internal/apt"
	"vmdeb/internal/archive"
	"vmdeb/internal/buildlog"
	"vmdeb/internal/chroot"
	"vmdeb/internal/ns"
)

// The integration tests mount file systems inside their targets: as root,
// the test binary runs itself again in its own mount and PID namespaces,
// so nothing it mounts or starts outlives it.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && !ns.Inside() && !isShort() {
		code, err := ns.Reexec(os.Args[1:], ns.Stdio{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	if ns.Inside() {
		if err := ns.Prepare(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if sharedCache != "" {
		os.RemoveAll(sharedCache)
	}
	os.Exit(code)
}

func isShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

// needArchive skips a test that needs root and the Debian archive.
func needArchive(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (skipped with -short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root")
	}
	h, err := apt.DetectHostMirrors("/")
	if err != nil {
		t.Skipf("no Debian mirror: %v", err)
	}
	return h.Mirror
}

// sharedCache is one package cache for the tests of this run: the first
// test fills it, the others reuse it as builds on one machine do.
var sharedCache string

func cacheDir(t *testing.T) string {
	if sharedCache == "" {
		d, err := os.MkdirTemp("/var/tmp", "vmdeb-test-cache-")
		if err != nil {
			t.Fatal(err)
		}
		sharedCache = d
	}
	return sharedCache
}

func newTarget(t *testing.T) string {
	d, err := os.MkdirTemp("/var/tmp", "vmdeb-test-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := chroot.RemoveAll(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	})
	return d
}

func testLog(t *testing.T) (*buildlog.Log, *bytes.Buffer) {
	var term bytes.Buffer
	f, err := os.Create(filepath.Join(t.TempDir(), "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			data, _ := os.ReadFile(f.Name())
			t.Logf("build log (last 4000 bytes):\n%s", tailBytes(data, 4000))
		}
	})
	return buildlog.New(f, f.Name(), &term), &term
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// inTarget runs a command inside root and returns its output.
func inTarget(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{root}, args...)...)
	cmd.Env = []string{chrootPath, "LC_ALL=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mountsLeft(t *testing.T, dir string) {
	t.Helper()
	if m, _ := chroot.MountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", dir, m)
	}
}

// checkSystem asserts what the issue asks of a bootstrapped system: dpkg
// has nothing to report and apt sees every dependency met.
func checkSystem(t *testing.T, root string) {
	t.Helper()
	if out, err := inTarget(t, root, "dpkg", "--audit"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("dpkg --audit: %v\n%s", err, out)
	}
	if out, err := inTarget(t, root, "apt-get", "check"); err != nil {
		t.Errorf("apt-get check: %v\n%s", err, out)
	}
}

func installed(t *testing.T, root string) []string {
	t.Helper()
	out, err := inTarget(t, root, "dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Version} ${db:Status-Abbrev}\n")
	if err != nil {
		t.Fatalf("dpkg-query: %v\n%s", err, out)
	}
	l := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(l)
	return l
}

// TestNativeMatchesDebootstrap: the same suite and variant, bootstrapped
// natively and by debootstrap, give the same packages at the same
// versions, and both pass dpkg --audit and apt-get check.
func TestNativeMatchesDebootstrap(t *testing.T) {
	mirror := needArchive(t)
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("debootstrap is not installed")
	}
	ctx := context.Background()
	nat, deb := newTarget(t), newTarget(t)
	log, term := testLog(t)
	n := &Native{CacheDir: cacheDir(t)}
	r := Request{Suite: "trixie", Arch: "amd64", Mirror: mirror, Components: []string{"main"}, Variant: "minbase", Target: nat}
	start := time.Now()
	if err := n.Bootstrap(ctx, log, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("native: %s\n%s", time.Since(start).Round(time.Millisecond), term.String())
	mountsLeft(t, nat)
	r.Target = deb
	start = time.Now()
	if err := (Debootstrap{}).Bootstrap(ctx, log, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap: %s", time.Since(start).Round(time.Millisecond))
	a, b := installed(t, nat), installed(t, deb)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("installed packages differ:\n%s", diff(a, b))
	}
	if len(a) < 50 {
		t.Errorf("only %d packages installed", len(a))
	}
	checkSystem(t, nat)
	checkSystem(t, deb)
	for _, f := range []string{"etc/apt/sources.list", "etc/fstab", "etc/hostname", "dev/null", "bin/sh", "lib64", "var/lib/dpkg/cmethopt"} {
		if _, err := os.Lstat(filepath.Join(nat, f)); err != nil {
			t.Errorf("native: %v", err)
		}
	}
	if src, _ := os.ReadFile(filepath.Join(nat, "etc/apt/sources.list")); string(src) != "deb "+mirror+" trixie main\n" {
		t.Errorf("sources.list: %q", src)
	}
	for _, f := range []string{"usr/sbin/policy-rc.d", "var/lib/dpkg.vmdeb-disk"} {
		if _, err := os.Lstat(filepath.Join(nat, f)); err == nil {
			t.Errorf("native: build-time file %s left behind", f)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(nat, "var/cache/apt/archives")); len(ents) > 2 {
		t.Errorf("native: packages left in the image's apt cache: %d entries", len(ents))
	}

	debootstrapServesChroot(t, log, deb)
}

// debootstrapServesChroot: a build's debootstrap runs the chroot's dpkg
// as the native backend does, on a tmpfs without syncs, and puts the
// database back on disk, with what was installed meanwhile.
func debootstrapServesChroot(t *testing.T, log *buildlog.Log, root string) {
	ctx := context.Background()
	b := Debootstrap{}.ForBuild()
	c, err := chroot.Setup(root, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := b.ShareCache(ctx, c); err != nil {
		t.Fatal(err)
	}
	if m, _ := chroot.MountsUnder(filepath.Join(root, "var/lib/dpkg")); len(m) != 1 {
		t.Errorf("debootstrap: dpkg's database is not on its own tmpfs in the chroot: %v", m)
	}
	if _, err := os.Stat(filepath.Join(root, unsafeIOConf)); err != nil {
		t.Errorf("debootstrap: no unsafe-io in the chroot: %v", err)
	}
	for _, args := range [][]string{{"-q", "update"}, {"-y", "-q", "--no-install-recommends", "install", "hello"}} {
		if err := c.Run(ctx, buildlog.Cmd{Name: "apt-get", Args: args}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.UnshareCache(); err != nil {
		t.Fatal(err)
	}
	if err := b.UnshareCache(); err != nil {
		t.Errorf("a second UnshareCache: %v", err)
	}
	if m, _ := chroot.MountsUnder(filepath.Join(root, "var/lib/dpkg")); len(m) != 0 {
		t.Errorf("debootstrap: dpkg's database is still mounted: %v", m)
	}
	for _, f := range []string{unsafeIOConf, "var/lib/dpkg.vmdeb-disk"} {
		if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
			t.Errorf("debootstrap: %s left after UnshareCache", f)
		}
	}
	if out, err := inTarget(t, root, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "hello"); err != nil || strings.TrimSpace(out) != "ii" {
		t.Errorf("debootstrap: hello, installed in the chroot, is not in the database on disk: %q %v", out, err)
	}
	checkSystem(t, root)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	mountsLeft(t, root)
}

func diff(a, b []string) string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range l {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, x := range a {
		if !mb[x] {
			out = append(out, "native only:      "+x)
		}
	}
	for _, x := range b {
		if !ma[x] {
			out = append(out, "debootstrap only: "+x)
		}
	}
	return strings.Join(out, "\n")
}

// TestNativeWithoutHostTools runs the bootstrapper with a PATH that holds
// neither debootstrap, apt, dpkg nor chroot: it needs only the kernel.
func TestNativeWithoutHostTools(t *testing.T) {
	mirror := needArchive(t)
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	for _, tool := range []string{"debootstrap", "dpkg", "dpkg-deb", "apt-get", "chroot", "tar", "ar", "xz", "gpgv"} {
		if p, err := exec.LookPath(tool); err == nil {
			t.Fatalf("%s still found at %s", tool, p)
		}
	}
	root := newTarget(t)
	log, term := testLog(t)
	n := &Native{CacheDir: cacheDir(t)}
	err := n.Bootstrap(context.Background(), log, Request{Suite: "trixie", Arch: "amd64", Mirror: mirror, Components: []string{"main"}, Variant: "minbase", Target: root})
	t.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	if err != nil {
		t.Fatalf("%v\n%s", err, term.String())
	}
	mountsLeft(t, root)
	checkSystem(t, root)
}

// TestShareCache: after a bootstrap the chroot's apt takes cached packages
// from the shared cache, what it downloads lands in it, and apt-get clean
// inside does not touch it.
func TestShareCache(t *testing.T) {
	mirror := needArchive(t)
	root := newTarget(t)
	log, _ := testLog(t)
	ctx := context.Background()
	n := &Native{CacheDir: cacheDir(t)}
	if err := n.Bootstrap(ctx, log, Request{Suite: "trixie", Arch: "amd64", Mirror: mirror, Components: []string{"main"}, Variant: "minbase", Target: root}); err != nil {
		t.Fatal(err)
	}
	c, err := chroot.Setup(root, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := n.ShareCache(ctx, c); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	run := func(args ...string) {
		t.Helper()
		out.Reset()
		if err := c.Run(ctx, buildlog.Cmd{Name: "apt-get", Args: args, Stdout: &out}); err != nil {
			t.Fatal(err)
		}
	}
	run("-q", "update")
	// The verified index was handed over: apt fetched no Packages file.
	if strings.Contains(out.String(), "amd64 Packages") {
		t.Errorf("apt-get update fetched the index again:\n%s", out.String())
	}
	// dash is in the cache (the bootstrap fetched it): nothing to fetch.
	run("-y", "-q", "--reinstall", "--download-only", "install", "dash")
	if !strings.Contains(out.String(), "Need to get 0 B") {
		t.Errorf("apt did not take dash from the cache:\n%s", out.String())
	}
	// While shared, dpkg works on a tmpfs without syncs.
	if m, _ := chroot.MountsUnder(filepath.Join(root, "var/lib/dpkg")); len(m) != 1 {
		t.Errorf("dpkg's database is not on its own tmpfs while shared: %v", m)
	}
	if _, err := os.Stat(filepath.Join(root, unsafeIOConf)); err != nil {
		t.Errorf("no unsafe-io while shared: %v", err)
	}
	run("-y", "-q", "--no-install-recommends", "install", "hello")
	hello := n.archive.Index.Candidate("hello")
	if hello == nil {
		t.Fatal("no hello in the archive")
	}
	if err := n.UnshareCache(); err != nil {
		t.Fatal(err)
	}
	// Back on disk, with what was installed meanwhile, and as the image
	// must have it.
	if m, _ := chroot.MountsUnder(filepath.Join(root, "var/lib/dpkg")); len(m) != 0 {
		t.Errorf("dpkg's database is still mounted: %v", m)
	}
	for _, f := range []string{unsafeIOConf, "var/lib/dpkg.vmdeb-disk"} {
		if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
			t.Errorf("%s left after UnshareCache", f)
		}
	}
	if out, err := inTarget(t, root, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "hello"); err != nil || strings.TrimSpace(out) != "ii" {
		t.Errorf("hello, installed while shared, is not in the database on disk: %q %v", out, err)
	}
	checkSystem(t, root)
	run("-q", "clean")
	if err := archive.Verify(n.cache.Path(hello.SHA256), hello.Filename, archive.FileInfo{Size: hello.Size, SHA256: hello.SHA256}); err != nil {
		t.Errorf("apt's download was not kept in the cache: %v", err)
	}
	dash := n.archive.Index.Candidate("dash")
	if _, err := os.Stat(n.cache.Path(dash.SHA256)); err != nil {
		t.Errorf("apt-get clean reached the shared cache: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	mountsLeft(t, root)
}

// TestNativeUnsatisfiable: an include that the archive cannot satisfy
// fails before anything is installed, naming it.
func TestNativeUnsatisfiable(t *testing.T) {
	mirror := needArchive(t)
	root := newTarget(t)
	log, _ := testLog(t)
	n := &Native{CacheDir: cacheDir(t)}
	err := n.Bootstrap(context.Background(), log, Request{Suite: "trixie", Arch: "amd64", Mirror: mirror, Components: []string{"main"},
		Variant: "minbase", Include: []string{"no-such-package-vmdeb"}, Target: root})
	if err == nil || !strings.Contains(err.Error(), "no-such-package-vmdeb") {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("the target was touched: %d entries", len(ents))
	}
}

// TestBenchBootstrap is bench/bootstrap.sh's way to run the native
// bootstrapper alone: it runs only when VMDEB_BENCH_TARGET is set.
func TestBenchBootstrap(t *testing.T) {
	dir := os.Getenv("VMDEB_BENCH_TARGET")
	if dir == "" {
		t.Skip("run by bench/bootstrap.sh")
	}
	log := buildlog.New(nil, "", os.Stderr)
	n := &Native{CacheDir: os.Getenv("VMDEB_BENCH_CACHE")}
	arch := os.Getenv("VMDEB_BENCH_ARCH")
	if arch == "" {
		arch = "amd64"
	}
	r := Request{Suite: os.Getenv("VMDEB_BENCH_SUITE"), Arch: arch, Mirror: os.Getenv("VMDEB_BENCH_MIRROR"),
		Components: []string{"main"}, Variant: "minbase", Target: dir}
	// A foreign architecture whose binfmt handler lacks flag F needs the
	// emulator inside the target, at the path the kernel runs.
	r.Interpreter = os.Getenv("VMDEB_BENCH_INTERPRETER")
	r.InterpreterAt = r.Interpreter
	if err := n.Bootstrap(context.Background(), log, r); err != nil {
		t.Fatal(err)
	}
}

func TestMergeUsr(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/bin", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "sbin"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "bin/sh"), []byte("sh"), 0o755)
	os.WriteFile(filepath.Join(root, "lib/x86_64-linux-gnu/libc.so.6"), []byte("libc"), 0o644)
	os.WriteFile(filepath.Join(root, "usr/lib/x86_64-linux-gnu/libm.so.6"), []byte("libm"), 0o644)
	os.Symlink("usr/lib64", filepath.Join(root, "lib64"))
	if err := mergeUsr(root, "trixie", "minbase"); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"} {
		if l, err := os.Readlink(filepath.Join(root, link)); err != nil || l != to {
			t.Errorf("/%s -> %q (%v), want %s", link, l, err, to)
		}
	}
	for _, f := range []string{"usr/bin/sh", "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libm.so.6"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Error(err)
		}
	}
	// A bookworm buildd chroot stays unmerged, and says so.
	root = t.TempDir()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	if err := mergeUsr(root, "bookworm", "buildd"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(root, "bin")); fi == nil || !fi.IsDir() {
		t.Error("bookworm buildd: /bin was merged")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/unsupported-skip-usrmerge-conversion")); err != nil {
		t.Error(err)
	}
}

func TestNativeRegistered(t *testing.T) {
	b, err := New("native")
	if err != nil {
		t.Fatal(err)
	}
	n, ok := b.(*Native)
	if !ok || n.Name() != "native" || len(n.Tools()) != 0 || n.CachePath() != archive.DefaultCacheDir {
		t.Errorf("%T %+v", b, b)
	}
	if err := n.ShareCache(context.Background(), nil); err == nil {
		t.Error("ShareCache without a bootstrap did not fail")
	}
	if err := n.UnshareCache(); err != nil {
		t.Error(err)
	}
}

func TestAptListName(t *testing.T) {
	for _, tc := range []struct{ mirror, rel, want string }{
		{"http://archive.invalid/debian", "dists/trixie/InRelease", "archive.invalid_debian_dists_trixie_InRelease"},
		{"http://archive.invalid/debian/", "dists/trixie/main/binary-amd64/Packages", "archive.invalid_debian_dists_trixie_main_binary-amd64_Packages"},
		{"https://user:secret@archive.invalid:3142/deb_ian", "dists/sid/InRelease", "archive.invalid:3142_deb%5fian_dists_sid_InRelease"},
	} {
		u, err := url.Parse(tc.mirror)
		if err != nil {
			t.Fatal(err)
		}
		if got := aptListName(u, tc.rel); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.mirror, tc.rel, got, tc.want)
		}
	}
}
