package buildervm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vmdeb/internal/arch"
	"vmdeb/internal/bytesize"
	"vmdeb/internal/config"
	"vmdeb/internal/qemu"
	"vmdeb/internal/run"
)

// Share is a host directory the guest mounts over 9p at Guest.
type Share struct {
	Host, Guest string
	ReadOnly    bool
}

// Job is one build in a builder VM.
type Job struct {
	Image   string    // the builder image (qcow2), used read-only
	Arch    arch.Arch // the builder's (and host's) architecture
	Accel   string    // auto, kvm or tcg
	Memory  int64     // bytes
	CPUs    int
	Scratch int64  // size of the scratch disk, bytes
	TempDir string // where the scratch disk's (sparse, unlinked) file lives

	Binary string   // the vmdeb to run in the guest (the host's own)
	Args   []string // its arguments
	Env    []string // KEY=VALUE for it
	Shares []Share
	// Apt holds files for the guest's /etc/apt (path relative to it ->
	// content): the host's sources, so the build finds the same mirror.
	Apt map[string][]byte

	Console io.Writer                     // the build's console output once the guest is up
	TTY     bool                          // Console is a terminal: the build may draw progress bars
	Log     func(format string, a ...any) // one-line status messages
	// BootTimeout bounds the time from starting qemu to the guest's
	// "ready" (default 10 minutes).
	BootTimeout time.Duration
}

// Result is how a builder VM run ended.
type Result struct {
	Status      int           // the guest vmdeb's exit status
	Accel       string        // kvm or tcg
	Boot        time.Duration // qemu's start to the guest being ready
	Elapsed     time.Duration // qemu's whole run
	ScratchPeak int64         // most bytes the scratch disk held
	ScratchFull bool          // the build ran out of scratch space
	// NoSpace: the console said "no space left on device" somewhere (the
	// caller tells the scratch disk from the host's output directory).
	NoSpace bool
}

// Guest-side markers the init script prints.
const (
	readyMarker = "vmdeb-builder: ready"
	exitMarker  = "vmdeb-builder: exit "
)

var (
	noSpace        = regexp.MustCompile(`(?i)no space left on device`)
	noSpaceScratch = regexp.MustCompile(`(?i)/scratch\S*.*no space left on device|no space left on device.*/scratch`)
)

// tag names the i-th share's 9p mount tag.
func tag(i int) string { return "vmdeb" + strconv.Itoa(i) }

// qemuArgs is the qemu command line (without the binary) for job j whose job
// directory is jobDir, the vmdeb binary's directory binDir, the scratch
// disk open as the child's file descriptor 3.
func (j *Job) qemuArgs(accel string, fw qemu.Firmware, jobDir, binDir string) []string {
	o := qemu.Options{Image: j.Image, Kind: qemu.KindQcow2, Arch: j.Arch, UEFI: UEFI(j.Arch),
		Memory: int(j.Memory >> 20), CPUs: j.CPUs}
	args := qemu.Args(o, accel, fw)
	if accel == "tcg" && j.CPUs > 1 {
		// Multi-threaded TCG (qemu 7.2) races with the guest kernel's
		// live code patching: 6.x kernels died at boot with "Oops: int3"
		// in one boot of three here. One thread for all vCPUs does not.
		for i := range args {
			if args[i] == "-accel" && args[i+1] == "tcg" {
				args[i+1] = "tcg,thread=single"
			}
		}
	}
	// Throwaway data: no flushes; a full disk is an error the guest sees
	// (qemu's default would pause the VM and hang the build). A PCI slot
	// after the image's: the firmware boots the first disk it finds.
	args = append(args,
		"-drive", "file=/dev/fd/3,if=none,id=scratch,format=raw,cache=unsafe,discard=unmap,werror=report,rerror=report",
		"-device", "virtio-blk-pci,drive=scratch,serial=vmdeb-scratch,addr=0x10")
	virtfs := func(t, path string, ro bool) {
		v := "local,path=" + optEscape(path) + ",mount_tag=" + t + ",security_model=none,multidevs=remap"
		if ro {
			v += ",readonly=on"
		}
		args = append(args, "-virtfs", v)
	}
	virtfs("vmdeb-job", jobDir, false)
	virtfs("vmdeb-bin", binDir, true)
	for i, s := range j.Shares {
		virtfs(tag(i), s.Host, s.ReadOnly)
	}
	return args
}

