package ns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"vmdeb/internal/buildlog"
)

// A rootless build runs in a user namespace where the invoking user is
// root (uid 0 maps to the user's uid) and ids 1..65535 map to the user's
// subordinate range from /etc/subuid and /etc/subgid. newuidmap and
// newgidmap (package uidmap) write those maps: the kernel lets an ordinary
// process map only its own id.

// MinSubIDs is the smallest subordinate range a Debian system fits in: ids
// up to 65534 (nobody, nogroup) must exist in the namespace.
const MinSubIDs = 65536

// usernsWait marks the first process of a new user namespace, which waits
// for its id maps and then executes itself again to gain root there.
const usernsWait = "userns-wait"

// IDRange is a subordinate id range: Count ids from Start.
type IDRange struct{ Start, Count uint32 }

// ParseSubIDs returns the first range of at least MinSubIDs ids given to
// the user (by name or uid) in a subuid/subgid file's contents.
func ParseSubIDs(data, name string, uid int) (IDRange, bool) {
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != name && f[0] != strconv.Itoa(uid)) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count < MinSubIDs {
			continue
		}
		return IDRange{uint32(start), uint32(count)}, true
	}
	return IDRange{}, false
}

// FreeSubIDStart proposes the start of a free MinSubIDs range in a
// subuid/subgid file: after every range given so far, and not below 100000.
func FreeSubIDStart(data string) uint64 {
	next := uint64(100000)
	for _, line := range strings.Split(data, "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil && start+count > next {
			next = start + count
		}
	}
	return next
}

// subIDFiles are /etc/subuid and /etc/subgid (other files in tests).
var subIDFiles = [2]string{"/etc/subuid", "/etc/subgid"}

// UsernsPlan is what entering a rootless build namespace needs.
type UsernsPlan struct {
	User           string
	UID, GID       int
	SubUID, SubGID IDRange
	NewUIDMap      string
	NewGIDMap      string
}

// PlanUserns checks that this user can enter a user namespace with a
// subordinate id range and says how to fix it when not.
func PlanUserns() (*UsernsPlan, error) {
	uid, gid := os.Getuid(), os.Getgid()
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	p := &UsernsPlan{User: name, UID: uid, GID: gid}
	if err := UsernsAllowed(); err != nil {
		return nil, err
	}
	var missing []string
	for _, t := range []struct {
		bin string
		dst *string
	}{{"newuidmap", &p.NewUIDMap}, {"newgidmap", &p.NewGIDMap}} {
		path, err := buildlog.LookPath(t.bin)
		if err != nil {
			missing = append(missing, t.bin)
		}
		*t.dst = path
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("a rootless build needs %s (package uidmap): ask an administrator to run: apt-get install uidmap",
			strings.Join(missing, " and "))
	}
	var fixes []string
	for _, f := range []struct {
		file, opt string
		dst       *IDRange
	}{{subIDFiles[0], "--add-subuids", &p.SubUID}, {subIDFiles[1], "--add-subgids", &p.SubGID}} {
		data, _ := os.ReadFile(f.file)
		r, ok := ParseSubIDs(string(data), name, uid)
		if !ok {
			start := FreeSubIDStart(string(data))
			fixes = append(fixes, fmt.Sprintf("%s %d-%d", f.opt, start, start+MinSubIDs-1))
			continue
		}
		*f.dst = r
	}
	if len(fixes) > 0 {
		return nil, fmt.Errorf("a rootless build needs %d subordinate user and group ids for %s in /etc/subuid and /etc/subgid, and there are none; "+
			"the one-line fix, as root: usermod %s %s", MinSubIDs, name, strings.Join(fixes, " "), name)
	}
	return p, nil
}

// UsernsAllowed says why the kernel would refuse an ordinary user a user
// namespace, by the knobs Debian, Ubuntu and upstream kernels have.
func UsernsAllowed() error {
	knobs := []struct {
		file, bad, fix string
	}{
		{"/proc/sys/user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"},
		{"/proc/sys/kernel/unprivileged_userns_clone", "0", "sysctl -w kernel.unprivileged_userns_clone=1"},
		{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1", "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile allowing userns for vmdeb)"},
	}
	for _, k := range knobs {
		b, err := os.ReadFile(k.file)
		if err == nil && strings.TrimSpace(string(b)) == k.bad {
			return fmt.Errorf("this kernel forbids unprivileged user namespaces (%s is %s), so a rootless build cannot run; as root: %s, or build with isolation: vm",
				k.file, k.bad, k.fix)
		}
	}
	return nil
}

