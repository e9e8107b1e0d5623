package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmdeb/internal/report"
	"vmdeb/internal/squashfs"
)

const reproConfig = `name: repro
suite: trixie
architecture: amd64
variant: minbase
users:
  - {name: user, password: live, sudo: true}
hostname: repro
customise: hook.sh
live:
  compression: zstd
outputs:
  - {type: disk, path: repro.qcow2, format: qcow2, size: 2G}
  - {type: live-iso, path: repro.iso}
  - {type: tarball, path: repro.tar.gz}
  - {type: squashfs, path: repro.squashfs}
`

// reproHook takes a few seconds, so that a signal can land while it runs.
const reproHook = "#!/bin/sh\nset -e\necho made by the hook > \"$1/etc/repro-hook\"\nsleep 3\n"

// TestKillsAndReproducible: with SOURCE_DATE_EPOCH, the same config built
// twice from nothing gives the same bytes in every output, and so does a
// build that starts from the stage cache the first one filled. In between,
// builds of it are killed with SIGINT, SIGTERM and SIGKILL in each stage
// (bootstrap, apt, the hook, mksquashfs, xorriso, the disk image): each
// leaves no mount, loop device, process or output under its final name,
// and the host's /dev, /proc and /sys intact; the build from the cache
// that follows them all succeeds.
func TestKillsAndReproducible(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	dir, work, cache := t.TempDir(), t.TempDir(), t.TempDir()
	cfg := writeConfig(t, dir, reproConfig, map[string]string{"hook.sh": reproHook})
	build := func(out string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, vmdeb, append(append([]string{"build", "--outdir", out, "--workdir", work}, args...), cfg)...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		t.Logf("vmdeb build %v -> %v\n%s%s", args, err, tail(so.String(), 20), tail(se.String(), 20))
		if err != nil {
			t.Fatalf("build failed: %v", err)
		}
		assertClean(t, work)
	}
	first, second, third := t.TempDir(), t.TempDir(), t.TempDir()
	build(first, "--stage-cache", cache)
	t.Run("kills", func(t *testing.T) { killMatrix(t, ctx, dir, cfg, cache, work, third) })
	// The second build, with no stage cache, installs the same packages:
	// the machine's package cache, which the first filled, serves them all.
	secondReport := filepath.Join(dir, "second.json")
	build(second, "--no-cache", "--report", secondReport)
	var rep report.Build
	if data, err := os.ReadFile(secondReport); err != nil || json.Unmarshal(data, &rep) != nil {
		t.Errorf("the second build's report: %v", err)
	} else if p := rep.Cache.Packages; p == nil || p.Reused == 0 || p.Downloaded != 0 {
		t.Errorf("the second build's packages, from the package cache: %+v; want all reused, none downloaded", p)
	}
	// In the directory the killed builds wrote to: their leftovers go.
	build(third, "--stage-cache", cache)
	if tmps, _ := filepath.Glob(filepath.Join(third, ".*vmdeb-tmp*")); len(tmps) > 0 {
		t.Errorf("temporary outputs of killed builds remain: %v", tmps)
	}

	outputs := []string{"repro.iso", "repro.squashfs", "repro.tar.gz", "repro.qcow2", "repro.packages", "repro.spdx.json", "repro.cdx.json", "SHA256SUMS"}
	for _, other := range []struct{ name, dir string }{{"a second full build", second}, {"a build from the stage cache", third}} {
		for _, o := range outputs {
			a, b := filepath.Join(first, o), filepath.Join(other.dir, o)
			if fileSum(t, a) == fileSum(t, b) {
				continue
			}
			t.Errorf("%s differs in %s: %s", o, other.name, firstDifference(t, a, b))
		}
	}
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// firstDifference says where two outputs differ: for images with a file
// system inside, the first file whose content, mode, owner or date
// differs; otherwise the first differing byte.
func firstDifference(t *testing.T, a, b string) string {
	t.Helper()
	ext := filepath.Ext(a)
	if strings.HasSuffix(a, ".tar.gz") {
		ext = ".tar.gz"
	}
	switch ext {
	case ".iso":
		sa, sb := imageSquashfs(t, a), imageSquashfs(t, b)
		if fileSum(t, sa) != fileSum(t, sb) {
			return "its squashfs: " + firstDifference(t, sa, sb)
		}
		return "outside the squashfs (ISO metadata or boot images): " + cmpBytes(a, b)
	case ".squashfs":
		da, db := t.TempDir(), t.TempDir()
		for _, p := range [][2]string{{a, da}, {b, db}} {
			if o, err := exec.Command("unsquashfs", "-no-progress", "-f", "-d", p[1], p[0]).CombinedOutput(); err != nil {
				return fmt.Sprintf("unsquashfs: %v %s", err, o)
			}
		}
		return treeDifference(da, db) + " (or squashfs metadata: " + cmpBytes(a, b) + ")"
	case ".tar.gz":
		da, db := t.TempDir(), t.TempDir()
		for _, p := range [][2]string{{a, da}, {b, db}} {
			if o, err := exec.Command("tar", "-xpf", p[0], "-C", p[1], "--numeric-owner").CombinedOutput(); err != nil {
				return fmt.Sprintf("tar: %v %s", err, o)
			}
		}
		return treeDifference(da, db) + " (or archive headers: " + cmpBytes(a, b) + ")"
	case ".packages", ".json", "":
		da, _ := os.ReadFile(a)
		db, _ := os.ReadFile(b)
		return "\n" + diffLines(string(da), string(db))
	}
	return cmpBytes(a, b)
}

func cmpBytes(a, b string) string {
	out, _ := exec.Command("cmp", a, b).CombinedOutput()
	return strings.TrimSpace(string(out))
}

// treeDifference walks two trees in name order and names the first path
// that differs in type, mode, owner, modification time or content.
func treeDifference(a, b string) string {
	describe := func(root string) map[string]string {
		m := map[string]string{}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			fi, err := os.Lstat(p)
			if err != nil {
				return nil
			}
			st := fi.Sys().(*syscall.Stat_t)
			desc := fmt.Sprintf("%s %d:%d mtime=%d", fi.Mode(), st.Uid, st.Gid, fi.ModTime().Unix())
			switch {
			case fi.Mode().IsRegular():
				data, _ := os.ReadFile(p)
				sum := sha256.Sum256(data)
				desc += " sha256=" + hex.EncodeToString(sum[:8])
			case fi.Mode()&os.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				desc += " -> " + l
			}
			m[rel] = desc
			return nil
		})
		return m
	}
	ma, mb := describe(a), describe(b)
	var names []string
	for k := range ma {
		names = append(names, k)
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if ma[n] != mb[n] {
			return fmt.Sprintf("first differing file /%s: %q vs %q", n, ma[n], mb[n])
		}
	}
	return "no file differs"
}

