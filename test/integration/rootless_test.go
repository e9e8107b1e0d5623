package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRootless builds the bundled live example as an ordinary user, in a
// user namespace: a live ISO, a tarball and a disk image, with the right
// owners inside, and the ISO boots to a login prompt.
func TestRootless(t *testing.T) {
	uid, gid, bin := unprivileged(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir, out := userDir(t, uid, gid), userDir(t, uid, gid)
	work := userDir(t, uid, gid)
	copyExamples(t, dir)
	cfg := filepath.Join(dir, "live-minimal.yaml")
	data, _ := os.ReadFile(cfg)
	data = append(data, []byte(`  - type: tarball
    path: ../out/rootless.tar.gz
  - type: disk
    path: ../out/rootless.qcow2
    size: 3G
    bootloader: grub-bios
`)...)
	os.WriteFile(cfg, data, 0o644)
	if out, err := exec.Command("chown", "-R", strconv.Itoa(uid)+":"+strconv.Itoa(gid), dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}

	// What an ordinary user is told when isolation: host is asked.
	if r := runAs(t, ctx, uid, gid, bin, "build", "--isolation", "host", "--outdir", out, cfg); r.code == 0 || !strings.Contains(r.stderr, "--isolation userns") {
		t.Errorf("isolation host as an ordinary user: want a refusal naming --isolation userns, got %d: %s", r.code, r.stderr)
	}

	// Killed while apt runs: nothing may survive; the next build removes
	// the work directory it left (files owned by subordinate ids, which
	// only the namespace's root can delete).
	killed := startAs(t, ctx, uid, gid, bin, "build", "--outdir", out, "--workdir", work, cfg)
	if !killed.waitFor("==> packages", 10*time.Minute) {
		t.Fatalf("the build never started apt:\n%s", killed.output())
	}
	time.Sleep(5 * time.Second)
	killed.cmd.Process.Kill()
	killed.cmd.Wait()
	assertNoMountsOrProcesses(t, work)
	if left, _ := filepath.Glob(filepath.Join(work, "vmdeb-*")); len(left) == 0 {
		t.Log("the killed build left no work directory (it had not made one yet?)")
	}

	r := runAs(t, ctx, uid, gid, bin, "build", "--outdir", out, "--workdir", work, cfg)
	if r.code != 0 {
		t.Fatalf("rootless build failed (%d):\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "rootless") {
		t.Errorf("the build does not say it runs rootless:\n%s", tail(r.stdout, 40))
	}
	assertClean(t, work)
	iso := filepath.Join(out, "debian-live-minimal-amd64.iso")
	for _, f := range []string{iso, filepath.Join(out, "rootless.tar.gz"), filepath.Join(out, "rootless.qcow2"), filepath.Join(out, "debian-live-minimal.build.log")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("missing output: %v", err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("%s is owned by uid %d on the host, not by the user who built it (%d)", f, st.Uid, uid)
		}
	}

	// Owners inside: system files root's, the image user's home its own.
	sq := imageSquashfs(t, iso)
	lst, err := exec.Command("unsquashfs", "-lln", sq).Output()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v", err)
	}
	owners := map[string]string{}
	for _, l := range strings.Split(string(lst), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 {
			owners[strings.TrimPrefix(f[len(f)-1], "squashfs-root")] = f[1]
		}
		if len(f) >= 8 && f[len(f)-2] == "->" {
			owners[strings.TrimPrefix(f[len(f)-3], "squashfs-root")] = f[1]
		}
	}
	for path, want := range map[string]string{"/usr/bin/sudo": "0/0", "/etc/passwd": "0/0", "/etc/shadow": "0/42", "/home/user": "1000/1000", "/var/mail": "0/8"} {
		if owners[path] != want {
			t.Errorf("squashfs: %s is owned by %q, want %s", path, owners[path], want)
		}
	}
	if m := regexp.MustCompile(`(?m)^-rws.* 0/0 .*usr/bin/sudo$`).Find(lst); m == nil {
		t.Error("squashfs: sudo lost its setuid bit")
	}
	for path, o := range owners {
		if n := strings.SplitN(o, "/", 2)[0]; n != "0" && n != "1000" && len(n) > 5 {
			t.Errorf("squashfs: %s is owned by %s, an id outside the image (a host subordinate id leaked)", path, o)
			break
		}
	}

	// The tarball and the disk image have the same owners.
	tl, err := exec.Command("tar", "-tvzf", filepath.Join(out, "rootless.tar.gz"), "./usr/bin/sudo", "./home/user").Output()
	if err != nil {
		t.Errorf("tar: %v", err)
	}
	if !regexp.MustCompile(`(?m)^-rwsr-xr-x (0/0|root/root) .* \./usr/bin/sudo$`).Match(tl) || !regexp.MustCompile(`(?m)^drwx------ (1000/1000|user/user) .* \./home/user/$`).Match(tl) {
		t.Errorf("tarball owners: want sudo 0/0 setuid, /home/user 1000/1000:\n%s", tl)
	}

	t.Run("boot-iso", func(t *testing.T) {
		b := run(t, ctx, "boot", "--timeout", "8m", iso)
		if b.code != 0 {
			t.Fatalf("the rootless ISO did not boot to a login prompt:\n%s", b.stderr)
		}
	})
	t.Run("boot-disk", func(t *testing.T) {
		b := run(t, ctx, "boot", "--timeout", "10m", "--login", "user", "--password", "live",
			"--run", "stat -c 'own %u:%g:%A %n' /usr/bin/sudo /etc/shadow /home/user; findmnt -n -o FSTYPE /", filepath.Join(out, "rootless.qcow2"))
		for _, want := range []string{"own 0:0:-rwsr-xr-x /usr/bin/sudo", "own 0:42:-rw-r----- /etc/shadow", "own 1000:1000:drwx------ /home/user"} {
			if !strings.Contains(b.stdout, want) {
				t.Errorf("the rootless disk image, booted: no %q in\n%s\n%s", want, tail(b.stdout, 20), b.stderr)
			}
		}
	})
}