func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// mounts is the job's mounts file: "TAG ro|rw PATH" per share, in order.
func (j *Job) mounts() string {
	var b strings.Builder
	for i, s := range j.Shares {
		mode := "rw"
		if s.ReadOnly {
			mode = "ro"
		}
		fmt.Fprintf(&b, "%s %s %s\n", tag(i), mode, s.Guest)
	}
	return b.String()
}

// writeJob fills the job directory the guest mounts.
func (j *Job) writeJob(dir string) error {
	for _, a := range append(append([]string{}, j.Args...), j.Env...) {
		if strings.ContainsAny(a, "\n\x00") {
			return fmt.Errorf("argument %q: the builder VM takes no newlines in arguments", a)
		}
	}
	for _, s := range j.Shares {
		if strings.ContainsAny(s.Guest, "\n\x00") || strings.TrimSpace(s.Guest) != s.Guest || !filepath.IsAbs(s.Guest) {
			return fmt.Errorf("%q: the builder VM shares only absolute paths without newlines or surrounding blanks", s.Guest)
		}
	}
	files := map[string]string{
		"exe":    filepath.Base(j.Binary) + "\n",
		"args":   strings.Join(j.Args, "\n") + "\n",
		"env":    strings.Join(j.Env, "\n") + "\n",
		"mounts": j.mounts(),
		"job.sh": jobScript,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	if j.TTY {
		if err := os.WriteFile(filepath.Join(dir, "tty"), nil, 0o644); err != nil {
			return err
		}
	}
	for rel, data := range j.Apt {
		p := filepath.Join(dir, "apt", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ParseStatus reads the exit status file the guest writes.
func ParseStatus(data []byte) (int, error) {
	s := strings.TrimSpace(string(data))
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("the builder VM's status file holds %q, not an exit status", s)
	}
	return n, nil
}

// Run boots the builder, runs the job in it and waits for the guest to
// power off. qemu is dead and the job's files are gone when it returns,
// whatever happened (ctx cancelled: qemu is killed).
func Run(ctx context.Context, j Job) (res Result, err error) {
	if j.Log == nil {
		j.Log = func(string, ...any) {}
	}
	if j.Console == nil {
		j.Console = io.Discard
	}
	if j.BootTimeout == 0 {
		j.BootTimeout = 10 * time.Minute
	}
	bin, err := qemu.System(j.Arch)
	if err != nil {
		return res, fmt.Errorf("the builder VM: %w", err)
	}
	var fw qemu.Firmware
	if UEFI(j.Arch) {
		if fw, err = qemu.FindFirmware(j.Arch); err != nil {
			return res, err
		}
	}
	jobDir, err := os.MkdirTemp("", "vmdeb-vm-")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(jobDir)) }()
	if err := j.writeJob(jobDir); err != nil {
		return res, err
	}
	if UEFI(j.Arch) {
		vars := filepath.Join(jobDir, "efivars.fd")
		data, err := os.ReadFile(fw.Vars)
		if err != nil {
			return res, err
		}
		if err := os.WriteFile(vars, data, 0o600); err != nil {
			return res, err
		}
		fw.Vars = vars
	}

	accel, note, err := qemu.ChooseAccel(j.Accel, j.Arch)
	if err != nil {
		return res, err
	}
	j.Log("vmdeb: booting the builder VM with %s%s, %d CPUs, %s memory, %s scratch disk",
		accel, note, j.CPUs, bytesize.Format(j.Memory), bytesize.Format(j.Scratch))
	res, kvmBroken, err := j.attempt(ctx, bin, accel, fw, jobDir)
	if kvmBroken != "" {
		j.Log("vmdeb: KVM cannot run the builder here (%s); restarting it with TCG", kvmBroken)
		os.Remove(filepath.Join(jobDir, "status"))
		res, _, err = j.attempt(ctx, bin, "tcg", fw, jobDir)
	}
	return res, err
}

// scratchFile makes the sparse scratch disk and unlinks it at once: qemu
// gets it as an open file, so nothing is left on disk whatever kills
// vmdeb or qemu.
func (j *Job) scratchFile() (*os.File, error) {
	dir := j.TempDir
	if dir == "" {
		dir = config.DefaultWorkDir
	}
	f, err := os.CreateTemp(dir, ".vmdeb-scratch-")
	if err != nil {
		return nil, fmt.Errorf("the builder VM's scratch disk: %w", err)
	}
	os.Remove(f.Name())
	if err := f.Truncate(j.Scratch); err != nil {
		f.Close()
		return nil, fmt.Errorf("the builder VM's scratch disk (%s in %s): %w", bytesize.Format(j.Scratch), dir, err)
	}
	var st unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &st) == nil {
		if free := int64(st.Bavail) * st.Bsize; free < j.Scratch {
			j.Log("vmdeb: warning: %s has %s free, less than the builder's %s scratch disk: a big build may fill it", dir, bytesize.Format(free), bytesize.Format(j.Scratch))
		}
	}
	return f, nil
}

