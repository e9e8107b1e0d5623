package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The neighbour's program: this test binary, started as the unprivileged
// test user with attackerEnv set, runs attacker() instead of the tests.
const attackerEnv = "VMDEB_TEST_ATTACKER"

func init() {
	if os.Getenv(attackerEnv) == "1" {
		attacker(os.Args[1:])
		os.Exit(0)
	}
}

// attacker RACEDIR PAIRS TARGET NAME... runs until killed: in RACEDIR it
// swaps dNN with lNN (a link to a victim directory) for NN < PAIRS with
// renameat2 RENAME_EXCHANGE, and it puts a link to TARGET at every NAME
// that does not exist (again whenever it was removed).
func attacker(args []string) {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "attacker: RACEDIR PAIRS TARGET NAME...")
		os.Exit(2)
	}
	pairs, _ := strconv.Atoi(args[1])
	for {
		for i := 0; i < pairs; i++ {
			unix.Renameat2(unix.AT_FDCWD, filepath.Join(args[0], fmt.Sprintf("d%02d", i)),
				unix.AT_FDCWD, filepath.Join(args[0], fmt.Sprintf("l%02d", i)), unix.RENAME_EXCHANGE)
		}
		for _, n := range args[3:] {
			if _, err := os.Lstat(n); err != nil {
				os.Symlink(args[2], n)
			}
		}
		swapTempDirs()
	}
}

func mustReadDir(d string) []os.DirEntry {
	e, _ := os.ReadDir(d)
	return e
}

// swapTempDirs: with VMDEB_TEST_SWAP=OUTDIR:VICTIMDIR, every directory of
// root's in OUTDIR (vmdeb's temporary directories) is renamed away and
// replaced by a link to VICTIMDIR.
func swapTempDirs() {
	out, victim, ok := strings.Cut(os.Getenv("VMDEB_TEST_SWAP"), ":")
	if !ok {
		return
	}
	ents, _ := os.ReadDir(out)
	for i, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			continue
		}
		stolen := filepath.Join(out, fmt.Sprintf("stolen-%d-%d", time.Now().UnixNano(), i))
		if os.Rename(filepath.Join(out, e.Name()), stolen) == nil {
			os.Symlink(victim, filepath.Join(out, e.Name()))
		}
	}
}

// asUser runs a shell script as the test user and fails the test if it fails.
func asUser(t *testing.T, uid, gid int, script string) {
	t.Helper()
	out, err := userCmd(context.Background(), uid, gid, "/bin/sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("as %s: %s: %v\n%s", testUser, script, err, out)
	}
}

// victims makes files of root's that nothing may change: a directory of
// 300 files under /var/tmp (the file system of the work directories: a
// removal that stays on one file system still reaches it) and one file.
func victims(t *testing.T) (dir, file string, intact func() []string) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "hostile-victim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for i := 0; i < 300; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("victim %d\n", i)), 0o644)
	}
	file = filepath.Join(t.TempDir(), "victim.conf")
	os.WriteFile(file, []byte("root's configuration\n"), 0o644)
	return dir, file, func() []string {
		var bad []string
		for i := 0; i < 300; i++ {
			p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
			if b, err := os.ReadFile(p); err != nil || string(b) != fmt.Sprintf("victim %d\n", i) {
				bad = append(bad, p)
			}
		}
		if b, err := os.ReadFile(file); err != nil || string(b) != "root's configuration\n" {
			bad = append(bad, file)
		}
		return bad
	}
}

