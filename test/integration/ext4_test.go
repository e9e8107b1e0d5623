package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const ext4Config = `name: tiny
suite: trixie
architecture: amd64
variant: minbase
kernel: none
hostname: tiny
outputs:
  - {type: ext4, path: tiny.ext4}
`

// TestExt4Output: an ext4 output is a clean ext4 file system holding the
// image's root, with its manifest, SBOMs and SHA256SUMS beside it; two
// builds from nothing with one SOURCE_DATE_EPOCH give the same bytes.
func TestExt4Output(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cfg := writeConfig(t, t.TempDir(), ext4Config, nil)
	outs := []string{t.TempDir(), t.TempDir()}
	var wg sync.WaitGroup
	errs := make([]error, len(outs))
	logs := make([]string, len(outs))
	for i, out := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, vmdeb, "build", "--outdir", out, "--workdir", t.TempDir(), cfg)
			cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
			var b bytes.Buffer
			cmd.Stdout, cmd.Stderr = &b, &b
			errs[i] = cmd.Run()
			logs[i] = tail(b.String(), 30)
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatalf("build %d failed: %v\n%s", i+1, errs[i], logs[i])
		}
	}
	img := filepath.Join(outs[0], "tiny.ext4")

	if r := runCmd(t, exec.Command("e2fsck", "-f", "-n", img), "e2fsck -fn"); r.code != 0 {
		t.Errorf("e2fsck -fn finds the file system damaged (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCmd(t, exec.Command("blkid", "-o", "value", "-s", "TYPE", img), "blkid"); strings.TrimSpace(r.stdout) != "ext4" {
		t.Errorf("blkid says the output is %q, not ext4", strings.TrimSpace(r.stdout))
	}
	// /etc/os-release is a link to ../usr/lib/os-release; debugfs does not
	// follow links, so read both: the link's target and the file.
	r := runCmd(t, exec.Command("debugfs", "-R", "stat /etc/os-release", img), "debugfs stat")
	if !strings.Contains(r.stdout, "../usr/lib/os-release") {
		t.Errorf("/etc/os-release in the image is not the link to ../usr/lib/os-release:\n%s", r.stdout)
	}
	r = runCmd(t, exec.Command("debugfs", "-R", "cat /usr/lib/os-release", img), "debugfs cat")
	if !strings.Contains(r.stdout, `VERSION_CODENAME=trixie`) {
		t.Errorf("the image's os-release does not name trixie:\n%s%s", r.stdout, r.stderr)
	}
	r = runCmd(t, exec.Command("debugfs", "-R", "cat /etc/hostname", img), "debugfs cat")
	if strings.TrimSpace(r.stdout) != "tiny" {
		t.Errorf("the image's /etc/hostname is %q, want tiny", r.stdout)
	}
	if fi, err := os.Stat(img); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s has mode %v: it holds /etc/shadow, so only its owner may read it", img, fi.Mode().Perm())
	}

	for _, f := range []string{"tiny.packages", "tiny.spdx.json", "tiny.cdx.json", "SHA256SUMS"} {
		if _, err := os.Stat(filepath.Join(outs[0], f)); err != nil {
			t.Errorf("beside the ext4 output: %v", err)
		}
	}
	sums, _ := os.ReadFile(filepath.Join(outs[0], "SHA256SUMS"))
	if !strings.Contains(string(sums), "  tiny.ext4\n") {
		t.Errorf("SHA256SUMS does not list tiny.ext4:\n%s", sums)
	}
	check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	check.Dir = outs[0]
	if r := runCmd(t, check, "sha256sum --check"); r.code != 0 {
		t.Errorf("sha256sum --check SHA256SUMS fails:\n%s%s", r.stdout, r.stderr)
	}

	for _, f := range []string{"tiny.ext4", "tiny.packages", "SHA256SUMS"} {
		a, b := filepath.Join(outs[0], f), filepath.Join(outs[1], f)
		if fileSum(t, a) != fileSum(t, b) {
			t.Errorf("%s differs between two builds with one SOURCE_DATE_EPOCH: %s", f, cmpBytes(a, b))
		}
	}
}