// attempt runs qemu once. kvmBroken says why to retry with TCG.
func (j *Job) attempt(ctx context.Context, bin, accel string, fw qemu.Firmware, jobDir string) (res Result, kvmBroken string, err error) {
	res.Accel = accel
	scratch, err := j.scratchFile()
	if err != nil {
		return res, "", err
	}
	defer scratch.Close()
	self, err := filepath.EvalSymlinks(j.Binary)
	if err != nil {
		return res, "", err
	}
	cmd := exec.Command(bin, j.qemuArgs(accel, fw, jobDir, filepath.Dir(self))...)
	cmd.ExtraFiles = []*os.File{scratch}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, "", err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Its own process group (Ctrl-C reaches vmdeb, which kills it), and
	// killed by the kernel if vmdeb dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, "", fmt.Errorf("start %s: %w", bin, err)
	}
	scratch.Close() // qemu has its own descriptor
	done := make(chan struct{})
	defer close(done)
	ready := make(chan struct{})
	go killUnless(ctx, cmd.Process.Pid, j.BootTimeout, ready, done)

	w := &watcher{console: j.Console, ready: ready}
	io.Copy(w, stdout)
	werr := cmd.Wait()
	res.Elapsed = time.Since(start)
	if !w.readyAt.IsZero() {
		res.Boot = w.readyAt.Sub(start)
	}
	w.flush()
	if ctx.Err() != nil {
		return res, "", fmt.Errorf("the builder VM was stopped: %w", ctx.Err())
	}
	if accel == "kvm" && w.readyAt.IsZero() {
		for _, l := range strings.Split(stderr.String(), "\n") {
			if qemu.KVMFailed(l) {
				return res, "qemu: " + strings.TrimSpace(l), nil
			}
		}
	}
	res, err = j.outcome(res, w, jobDir, start, werr, stderr.String())
	return res, "", err
}

// killUnless kills the process group pid when ctx is cancelled, or when
// the guest is not ready (ready closed) within bootTimeout; done says
// the process has ended.
func killUnless(ctx context.Context, pid int, bootTimeout time.Duration, ready, done <-chan struct{}) {
	t := time.NewTimer(bootTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-ready:
		select {
		case <-ctx.Done():
		case <-done:
		}
	case <-done:
		return
	}
	run.KillGroup(pid)
}

