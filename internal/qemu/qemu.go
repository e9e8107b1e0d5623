// Package qemu boots an image vmdeb built in qemu and watches its serial
// console until a login prompt (or another expected line) appears, and
// optionally logs in and runs one command. It picks KVM only when KVM
// really works and otherwise falls back to TCG, and it never leaves a qemu
// process behind.
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"vmdeb/internal/arch"
	"vmdeb/internal/run"
)

// Options describe one test boot.
type Options struct {
	Image string    // ISO or disk image path
	Kind  string    // KindISO, KindQcow2 or KindRaw; "" = DetectImage(Image)
	Arch  arch.Arch // the image's architecture
	UEFI  bool      // boot with UEFI firmware; false: BIOS (only if Arch has arch.BIOS)
	// SecureBoot boots with firmware that enforces Secure Boot with
	// Microsoft's keys enrolled, as a PC sold today does (implies UEFI).
	SecureBoot bool
	Accel      string // "auto" (""), "kvm" or "tcg"
	// Writable lets the guest write to a disk image; by default its writes
	// go to a temporary overlay that qemu drops.
	Writable bool

	Memory  int           // MiB, default 2048
	CPUs    int           // default 2
	Timeout time.Duration // per attempt, default 10m; a TCG retry after failed KVM gets its own
	Expect  string        // regexp matched against each clean console line, default DefaultExpect

	// Run, if set, is typed into a shell after logging in as Login with
	// Password once Expect matched; its output and exit status are reported.
	Run             string
	Login, Password string

	// Screenshot, if set, is a PNG file written with the guest's screen
	// once Expect matched, or ScreenshotAfter later: a graphical session
	// draws its screen some time after the serial console's login prompt.
	// The console is still read (and Run still runs) meanwhile; Timeout
	// bounds the boot and Run, and the wait comes on top of it.
	Screenshot      string
	ScreenshotAfter time.Duration

	// Entry > 0 boots the boot menu's entry that many places below the
	// default, chosen with the cursor keys on the serial console once
	// the menu's countdown shows (ISOLINUX or GRUB as vmdeb writes them).
	Entry int
	// Append, if set, is added to the chosen entry's kernel command line
	// (EditKeys), e.g. debian-installer's preseeding.
	Append string
	// NoNetwork boots with no network device at all.
	NoNetwork bool
	// Disk, if set, is a raw image attached as a second, writable virtio
	// disk (e.g. the blank disk an installer installs onto).
	Disk string

	Console io.Writer                     // receives the raw console output live; may be nil
	Log     func(format string, a ...any) // one-line status messages; may be nil

	qmp string // QMP socket path, set by Boot when a screenshot is wanted
}

// Result describes a successful boot.
type Result struct {
	Accel     string        // "kvm" or "tcg": what the boot ran with
	Elapsed   time.Duration // from starting qemu to the Expect match
	Matched   string        // the console line that matched Expect
	RunOutput string        // the Run command's output (console lines, ANSI-free)
	RunStatus int           // the Run command's exit status
}

// DefaultExpect matches a getty's login prompt, also when a kernel
// message was printed on the same line after it ("debian login: [  116.990]
// powernow_k8: ..."): getty still waits at it.
const DefaultExpect = `login:\s*($|\[\s*\d+\.\d+\])`

var (
	// kvmProbeWait is how long a KVM boot may stay silent before KVM is
	// judged broken: nested KVM can hang without a word.
	kvmProbeWait = 45 * time.Second
	// quietWait is how long an unfinished line must stay unchanged before
	// it counts as a prompt.
	quietWait = 300 * time.Millisecond
	// kvmError is what qemu prints on stderr when KVM cannot run the guest.
	kvmError = regexp.MustCompile(`KVM internal error|emulation failure`)
	// kernelPanic is the line a Linux guest prints when it panics.
	kernelPanic = regexp.MustCompile(`Kernel panic - not syncing`)
	// panicGather is how long the console is still read after a panic's
	// line, for the rest of its report, before the attempt ends.
	panicGather = 3 * time.Second
)

// kvmVerdict remembers for the whole process whether KVM proved usable, so
// a later Boot neither retries a broken KVM nor probes a working one again.
var kvmVerdict struct {
	sync.Mutex
	known, ok bool
	why       string
}