// killMatrix kills builds of cfg in each stage with each signal.
func killMatrix(t *testing.T, ctx context.Context, dir, cfg, cache, work, out string) {
	// apt must run: the same config with one package more reuses the
	// cached base system and installs packages.
	data, _ := os.ReadFile(cfg)
	more := filepath.Join(dir, "more.yaml")
	os.WriteFile(more, []byte(strings.Replace(string(data), "variant: minbase\n", "variant: minbase\npackages: [less]\n", 1)), 0o644)
	blocks := filepath.Join(cache, "squashfs-blocks")
	stages := []struct {
		name, config, trigger string
		delay                 time.Duration
		args                  []string
		// before, when set, runs before the build; wait, when set, after
		// the trigger and the delay, before the signal.
		before, wait func(t *testing.T)
	}{
		{"bootstrap", cfg, "==> bootstrap", 3 * time.Second, []string{"--no-cache"}, nil, nil},
		{"apt", more, "installing", 2 * time.Second, []string{"--stage-cache", cache}, nil, nil},
		{"hook", cfg, "running ", time.Second, []string{"--stage-cache", cache}, nil, nil},
		{"disk", cfg, "==> disk", 2 * time.Second, []string{"--stage-cache", cache}, nil, nil},
		{"mksquashfs", cfg, "making the squashfs", time.Second, []string{"--stage-cache", cache}, nil, nil},
		{"xorriso", cfg, "assembling", 300 * time.Millisecond, []string{"--stage-cache", cache}, nil, nil},
		// Killed while it adds compressed blocks to an emptied block cache.
		{"block-cache", cfg, "laying the squashfs out", 0, []string{"--stage-cache", cache},
			func(t *testing.T) { os.RemoveAll(blocks) },
			func(t *testing.T) {
				for i := 0; i < 1200 && blockEntries(t, blocks) < 50; i++ {
					time.Sleep(50 * time.Millisecond)
				}
				if n := blockEntries(t, blocks); n < 50 {
					t.Errorf("only %d blocks in the cache after a minute", n)
				}
			}},
	}
	devBefore, _ := os.ReadDir("/dev")
	for _, st := range stages {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
			t.Run(st.name+"/"+sig.String(), func(t *testing.T) {
				if st.before != nil {
					st.before(t)
				}
				args := append(append([]string{"build", "--outdir", out, "--workdir", work}, st.args...), st.config)
				cmd := exec.CommandContext(ctx, vmdeb, args...)
				cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
				stdout, _ := cmd.StdoutPipe()
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(stdout)
				sent := false
				var seen []string
				for sc.Scan() {
					seen = append(seen, sc.Text())
					if !sent && strings.Contains(sc.Text(), st.trigger) {
						time.Sleep(st.delay)
						if st.wait != nil {
							st.wait(t)
						}
						cmd.Process.Signal(sig)
						sent = true
					}
				}
				err := cmd.Wait()
				if !sent {
					t.Fatalf("the build never printed %q:\n%s", st.trigger, strings.Join(seen, "\n"))
				}
				if err == nil {
					t.Fatalf("a build killed with %s exited 0:\n%s", sig, strings.Join(seen, "\n"))
				}
				if sig != syscall.SIGKILL && !strings.Contains(stderr.String(), "interrupted") {
					t.Errorf("stderr does not say the build was interrupted:\n%s", stderr.String())
				}
				for _, o := range []string{"repro.iso", "repro.squashfs", "repro.tar.gz", "repro.qcow2"} {
					if _, err := os.Stat(filepath.Join(out, o)); err == nil {
						t.Errorf("%s exists under its final name after %s in %s", o, sig, st.name)
					}
				}
				if sig == syscall.SIGKILL {
					// No chance to clean up: the namespaces take the mounts and
					// processes; the next build sweeps the files.
					assertNoMountsOrProcesses(t, work)
				} else {
					assertClean(t, work)
					if tmps, _ := filepath.Glob(filepath.Join(out, ".*vmdeb-tmp*")); len(tmps) > 0 {
						t.Errorf("temporary outputs left: %v", tmps)
					}
				}
				// Every block entry a killed build left is whole: the
				// build after the kills takes its blocks from them.
				checkBlockEntries(t, blocks)
				if l := loopDevices(out, work); l != "" {
					t.Errorf("loop devices of the build remain: %s", l)
				}
				devAfter, _ := os.ReadDir("/dev")
				if len(devAfter) < len(devBefore) {
					t.Errorf("the host's /dev lost entries: %d before, %d after", len(devBefore), len(devAfter))
				}
				for _, p := range []string{"/dev/null", "/proc/self/status", "/sys/kernel"} {
					if _, err := os.Stat(p); err != nil {
						t.Errorf("host: %v", err)
					}
				}
				if fi, err := os.Stat("/dev/null"); err == nil && fi.Mode()&os.ModeCharDevice == 0 {
					t.Error("/dev/null is no longer a character device")
				}
			})
		}
	}
}

// blockEntries counts the entries of a squashfs block cache (not the
// temporary files of entries being written).
func blockEntries(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}

// checkBlockEntries reads every entry of a squashfs block cache as a
// build does (its checksum verified): none may be damaged.
func checkBlockEntries(t *testing.T, dir string) {
	t.Helper()
	c := &squashfs.Cache{Dir: dir}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			if _, err := c.Get(d.Name()); err != nil {
				t.Errorf("block cache entry: %v", err)
			}
		}
		return nil
	})
}

// loopDevices lists the loop devices backed by a file under one of dirs.
func loopDevices(dirs ...string) string {
	out, _ := exec.Command("losetup", "-a").Output()
	var l []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, d := range dirs {
			if strings.Contains(line, d) {
				l = append(l, line)
			}
		}
	}
	return strings.Join(l, "\n")
}
