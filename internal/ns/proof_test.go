package ns

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestHostileMarkerIsNoProof: a caller who sets the build's environment
// markers does not make a process "inside": that would turn off the
// namespaces and let the build kill every process it can signal and make
// the host's mounts private.
func TestHostileMarkerIsNoProof(t *testing.T) {
	t.Setenv(marker, "1")
	t.Setenv(usernsEnv, "1")
	if Inside() {
		t.Error("Inside() is true for a process that only has VMDEB_IN_NAMESPACE=1 in its environment")
	}
	if Rootless() {
		t.Error("Rootless() is true for a process that only has the markers in its environment")
	}
	mnt, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		t.Skip(err)
	}
	defer mnt.Close()
	if Proven(int(mnt.Fd())) {
		t.Error("Proven() accepts this process's own mount namespace")
	}
}

const proofChildEnv = "VMDEB_TEST_PROOF_CHILD"

// TestHostileProofChild is the child of TestHostileProof: it reports what
// Proven says about fd 3.
func TestHostileProofChild(t *testing.T) {
	if os.Getenv(proofChildEnv) != "1" {
		t.Skip("run by TestHostileProof")
	}
	if Proven(3) {
		os.Stdout.WriteString("PROOF=yes\n")
	} else {
		os.Stdout.WriteString("PROOF=no\n")
	}
}

// TestHostileProof: only a child in new mount and PID namespaces, as PID
// 1, given its parent's mount namespace, counts as proven.
func TestHostileProof(t *testing.T) {
	if os.Geteuid() != 0 || testing.Short() {
		t.Skip("needs root to make namespaces")
	}
	mnt, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	defer mnt.Close()
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	pidns, err := os.Open("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	defer pidns.Close()
	for _, c := range []struct {
		name  string
		flags uintptr
		fd    *os.File
		want  string
	}{
		{"new mount and PID namespaces, the parent's mount namespace", syscall.CLONE_NEWNS | syscall.CLONE_NEWPID, mnt, "PROOF=yes"},
		{"new PID namespace only", syscall.CLONE_NEWPID, mnt, "PROOF=no"},
		{"new mount namespace only (not PID 1)", syscall.CLONE_NEWNS, mnt, "PROOF=no"},
		{"no namespaces", 0, mnt, "PROOF=no"},
		{"fd 3 is /dev/null", syscall.CLONE_NEWNS | syscall.CLONE_NEWPID, null, "PROOF=no"},
		{"fd 3 is a PID namespace", syscall.CLONE_NEWNS | syscall.CLONE_NEWPID, pidns, "PROOF=no"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHostileProofChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), proofChildEnv+"=1")
		cmd.ExtraFiles = []*os.File{c.fd}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: c.flags}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", c.name, err, out)
			continue
		}
		if !strings.Contains(string(out), c.want+"\n") {
			t.Errorf("%s: want %s, got\n%s", c.name, c.want, out)
		}
	}
}