func setVerdict(ok bool, why string) {
	kvmVerdict.Lock()
	defer kvmVerdict.Unlock()
	kvmVerdict.known, kvmVerdict.ok, kvmVerdict.why = true, ok, why
}

func verdict() (known, ok bool, why string) {
	kvmVerdict.Lock()
	defer kvmVerdict.Unlock()
	return kvmVerdict.known, kvmVerdict.ok, kvmVerdict.why
}

// kvmGuests lists the Debian architectures KVM can run on each host
// architecture (runtime.GOARCH).
var kvmGuests = map[string][]string{
	"amd64":   {"amd64", "i386"},
	"386":     {"i386"},
	"arm64":   {"arm64"},
	"ppc64le": {"ppc64el"},
	"s390x":   {"s390x"},
	"riscv64": {"riscv64"},
}

// kvmUsable says why KVM cannot be used for a on this host, or nil.
func kvmUsable(a arch.Arch) error {
	native := false
	for _, g := range kvmGuests[runtime.GOARCH] {
		native = native || g == a.Name
	}
	if !native {
		return fmt.Errorf("KVM cannot run %s guests on this %s host", a.Name, runtime.GOARCH)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("KVM is not available: %w", err)
	}
	return f.Close()
}

// Boot boots o.Image in qemu and waits for o.Expect on its serial console
// (then runs o.Run, if set). qemu is killed when Boot returns.
func Boot(ctx context.Context, o Options) (res Result, err error) {
	expect, err := o.check()
	if err != nil {
		return res, err
	}
	a := o.Arch
	bin, err := System(a)
	if err != nil {
		return res, err
	}
	if o.Kind == "" {
		if o.Kind, err = DetectImage(o.Image); err != nil {
			return res, err
		}
	}
	var fw Firmware
	switch {
	case o.SecureBoot:
		if fw, err = findSecureFirmware(a); err != nil {
			return res, err
		}
	case o.UEFI:
		if fw, err = findFirmware(a); err != nil {
			return res, err
		}
	}

	tmp, err := os.MkdirTemp("", "vmdeb-qemu-")
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	if o.Screenshot != "" {
		o.qmp = filepath.Join(tmp, "qmp.sock")
	}
	b := &booter{o: o, bin: bin, fw: fw, tmp: tmp, expect: expect}

	accel, probe, note, err := chooseAccel(o.Accel, a)
	if err != nil {
		return res, err
	}
	o.Log("qemu: booting %s (%s, %s) with %s%s", filepath.Base(o.Image), o.Kind, firmwareName(o.UEFI), accel, note)
	out := b.attempt(ctx, accel, probe)
	if out.kvmBroken != "" {
		first := out
		if first.kvmCertain {
			setVerdict(false, first.kvmBroken)
		}
		o.Log("qemu: KVM is not usable here (%s); restarting with TCG", first.kvmBroken)
		out = b.attempt(ctx, "tcg", false)
		if out.err == nil && !first.kvmCertain {
			// The same image boots under TCG: the failure was KVM's.
			setVerdict(false, first.kvmBroken)
		}
	}
	if out.panicked != "" && out.accel == "tcg" && !o.Writable && o.Disk == "" && ctx.Err() == nil {
		// qemu's emulation of a multi-processor guest can break a kernel
		// that runs fine on hardware (code patched on one virtual CPU
		// while another runs it). One panic under TCG may be qemu's; the
		// same panic twice is the image's. Not when the guest may have
		// written to a disk: the second boot would not start afresh.
		o.Log("qemu: the guest's kernel panicked under TCG (%s); TCG's emulation can cause that, booting once more", out.panicked)
		second := b.attempt(ctx, "tcg", false)
		if second.panicked != "" {
			second.err = fmt.Errorf("the guest's kernel panicked on two boots under TCG: %w", second.err)
		}
		out = second
	}
	return out.res, out.err
}

