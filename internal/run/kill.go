package run

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// KillAll kills (SIGKILL) every process but this one that match selects,
// and waits up to two seconds for them to go, killing again whatever is
// still or newly there. killed, when set, is told each process the first
// time it is killed. It returns the processes left at the end, sorted;
// a zombie counts as gone (its parent has only to reap it).
func KillAll(match func(pid int) bool, killed func(pid int)) ([]int, error) {
	self := os.Getpid()
	told := map[int]bool{}
	var left []int
	for try := 0; try < 20; try++ {
		left = left[:0]
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self || zombie(pid) || !match(pid) {
				continue
			}
			if killed != nil && !told[pid] {
				told[pid] = true
				killed(pid)
			}
			syscall.Kill(pid, syscall.SIGKILL)
			left = append(left, pid)
		}
		if len(left) == 0 {
			return nil, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Ints(left)
	return left, nil
}

// zombie reports whether pid has exited and waits for its parent (or is
// gone altogether).
func zombie(pid int) bool {
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(st, ')')
	return i >= 0 && i+2 < len(st) && st[i+2] == 'Z'
}
