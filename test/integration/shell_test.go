package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shellOutputs are more outputs of the VM example, from the same root
// file system: a tarball and a directory to open a shell in.
const shellOutputs = `  - {type: tarball, path: ../out/debian-vm.tar.gz}
  - {type: directory, path: ../out/debian-vm-root}
`

// TestShell builds the VM example (a qcow2 disk) with a tarball and a
// directory beside it and opens vmdeb shell in each without booting:
// the image's own os-release and dpkg database are there, the command's
// status is vmdeb's, --writable keeps a file on the qcow2 that a later
// shell sees, a read-only shell's writes are discarded, and neither an
// exit nor a SIGKILL of vmdeb leaves a mount, a process or a loop device.
// shellMu keeps the tests' vmdeb shell sessions apart: each test's check
// that no session of vmdeb shell is left would see another's.
var shellMu sync.Mutex

func TestShell(t *testing.T) {
	needRoot(t)
	t.Parallel()
	shellMu.Lock()
	defer shellMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dir, out, work := t.TempDir(), t.TempDir(), t.TempDir()
	copyExamples(t, dir)
	cfg := filepath.Join(dir, "vm-disk.yaml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(shellOutputs); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if r := run(t, ctx, "build", "--outdir", out, "--workdir", work, cfg); r.code != 0 {
		t.Fatalf("build failed (%d):\n%s", r.code, r.stderr)
	}
	qcow2 := filepath.Join(out, "debian-vm-amd64.qcow2")
	images := map[string]string{
		"config":    cfg, // its first output: the qcow2
		"qcow2":     qcow2,
		"tarball":   filepath.Join(out, "debian-vm.tar.gz"),
		"directory": filepath.Join(out, "debian-vm-root"),
	}
	for name, img := range images {
		t.Run(name, func(t *testing.T) {
			shell := []string{"shell"}
			if name == "config" {
				shell = append(shell, "--outdir", out) // where the build wrote it
			}
			in := func(command ...string) result {
				return run(t, ctx, append(append(shell[:len(shell):len(shell)], img, "--"), command...)...)
			}
			r := in("cat", "/etc/os-release")
			if r.code != 0 || !strings.Contains(r.stdout, `ID=debian`) || !strings.Contains(r.stdout, "trixie") {
				t.Errorf("cat /etc/os-release in %s: status %d, %q", img, r.code, r.stdout)
			}
			r = in("dpkg", "-l", "sudo")
			if r.code != 0 || !strings.Contains(r.stdout, "ii  sudo") {
				t.Errorf("dpkg -l sudo in %s: status %d, %q", img, r.code, r.stdout)
			}
			if r := in("sh", "-c", "exit 7"); r.code != 7 {
				t.Errorf("exit 7 in %s: vmdeb's status %d, want 7", img, r.code)
			}
			// Read-only: the shell writes, the image does not change.
			if r := in("sh", "-c", "echo x > /root/discarded && cat /root/discarded"); r.code != 0 || r.stdout != "x\n" {
				t.Errorf("writing in a read-only shell of %s: status %d, %q", img, r.code, r.stdout)
			}
			if r := in("test", "-e", "/root/discarded"); r.code != 1 {
				t.Errorf("a read-only shell's file is still in %s (test -e: %d)", img, r.code)
			}
			assertShellClean(t, out)
		})
	}
	t.Run("writable-refused", func(t *testing.T) {
		r := run(t, ctx, "shell", "--writable", images["tarball"], "--", "true")
		if r.code != 2 || !strings.Contains(r.stderr, "--writable takes a directory output or a raw or qcow2 disk image") {
			t.Errorf("--writable on a tarball: status %d, %q; want 2 and what --writable takes", r.code, r.stderr)
		}
	})
	t.Run("writable-qcow2", func(t *testing.T) {
		if r := run(t, ctx, "shell", "--writable", qcow2, "--", "sh", "-c", "echo kept > /root/vmdeb-shell-test"); r.code != 0 {
			t.Fatalf("--writable: status %d", r.code)
		}
		if r := run(t, ctx, "shell", qcow2, "--", "cat", "/root/vmdeb-shell-test"); r.code != 0 || r.stdout != "kept\n" {
			t.Errorf("the file --writable wrote: status %d, %q", r.code, r.stdout)
		}
		if r := runCmd(t, exec.CommandContext(ctx, "qemu-img", "check", qcow2), "qemu-img check"); r.code != 0 {
			t.Errorf("the qcow2 after --writable: qemu-img check %d", r.code)
		}
		assertShellClean(t, out)
		// The booted system sees it too.
		b := run(t, ctx, "boot", "--timeout", "10m", "--login", "user", "--password", "live",
			"--run", "echo live | sudo -S cat /root/vmdeb-shell-test", qcow2)
		if b.code != 0 || !strings.Contains(b.stdout, "kept") {
			t.Errorf("a boot of the qcow2 does not see the file --writable wrote (%d):\n%s\n%s", b.code, b.stdout, b.stderr)
		}
	})
	t.Run("sigkill", func(t *testing.T) {
		for _, img := range []string{qcow2, images["directory"]} {
			cmd := exec.CommandContext(ctx, vmdeb, "shell", "--writable", img, "--", "sleep", shellSleep)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Killed once the command runs, with everything set up.
			deadline := time.Now().Add(2 * time.Minute)
			for !sleeping() {
				if time.Now().After(deadline) {
					t.Fatalf("the shell's sleep %s never started", shellSleep)
				}
				time.Sleep(200 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			assertShellClean(t, out)
			if r := run(t, ctx, "shell", img, "--", "true"); r.code != 0 {
				t.Errorf("%s after a SIGKILL of vmdeb shell: status %d", img, r.code)
			}
		}
	})
}

// shellSleep is how long the command the test leaves running in a shell
// sleeps: a number of seconds nobody else's sleep on the machine is likely
// to have (a `sleep 600` of the person running the tests once passed for
// one the shell had left).
var shellSleep = fmt.Sprintf("600.%04d", os.Getpid()%10000)

// sleeping says whether the test's sleep runs.
func sleeping() bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if string(cl) == "sleep\x00"+shellSleep+"\x00" {
			return true
		}
	}
	return false
}

// assertShellClean checks that no vmdeb shell left a mount, a process
// (its own, qemu-storage-daemon, the command) or a loop device behind.
func assertShellClean(t *testing.T, out string) {
	t.Helper()
	waitNoProcess(t, "processes of vmdeb shell left running", func(cmdline, root string) bool {
		return (strings.Contains(cmdline, "\x00shell\x00") && strings.Contains(cmdline, vmdeb)) ||
			strings.Contains(cmdline, out) || strings.Contains(cmdline, "vmdeb-shell-") || cmdline == "sleep\x00"+shellSleep+"\x00"
	})
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, "vmdeb-shell-") || strings.Contains(l, out) {
			t.Errorf("mount left behind: %s", l)
		}
	}
	// Loop devices clear themselves as their mount goes: allow a moment.
	for i := 0; ; i++ {
		all, _ := exec.Command("losetup", "-a").Output()
		var left []string
		for _, l := range strings.Split(string(all), "\n") {
			if strings.Contains(l, out) || strings.Contains(l, "vmdeb-shell-") {
				left = append(left, l)
			}
		}
		if len(left) == 0 {
			return
		}
		if i == 50 {
			t.Errorf("loop devices left attached:\n%s", strings.Join(left, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
