package vmdebootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runHook makes the hook for args (run from cwd) and runs it on root as
// vmdeb's build does: `HOOK ROOTFS` from another directory, in a clean
// environment.
func runHook(t *testing.T, cwd, root string, args ...string) (string, error) {
	t.Helper()
	s, err := ParseWith(append(args, "--no-systemd-networkd"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := s.Config(cwd, dir, []string{"BOARD=wand board's", "PATH=/usr/bin:/bin"})
	if err != nil {
		t.Fatal(err)
	}
	hook, hookArgs := b.Hook, []string{root}
	if b.ImageHook != "" {
		// What disk.Build gives the image hook: the image's tree and the
		// partitioned image file.
		hook, hookArgs = b.ImageHook, []string{root, filepath.Join(dir, "disk.raw")}
	}
	if hook == "" {
		t.Fatal("no hook")
	}
	h := filepath.Join(dir, HookName)
	if err := os.WriteFile(h, []byte(hook), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(h, hookArgs...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "VMDEB_ROOTFS=" + root}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// base.customize (base.py:164): the script gets ROOTDIR and the image as
// $1 and $2 ("" without --image), runs in the caller's working directory
// with the caller's environment.
func TestHookRunsScriptAsVmdebootstrap(t *testing.T) {
	cwd, root := t.TempDir(), t.TempDir()
	script := filepath.Join(cwd, "custom.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s|%s|%s|%s|%s\\n' \"$1\" \"$2\" \"$(pwd)\" \"$BOARD\" \"$VMDEB_ROOTFS\" >\"$1/seen\"\n"), 0o755)
	if out, err := runHook(t, cwd, root, "--tarball", "t.tar", "--customize", "custom.sh"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, _ := os.ReadFile(filepath.Join(root, "seen"))
	want := root + "||" + cwd + "|wand board's|" + root + "\n"
	if string(got) != want {
		t.Errorf("script saw %q, want %q", got, want)
	}
	// With --image, the script runs as the disk's image hook: $2 is the
	// image file being made.
	if out, err := runHook(t, cwd, root, "--image", "vm.img", "--customize", "custom.sh"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, _ = os.ReadFile(filepath.Join(root, "seen"))
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(root) + `\|/[^|]+/disk\.raw\|` + regexp.QuoteMeta(cwd) + `\|`).Match(got) {
		t.Errorf("script saw %q", got)
	}
}

// vmdeb stops where vmdebootstrap (without a terminal) went on.
func TestHookFailureStops(t *testing.T) {
	cwd, root := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(cwd, "bad.sh"), []byte("#!/bin/sh\nexit 3\n"), 0o755)
	out, err := runHook(t, cwd, root, "--tarball", "t.tar", "--customize", "bad.sh")
	if err == nil || !strings.Contains(out, "bad.sh failed (exit status 3)") {
		t.Errorf("a failing script: %v\n%s", err, out)
	}
}

// filesystem.squash_rootfs (filesystem.py:227) copies /boot's files
// beside the squashfs: the hook stages them, Run copies them, the
// kernel and initrd being the build's own.
func TestSquashBootFiles(t *testing.T) {
	cwd, root := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(root, "boot", "grub"), 0o755)
	for n, c := range map[string]string{"vmlinuz-6.1.0-9-amd64": "k", "initrd.img-6.1.0-9-amd64": "old", "config-6.1.0-9-amd64": "c"} {
		os.WriteFile(filepath.Join(root, "boot", n), []byte(c), 0o644)
	}
	os.Symlink("vmlinuz-6.1.0-9-amd64", filepath.Join(root, "boot", "vmlinuz"))
	s, _ := ParseWith([]string{"--squash", "live", "--no-systemd-networkd"}, nil)
	dir := t.TempDir()
	b, err := s.Config(cwd, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := filepath.Join(dir, HookName)
	os.WriteFile(h, []byte(b.Hook), 0o700)
	if out, err := exec.Command(h, root).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	live := filepath.Join(cwd, "live")
	os.MkdirAll(live, 0o755)
	os.WriteFile(filepath.Join(live, "vmlinuz"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(live, "initrd.img"), []byte("new"), 0o644)
	if err := copyBootFiles(filepath.Join(dir, BootStage), live); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string]string{"vmlinuz-6.1.0-9-amd64": "k", "initrd.img-6.1.0-9-amd64": "new", "config-6.1.0-9-amd64": "c"} {
		if got, err := os.ReadFile(filepath.Join(live, n)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", n, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(live, "grub")); err == nil {
		t.Error("a directory of /boot was copied")
	}
}