// ReexecUserns runs this program again with args in new user, mount and
// PID namespaces, as root of the user namespace with the user's
// subordinate ids mapped, and returns its exit status.
func ReexecUserns(p *UsernsPlan, args []string, std Stdio) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	defer r.Close()
	defer w.Close()
	cmd, err := command(args, usernsWait, std)
	if err != nil {
		return 1, err
	}
	mnt, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		return 1, err
	}
	defer mnt.Close()
	cmd.ExtraFiles = []*os.File{r, mnt} // fd 3, proofFDUserns
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
	wait, err := start(cmd)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EACCES) {
			if aerr := UsernsAllowed(); aerr != nil {
				return 1, aerr
			}
			return 1, fmt.Errorf("the kernel refused a user namespace (%v): unprivileged user namespaces are forbidden here (a sysctl, a container's seccomp policy or AppArmor); build as root or with isolation: vm", err)
		}
		return 1, err
	}
	r.Close()
	pid := strconv.Itoa(cmd.Process.Pid)
	maps := []struct {
		bin      string
		id       int
		sub      IDRange
		fileName string
	}{{p.NewUIDMap, p.UID, p.SubUID, "/etc/subuid"}, {p.NewGIDMap, p.GID, p.SubGID, "/etc/subgid"}}
	for _, m := range maps {
		count := m.sub.Count
		if count > MinSubIDs-1 {
			count = MinSubIDs - 1
		}
		// uid 0 is the user; 1..65535 are the first subordinate ids.
		out, err := exec.Command(m.bin, pid, "0", strconv.Itoa(m.id), "1",
			"1", strconv.FormatUint(uint64(m.sub.Start), 10), strconv.FormatUint(uint64(count), 10)).CombinedOutput()
		if err != nil {
			cmd.Process.Kill()
			wait()
			return 1, fmt.Errorf("%s for the build's user namespace: %v: %s (check %s for %s)", m.bin, err, strings.TrimSpace(string(out)), m.fileName, p.User)
		}
	}
	if _, err := w.Write([]byte{1}); err != nil {
		cmd.Process.Kill()
		wait()
		return 1, err
	}
	// w stays open while this process lives: its end is how the build
	// learns that this process died (see watchParent).
	return wait()
}

// FinishUserns is called first thing by every vmdeb process. In the first
// process of a new user namespace it waits until the parent has written
// the id maps, then executes vmdeb again: execve as uid 0 of the namespace
// is what gives the process its capabilities there.
func FinishUserns() {
	// Only PID 1 of a new PID namespace can be the process ReexecUserns
	// started; a caller's environment proves nothing.
	if os.Getpid() != 1 {
		return
	}
	if os.Getenv(marker) == "1" && os.Getenv(usernsEnv) == "1" {
		watchParent()
		return
	}
	if os.Getenv(marker) != usernsWait {
		return
	}
	f := os.NewFile(3, "userns-sync")
	b := make([]byte, 1)
	if n, _ := f.Read(b); n != 1 || b[0] != 1 {
		os.Exit(1) // the parent failed and said why
	}
	// fd 3 stays open across the exec below, for watchParent.
	if err := unix.Setresgid(0, 0, 0); err == nil {
		err = unix.Setgroups(nil)
		_ = err // setgroups may be denied; the host's groups then show as nogroup
	}
	if err := unix.Setresuid(0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "vmdeb: becoming root of the build's user namespace:", err)
		os.Exit(1)
	}
	os.Setenv(marker, "1")
	os.Setenv(usernsEnv, "1")
	err := unix.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintln(os.Stderr, "vmdeb: re-executing in the build's user namespace:", err)
	os.Exit(1)
}

// watchParent makes the build die with the vmdeb process that started it.
// The exec that gave it root's capabilities in its namespace also cleared
// its parent-death signal (the kernel does so when capabilities are
// gained), so it is set again here; a parent that died before that is seen
// as the hang-up of the pipe it holds open.
func watchParent() {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "vmdeb: setting the parent-death signal:", err)
		os.Exit(1)
	}
	fds := []unix.PollFd{{Fd: 3, Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 0); err == nil && n == 1 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
		os.Exit(137) // the parent is gone
	}
	unix.Close(3)
}

// usernsEnv tells the build process that it runs in a user namespace.
const usernsEnv = "VMDEB_USERNS"

var (
	usernsOnce sync.Once
	usernsIs   bool
)

// InUserns reports whether this process runs in a user namespace other
// than the initial one (its uid map is not the identity of all ids): there
// device nodes cannot be made, sysfs and binfmt_misc cannot be mounted.
func InUserns() bool {
	usernsOnce.Do(func() {
		b, err := os.ReadFile("/proc/self/uid_map")
		if err != nil {
			return
		}
		f := strings.Fields(string(b))
		usernsIs = !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
	})
	return usernsIs
}
