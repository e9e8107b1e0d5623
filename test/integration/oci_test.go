package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const ociConfig = `name: tiny-oci
suite: trixie
architecture: amd64
variant: minbase
bootstrap: native
kernel: none
customise: hook.sh
outputs:
  - type: oci
    path: tiny.tar
    tag: vmdeb-test/tiny:1
    cmd: [/bin/cat, /etc/vmdeb-oci]
    env: [VMDEB_TEST=oci]
    labels: {org.opencontainers.image.title: tiny}
`

// TestOCIOutput: an oci output is a container image that podman loads
// under its tag and runs (its command, environment and files as the
// config says, the container files added), listed by vmdeb check and in the
// build report with its size and digest; a second build with one
// SOURCE_DATE_EPOCH, from the stage cache the first filled, gives the
// same bytes.
func TestOCIOutput(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, cache := t.TempDir(), t.TempDir()
	cfg := writeConfig(t, dir, ociConfig, map[string]string{"hook.sh": "#!/bin/sh\nset -e\necho made-by-the-hook > \"$1/etc/vmdeb-oci\"\n"})
	outs := []string{t.TempDir(), t.TempDir()}

	c := run(t, ctx, "check", "--json", "--offline", "--outdir", outs[0], cfg)
	var check struct {
		OK      bool
		Outputs []struct{ Type, Path string }
	}
	if err := json.Unmarshal([]byte(c.stdout), &check); err != nil || !check.OK || len(check.Outputs) == 0 ||
		check.Outputs[0].Type != "oci" || check.Outputs[0].Path != filepath.Join(outs[0], "tiny.tar") {
		t.Fatalf("vmdeb check --json does not list the oci output (%v):\n%s%s", err, c.stdout, c.stderr)
	}

	for _, out := range outs {
		cmd := exec.CommandContext(ctx, vmdeb, "build", "--stage-cache", cache, "--outdir", out, "--workdir", t.TempDir(),
			"--report", filepath.Join(out, "report.json"), cfg)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		if r := runCmd(t, cmd, "vmdeb build "+cfg); r.code != 0 {
			t.Fatalf("build failed (%d)", r.code)
		}
	}
	img := filepath.Join(outs[0], "tiny.tar")
	if a, b := fileSum(t, img), fileSum(t, filepath.Join(outs[1], "tiny.tar")); a != b {
		t.Errorf("two builds with one SOURCE_DATE_EPOCH (the second from the stage cache) differ: %s", cmpBytes(img, filepath.Join(outs[1], "tiny.tar")))
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s has mode %v: it holds /etc/shadow, so only its owner may read it", img, fi.Mode().Perm())
	}
	data, err := os.ReadFile(filepath.Join(outs[0], "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Stages  []struct{ Name string }
		Outputs []struct {
			Type, Path, SHA256 string
			Size               int64
		}
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	ociStage := false
	for _, s := range rep.Stages {
		ociStage = ociStage || s.Name == "oci"
	}
	if !ociStage {
		t.Errorf("the report names no oci stage: %+v", rep.Stages)
	}
	found := false
	for _, o := range rep.Outputs {
		if o.Type == "oci" {
			found = o.Path == img && o.Size == fi.Size() && o.SHA256 == fileSum(t, img)
		}
	}
	if !found {
		t.Errorf("the report does not list the oci output with its size and SHA256:\n%s", data)
	}
	for _, f := range []string{"tiny.packages", "tiny.spdx.json", "tiny.cdx.json", "SHA256SUMS"} {
		if _, err := os.Stat(filepath.Join(outs[0], f)); err != nil {
			t.Errorf("beside the oci output: %v", err)
		}
	}
	if sums, _ := os.ReadFile(filepath.Join(outs[0], "SHA256SUMS")); !strings.Contains(string(sums), fileSum(t, img)+"  tiny.tar\n") {
		t.Errorf("SHA256SUMS does not list tiny.tar with its digest:\n%s", sums)
	}

	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed (make deps installs it): %v", err)
	}
	// A throwaway container storage: the host's images and containers
	// are not touched. runc where it is installed: crun refuses a host
	// with cgroups v1 and v2 mounted together (hybrid), as CI's is.
	store := t.TempDir()
	global := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	if _, err := exec.LookPath("runc"); err == nil {
		global = append(global, "--runtime", "runc")
	}
	podman := func(args ...string) result {
		t.Helper()
		if args[0] == "run" {
			// podman raises the open files and processes limits to its
			// defaults, which root without CAP_SYS_RESOURCE (CI's) may not:
			// modest limits the runtime can set.
			args = append([]string{"run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}, args[1:]...)
		}
		cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, global...), args...)...)
		cmd.Env = append(os.Environ(), "TMPDIR="+store)
		return runCmd(t, cmd, "podman "+strings.Join(args, " "))
	}
	if r := podman("load", "-i", img); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "localhost/vmdeb-test/tiny:1") {
		t.Fatalf("podman load -i %s (%d) did not load localhost/vmdeb-test/tiny:1", img, r.code)
	}
	r := podman("image", "inspect", "--format", "{{.Architecture}} {{.Os}} {{index .Labels \"org.opencontainers.image.title\"}} {{.Config.Cmd}}", "localhost/vmdeb-test/tiny:1")
	if got := strings.TrimSpace(r.stdout); got != "amd64 linux tiny [/bin/cat /etc/vmdeb-oci]" {
		t.Errorf("podman image inspect: %q", got)
	}
	if r := podman("run", "--rm", "--network", "none", "localhost/vmdeb-test/tiny:1", "/bin/true"); r.code != 0 {
		t.Fatalf("podman run IMAGE /bin/true: exit %d", r.code)
	}
	if r := podman("run", "--rm", "--network", "none", "localhost/vmdeb-test/tiny:1"); strings.TrimSpace(r.stdout) != "made-by-the-hook" {
		t.Errorf("the image's default command printed %q, want the hook's file", r.stdout)
	}
	r = podman("run", "--rm", "--network", "none", "localhost/vmdeb-test/tiny:1", "/bin/sh", "-c",
		`echo "$VMDEB_TEST $PATH"; test -x /usr/sbin/policy-rc.d && test -f /etc/apt/apt.conf.d/docker-clean && echo container-files`)
	if want := "oci /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\ncontainer-files\n"; r.stdout != want {
		t.Errorf("in the container: %q, want %q", r.stdout, want)
	}
}