// outcome reads what the guest left in the job directory once qemu
// (started at start, ended with werr, having written stderr) is gone:
// the scratch disk's peak and the build's exit status, or why there is
// none.
func (j *Job) outcome(res Result, w *watcher, jobDir string, start time.Time, werr error, stderr string) (Result, error) {
	if data, err := os.ReadFile(filepath.Join(jobDir, "scratch-peak-kib")); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
			res.ScratchPeak = n << 10
		}
	}
	res.ScratchFull = w.noSpaceScratch || res.ScratchPeak >= j.Scratch-j.Scratch/50
	res.NoSpace = w.noSpace
	data, serr := os.ReadFile(filepath.Join(jobDir, "status"))
	if serr != nil {
		why := "the builder VM stopped without an exit status (it crashed, or the build in it was killed)"
		if msg, err := os.ReadFile(filepath.Join(jobDir, "error")); err == nil {
			why = "the builder VM failed: " + strings.TrimSpace(string(msg))
		} else if w.readyAt.IsZero() && time.Since(start) >= j.BootTimeout {
			why = fmt.Sprintf("the builder VM did not come up in %s", j.BootTimeout)
		}
		if werr != nil {
			why += fmt.Sprintf(" (qemu: %v)", werr)
		}
		if e := strings.TrimSpace(stderr); e != "" {
			why += "\nqemu said:\n    " + strings.ReplaceAll(tail(e, 10), "\n", "\n    ")
		}
		return res, fmt.Errorf("%s; last console lines:\n%s", why, w.last())
	}
	var err error
	res.Status, err = ParseStatus(data)
	return res, err
}

// watcher reads the serial console: boot messages are kept (shown only
// when the VM fails), the build's output after the ready marker goes to
// console.
type watcher struct {
	console io.Writer
	ready   chan struct{}
	readyAt time.Time
	partial []byte
	lines   []string // the last lines, for errors
	noSpace bool
	// noSpaceScratch: a "no space" line named the scratch disk.
	noSpaceScratch bool
	exited         bool   // the guest printed its exit status
	held           []byte // the start of a line not written yet
}

func (w *watcher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		var chunk []byte
		if i < 0 {
			chunk, p = p, nil
		} else {
			chunk, p = p[:i+1], p[i+1:]
		}
		w.partial = append(w.partial, chunk...)
		start := bytes.TrimLeft(w.partial, "\r")
		if bytes.HasPrefix(start, []byte(exitMarker)) {
			w.exited = true // the power-off messages after it are noise
		}
		if !w.readyAt.IsZero() && !w.exited {
			w.held = append(w.held, chunk...)
			// A line that may still become the exit marker waits until
			// it is whole.
			if i >= 0 || !bytes.HasPrefix([]byte(exitMarker), start) {
				w.console.Write(w.held)
				w.held = w.held[:0]
			}
		}
		if i >= 0 {
			w.line(string(bytes.TrimRight(w.partial, "\r\n")))
			w.partial = w.partial[:0]
		}
	}
	return n, nil
}

// ansi matches terminal control sequences (GRUB's menu, colours).
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78])`)

func (w *watcher) line(l string) {
	l = strings.TrimLeft(ansi.ReplaceAllString(l, ""), "\r")
	if k := strings.LastIndexByte(l, '\r'); k >= 0 {
		l = l[k+1:] // progress bars: the last state of the line
	}
	w.lines = append(w.lines, l)
	if len(w.lines) > 40 {
		w.lines = w.lines[len(w.lines)-40:]
	}
	if w.readyAt.IsZero() && strings.Contains(l, readyMarker) {
		w.readyAt = time.Now()
		close(w.ready)
	}
	if noSpace.MatchString(l) {
		w.noSpace = true
		w.noSpaceScratch = w.noSpaceScratch || noSpaceScratch.MatchString(l)
	}
}

func (w *watcher) flush() {
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
}

func (w *watcher) last() string {
	return "    " + strings.Join(w.lines, "\n    ")
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