// treeSum is a digest of a directory tree: names, types, modes, owners,
// link targets and contents.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%s %v %d:%d\n", p, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			fmt.Fprintln(h, l)
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// stickyDir is a directory like /var/tmp: root's, mode 1777.
func stickyDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "hostile-work-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestHostileNeighbours: root builds while an unprivileged user of the
// same machine attacks.
//   - Work directories (issue item 1): in the 1777 work parent the user
//     planted vmdeb-* directories with a free .vmdeb-lock: one to be
//     swept, and one whose subdirectories a program of theirs swaps with
//     links to a victim directory while the build runs; the build must
//     neither remove the user's directory nor delete a victim file. The
//     name of the builder's private directory planted by the user makes
//     the build fail, naming it.
//   - Temporary names in the output directory (item 4), which belongs to
//     the user: links to a victim file at every predictable temporary
//     name, planted again whenever removed; the victim stays byte for
//     byte, and every final name is a regular file.
//   - A second build of the same outputs while the first runs (item 8)
//     fails at once, naming the first one's PID; the first succeeds with
//     a whole log.
func TestHostileNeighbours(t *testing.T) {
	uid, gid, _ := unprivileged(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	vdir, vfile, intact := victims(t)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(vdir, old, old)
	vdirTime := old
	dir := t.TempDir()
	cfg := writeConfig(t, dir, strings.Replace(small, "kernel: none\n", "kernel: none\nvariant: minbase\nbootstrap: native\n", 1),
		map[string]string{"hook.sh": "#!/bin/sh\nexit 0\n"})

	t.Run("planted-private-dir", func(t *testing.T) {
		// The builder's private directory in the work parent is vmdeb-UID.
		for _, plant := range []string{
			"mkdir vmdeb-0 && touch vmdeb-0/.vmdeb-lock vmdeb-0/mine && chmod 700 vmdeb-0",
			"ln -s " + vdir + " vmdeb-0",
		} {
			work, out := stickyDir(t), userDir(t, uid, gid)
			asUser(t, uid, gid, "cd "+work+" && "+plant)
			before := treeSum(t, work)
			r := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg)
			if r.code == 0 || !strings.Contains(r.stderr, filepath.Join(work, "vmdeb-0")) {
				t.Errorf("%s: the build did not refuse the user's %s (status %d):\n%s", plant, filepath.Join(work, "vmdeb-0"), r.code, r.stderr)
			}
			if after := treeSum(t, work); after != before {
				t.Errorf("%s: the build changed the user's files in %s", plant, work)
			}
			if bad := intact(); len(bad) > 0 {
				t.Fatalf("%s: victim files changed or deleted: %d, e.g. %s", plant, len(bad), bad[0])
			}
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				if e.Name() != "small.build.log" { // a failed build keeps its log
					t.Errorf("the refused build left %s", filepath.Join(out, e.Name()))
				}
			}
		}
	})

	work, out := stickyDir(t), userDir(t, uid, gid)
	race := filepath.Join(work, "vmdeb-planted-race")
	static := filepath.Join(work, "vmdeb-planted")
	asUser(t, uid, gid, fmt.Sprintf(`mkdir %[1]s %[2]s
touch %[1]s/.vmdeb-lock %[2]s/.vmdeb-lock
echo mine > %[1]s/notes; mkdir %[1]s/sub; echo mine > %[1]s/sub/more
for i in 00 01 02 03 04 05 06 07; do
  mkdir %[2]s/d$i; (cd %[2]s/d$i && seq -f 'f%%03g' 0 299 | xargs touch); ln -s %[3]s %[2]s/l$i
done
ln -s %[3]s %[4]s/vmdeb-link`, static, race, vdir, work))
	staticSum := treeSum(t, static)

	// The neighbour's program: this test binary, run as the user.
	attackBin := filepath.Join(userDir(t, uid, gid), "attacker")
	if b, err := exec.Command("cp", os.Args[0], attackBin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	os.Chmod(attackBin, 0o755)
	var plants []string
	for _, n := range []string{".small.tar.gz.vmdeb-tmp", ".small.packages.vmdeb-tmp", ".SHA256SUMS.vmdeb-tmp", ".small.build.log.vmdeb-tmp",
		".small.tar.gz.vmdeb-tmp.tar.gz", ".small.tar.gz.vmdeb-tmp-0"} {
		plants = append(plants, filepath.Join(out, n))
	}
	atk := userCmd(ctx, uid, gid, attackBin, append([]string{race, "8", vfile}, plants...)...)
	atk.Env = append(atk.Env, attackerEnv+"=1", "VMDEB_TEST_SWAP="+out+":"+vdir)
	if err := atk.Start(); err != nil {
		t.Fatal(err)
	}
	stopAttack := func() {
		if atk.Process != nil {
			atk.Process.Kill()
			atk.Wait()
			atk.Process = nil
		}
	}
	defer stopAttack()
	time.Sleep(time.Second) // its links are in place

	first := startAs(t, ctx, 0, 0, vmdeb, "build", "--outdir", out, "--workdir", work, cfg)
	if !first.waitFor("==> bootstrap", 10*time.Minute) {
		first.cmd.Process.Kill()
		first.cmd.Wait()
		t.Fatalf("the first build did not start:\n%s", first.output())
	}
	// The same build again while the first runs.
	start := time.Now()
	second := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg)
	took := time.Since(start)
	pid := strconv.Itoa(first.cmd.Process.Pid)
	if second.code == 0 || !strings.Contains(second.stderr, "PID "+pid) || !strings.Contains(second.stderr, filepath.Join(out, "small.tar.gz")) || took > 2*time.Minute {
		t.Errorf("a second build of the same outputs: want a failure at once naming the output and the first build's PID %s; got status %d after %s:\n%s",
			pid, second.code, took.Round(time.Second), second.stderr)
	}
	err := first.cmd.Wait()
	stopAttack()
	if err != nil {
		t.Fatalf("the first build failed (%v):\n%s", err, first.output())
	}

	if bad := intact(); len(bad) > 0 {
		t.Errorf("victim files changed or deleted: %d, e.g. %s", len(bad), bad[0])
	}
	// A file made in it and renamed out again leaves only the directory's
	// modification time behind.
	if fi, _ := os.Stat(vdir); len(mustReadDir(vdir)) != 300 || !fi.ModTime().Equal(vdirTime) {
		t.Errorf("the victim directory was written in (%d entries, modified %s): the build wrote through a swapped temporary directory", len(mustReadDir(vdir)), fi.ModTime())
	}
	if sum := treeSum(t, static); sum != staticSum {
		t.Errorf("the build removed or changed the user's own directory %s", static)
	}
	for _, f := range []string{"small.tar.gz", "small.packages", "small.spdx.json", "small.cdx.json", "SHA256SUMS", "small.build.log"} {
		fi, err := os.Lstat(filepath.Join(out, f))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: want a regular file, got %v %v", f, fi, err)
		}
	}
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	tgz, _ := os.ReadFile(filepath.Join(out, "small.tar.gz"))
	if want := fmt.Sprintf("%x  small.tar.gz\n", sha256.Sum256(tgz)); !bytes.Contains(sums, []byte(want)) {
		t.Errorf("SHA256SUMS does not have %q:\n%s", want, sums)
	}
	log, _ := os.ReadFile(filepath.Join(out, "small.build.log"))
	if bytes.IndexByte(log, 0) >= 0 || !bytes.Contains(log, []byte("==> bootstrap")) || !bytes.Contains(log, []byte("==> report")) {
		t.Errorf("the first build's log is not whole (truncated by the second?):\n%s", tail(string(log), 20))
	}
	assertNoMountsOrProcesses(t, work)
	// Nothing of the build is left in the work parent: only the user's.
	ents, _ := os.ReadDir(work)
	for _, e := range ents {
		if p := filepath.Join(work, e.Name()); p != race && p != static && e.Name() != "vmdeb-link" {
			t.Errorf("left in the work parent: %s", p)
		}
	}
}