// check fills in o's defaults and refuses what cannot boot; it returns
// the compiled Expect pattern.
func (o *Options) check() (*regexp.Regexp, error) {
	if o.Accel == "" {
		o.Accel = "auto"
	}
	if o.Memory == 0 {
		o.Memory = 2048
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Expect == "" {
		o.Expect = DefaultExpect
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	switch o.Accel {
	case "auto", "kvm", "tcg":
	default:
		return nil, fmt.Errorf("unknown accelerator %q (valid: auto, kvm, tcg)", o.Accel)
	}
	if o.Memory < 0 || o.CPUs < 0 || o.Timeout < 0 {
		return nil, fmt.Errorf("memory, CPUs and timeout must be positive")
	}
	if o.ScreenshotAfter < 0 {
		return nil, fmt.Errorf("the screenshot's delay must not be negative")
	}
	if o.ScreenshotAfter > 0 && o.Screenshot == "" {
		return nil, fmt.Errorf("a screenshot delay without a screenshot file")
	}
	expect, err := regexp.Compile(o.Expect)
	if err != nil {
		return nil, fmt.Errorf("expect pattern: %w", err)
	}
	if o.Run != "" && o.Login == "" {
		return nil, fmt.Errorf("a command to run needs a login name")
	}
	if o.Entry < 0 {
		return nil, fmt.Errorf("menu entry %d: count entries from 0 (the default)", o.Entry)
	}
	switch {
	case o.UEFI && !o.Arch.HasFirmware(arch.UEFI):
		return nil, fmt.Errorf("vmdeb cannot boot %s with UEFI", o.Arch.Name)
	case !o.UEFI && !o.Arch.HasFirmware(arch.BIOS) && o.Arch.HasFirmware(arch.UEFI):
		return nil, fmt.Errorf("%s has no BIOS: boot it with UEFI", o.Arch.Name)
	case !o.UEFI && !o.Arch.HasFirmware(arch.BIOS):
		return nil, fmt.Errorf("vmdeb cannot boot %s images", o.Arch.Name)
	}
	return expect, nil
}

// chooseAccel picks the accelerator of the first attempt; probe means a
// KVM attempt may fail over to TCG; note explains the choice for the log.
func chooseAccel(want string, a arch.Arch) (accel string, probe bool, note string, err error) {
	switch want {
	case "tcg":
		return "tcg", false, "", nil
	case "kvm":
		if err := kvmUsable(a); err != nil {
			return "", false, "", err
		}
		return "kvm", false, "", nil
	}
	if err := kvmUsable(a); err != nil {
		return "tcg", false, " (" + err.Error() + ")", nil
	}
	known, ok, why := verdict()
	if !known {
		if err := probeKVM(context.Background(), a); err != nil {
			setVerdict(false, err.Error())
			return "tcg", false, " (" + err.Error() + ")", nil
		}
	} else if !ok {
		return "tcg", false, " (KVM failed earlier: " + why + ")", nil
	}
	return "kvm", true, " (TCG if KVM fails)", nil
}

func firmwareName(uefi bool) string {
	if uefi {
		return "UEFI"
	}
	return "BIOS"
}

// booter holds what all attempts of one Boot share.
type booter struct {
	o      Options
	bin    string
	fw     Firmware
	tmp    string
	expect *regexp.Regexp
}

// outcome is one attempt's end. kvmBroken, set only for a probing KVM
// attempt, says why to retry with TCG; kvmCertain says qemu itself blamed
// KVM (rather than the guest merely failing to start).
type outcome struct {
	res        Result
	err        error
	accel      string
	kvmBroken  string
	kvmCertain bool
	panicked   string // the guest kernel's panic line, when it panicked
}

// attempt runs qemu once and watches it until the session is finished, the
// attempt times out, or ctx is cancelled. qemu is dead when it returns.
func (b *booter) attempt(ctx context.Context, accel string, probe bool) (out outcome) {
	o := b.o
	out.accel = accel
	fw := b.fw
	if o.UEFI {
		// A fresh copy of the variable store each time: the firmware
		// writes boot entries into it, and the original stays pristine.
		fw.Vars = filepath.Join(b.tmp, filepath.Base(b.fw.Vars))
		if err := copyFile(b.fw.Vars, fw.Vars); err != nil {
			out.err = err
			return out
		}
	}
	if o.qmp != "" {
		os.Remove(o.qmp) // a socket left by the previous attempt
	}

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := startQemu(actx, b.bin, Args(o, accel, fw))
	if err != nil {
		out.err = err
		return out
	}
	defer p.stop()
	start, stdinW, stdout, stderr, exited := p.start, p.stdin, p.stdout, p.stderr, p.exited

	con := &console{}
	s := &session{expect: b.expect, run: o.Run, login: o.Login, password: o.Password}
	if o.Entry > 0 {
		s.stage, s.menuKeys = waitMenu, MenuKeys(o.Entry)
	}
	if o.Append != "" {
		s.stage, s.menuKeys = waitMenu, EditKeys(o.Entry, o.Append, o.UEFI || o.SecureBoot)
	}
	var errTail []string
	deadline := time.NewTimer(o.Timeout)
	defer deadline.Stop()
	deadlineC := deadline.C
	// shotC fires when a delayed screenshot is due; nil otherwise.
	var shotC <-chan time.Time
	var shotTimer *time.Timer
	defer func() {
		if shotTimer != nil {
			shotTimer.Stop()
		}
	}()
	var silence <-chan time.Time
	if probe {
		t := time.NewTimer(kvmProbeWait)
		defer t.Stop()
		silence = t.C
	}
	// panicC fires panicGather after the guest kernel's panic line.
	var panicC <-chan time.Time
	var panicLine string
	defer func() {
		if out.err != nil && panicLine != "" {
			out.panicked = panicLine
		}
	}()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var exitErr error
	processExited := false
	keepErr := func(line string) {
		errTail = append(errTail, line)
		if len(errTail) > 10 {
			errTail = errTail[1:]
		}
	}
	// drainErr reads what qemu wrote on stderr before it died: its reason
	// can still be in the pipe when its stdout has closed and it is reaped.
	drainErr := func() {
		t := time.NewTimer(2 * time.Second)
		defer t.Stop()
		for stderr != nil {
			select {
			case line, ok := <-stderr:
				if !ok {
					stderr = nil
					return
				}
				keepErr(line)
			case <-t.C:
				return
			}
		}
	}
	waitC := (<-chan error)(exited)

	fail := func(format string, a ...any) outcome {
		msg := fmt.Sprintf(format, a...)
		if len(errTail) > 0 {
			msg += "\nqemu said:\n    " + strings.Join(errTail, "\n    ")
		}
		out.err = fmt.Errorf("%s; last console lines:\n%s", msg, con.last())
		return out
	}
	// react handles what the session wants typed, and the moment Expect
	// matched.
	react := func(before stage, send string, err error) bool {
		if err != nil {
			out = fail("%v", err)
			return true
		}
		if before == waitExpect && s.stage != waitExpect {
			out.res = Result{Accel: accel, Elapsed: time.Since(start), Matched: s.matched}
			if accel == "kvm" {
				setVerdict(true, "")
			}
			silence = nil
			switch {
			case o.Screenshot != "" && o.ScreenshotAfter > 0:
				o.Log("qemu: %q after %s; the screenshot in %s", s.matched, out.res.Elapsed.Round(time.Second), o.ScreenshotAfter)
				shotTimer = time.NewTimer(o.ScreenshotAfter)
				shotC = shotTimer.C
			case o.Screenshot != "":
				if err := b.screenshot(actx); err != nil {
					out.err = fmt.Errorf("screenshot: %w", err)
					return true
				}
			}
		}
		if send != "" {
			if _, err := io.WriteString(stdinW, send); err != nil {
				out = fail("type into the console: %v", err)
				return true
			}
		}
		if s.stage == finished {
			out.res.RunOutput, out.res.RunStatus = s.runOutput(), s.status
			if shotC != nil {
				// Done but for the picture: the wait is not the boot's.
				deadline.Stop()
				deadlineC = nil
				return false
			}
			return true
		}
		return false
	}

	for {
		select {
		case <-ctx.Done():
			out.err = fmt.Errorf("boot of %s cancelled: %w", o.Image, ctx.Err())
			return out
		case <-deadlineC:
			return fail("timed out after %s waiting for %s", o.Timeout, s.waiting())
		case <-shotC:
			shotC = nil
			if err := b.screenshot(actx); err != nil {
				out.err = fmt.Errorf("screenshot: %w", err)
				return out
			}
			if s.stage == finished {
				return out
			}
		case <-panicC:
			return fail("the guest's kernel panicked (%q)", panicLine)
		case <-silence:
			out.kvmBroken = fmt.Sprintf("no console output in %s", kvmProbeWait)
			return out
		case line, ok := <-stderr:
			if !ok {
				stderr = nil
				continue
			}
			keepErr(line)
			if accel == "kvm" && kvmError.MatchString(line) {
				if probe && s.booting() {
					out.kvmBroken, out.kvmCertain = "qemu: "+line, true
					return out
				}
				return fail("KVM failed to run the guest (try the tcg accelerator)")
			}
		case chunk, ok := <-stdout:
			if !ok {
				stdout = nil
				if processExited {
					drainErr()
					return b.exitedEarly(out, s, shotC != nil, exitErr, probe, fail)
				}
				continue
			}
			silence = nil
			if o.Console != nil {
				o.Console.Write(chunk)
			}
			for _, l := range con.write(chunk) {
				if panicLine == "" && s.stage != waitOutput && s.stage != finished && kernelPanic.MatchString(l) {
					// Not while a command's output is read: it may
					// print such a line itself.
					panicLine = strings.TrimSpace(l)
					t := time.NewTimer(panicGather)
					defer t.Stop()
					panicC = t.C
				}
				before := s.stage
				send, err := s.line(l)
				if react(before, send, err) {
					return out
				}
			}
			if con.partial() != "" {
				quiet.Reset(quietWait)
			}
		case <-quiet.C:
			before := s.stage
			send, err := s.prompt(con.partial())
			if react(before, send, err) {
				return out
			}
		case exitErr = <-waitC:
			// Wait has reaped qemu; give the deferred receive its value back.
			exited <- exitErr
			waitC = nil
			processExited = true
			if stdout == nil {
				drainErr()
				return b.exitedEarly(out, s, shotC != nil, exitErr, probe, fail)
			}
			// Otherwise finish reading what it wrote first.
		}
	}
}

// proc is a running qemu: its console's input, its output as it comes,
// and the channel its Wait result arrives on.
type proc struct {
	start  time.Time
	stdin  *os.File
	stdout chan []byte
	stderr chan string
	exited chan error
	// stop kills qemu's process group unless qemu is reaped already, then
	// closes the pipes.
	stop func()
}

// startQemu starts bin with args under ctx.
func startQemu(ctx context.Context, bin string, args []string) (*proc, error) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, err
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		stdoutR.Close()
		stdoutW.Close()
		return nil, err
	}

	cmd := exec.CommandContext(ctx, bin, args...)
	// Our own pipes, not exec's: reading them does not race with Wait, so
	// the last words of a dying qemu are not lost.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	// Its own process group, killed whole; and killed by the kernel if
	// vmdeb dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return run.KillGroup(cmd.Process.Pid) }
	start := time.Now()
	err = cmd.Start()
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		stderrR.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{start: start, stdin: stdinW, stdout: make(chan []byte), stderr: make(chan string), exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	quit := make(chan struct{})
	p.stop = func() {
		close(quit)
		select {
		case <-p.exited: // reaped already: its pid may belong to another process by now
		default:
			run.KillGroup(cmd.Process.Pid) // a group just gone is no error
			<-p.exited
		}
		stdoutR.Close()
		stderrR.Close()
		stdinW.Close()
	}
	go readChunks(stdoutR, p.stdout, quit)
	go readLines(stderrR, p.stderr, quit)
	return p, nil
}

// exitedEarly is the outcome of qemu ending before the session finished
// or, shotDue, before a delayed screenshot was taken.
func (b *booter) exitedEarly(out outcome, s *session, shotDue bool, exitErr error, probe bool, fail func(string, ...any) outcome) outcome {
	why := "qemu exited"
	if exitErr != nil {
		why = fmt.Sprintf("qemu exited (%v)", exitErr)
	}
	if probe && s.booting() {
		out.kvmBroken = why + " before the guest was up"
		return out
	}
	what := s.waiting()
	if s.stage == finished && shotDue {
		what = "the screenshot"
	}
	return fail("%s while waiting for %s", why, what)
}

func (b *booter) screenshot(ctx context.Context) error {
	ppm := filepath.Join(b.tmp, "screen.ppm")
	if err := screendump(ctx, b.o.qmp, ppm); err != nil {
		return err
	}
	return ppmToPNG(ppm, b.o.Screenshot)
}

// readChunks sends what r yields until EOF, or until quit closes.
func readChunks(r io.Reader, ch chan<- []byte, quit <-chan struct{}) {
	defer close(ch)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case ch <- append([]byte(nil), buf[:n]...):
			case <-quit:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// readLines sends r's lines until EOF, or until quit closes.
func readLines(r io.Reader, ch chan<- string, quit <-chan struct{}) {
	defer close(ch)
	br := bufio.NewReader(r)
	for {
		l, err := br.ReadString('\n')
		if l = strings.TrimRight(l, "\r\n"); l != "" {
			select {
			case ch <- l:
			case <-quit:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
