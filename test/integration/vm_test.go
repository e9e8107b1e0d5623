package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vmConfig is small on purpose: under TCG the builder VM runs every
// instruction through the emulator.
const vmConfig = `name: vm-small
suite: trixie
architecture: amd64
variant: minbase
bootstrap: native
kernel: none
customise: hooks/mark.sh
outputs:
  - {type: tarball, path: out/vm-small.tar.gz}
`

const vmHook = `#!/bin/sh
set -e
echo "built by $(cat /proc/sys/kernel/hostname)" > "$1/etc/vmdeb-vm-test"
`

// TestBuilderVM: an ordinary user's vmdeb build --vm makes (or reuses)
// the builder image (rootless), builds a small tarball in it, and the
// image holds the same packages as a root build of the same config on
// the host; the hook ran inside the VM; the outputs belong to the user.
// Ctrl-C during a VM build stops qemu and leaves nothing behind.
func TestBuilderVM(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("no qemu-system-x86_64")
	}
	uid, gid, bin := unprivileged(t)
	t.Parallel() // long and independent: overlap it with the others
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir := userDir(t, uid, gid)
	cfg := writeConfig(t, dir, vmConfig, map[string]string{"hooks/mark.sh": vmHook})
	hostOut, vmOut := t.TempDir(), userDir(t, uid, gid)

	start := time.Now()
	r := run(t, ctx, "build", "--outdir", hostOut, cfg)
	if r.code != 0 {
		t.Fatalf("host build failed (%d): %s", r.code, r.stderr)
	}
	t.Logf("host build as root: %s", time.Since(start).Round(time.Second))

	start = time.Now()
	r = runAs(t, ctx, uid, gid, bin, "build", "--vm", "--outdir", vmOut, cfg)
	if r.code != 0 {
		t.Fatalf("VM build failed (%d): %s", r.code, r.stderr)
	}
	t.Logf("VM build as %s (builder image included if it was not cached): %s", testUser, time.Since(start).Round(time.Second))
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "builder image") || strings.Contains(l, "builder VM (") {
			t.Log(l)
		}
	}
	if !strings.Contains(r.stdout, "vmdeb: builder VM (") {
		t.Errorf("the VM build did not report its VM:\n%s", r.stdout)
	}

	hostPkgs := readFile(t, filepath.Join(hostOut, "vm-small.packages"))
	vmPkgs := readFile(t, filepath.Join(vmOut, "vm-small.packages"))
	if hostPkgs != vmPkgs || len(strings.Split(hostPkgs, "\n")) < 50 {
		t.Errorf("package lists differ (or are short):\n--- host\n%s\n--- VM\n%s", hostPkgs, vmPkgs)
	}
	for _, f := range []string{"vm-small.tar.gz", "vm-small.build.log", "SHA256SUMS"} {
		fi, err := os.Stat(filepath.Join(vmOut, f))
		if err != nil {
			t.Errorf("the VM build left no %s: %v", f, err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("%s belongs to uid %d, not to the user who built it (%d)", f, st.Uid, uid)
		}
	}
	mark, err := exec.Command("tar", "-xzOf", filepath.Join(vmOut, "vm-small.tar.gz"), "./etc/vmdeb-vm-test").Output()
	if err != nil || !strings.Contains(string(mark), "built by vmdeb-builder") {
		t.Errorf("the hook did not run in the builder VM: %q %v", mark, err)
	}
	// Inside the tarball, files belong to root as in a host build: the
	// guest's tar records the owners, not the 9p share.
	owners, err := exec.Command("tar", "--numeric-owner", "-tzvf", filepath.Join(vmOut, "vm-small.tar.gz"), "./etc/passwd").Output()
	if err != nil || !strings.Contains(string(owners), " 0/0 ") {
		t.Errorf("etc/passwd in the VM's tarball: %q %v", owners, err)
	}
	assertNoVM(t, vmOut, uid)

	// Ctrl-C once the build inside has started.
	stopOut := userDir(t, uid, gid)
	s := startAs(t, ctx, uid, gid, bin, "build", "--vm", "--outdir", stopOut, cfg)
	if !s.waitFor("==> bootstrap", 15*time.Minute) {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		t.Fatalf("the VM build never started bootstrapping:\n%s", s.output())
	}
	time.Sleep(3 * time.Second)
	s.cmd.Process.Signal(syscall.SIGINT)
	sent := time.Now()
	err = s.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("interrupted VM build: %v, want exit status 130:\n%s", err, tail(s.output(), 20))
	}
	if took := time.Since(sent); took > 15*time.Second {
		t.Errorf("the interrupted VM build took %s to stop", took)
	}
	ents, _ := os.ReadDir(stopOut)
	for _, e := range ents {
		if e.Name() != "vm-small.build.log" { // kept, as by a host build
			t.Errorf("left behind by the interrupted build: %s", e.Name())
		}
	}
	assertNoVM(t, stopOut, uid)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// assertNoVM checks that no builder VM sharing dir (a qemu with vmdeb's
// job share and dir among its shares) runs, and that uid left no job
// directory.
func assertNoVM(t *testing.T, dir string, uid int) {
	t.Helper()
	waitNoProcess(t, "builder VMs left running", func(cmdline, _ string) bool {
		return strings.Contains(cmdline, "mount_tag=vmdeb-job") && strings.Contains(cmdline, "path="+dir+",")
	})
	jobs, _ := filepath.Glob(filepath.Join(os.TempDir(), "vmdeb-vm-*"))
	for _, j := range jobs {
		if fi, err := os.Stat(j); err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) == uid {
			t.Errorf("job directory left: %s", j)
		}
	}
}