// TestHostileOutputNames: `vmdeb check` and `vmdeb build` refuse final
// names that stand as links, FIFOs or devices (issue item 4), and outputs
// that collide with each other or with what the build reads (item 7),
// before anything is written.
func TestHostileOutputNames(t *testing.T) {
	uid, gid, _ := unprivileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	_, vfile, intact := victims(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, small, map[string]string{"hook.sh": "#!/bin/sh\nexit 0\n"})

	t.Run("planted-final-names", func(t *testing.T) {
		out := userDir(t, uid, gid)
		for _, c := range []struct{ name, plant string }{
			{"small.tar.gz", "ln -s " + vfile + " small.tar.gz"},
			{"small.packages", "ln -s " + vfile + " small.packages"},
			{"SHA256SUMS", "ln -s " + vfile + " SHA256SUMS"},
			{"small.build.log", "ln -s " + vfile + " small.build.log"},
			{"small.tar.gz", "mkfifo small.tar.gz"},
			{"small.tar.gz", "mkdir small.tar.gz"},
		} {
			asUser(t, uid, gid, "cd "+out+" && "+c.plant)
			p := filepath.Join(out, c.name)
			r := run(t, ctx, "check", "--offline", "--outdir", out, cfg)
			if r.code != 2 || !strings.Contains(r.stderr, p) {
				t.Errorf("%s: check: want status 2 naming %s, got %d:\n%s", c.plant, p, r.code, r.stderr)
			}
			os.RemoveAll(p)
		}
		// A device node (only root makes one; the test stands in).
		p := filepath.Join(out, "small.tar.gz")
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if r := run(t, ctx, "check", "--offline", "--outdir", out, cfg); r.code != 2 || !strings.Contains(r.stderr, p) {
			t.Errorf("a device at the output's name: check: want status 2 naming %s, got %d:\n%s", p, r.code, r.stderr)
		}
		os.Remove(p)

		// All the links at once: the build is refused before it writes.
		asUser(t, uid, gid, "cd "+out+" && for n in small.tar.gz small.packages SHA256SUMS small.build.log; do ln -s "+vfile+" $n; done")
		before := treeSum(t, out)
		work := t.TempDir()
		r := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg)
		if r.code == 0 {
			t.Errorf("the build wrote over planted links")
		}
		for _, n := range []string{"small.tar.gz", "small.build.log"} {
			if !strings.Contains(r.stderr, filepath.Join(out, n)) {
				t.Errorf("the build's error does not name %s:\n%s", filepath.Join(out, n), r.stderr)
			}
		}
		if treeSum(t, out) != before {
			t.Errorf("the refused build changed the output directory %s", out)
		}
		if bad := intact(); len(bad) > 0 {
			t.Errorf("the victim file changed: %v", bad)
		}
		assertClean(t, work)
	})

	t.Run("collisions", func(t *testing.T) {
		head := "name: small\nsuite: trixie\narchitecture: amd64\nkernel: none\ncustomise: hook.sh\noutputs:\n"
		for _, c := range []struct {
			name    string
			outputs string
			flags   []string // {DIR} is the config's directory
			want    []string // in the error, besides the config's name
		}{
			{"the config file", "  - {type: tarball, path: image.yaml}\n", nil, []string{"image.yaml", "config"}},
			{"the hook", "  - {type: tarball, path: hook.sh}\n", nil, []string{"hook.sh", "customise"}},
			{"SHA256SUMS", "  - {type: tarball, path: a.tar.gz}\n  - {type: tarball, path: SHA256SUMS}\n", nil, []string{"outputs[1]", "SHA256SUMS"}},
			{"a manifest", "  - {type: tarball, path: x.tar.gz}\n  - {type: tarball, path: x.packages}\n", nil, []string{"outputs[0]", "outputs[1]", "x.packages"}},
			{"the log", "  - {type: tarball, path: small.build.log}\n", nil, []string{"small.build.log", "log"}},
			{"--log on an output", "  - {type: tarball, path: a.tar}\n", []string{"--log", "{DIR}/a.tar"}, []string{"a.tar", "log"}},
			{"--log on the config", "  - {type: tarball, path: a.tar}\n", []string{"--log", "{DIR}/image.yaml"}, []string{"image.yaml", "log"}},
			// The config's validation finds these (naming the second and the path).
			{"//", "  - {type: tarball, path: out//a.tar}\n  - {type: tarball, path: out/a.tar}\n", nil, []string{"outputs[1]", "out/a.tar"}},
			{"..", "  - {type: tarball, path: out/sub/../a.tar}\n  - {type: tarball, path: out/a.tar}\n", nil, []string{"outputs[1]", "out/a.tar"}},
			{"a linked directory", "  - {type: tarball, path: lnk/a.tar}\n  - {type: tarball, path: out/a.tar}\n", nil, []string{"outputs[0]", "outputs[1]"}},
			{"--outdir", "  - {type: tarball, path: a/x.tar}\n  - {type: tarball, path: b/x.tar}\n", []string{"--outdir", "{DIR}/o"}, []string{"outputs[0]", "outputs[1]"}},
			{"a tarball and a directory named as its manifest", "  - {type: tarball, path: x.tar}\n  - {type: directory, path: x.packages}\n", nil, []string{"outputs[0]", "outputs[1]", "x.packages"}},
		} {
			d := t.TempDir()
			os.MkdirAll(filepath.Join(d, "out/sub"), 0o755)
			os.Symlink("out", filepath.Join(d, "lnk"))
			cfg := writeConfig(t, d, head+c.outputs, map[string]string{"hook.sh": "#!/bin/sh\n"})
			args := []string{"check", "--offline"}
			for _, f := range c.flags {
				args = append(args, strings.ReplaceAll(f, "{DIR}", d))
			}
			r := run(t, ctx, append(args, cfg)...)
			if r.code != 2 || !strings.Contains(r.stderr, cfg) {
				t.Errorf("%s: check: want status 2 naming %s, got %d:\n%s", c.name, cfg, r.code, r.stderr)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(w)) {
					t.Errorf("%s: check's error does not name %q:\n%s", c.name, w, r.stderr)
				}
			}
			if c.name == "--outdir" {
				// A failed build publishes nothing.
				work := t.TempDir()
				b := run(t, ctx, "build", "--outdir", filepath.Join(d, "o"), "--workdir", work, cfg)
				if b.code != 2 {
					t.Errorf("build with colliding outputs: status %d, want 2", b.code)
				}
				if ents, _ := os.ReadDir(filepath.Join(d, "o")); len(ents) > 0 {
					t.Errorf("the refused build created %d files in its output directory", len(ents))
				}
				assertClean(t, work)
			}
		}
		// No collision: two outputs in one directory share SHA256SUMS.
		d := t.TempDir()
		cfg := writeConfig(t, d, head+"  - {type: tarball, path: a.tar.gz}\n  - {type: tarball, path: b.tar}\n", map[string]string{"hook.sh": "#!/bin/sh\n"})
		if r := run(t, ctx, "check", "--offline", cfg); r.code != 0 {
			t.Errorf("two tarballs in one directory refused:\n%s", r.stderr)
		}
	})
}

