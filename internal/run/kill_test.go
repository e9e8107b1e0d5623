package run

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestKillAll: the selected process is killed and reported once, others
// are left alone, and a zombie does not hold KillAll up.
func TestKillAll(t *testing.T) {
	victim := exec.Command("sleep", "1000")
	bystander := exec.Command("sleep", "1000")
	dead := exec.Command("true")
	for _, c := range []*exec.Cmd{victim, bystander, dead} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer bystander.Process.Kill()
	time.Sleep(100 * time.Millisecond) // true exits and stays a zombie: not waited for yet
	var told []int
	start := time.Now()
	left, err := KillAll(func(pid int) bool { return pid == victim.Process.Pid || pid == dead.Process.Pid },
		func(pid int) { told = append(told, pid) })
	if err != nil || len(left) != 0 {
		t.Fatalf("left %v, %v", left, err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("KillAll took %v (waiting for a zombie?)", time.Since(start))
	}
	if len(told) != 1 || told[0] != victim.Process.Pid {
		t.Errorf("told %v, want [%d]", told, victim.Process.Pid)
	}
	err = victim.Wait()
	if ws, ok := victim.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("victim: %v", err)
	}
	if zombie(bystander.Process.Pid) {
		t.Error("the bystander was killed")
	}
	dead.Wait()
}