// rootPropagation is the propagation of the mount at / in a mountinfo
// file ("shared:N", "master:N" or "" for private).
func rootPropagation(mountinfo string) string {
	p := ""
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) < 7 || f[4] != "/" {
			continue
		}
		p = ""
		for _, o := range f[6:] {
			if o == "-" {
				break
			}
			p += o + " "
		}
	}
	return strings.TrimSpace(p)
}

// TestHostileNamespaceMarker (issue item 3): the build's own environment
// markers set by the caller must not turn off its namespaces. vmdeb runs
// inside a stand-in for the host (new mount and PID namespaces, / made
// shared, a sleeping process beside it) with VMDEB_IN_NAMESPACE=1 (and
// VMDEB_USERNS=1), and a build that fails once it started: no process
// beside it may be signalled and / must stay shared. The stand-in keeps
// the real host safe from a vmdeb that trusts the markers, which kills
// every process it can signal.
func TestHostileNamespaceMarker(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, small, map[string]string{"hook.sh": "#!/bin/sh\nexit 0\n"})
	// A debootstrap that fails at once: the build fails right after its
	// start, inside its namespaces, where it tears down and kills what is
	// left. (A bad --workdir is refused before the namespaces, in the
	// preflight, so it proves nothing here.)
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "debootstrap"), []byte("#!/bin/sh\necho planted debootstrap failing >&2\nexit 1\n"), 0o755)
	hostBefore, _ := os.ReadFile("/proc/self/mountinfo")
	const script = `d=$1; shift
mount --make-shared /
cat /proc/self/mountinfo > "$d/before"
sleep 1000 & s=$!
"$@"
echo "vmdeb exit status $?"
cat /proc/self/mountinfo > "$d/after"
if kill -0 $s; then echo SLEEP=alive; kill $s; else echo SLEEP=gone; fi
`
	for i, env := range [][]string{{"VMDEB_IN_NAMESPACE=1"}, {"VMDEB_IN_NAMESPACE=1", "VMDEB_USERNS=1"}} {
		d := filepath.Join(dir, strconv.Itoa(i))
		os.Mkdir(d, 0o755)
		cmd := exec.CommandContext(ctx, "sh", "-c", script, "sh", d,
			vmdeb, "build", "--workdir", t.TempDir(), "--outdir", filepath.Join(dir, "out"), cfg)
		cmd.Env = append(os.Environ(), append(env, "PATH="+bin+":"+os.Getenv("PATH"))...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
		r := runCmd(t, cmd, strings.Join(env, " ")+" vmdeb build (in a stand-in for the host)")
		if !strings.Contains(r.stdout, "SLEEP=alive") {
			t.Errorf("%s: a process beside vmdeb was killed (status %d):\n%s\n%s", env, r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "vmdeb exit status 1") || !strings.Contains(r.stderr, "stage bootstrap failed") {
			t.Errorf("%s: want the build to fail with status 1 (stage bootstrap), got:\n%s\n%s", env, r.stdout, r.stderr)
		}
		before, _ := os.ReadFile(filepath.Join(d, "before"))
		after, _ := os.ReadFile(filepath.Join(d, "after"))
		pb, pa := rootPropagation(string(before)), rootPropagation(string(after))
		if !strings.HasPrefix(pb, "shared:") || pa != pb {
			t.Errorf("%s: / was %q before the build and is %q after: vmdeb changed the mounts of the namespace it was started in", env, pb, pa)
		}
	}
	hostAfter, _ := os.ReadFile("/proc/self/mountinfo")
	if a, b := rootPropagation(string(hostBefore)), rootPropagation(string(hostAfter)); a != b {
		t.Errorf("the host's / was %q and is %q", a, b)
	}
}
